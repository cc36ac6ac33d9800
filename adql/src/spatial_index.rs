//! A HEALPix index of a table's positions (through `cdshealpix`): the rows a cone can hold.
//!
//! Rows are sorted by their nested cell at [`HealpixIndex::DEPTH`]; a cone's coverage (a
//! superset of the cells it touches) selects runs of that order by binary search. The
//! candidates are a superset of the answer, so the exact cone test still runs on them.

use std::f64::consts::PI;
use std::ops::Range;

use cdshealpix::nested;

/// Rows sorted by HEALPix cell.
#[derive(Debug, Clone)]
pub struct HealpixIndex {
    cells: Vec<u64>,
    rows: Vec<u32>,
}

impl HealpixIndex {
    /// Cells of about 3.4′: fine enough to prune arcsecond-to-degree cones, coarse enough to
    /// keep the coverage of a large cone to a few thousand ranges.
    pub const DEPTH: u8 = 10;

    /// Indexes positions in degrees; rows with a non-finite position are left out (no cone
    /// contains them).
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
                if !(-90.0..=90.0).contains(&dec) {
                    return None;
                }
                let row = u32::try_from(row).ok()?;
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

    /// Rows whose cell the cone may touch, in row order: a superset of the rows in the cone.
    pub fn candidates(&self, ra: f64, dec: f64, radius_deg: f64) -> Vec<usize> {
        if !(ra.is_finite() && dec.is_finite() && radius_deg.is_finite()) || radius_deg < 0.0 {
            return Vec::new();
        }
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
        let mut rows = Vec::new();
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
