//! Bulk cutouts from a catalogue, in parallel with rayon, to a folder, a multi-extension FITS
//! file or a `.npy` stack.
//!
//! A run can draw on several images (the tiles of a mosaic): each row is cut from the first
//! image that holds its position. Every row is planned (sky → pixel, window, checks) before any
//! pixel is read or any file is written, so a bad row (off every image, say) fails the whole
//! run up front unless bad rows are to be skipped. Planned cutouts are then grouped by image
//! and cut in source-row order, so each thread sweeps each mosaic once from top to bottom
//! instead of jumping around it (on NFS the first touch of a page is what costs).

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::catalog::{BadRow, Catalog, Target};
use crate::cutout::{self, Center, CutoutRequest, HeaderTemplate, Mode, Size, Window};
use crate::fits::header::BLOCK_LEN;
use crate::fits::{Card, Header, Image, Value};
use crate::npy::NpyWriter;
use crate::partial_file::PartialFile;
use crate::wcs::Wcs;
use crate::{Error, Result};

/// Where bulk cutouts go.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// One `ID.fits` per row (the row number when there is no id).
    Dir(PathBuf),
    /// One multi-extension FITS file: an empty primary HDU, then one IMAGE extension per row.
    Mef(PathBuf),
    /// One `[N, H, W]` (or `[N, planes, H, W]`) little-endian float32 stack of physical values.
    Npy(PathBuf),
}

/// Options shared by every row.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkOptions {
    pub size: Size,
    pub mode: Mode,
    pub planes: Option<Range<usize>>,
    /// Skip bad rows (and report them) instead of failing before writing anything.
    pub skip_bad: bool,
}

/// What a bulk run did.
#[derive(Debug, Clone, Default)]
pub struct BulkReport {
    pub written: usize,
    pub skipped: Vec<BadRow>,
}

/// An image a bulk run cuts from, with its celestial WCS.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub image: Image<'a>,
    pub wcs: Option<&'a Wcs>,
}

/// One planned cutout.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Index of the source image.
    pub source: usize,
    pub target: Target,
    pub window: Window,
    pub planes: Range<usize>,
}

/// Plans every row: the good ones in catalogue order, and the rows that cannot be cut. A row
/// goes to the first source whose image holds its centre, else to the first one it overlaps
/// (a partial cutout at a tile's edge). With `unique_names`, a row whose file name (id, or row
/// number) repeats an earlier one is bad: in a folder it would overwrite the earlier cutout.
pub fn plan_all(
    sources: &[Source<'_>],
    catalog: &Catalog,
    options: &BulkOptions,
    unique_names: bool,
) -> (Vec<Planned>, Vec<BadRow>) {
    let results: Vec<std::result::Result<Planned, BadRow>> = catalog
        .targets
        .par_iter()
        .map(|t| plan_row(sources, t, options))
        .collect();
    let mut bad = catalog.bad.clone();
    let mut planned = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(p) => planned.push(p),
            Err(b) => bad.push(b),
        }
    }
    let mut seen = std::collections::HashSet::new();
    planned.retain(|p| {
        let fresh = !unique_names || seen.insert(file_stem(&p.target));
        if !fresh {
            bad.push(BadRow {
                row: p.target.row,
                reason: format!("id {:?} repeats an earlier row", file_stem(&p.target)),
            });
        }
        fresh
    });
    bad.sort_by_key(|b| b.row);
    (planned, bad)
}

/// Plans, checks and writes all cutouts of one image (see [`run_many`]).
pub fn run(
    image: &Image<'_>,
    wcs: Option<&Wcs>,
    catalog: &Catalog,
    options: &BulkOptions,
    output: &Output,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BulkReport> {
    let sources = [Source {
        image: image.clone(),
        wcs,
    }];
    run_many(&sources, catalog, options, output, progress)
}

/// Plans, checks and writes all cutouts, each row from the first source that holds it.
/// `progress` is called with the number of cutouts just finished (from several threads).
pub fn run_many(
    sources: &[Source<'_>],
    catalog: &Catalog,
    options: &BulkOptions,
    output: &Output,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BulkReport> {
    let (planned, bad) = plan_all(sources, catalog, options, matches!(output, Output::Dir(_)));
    if !bad.is_empty() && !options.skip_bad {
        let shown: Vec<String> = bad.iter().take(5).map(BadRow::to_string).collect();
        let more = if bad.len() > 5 {
            format!(" (and {} more)", bad.len() - 5)
        } else {
            String::new()
        };
        return Err(Error::Cutout(format!(
            "{} bad catalogue row(s), nothing written (use --skip-bad to skip them): {}{more}",
            bad.len(),
            shown.join("; ")
        )));
    }
    match output {
        Output::Dir(dir) => write_dir(sources, &planned, dir, progress)?,
        Output::Mef(path) => write_mef(sources, &planned, path, progress)?,
        Output::Npy(path) => {
            // With every row skipped the stack is empty but keeps the requested shape.
            let side = cutout::side_pixels(options.size, sources.first().and_then(|s| s.wcs))?;
            write_npy(sources, &planned, side, path, progress)?
        }
    }
    Ok(BulkReport {
        written: planned.len(),
        skipped: bad,
    })
}

fn plan_row(
    sources: &[Source<'_>],
    t: &Target,
    options: &BulkOptions,
) -> std::result::Result<Planned, BadRow> {
    let request = CutoutRequest {
        center: Center::Sky {
            ra: t.ra,
            dec: t.dec,
        },
        size: t.size.map_or(options.size, Size::Pixels),
        mode: options.mode,
        planes: options.planes.clone(),
    };
    let mut first_overlap = None;
    let mut first_error = None;
    for (source, s) in sources.iter().enumerate() {
        match cutout::plan(&s.image, s.wcs, &request) {
            Ok((window, planes)) => {
                let planned = Planned {
                    source,
                    target: t.clone(),
                    window,
                    planes,
                };
                let centre_inside =
                    cutout::center_pixel(request.center, s.wcs).is_ok_and(|(x, y)| {
                        (-0.5..s.image.width() as f64 - 0.5).contains(&x)
                            && (-0.5..s.image.height() as f64 - 0.5).contains(&y)
                    });
                if centre_inside {
                    return Ok(planned);
                }
                first_overlap.get_or_insert(planned);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_overlap.ok_or_else(|| BadRow {
        row: t.row,
        reason: match (first_error, sources.len()) {
            (Some(e), 1) => e.to_string(),
            (Some(e), n) => format!("not on any of the {n} images (first: {e})"),
            (None, _) => "no image to cut from".into(),
        },
    })
}

fn file_stem(t: &Target) -> String {
    t.id.clone().unwrap_or_else(|| t.row.to_string())
}

/// Indices of `planned` grouped by image and sorted by first source row: the order each
/// thread sweeps in.
fn sweep_order(planned: &[Planned]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| {
        (
            planned[i].source,
            planned[i].window.y0,
            planned[i].window.x0,
        )
    });
    order
}

fn write_dir(
    sources: &[Source<'_>],
    planned: &[Planned],
    dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let templates = templates(sources, planned, HeaderTemplate::primary);
    sweep_order(planned)
        .par_iter()
        .try_for_each_init(Vec::new, |bytes, &i| {
            let p = &planned[i];
            bytes.clear();
            append_hdu(sources, &templates, p, bytes);
            let path = dir.join(format!("{}.fits", file_stem(&p.target)));
            std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
            progress(1);
            Ok(())
        })
}

fn write_mef(
    sources: &[Source<'_>],
    planned: &[Planned],
    path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let partial = PartialFile::create(path)?;
    let mut out = std::io::BufWriter::new(partial.file());
    let mut primary = Header::default();
    for (key, value, comment) in [
        ("SIMPLE", Value::Logical(true), "conforms to FITS standard"),
        ("BITPIX", Value::Integer(8), ""),
        ("NAXIS", Value::Integer(0), ""),
        ("EXTEND", Value::Logical(true), "one cutout per extension"),
        (
            "NCUTOUT",
            Value::Integer(planned.len() as i64),
            "number of cutouts",
        ),
    ] {
        primary.push(Card::new(key, value, comment));
    }
    out.write_all(&primary.to_bytes())
        .map_err(|e| partial.error(e))?;
    let templates = templates(sources, planned, HeaderTemplate::extension);
    // Catalogue order in the file: each batch is cut in parallel into per-thread buffers of
    // about 1 MiB that stay in cache until written and are reused from batch to batch (fresh
    // ones cost a page fault per 4 KiB), then written in order.
    let hdu_len = planned.first().map_or(1, |p| {
        let elem = sources[p.source].image.bitpix().bytes();
        BLOCK_LEN + p.window.width * p.window.height * p.planes.len() * elem
    });
    let per_buffer = ((1 << 20) / hdu_len).clamp(1, 64);
    // Two sets of buffers: one batch is written while the next is cut.
    let sets = 2 * rayon::current_num_threads();
    let mut filling: Vec<Vec<u8>> = vec![Vec::new(); sets];
    let mut writing: Vec<Vec<u8>> = vec![Vec::new(); sets];
    let fill = |buffers: &mut Vec<Vec<u8>>, batch: &[Planned]| {
        buffers
            .par_iter_mut()
            .zip(batch.par_chunks(per_buffer))
            .for_each(|(buffer, part)| {
                buffer.clear();
                for p in part {
                    append_hdu(sources, &templates, p, buffer);
                }
            });
        batch.len().div_ceil(per_buffer)
    };
    let mut ready = 0; // buffers of `writing` that hold the previous batch
    let mut done = 0u64;
    for batch in planned.chunks(per_buffer * sets) {
        let (written, filled) = rayon::join(
            || {
                writing
                    .iter()
                    .take(ready)
                    .try_for_each(|b| out.write_all(b))
            },
            || fill(&mut filling, batch),
        );
        written.map_err(|e| partial.error(e))?;
        progress(done);
        done = batch.len() as u64;
        std::mem::swap(&mut filling, &mut writing);
        ready = filled;
    }
    for buffer in writing.iter().take(ready) {
        out.write_all(buffer).map_err(|e| partial.error(e))?;
    }
    progress(done);
    out.flush().map_err(|e| partial.error(e))?;
    drop(out);
    partial.commit()
}

/// Source image and cutout shape (sizes can differ per row, and `trim` cuts edges).
type Shape = (usize, usize, usize, usize);

/// One header template per source image and cutout shape.
fn templates(
    sources: &[Source<'_>],
    planned: &[Planned],
    make: impl Fn(&Image<'_>, usize, usize, usize) -> HeaderTemplate,
) -> HashMap<Shape, HeaderTemplate> {
    let mut templates = HashMap::new();
    for p in planned {
        templates.entry(shape(p)).or_insert_with(|| {
            make(
                &sources[p.source].image,
                p.window.width,
                p.window.height,
                p.planes.len(),
            )
        });
    }
    templates
}

fn shape(p: &Planned) -> Shape {
    (p.source, p.window.width, p.window.height, p.planes.len())
}

/// Appends one complete HDU (header, data, padding) for a planned cutout.
fn append_hdu(
    sources: &[Source<'_>],
    templates: &HashMap<Shape, HeaderTemplate>,
    p: &Planned,
    out: &mut Vec<u8>,
) {
    if let Some(template) = templates.get(&shape(p)) {
        template.render(
            cutout::origin(p.window, &p.planes),
            &file_stem(&p.target),
            p.target.row,
            out,
        );
    }
    cutout::append_stored_window(&sources[p.source].image, p.window, p.planes.clone(), out);
    out.resize(out.len().div_ceil(BLOCK_LEN) * BLOCK_LEN, 0);
}

fn write_npy(
    sources: &[Source<'_>],
    planned: &[Planned],
    empty_side: (usize, usize),
    path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let Some(first) = sources.first() else {
        return Err(Error::Cutout("no image to cut from".into()));
    };
    let (w, h, planes) = match planned.first() {
        Some(p) => (p.window.width, p.window.height, p.planes.len()),
        None => (empty_side.0, empty_side.1, first.image.planes()),
    };
    if let Some(p) = planned
        .iter()
        .find(|p| (p.window.width, p.window.height, p.planes.len()) != (w, h, planes))
    {
        return Err(Error::Cutout(format!(
            "an .npy stack needs one shape: row {} is {}×{}×{} but row {} is {w}×{h}×{planes} \
             (sizes or plane counts differ, or trim mode cut at an edge)",
            p.target.row,
            p.window.width,
            p.window.height,
            p.planes.len(),
            planned[0].target.row
        )));
    }
    let cube = sources.iter().any(|s| s.image.axes().len() > 2);
    let shape: Vec<usize> = if cube {
        vec![planned.len(), planes, h, w]
    } else {
        vec![planned.len(), h, w]
    };
    let writer = NpyWriter::create(path, &shape)?;
    let order = sweep_order(planned);
    order.par_iter().try_for_each_init(
        || (vec![0f32; planes * w * h], Vec::new()),
        |(buf, scratch), &i| {
            let p = &planned[i];
            for (k, plane) in p.planes.clone().enumerate() {
                cutout::window_physical(
                    &sources[p.source].image,
                    plane,
                    p.window,
                    &mut buf[k * w * h..(k + 1) * w * h],
                );
            }
            writer.write_item(i, buf, scratch)?;
            progress(1);
            Ok::<(), Error>(())
        },
    )?;
    writer.finish()
}
