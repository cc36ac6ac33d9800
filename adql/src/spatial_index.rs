//! A HEALPix index of a table's positions (through `cdshealpix`): the rows a cone can hold.
//!
//! Rows are sorted by their nested cell at [`HealpixIndex::DEPTH`]; a cone's coverage (a
//! superset of the cells it touches) selects runs of that order by binary search. The
//! candidates are a superset of the answer, so the exact cone test still runs on them.
//!
//! Indexes are built on first use and kept in an [`IndexCache`] directory (data volumes are
//! read-only), keyed by the table file's path, size and modification time, so a changed
//! file is re-indexed and the next session starts with the index at hand.

use std::f64::consts::PI;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use cdshealpix::nested;

/// Rows sorted by HEALPix cell.
#[derive(Debug, Clone)]
pub struct HealpixIndex {
    cells: Vec<u64>,
    rows: Vec<u32>,
}

/// The "cell" of finite positions off the sphere (|dec| > 90): sorted last, in no cone's
/// coverage, and added to every candidate list so that the exact test decides on them as a
/// full scan would.
const OFF_SPHERE: u64 = u64::MAX;

impl HealpixIndex {
    /// Cells of about 3.4′: fine enough to prune arcsecond-to-degree cones, coarse enough to
    /// keep the coverage of a large cone to a few thousand ranges.
    pub const DEPTH: u8 = 10;

    /// Indexes positions in degrees; rows with a non-finite position are left out (no cone
    /// contains them), finite ones off the sphere are kept apart (in a cell of their own).
    pub fn build(ra: &[Option<f64>], dec: &[Option<f64>]) -> HealpixIndex {
        let layer = nested::get(Self::DEPTH);
        let mut entries: Vec<(u64, u32)> = ra
            .iter()
            .zip(dec)
            .enumerate()
            .filter_map(|(row, (ra, dec))| {
                let (ra, dec) = (
                    ra.filter(|v| v.is_finite())?,
                    dec.filter(|v| v.is_finite())?,
                );
                let row = u32::try_from(row).ok()?;
                if !(-90.0..=90.0).contains(&dec) {
                    return Some((OFF_SPHERE, row));
                }
                Some((
                    layer.hash(ra.rem_euclid(360.0).to_radians(), dec.to_radians()),
                    row,
                ))
            })
            .collect();
        entries.sort_unstable();
        HealpixIndex {
            cells: entries.iter().map(|e| e.0).collect(),
            rows: entries.iter().map(|e| e.1).collect(),
        }
    }

    /// Rows whose cell the cone may touch, and the rows off the sphere, in row order: a
    /// superset of the rows in the cone.
    pub fn candidates(&self, ra: f64, dec: f64, radius_deg: f64) -> Vec<usize> {
        if !(ra.is_finite() && dec.is_finite() && radius_deg.is_finite()) || radius_deg < 0.0 {
            return Vec::new();
        }
        let off_sphere = self.cells.partition_point(|&c| c < OFF_SPHERE);
        let off_sphere = self.rows[off_sphere..].iter().map(|&r| r as usize);
        if radius_deg >= 90.0 {
            // A hemisphere or more: the index cannot prune much; take every indexed row.
            let mut all: Vec<usize> = self.rows.iter().map(|&r| r as usize).collect();
            all.sort_unstable();
            return all;
        }
        // Coverage at a depth whose cells are not much smaller than the cone, then widened to
        // index cells: few ranges even for large cones.
        let depth = coverage_depth(radius_deg);
        let shift = 2 * u32::from(Self::DEPTH - depth);
        let bmoc = nested::cone_coverage_approx(
            depth,
            ra.rem_euclid(360.0).to_radians(),
            dec.clamp(-90.0, 90.0).to_radians(),
            radius_deg.max(1e-9).to_radians(),
        );
        let mut rows: Vec<usize> = off_sphere.collect();
        for range in bmoc.to_ranges().iter() {
            let Range { start, end } = range;
            let lo = self.cells.partition_point(|&c| c < start << shift);
            let hi = self.cells.partition_point(|&c| c < end << shift);
            rows.extend(self.rows[lo..hi].iter().map(|&r| r as usize));
        }
        rows.sort_unstable();
        rows
    }

    /// Number of indexed rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Where built indexes are kept between sessions. Failing to read or write the cache is
/// never an error: the index is then built again, in memory.
#[derive(Debug, Clone)]
pub struct IndexCache {
    dir: PathBuf,
}

// 02: off-sphere rows kept (under OFF_SPHERE); 01 files are ignored and rebuilt.
const MAGIC: &[u8; 8] = b"INSHPX02";

impl IndexCache {
    pub fn new(dir: impl Into<PathBuf>) -> IndexCache {
        IndexCache { dir: dir.into() }
    }

    /// `$INSITU_CACHE_DIR`, else `$XDG_CACHE_HOME/insitu`, else `~/.cache/insitu`.
    pub fn default_dir() -> Option<PathBuf> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("INSITU_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("insitu")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("insitu")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What identifies an index: the file (path, size, modification time), which of its
    /// tables and columns, and the index layout.
    pub fn key(file: &Path, what: &str) -> Option<String> {
        let meta = std::fs::metadata(file).ok()?;
        let modified = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let path = file.canonicalize().ok()?;
        Some(format!(
            "{}\n{}\n{}.{:09}\n{what}\ndepth {}",
            path.display(),
            meta.len(),
            modified.as_secs(),
            modified.subsec_nanos(),
            HealpixIndex::DEPTH
        ))
    }

    fn file(&self, key: &str) -> PathBuf {
        // FNV-1a: stable across builds, unlike std's hasher; the key is stored and checked.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.dir.join(format!("healpix-{hash:016x}.idx"))
    }

    /// The cached index for `key`, if there is a valid one.
    pub fn load(&self, key: &str) -> Option<HealpixIndex> {
        let bytes = std::fs::read(self.file(key)).ok()?;
        let rest = bytes.strip_prefix(MAGIC)?;
        let (len, rest) = rest.split_first_chunk::<8>()?;
        let (stored, rest) =
            rest.split_at_checked(usize::try_from(u64::from_le_bytes(*len)).ok()?)?;
        if stored != key.as_bytes() {
            return None;
        }
        let (n, rest) = rest.split_first_chunk::<8>()?;
        let n = usize::try_from(u64::from_le_bytes(*n)).ok()?;
        if rest.len() != n.checked_mul(12)? {
            return None;
        }
        let (cells, rows) = rest.split_at(8 * n);
        let cells: Vec<u64> = cells
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let rows = rows
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        cells.is_sorted().then_some(HealpixIndex { cells, rows })
    }

    /// Stores `index` under `key` (written under a temporary name, then renamed).
    pub fn store(&self, key: &str, index: &HealpixIndex) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.file(key);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            out.write_all(MAGIC)?;
            out.write_all(&(key.len() as u64).to_le_bytes())?;
            out.write_all(key.as_bytes())?;
            out.write_all(&(index.cells.len() as u64).to_le_bytes())?;
            for c in &index.cells {
                out.write_all(&c.to_le_bytes())?;
            }
            for r in &index.rows {
                out.write_all(&r.to_le_bytes())?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// The deepest depth ≤ [`HealpixIndex::DEPTH`] whose cells are at least a quarter of the
/// cone's radius across (cell side ≈ √(4π / (12·4^d)) radians).
fn coverage_depth(radius_deg: f64) -> u8 {
    let radius = radius_deg.to_radians();
    (0..=HealpixIndex::DEPTH)
        .rev()
        .find(|&d| (4.0 * PI / (12.0 * 4f64.powi(i32::from(d)))).sqrt() >= radius / 4.0)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::angular_distance;

    #[test]
    fn cache_round_trips_and_rejects_other_keys_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = IndexCache::new(dir.path().join("cache"));
        let ra: Vec<Option<f64>> = (0..1000).map(|i| Some(f64::from(i) * 0.36)).collect();
        let dec: Vec<Option<f64>> = (0..1000).map(|i| Some(f64::from(i % 180) - 89.5)).collect();
        let index = HealpixIndex::build(&ra, &dec);
        assert!(cache.load("k").is_none());
        cache.store("k", &index).unwrap();
        let back = cache.load("k").unwrap();
        assert_eq!(
            (back.cells.clone(), back.rows.clone()),
            (index.cells.clone(), index.rows.clone())
        );
        assert!(cache.load("other").is_none());
        // A truncated file is ignored, not trusted.
        let file = cache.file("k");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        assert!(cache.load("k").is_none());
        assert_eq!(
            std::fs::read_dir(cache.dir()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn candidates_cover_every_cone_member_and_prune() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 20_000;
        let ra: Vec<Option<f64>> = (0..n).map(|_| Some(next() * 360.0)).collect();
        let dec: Vec<Option<f64>> = (0..n)
            .map(|_| Some((2.0 * next() - 1.0).asin().to_degrees()))
            .collect();
        let index = HealpixIndex::build(&ra, &dec);
        assert_eq!(index.len(), n);
        for (ra0, dec0, r) in [
            (0.0, 0.0, 2.0),
            (359.99, 45.0, 0.5),
            (10.0, 90.0, 3.0),
            (200.0, -89.9, 1.0),
            (80.0, 10.0, 30.0),
        ] {
            let candidates = index.candidates(ra0, dec0, r);
            let inside: Vec<usize> = (0..n)
                .filter(|&i| angular_distance(ra[i].unwrap(), dec[i].unwrap(), ra0, dec0) <= r)
                .collect();
            assert!(
                inside.iter().all(|i| candidates.binary_search(i).is_ok()),
                "cone ({ra0}, {dec0}, {r}) lost rows"
            );
            assert!(
                candidates.len() < n / 2 || r >= 30.0,
                "cone ({ra0}, {dec0}, {r}) pruned nothing"
            );
        }
    }
}
