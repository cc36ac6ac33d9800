//! The reads behind a tensor: for each catalogue row and band, the position-first cutout of
//! the row's field of view ([`crate::position_cutout`]: the tile of that band holding the
//! position, stitched across tile edges), cut a batch of rows at a time and handed to the
//! caller's kernels (`insitu_gpu::Tensorizer` in the server and the Python package; the engine
//! does not depend on wgpu).
//!
//! Each batch is planned first (which tile, which window), then cut in parallel (rayon) in
//! the order of the tiles and of their rows, so that the reads of one tile come together and
//! the file system's read-ahead serves them. [`cut_batches`] is double-buffered: a cutter
//! thread cuts the next batch while the kernels make this one, and the planes' memory goes
//! back to the cutter to be cut into again, so a request holds a few batches whatever the
//! catalogue's length.
//!
//! A row or band that cannot be cut (no valid position, no tile, a field of view over
//! [`MAX_CUT_SIDE`] pixels) is a 1 × 1 NaN plane, which a recipe's fill value then fills.

use std::ops::ControlFlow;

use rayon::prelude::*;

use crate::cutout::Size;
use crate::position_cutout::{cut_planned_into, plan_at, Planned};
use crate::volume::Tiles;

/// The widest field of view cut for a tensor, pixels a side (16 MiB of float32): a larger one
/// is a NaN plane, since no tensor (at most 2048 a side) needs more.
pub const MAX_CUT_SIDE: usize = 2048;
/// About how many bytes of pixels one batch holds, by default.
pub const BATCH_BYTES: usize = 32 << 20;
/// The most rows in one batch.
const MAX_BATCH_ROWS: usize = 1024;

/// What to cut: per catalogue row its position (ICRS degrees) and field of view, or `None`
/// for a row without one; the bands, in channel order; the volume when one is asked for.
#[derive(Debug, Clone)]
pub struct TensorCuts<'a> {
    pub rows: &'a [Option<(f64, f64, Size)>],
    pub bands: &'a [String],
    pub volume: Option<&'a str>,
    /// About how many bytes of pixels a batch holds ([`BATCH_BYTES`]).
    pub batch_bytes: usize,
}

impl<'a> TensorCuts<'a> {
    pub fn new(rows: &'a [Option<(f64, f64, Size)>], bands: &'a [String]) -> TensorCuts<'a> {
        TensorCuts {
            rows,
            bands,
            volume: None,
            batch_bytes: BATCH_BYTES,
        }
    }
}

/// One band's pixels for one row: physical values, FITS row order (first row = bottom), NaN
/// where no tile has data.
#[derive(Debug, Clone, PartialEq)]
pub struct CutPlane {
    pub data: Vec<f32>,
    pub width: usize,
    pub height: usize,
}

/// The planes of rows `start .. start + rows`, row-major: `bands` planes per row.
#[derive(Debug, Clone)]
pub struct CutBatch {
    pub start: usize,
    pub rows: usize,
    pub planes: Vec<CutPlane>,
}

/// Cuts `cuts` batch by batch (a few rows first, then as many rows as weigh about
/// `batch_bytes`, from what the last batch weighed) and hands each batch, in row order, to
/// `kernels`, which returns whether to go on. The next batch is cut while `kernels` runs.
/// Stops at the first error of `kernels`, and returns it.
pub fn cut_batches<E>(
    tiles: &Tiles,
    cuts: &TensorCuts<'_>,
    mut kernels: impl FnMut(&CutBatch) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let bands = cuts.bands.len().max(1);
    std::thread::scope(|scope| {
        let (cut_sender, cut_receiver) = std::sync::mpsc::sync_channel::<CutBatch>(1);
        // The planes' memory comes back to the cutter: fresh buffers cost a page fault per
        // 4 KiB.
        let (spare_sender, spare_receiver) = std::sync::mpsc::channel::<Vec<CutPlane>>();
        scope.spawn(move || {
            let (mut start, mut rows_per_batch) = (0, 8);
            let mut spare = Vec::new();
            while start < cuts.rows.len() {
                spare.extend(spare_receiver.try_iter().flatten().map(|p| p.data));
                let end = (start + rows_per_batch).min(cuts.rows.len());
                let planes = cut_batch(tiles, cuts, &cuts.rows[start..end], &mut spare);
                let bytes: usize = planes.iter().map(|p| p.data.len() * 4).sum();
                let per_row = (bytes / (end - start)).max(1);
                rows_per_batch = (cuts.batch_bytes / per_row).clamp(1, MAX_BATCH_ROWS);
                let batch = CutBatch {
                    start,
                    rows: end - start,
                    planes,
                };
                start = end;
                if cut_sender.send(batch).is_err() {
                    return; // the kernels stopped
                }
            }
        });
        for batch in cut_receiver {
            debug_assert_eq!(batch.planes.len(), batch.rows * bands);
            let flow = kernels(&batch)?;
            // The cutter may have finished: then the memory is just freed.
            let _ = spare_sender.send(batch.planes);
            if flow.is_break() {
                break; // dropping the receiver stops the cutter
            }
        }
        Ok(())
    })
}

/// One batch's planes, row-major, cut into the `spare` buffers while there are any: planned
/// in parallel, then cut in parallel in the order of their tiles and windows.
fn cut_batch(
    tiles: &Tiles,
    cuts: &TensorCuts<'_>,
    rows: &[Option<(f64, f64, Size)>],
    spare: &mut Vec<Vec<f32>>,
) -> Vec<CutPlane> {
    let bands = cuts.bands.len().max(1);
    let plans: Vec<Option<Planned>> = (0..rows.len() * bands)
        .into_par_iter()
        .map(|k| {
            let (ra, dec, fov) = rows[k / bands]?;
            let band = cuts.bands.get(k % bands)?;
            let planned = plan_at(tiles, ra, dec, fov, band, cuts.volume).ok()?;
            let w = planned.window;
            (w.width.max(w.height) <= MAX_CUT_SIDE).then_some(planned)
        })
        .collect();
    let mut planes: Vec<CutPlane> = plans
        .iter()
        .map(|_| CutPlane {
            data: spare.pop().unwrap_or_default(),
            width: 1,
            height: 1,
        })
        .collect();
    let mut work: Vec<(Option<Planned>, &mut CutPlane)> =
        plans.into_iter().zip(&mut planes).collect();
    work.sort_by_key(|(planned, _)| planned.map(|p| (p.grid, p.window.y0, p.window.x0)));
    work.into_par_iter().for_each(|(planned, plane)| {
        let cut = planned.and_then(|p| {
            cut_planned_into(tiles, p, &mut plane.data).ok()?;
            Some((p.window.width, p.window.height))
        });
        (plane.width, plane.height) = cut.unwrap_or_else(|| {
            plane.data.clear();
            plane.data.push(f32::NAN);
            (1, 1)
        });
    });
    planes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fits::Header;
    use crate::position_cutout::cut_at;
    use crate::volume::scan_volume;

    const SCALE: f64 = 0.1 / 3600.0;

    /// Writes a 40 × 30 float32 TAN tile of `band` on the tangent point (150, 60), its pixel
    /// (0, 0) at pixel (`dx`, 0) of the tangent plane's grid: tiles with dx = 0 and dx = 40
    /// meet edge to edge.
    fn write_tile(dir: &std::path::Path, band: &str, dx: i64, base: f32) {
        let (w, h) = (40usize, 30usize);
        let text = format!(
            "SIMPLE  = T\nBITPIX  = -32\nNAXIS   = 2\nNAXIS1  = {w}\nNAXIS2  = {h}\n\
             CTYPE1  = 'RA---TAN'\nCTYPE2  = 'DEC--TAN'\nCRVAL1  = 150.0\nCRVAL2  = 60.0\n\
             CRPIX1  = {}\nCRPIX2  = 1.0\nCD1_1   = {}\nCD2_2   = {SCALE}\nFILTER  = '{band}'\nEND",
            1.0 - dx as f64,
            -SCALE
        );
        let mut bytes = Header::from_card_lines(&text).unwrap().to_bytes();
        for y in 0..h {
            for x in 0..w {
                bytes.extend_from_slice(&(base + 1000.0 * y as f32 + x as f32).to_be_bytes());
            }
        }
        bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
        std::fs::write(dir.join(format!("{band}_{dx}.fits")), bytes).unwrap();
    }

    fn tiles() -> (tempfile::TempDir, Tiles) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("volume");
        std::fs::create_dir(&root).unwrap();
        for (band, base) in [("VIS", 0.0), ("NIR_H", 0.5)] {
            write_tile(&root, band, 0, base);
            write_tile(&root, band, 40, base + 100_000.0);
        }
        let volume = scan_volume("v", &root, &dir.path().join("cache")).unwrap();
        assert_eq!(volume.images.len(), 4);
        (dir, Tiles::new(vec![volume]))
    }

    #[test]
    fn batches_hold_each_rows_cutouts_in_order() {
        let (_dir, tiles) = tiles();
        let grid = tiles.open(tiles.dataset("v/VIS_0.fits").unwrap()).unwrap();
        let sky = |x: f64, y: f64| grid.wcs.pixel_to_sky(x, y).unwrap();
        let px = Size::Pixels;
        let mut rows = Vec::new();
        for k in 0..30 {
            // Inside the first tile, across the edge into the second, inside the second.
            let (ra, dec) = sky(5.0 + 2.5 * k as f64, 4.0 + (k % 20) as f64);
            rows.push(Some((ra, dec, px(6 + k % 5))));
        }
        rows[3] = None;
        rows[7] = Some((10.0, -20.0, px(5))); // off every tile
        rows[11] = Some((rows[11].unwrap().0, rows[11].unwrap().1, px(3000)));
        let bands = vec!["NIR_H".to_string(), "VIS".to_string()];
        let mut cuts = TensorCuts::new(&rows, &bands);
        cuts.batch_bytes = 2_000; // several batches
        let mut seen = Vec::new();
        cut_batches(&tiles, &cuts, |batch| {
            assert_eq!(batch.start, seen.len());
            assert_eq!(batch.planes.len(), 2 * batch.rows);
            seen.extend(batch.planes.chunks(2).map(<[CutPlane]>::to_vec));
            Ok::<_, ()>(ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!(seen.len(), rows.len());
        let nan = |p: &CutPlane| (p.width, p.height) == (1, 1) && p.data[0].is_nan();
        let mut stitched = 0;
        for (k, (row, planes)) in rows.iter().zip(&seen).enumerate() {
            for (band, plane) in bands.iter().zip(planes) {
                let Some((ra, dec, fov)) = *row else {
                    assert!(nan(plane), "row {k}");
                    continue;
                };
                if k == 7 || k == 11 {
                    assert!(nan(plane), "row {k}");
                    continue;
                }
                let want = cut_at(&tiles, ra, dec, fov, band, None).unwrap();
                assert_eq!((plane.width, plane.height), (want.width, want.height));
                let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&plane.data), bits(&want.data), "row {k} {band}");
                stitched += usize::from(want.tiles.len() > 1);
            }
        }
        assert!(stitched > 0, "some cutouts cross the tile edge");
    }

    #[test]
    fn kernels_can_stop_or_fail() {
        let (_dir, tiles) = tiles();
        let grid = tiles.open(tiles.dataset("v/VIS_0.fits").unwrap()).unwrap();
        let (ra, dec) = grid.wcs.pixel_to_sky(10.0, 10.0).unwrap();
        let rows = vec![Some((ra, dec, Size::Pixels(4))); 50];
        let bands = vec!["VIS".to_string()];
        let cuts = TensorCuts::new(&rows, &bands);
        let mut calls = 0;
        cut_batches(&tiles, &cuts, |_| {
            calls += 1;
            Ok::<_, ()>(ControlFlow::Break(()))
        })
        .unwrap();
        assert_eq!(calls, 1);
        let failed = cut_batches(&tiles, &cuts, |b| Err(b.start + 7));
        assert_eq!(failed, Err(7));
    }
}
