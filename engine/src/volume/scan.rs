//! The volume scanner: walks a volume, reads the headers of new or changed FITS files in
//! parallel, and keeps the result in `<cache_dir>/volumes/<name>.json`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{check_name, description, separation, ImageRow, ScanReport, Volume};
use crate::fits::{FitsFile, Header};
use crate::wcs::Wcs;
use crate::{Error, Result};

/// Bumped whenever [`ImageRow`] or the reading rules change: older caches are then ignored.
const CACHE_VERSION: u32 = 1;

/// File name endings read as FITS (compared case-insensitively).
const FITS_ENDINGS: [&str; 4] = [".fits", ".fit", ".fits.gz", ".fits.fz"];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// The volume root the entries were read from: a volume mounted elsewhere starts afresh.
    root: PathBuf,
    entries: Vec<CacheEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    path: String,
    size: u64,
    /// Modification time, nanoseconds since the Unix epoch (as a string: JSON numbers lose
    /// precision past 2⁵³).
    mtime: String,
    outcome: Outcome,
}

/// A file is either an image row or skipped, with the reason; both are cached so that an
/// unchanged broken file is not read again.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Outcome {
    Image(Box<ImageRow>),
    Skipped(String),
}

/// A FITS-named file found under the volume.
struct Candidate {
    relative: String,
    path: PathBuf,
    size: u64,
    mtime: String,
}

/// Scans the volume `name` at `root`: reads the headers of files that are new or whose size
/// or modification time changed since the cached scan, reuses the rest, drops removed ones,
/// and writes the cache back (atomically). Never writes into the volume.
pub fn scan_volume(name: &str, root: &Path, cache_dir: &Path) -> Result<Volume> {
    check_name(name)?;
    let meta = std::fs::metadata(root).map_err(|e| {
        Error::Volume(format!(
            "cannot read the volume folder {}: {e}",
            root.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(Error::Volume(format!("{} is not a folder", root.display())));
    }
    let cache_path = cache_dir.join("volumes").join(format!("{name}.json"));
    let cached = read_cache(&cache_path, root);

    let candidates = walk(root);
    let present: HashSet<&str> = candidates.iter().map(|c| c.relative.as_str()).collect();
    let mut report = ScanReport {
        files: candidates.len(),
        removed: cached
            .keys()
            .filter(|k| !present.contains(k.as_str()))
            .count(),
        ..ScanReport::default()
    };
    let entries: Vec<CacheEntry> = candidates
        .into_par_iter()
        .map(|c| {
            if let Some(entry) = cached.get(&c.relative) {
                if entry.size == c.size && entry.mtime == c.mtime {
                    return (false, entry.clone());
                }
            }
            let outcome = match read_image(&c.path, &c.relative, c.size) {
                Ok(row) => Outcome::Image(Box::new(row)),
                Err(reason) => {
                    tracing::warn!("volume {name}: skipping {}: {reason}", c.relative);
                    Outcome::Skipped(reason)
                }
            };
            let entry = CacheEntry {
                path: c.relative,
                size: c.size,
                mtime: c.mtime,
                outcome,
            };
            (true, entry)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|(read, entry)| {
            if read {
                report.read += 1;
            } else {
                report.reused += 1;
            }
            entry
        })
        .collect();

    let mut images = Vec::new();
    for entry in &entries {
        match &entry.outcome {
            Outcome::Image(row) => images.push(ImageRow::clone(row)),
            Outcome::Skipped(_) => report.skipped += 1,
        }
    }
    images.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    if report.read > 0 || report.removed > 0 || !cache_path.exists() {
        // A cache that cannot be written costs a rescan next time, not the service.
        if let Err(e) = write_cache(&cache_path, root, entries) {
            tracing::warn!("volume {name}: cannot write the scan cache: {e}");
        }
    }
    Ok(Volume {
        name: name.to_string(),
        root: root.to_path_buf(),
        description: description(name, root),
        images,
        report,
    })
}

/// The cached entries by relative path; empty when the cache is missing, damaged, of another
/// version or of another root (then everything is read again).
fn read_cache(path: &Path, root: &Path) -> HashMap<String, CacheEntry> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(cache) if cache.version == CACHE_VERSION && cache.root == root => cache
            .entries
            .into_iter()
            .map(|e| (e.path.clone(), e))
            .collect(),
        Ok(_) => HashMap::new(),
        Err(e) => {
            tracing::warn!("ignoring the damaged scan cache {}: {e}", path.display());
            HashMap::new()
        }
    }
}

/// Writes the cache to a temporary file beside it, then renames it over the old one, so a
/// crash never leaves half a cache.
fn write_cache(path: &Path, root: &Path, entries: Vec<CacheEntry>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let cache = CacheFile {
        version: CACHE_VERSION,
        root: root.to_path_buf(),
        entries,
    };
    // One temporary name per process: two servers sharing a cache dir do not collide.
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let written = serde_json::to_vec(&cache)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| Error::io(path, e))
}

/// The FITS-named regular files under `root`, sorted by relative path. Symbolic links are not
/// followed (a link could lead out of the volume, or into a loop); hidden entries (`.name`)
/// are left out; unreadable folders are logged and passed over.
fn walk(root: &Path) -> Vec<Candidate> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("cannot list {}: {e}", shown(root, &folder));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!("cannot list {}: {e}", shown(root, &folder));
                    continue;
                }
            };
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                tracing::warn!(
                    "skipping a file with a non-UTF-8 name in {}",
                    shown(root, &folder)
                );
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                tracing::warn!("cannot stat {}", shown(root, &path));
                continue;
            };
            if kind.is_dir() {
                folders.push(path);
            } else if kind.is_file() && is_fits_name(file_name) {
                match entry.metadata() {
                    Ok(meta) => found.push(Candidate {
                        relative: relative(root, &path),
                        size: meta.len(),
                        mtime: meta
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map_or_else(String::new, |d| d.as_nanos().to_string()),
                        path,
                    }),
                    Err(e) => tracing::warn!("cannot stat {}: {e}", shown(root, &path)),
                }
            }
        }
    }
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    found
}

fn is_fits_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    FITS_ENDINGS.iter().any(|e| lower.ends_with(e))
}

/// `path` relative to `root`, `/`-separated (every component is UTF-8: `walk` checked).
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// A path for the log, relative to the volume so that logs and errors read alike.
fn shown(root: &Path, path: &Path) -> String {
    let rel = relative(root, path);
    if rel.is_empty() {
        ".".into()
    } else {
        rel
    }
}

/// Reads the first image HDU's header (memory-mapped: the data are not touched) into a row;
/// the error is why the file is skipped.
fn read_image(path: &Path, relative: &str, size: u64) -> Result<ImageRow, String> {
    let file = FitsFile::open(path)
        .map_err(|e| e.to_string().replace(&*path.to_string_lossy(), relative))?;
    let hdu = file
        .first_image_hdu()
        .ok_or("no image HDU with NAXIS ≥ 2 (a table, or an empty file)")?;
    let header = file.header(hdu).map_err(|e| e.to_string())?;
    image_row(header, hdu, relative, size)
}

fn image_row(header: &Header, hdu: usize, relative: &str, size: u64) -> Result<ImageRow, String> {
    let axis = |k: &str| header.integer(k).filter(|n| *n > 0);
    let (Some(naxis1), Some(naxis2)) = (axis("NAXIS1"), axis("NAXIS2")) else {
        return Err("NAXIS1 or NAXIS2 is missing or zero".into());
    };
    let wcs = Wcs::from_header(header).map_err(|e| format!("HDU {hdu}: no celestial WCS: {e}"))?;
    let sky = |x: f64, y: f64| {
        wcs.pixel_to_sky(x, y)
            .ok_or_else(|| format!("HDU {hdu}: pixel ({x}, {y}) has no sky position"))
    };
    let (n1, n2) = (naxis1 as f64, naxis2 as f64);
    // 0-based pixel centres: the image centre is ((N-1)/2, (N-1)/2) (FITS 4.0 §8.1 counts
    // from 1 at the first pixel's centre).
    let (ra, dec) = sky((n1 - 1.0) / 2.0, (n2 - 1.0) / 2.0)?;
    // astropy's calc_footprint: the centres of the corner pixels, in this order.
    let mut corners = [[0.0; 2]; 4];
    for (slot, (x, y)) in corners.iter_mut().zip([
        (0.0, 0.0),
        (0.0, n2 - 1.0),
        (n1 - 1.0, n2 - 1.0),
        (n1 - 1.0, 0.0),
    ]) {
        let (a, d) = sky(x, y)?;
        *slot = [a, d];
    }
    if winding(ra, dec, &corners) < 0.0 {
        corners.reverse();
    }
    // The field of view reaches the outer pixel edges.
    let mut radius: f64 = 0.0;
    for (x, y) in [
        (-0.5, -0.5),
        (-0.5, n2 - 0.5),
        (n1 - 0.5, n2 - 0.5),
        (n1 - 0.5, -0.5),
    ] {
        let (a, d) = sky(x, y)?;
        radius = radius.max(separation(ra, dec, a, d));
    }
    let (sx, sy) = wcs.pixel_scales();
    let text = |k: &str| {
        header
            .string(k)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    Ok(ImageRow {
        relative_path: relative.to_string(),
        hdu,
        tile_index: tile_index(header, relative),
        ra,
        dec,
        corners,
        fov: 2.0 * radius,
        pixel_scale: (sx * sy).sqrt() * 3600.0,
        filter_name: text("FILTER").or_else(|| text("BAND")),
        instrument_name: text("INSTRUME"),
        facility_name: text("TELESCOP"),
        naxis: header.integer("NAXIS").unwrap_or(2),
        naxis1,
        naxis2,
        bitpix: header.integer("BITPIX").unwrap_or(0),
        size,
    })
}

/// TILEID from the header (an integer, or digits in a string), else the digits after `TILE`
/// in the file name (Euclid MER: `…_TILE102018211-F95D3B_…`).
fn tile_index(header: &Header, relative: &str) -> Option<i64> {
    if let Some(id) = header.integer("TILEID") {
        return Some(id);
    }
    if let Some(id) = header.string("TILEID").and_then(|s| s.trim().parse().ok()) {
        return Some(id);
    }
    let name = relative.rsplit('/').next().unwrap_or(relative);
    let at = name.find("TILE")? + 4;
    let digits: String = name[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Twice the signed area of the polygon in the tangent plane at (ra0, dec0), seen from the
/// sphere's centre with north up and east to the left: positive when counter-clockwise, the
/// winding DALI 1.1 §3.3.7 asks of polygons.
fn winding(ra0: f64, dec0: f64, corners: &[[f64; 2]; 4]) -> f64 {
    let (sd0, cd0) = dec0.to_radians().sin_cos();
    let plane: Vec<(f64, f64)> = corners
        .iter()
        .map(|[ra, dec]| {
            let (sd, cd) = dec.to_radians().sin_cos();
            let (sa, ca) = (ra - ra0).to_radians().sin_cos();
            let cos_c = sd0 * sd + cd0 * cd * ca;
            // Standard coordinates: ξ grows east, η north; east is to the left, so x = -ξ.
            let xi = cd * sa / cos_c;
            let eta = (cd0 * sd - sd0 * cd * ca) / cos_c;
            (-xi, eta)
        })
        .collect();
    (0..plane.len())
        .map(|i| {
            let (x1, y1) = plane[i];
            let (x2, y2) = plane[(i + 1) % plane.len()];
            x1 * y2 - x2 * y1
        })
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fits::{Card, Value};

    #[test]
    fn tile_index_from_header_or_name() {
        let mut h = Header::default();
        let name =
            "MER/EUC_MER_BGSUB-MOSAIC-VIS_TILE102018211-F95D3B_20241017T142513.473158Z_00.00.fits";
        assert_eq!(tile_index(&h, name), Some(102018211));
        assert_eq!(tile_index(&h, "TILE/x.fits"), None);
        assert_eq!(tile_index(&h, "image.fits"), None);
        h.push(Card::new("TILEID", Value::String(" 7 ".into()), ""));
        assert_eq!(tile_index(&h, name), Some(7));
        h.set("TILEID", Value::Integer(42), None);
        assert_eq!(tile_index(&h, name), Some(42));
    }

    #[test]
    fn fits_names() {
        for name in ["a.fits", "a.FIT", "a.fits.gz", "a.fits.fz"] {
            assert!(is_fits_name(name), "{name}");
        }
        for name in ["a.txt", "a.fits.bak", "a.gz", "fits"] {
            assert!(!is_fits_name(name), "{name}");
        }
    }

    #[test]
    fn winding_sign_follows_the_sky_orientation() {
        // East (larger RA) is left: SE, NE, NW, SW runs clockwise on the sky.
        let cw = [[10.1, -0.1], [10.1, 0.1], [9.9, 0.1], [9.9, -0.1]];
        assert!(winding(10.0, 0.0, &cw) < 0.0);
        let mut ccw = cw;
        ccw.reverse();
        assert!(winding(10.0, 0.0, &ccw) > 0.0);
        // Across RA = 0.
        let wrap = [[0.1, -0.1], [0.1, 0.1], [359.9, 0.1], [359.9, -0.1]];
        assert!(winding(0.0, 0.0, &wrap) < 0.0);
    }
}
