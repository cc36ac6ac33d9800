//! Bulk cutout jobs at `/cutout/async` (UWS 1.1, the job machinery TAP uses): a catalogue of
//! positions (CSV or VOTable, up to [`MAX_ROWS`] rows) with a size and bands becomes one async
//! job whose result is a tar or zip of FITS files, one multi-extension FITS file, or a `.npy`
//! stack. Each cutout is a position-first cutout ([`crate::position_cutout::cut_at`]: the tile
//! holding the position, stitched across tile edges).
//!
//! Parameters (names case-insensitive, DALI): the catalogue as the multipart part `catalog`
//! (or the `CATALOG` parameter holding the table's text); `SIZE` (as `/cutout`'s `size`:
//! arcsec, `0.5arcmin`, `64px`, …);
//! `BAND` (comma-separated, repeatable; default every band of the volumes); `VOLUME`;
//! `FORMAT` = `tar` (default), `zip`, `fits`, `npy`; `RA_COL`, `DEC_COL`, `ID_COL` when the
//! columns are not called `ra`, `dec` and `id` (or `object_id`, `source_id`).
//!
//! A row that cannot be cut (no tile in a band, a bad position) is a line of the `errors.csv`
//! inside the tar or zip (and the job's second result, `errors`, for every format), never a
//! failed job; `.npy` slices of such rows are NaN. The job's `jobInfo` shows rows done out of
//! the total while it runs. Rows are cut a chunk at a time (in parallel) and written in
//! catalogue order, so memory stays bounded by one chunk whatever the catalogue's length.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use futures::future::BoxFuture;
use insitu_adql::arrow::array::{Array, AsArray, RecordBatch};
use insitu_adql::arrow::compute::cast;
use insitu_adql::arrow::datatypes::{DataType, Float64Type};
use insitu_engine::cutout::Size;
use insitu_engine::npy::NpyWriter;
use rayon::prelude::*;

use crate::cutout_service::parse_size;
use crate::dali::DaliParams;
use crate::position_cutout::{cut_at, empty_primary, BandCutout};
use crate::tap::upload::{self, UploadLimits};
use crate::uws::{self, JobInput, JobResult};
use crate::volumes::Tiles;

/// The most catalogue rows one job takes.
pub const MAX_ROWS: usize = 1_000_000;
/// The largest catalogue accepted, bytes.
pub const MAX_CATALOG_BYTES: usize = 256 << 20;
/// Cut pixels held in memory at once (one chunk of rows), bytes.
const CHUNK_BYTES: usize = 64 << 20;

/// The `/cutout/async` job list and its jobs.
pub fn routes(jobs: Arc<uws::Jobs>) -> Router {
    uws::routes(jobs, "/cutout/async").layer(DefaultBodyLimit::max(MAX_CATALOG_BYTES + (1 << 20)))
}

/// Runs bulk cutout jobs over the volumes' tiles.
pub struct BulkRunner {
    pub tiles: Arc<Tiles>,
}

impl uws::Runner for BulkRunner {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<Vec<JobResult>, String>> {
        let tiles = self.tiles.clone();
        Box::pin(async move {
            // ABORT drops this future; the flag stops the blocking work at the next chunk.
            let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
            let flag = stop.0.clone();
            tokio::task::spawn_blocking(move || run_job(&tiles, &job, &flag))
                .await
                .map_err(|e| format!("the job stopped: {e}"))?
        })
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a job's result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkFormat {
    Tar,
    Zip,
    Fits,
    Npy,
}

impl BulkFormat {
    fn parse(text: &str) -> Result<BulkFormat, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tar" | "application/x-tar" => Ok(BulkFormat::Tar),
            "zip" | "application/zip" => Ok(BulkFormat::Zip),
            "fits" | "application/fits" => Ok(BulkFormat::Fits),
            "npy" | "application/x-npy" => Ok(BulkFormat::Npy),
            other => Err(format!(
                "FORMAT {other:?} is not one of tar, zip, fits, npy"
            )),
        }
    }

    fn file(self) -> &'static str {
        match self {
            BulkFormat::Tar => "cutouts.tar",
            BulkFormat::Zip => "cutouts.zip",
            BulkFormat::Fits => "cutouts.fits",
            BulkFormat::Npy => "cutouts.npy",
        }
    }

    fn mime(self) -> &'static str {
        match self {
            BulkFormat::Tar => "application/x-tar",
            BulkFormat::Zip => "application/zip",
            BulkFormat::Fits => "application/fits",
            BulkFormat::Npy => "application/octet-stream",
        }
    }
}

/// One catalogue row to cut.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based data row number.
    pub row: usize,
    pub id: Option<String>,
    pub ra: f64,
    pub dec: f64,
}

impl Row {
    /// The stem of the row's file names: its id made safe for a file name, or `row<N>`.
    fn stem(&self) -> String {
        match &self.id {
            Some(id) if !id.trim().is_empty() => id
                .trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "+-._".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
            _ => format!("row{}", self.row),
        }
    }
}

/// A catalogue row without a valid position.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// 1-based data row number.
    pub row: usize,
    pub id: Option<String>,
    pub reason: String,
}

/// A job's request, checked.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    pub rows: Vec<Row>,
    /// Rows without a valid position.
    pub bad: Vec<BadRow>,
    pub size: Size,
    pub bands: Vec<String>,
    pub volume: Option<String>,
    pub format: BulkFormat,
}

impl BulkRequest {
    /// Reads a job's parameters and its catalogue.
    pub fn from_job(
        params: &DaliParams,
        uploads_dir: &Path,
        tiles: &Tiles,
    ) -> Result<Self, String> {
        let size = parse_size(params.get("SIZE").ok_or("SIZE is missing")?)?;
        let format = BulkFormat::parse(params.get("FORMAT").unwrap_or("tar"))?;
        let volume = served_volume(params, tiles)?;
        let mut bands = band_list(params);
        if bands.is_empty() {
            bands = tiles
                .volumes()
                .iter()
                .filter(|v| {
                    volume
                        .as_ref()
                        .is_none_or(|n| v.name.eq_ignore_ascii_case(n))
                })
                .flat_map(|v| v.bands())
                .collect();
            bands.sort();
            bands.dedup();
        }
        if bands.is_empty() {
            return Err("no BAND given and the volumes name no bands".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(b) = bands.iter().find(|b| !seen.insert(b.to_ascii_uppercase())) {
            return Err(format!("BAND {b} is given twice"));
        }
        let bytes = catalogue_bytes(params, uploads_dir)?;
        let Catalogue { rows, bad, .. } = read_catalogue(&bytes, params)?;
        Ok(BulkRequest {
            rows,
            bad,
            size,
            bands,
            volume,
            format,
        })
    }
}

/// `VOLUME`, when given: one the tiles come from.
pub(crate) fn served_volume(params: &DaliParams, tiles: &Tiles) -> Result<Option<String>, String> {
    let volume = params.get("VOLUME").map(|v| v.trim().to_string());
    if let Some(v) = &volume {
        if !tiles
            .volumes()
            .iter()
            .any(|x| x.name.eq_ignore_ascii_case(v))
        {
            return Err(format!("VOLUME {v:?} is not served"));
        }
    }
    Ok(volume)
}

/// The bands `BAND` names (comma-separated, repeatable), in order.
pub(crate) fn band_list(params: &DaliParams) -> Vec<String> {
    params
        .all("BAND")
        .flat_map(|b| b.split(','))
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

/// The catalogue's bytes: the part `catalog` (any case) saved at job creation, else the
/// `CATALOG` parameter's text.
fn catalogue_bytes(params: &DaliParams, uploads_dir: &Path) -> Result<Vec<u8>, String> {
    let saved = std::fs::read_dir(uploads_dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .eq_ignore_ascii_case("catalog")
        });
    if let Some(entry) = saved {
        return std::fs::read(entry.path()).map_err(|e| format!("the catalogue was not kept: {e}"));
    }
    match params.get("CATALOG") {
        Some(text) if !text.trim().is_empty() => Ok(text.as_bytes().to_vec()),
        _ => Err("no catalogue: send it as the multipart part \"catalog\" (CSV or VOTable)".into()),
    }
}

/// A catalogue read: its rows with a position, those without, and its record batches (for
/// any other column).
pub(crate) struct Catalogue {
    pub rows: Vec<Row>,
    pub bad: Vec<BadRow>,
    pub batches: Vec<RecordBatch>,
}

/// A catalogue's rows (CSV or VOTable, at most [`MAX_ROWS`], at least one), with the columns
/// `RA_COL`, `DEC_COL` and `ID_COL` name.
pub(crate) fn read_catalogue(bytes: &[u8], params: &DaliParams) -> Result<Catalogue, String> {
    let limits = UploadLimits {
        max_bytes: MAX_CATALOG_BYTES,
        max_rows: MAX_ROWS + 1,
        urls: false,
    };
    let (_, _, batches) = upload::read("catalog", bytes, limits)?;
    let (rows, bad) = catalogue_rows(
        &batches,
        params.get("RA_COL"),
        params.get("DEC_COL"),
        params.get("ID_COL"),
    )?;
    if rows.len() + bad.len() > MAX_ROWS {
        return Err(format!("the catalogue has more than {MAX_ROWS} rows"));
    }
    if rows.is_empty() && bad.is_empty() {
        return Err("the catalogue has no rows".into());
    }
    Ok(Catalogue { rows, bad, batches })
}

/// The position (and id) of every row; rows with a null or unreadable position are bad.
fn catalogue_rows(
    batches: &[RecordBatch],
    ra_col: Option<&str>,
    dec_col: Option<&str>,
    id_col: Option<&str>,
) -> Result<(Vec<Row>, Vec<BadRow>), String> {
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let find = |given: Option<&str>, names: &[&str], what: &str| -> Result<Option<usize>, String> {
        let names: Vec<&str> = match given {
            Some(g) => vec![g.trim()],
            None => names.to_vec(),
        };
        for n in &names {
            if let Some(i) = schema
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(n))
            {
                return Ok(Some(i));
            }
        }
        match given {
            Some(g) => Err(format!("the catalogue has no column {g:?} ({what})")),
            None => Ok(None),
        }
    };
    let ra = find(
        ra_col,
        &["ra", "raj2000", "ra_icrs", "right_ascension"],
        "RA_COL",
    )?
    .ok_or("the catalogue has no ra column: name it ra, or give RA_COL")?;
    let dec = find(
        dec_col,
        &["dec", "dej2000", "de_icrs", "declination"],
        "DEC_COL",
    )?
    .ok_or("the catalogue has no dec column: name it dec, or give DEC_COL")?;
    let id = find(id_col, &["id", "object_id", "source_id", "name"], "ID_COL")?;
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    let mut row = 0;
    for batch in batches {
        let degrees = |i: usize| -> Result<Vec<Option<f64>>, String> {
            let column = cast(batch.column(i), &DataType::Float64)
                .map_err(|e| format!("column {} is not numeric: {e}", schema.field(i).name()))?;
            let values = column.as_primitive::<Float64Type>();
            Ok((0..values.len())
                .map(|k| values.is_valid(k).then(|| values.value(k)))
                .collect())
        };
        let (ras, decs) = (degrees(ra)?, degrees(dec)?);
        let ids =
            match id {
                Some(i) => Some(cast(batch.column(i), &DataType::Utf8).map_err(|e| {
                    format!("column {} cannot be an id: {e}", schema.field(i).name())
                })?),
                None => None,
            };
        for k in 0..batch.num_rows() {
            row += 1;
            let id = ids.as_ref().and_then(|c| {
                c.as_string::<i32>()
                    .is_valid(k)
                    .then(|| c.as_string::<i32>().value(k).to_string())
            });
            match (ras[k], decs[k]) {
                (Some(ra), Some(dec)) if ra.is_finite() && (-90.0..=90.0).contains(&dec) => {
                    rows.push(Row { row, id, ra, dec })
                }
                (ra, dec) => bad.push(BadRow {
                    row,
                    id,
                    reason: format!("no valid position (ra {ra:?}, dec {dec:?})"),
                }),
            }
        }
    }
    Ok((rows, bad))
}

/// Where cutouts go, in catalogue order.
trait Sink {
    /// The cutouts of one row (one per band that could be cut).
    fn add(&mut self, row: &Row, cutouts: &[BandCutout]) -> std::io::Result<()>;
    /// Completes the file, adding the errors file where the format holds files.
    fn finish(self: Box<Self>, errors: &Path) -> std::io::Result<()>;
}

/// Runs one job (blocking): reads the request, cuts chunk by chunk, writes the result.
fn run_job(tiles: &Tiles, job: &JobInput, stop: &AtomicBool) -> Result<Vec<JobResult>, String> {
    let request = BulkRequest::from_job(&job.params, &job.uploads_dir, tiles)?;
    let progress = &job.progress;
    progress.set_total((request.rows.len() + request.bad.len()) as u64);
    progress.add_done(request.bad.len() as u64);
    let errors_path = job.results_dir.join("errors.csv");
    let mut errors = BufWriter::new(File::create(&errors_path).map_err(io_error)?);
    writeln!(errors, "row,id,band,error").map_err(io_error)?;
    for bad in &request.bad {
        let id = csv_field(bad.id.as_deref().unwrap_or(""));
        writeln!(errors, "{},{id},,{}", bad.row, csv_field(&bad.reason)).map_err(io_error)?;
    }
    let total_rows = request.rows.len() + request.bad.len();
    // Items of the `.npy` stack that stay NaN: rows without a position, and rows cut before
    // the stack's shape was known (from its first cutout) that had no cutout.
    let mut nan_rows: Vec<usize> = request.bad.iter().map(|b| b.row).collect();
    let result_path = job.results_dir.join(request.format.file());
    let mut sink: Option<Box<dyn Sink>> = match request.format {
        BulkFormat::Tar | BulkFormat::Zip => {
            Some(Box::new(ArchiveSink::create(&result_path, request.format)?))
        }
        BulkFormat::Fits => Some(Box::new(MefSink::create(&result_path)?)),
        // The stack's shape is known from the first cutout.
        BulkFormat::Npy => None,
    };
    let bands = request.bands.len();
    let mut rows_per_chunk = 16usize;
    let mut start = 0;
    while start < request.rows.len() {
        if stop.load(Ordering::Relaxed) {
            return Err("the job was stopped".into());
        }
        let chunk = &request.rows[start..(start + rows_per_chunk).min(request.rows.len())];
        let cut: Vec<Vec<Result<BandCutout, String>>> = chunk
            .par_iter()
            .map(|row| {
                request
                    .bands
                    .iter()
                    .map(|band| {
                        cut_at(
                            tiles,
                            row.ra,
                            row.dec,
                            request.size,
                            band,
                            request.volume.as_deref(),
                        )
                        .map_err(|e| e.to_string())
                    })
                    .collect()
            })
            .collect();
        let mut chunk_bytes = 0usize;
        for (row, results) in chunk.iter().zip(cut) {
            let mut good = Vec::with_capacity(bands);
            for (band, result) in request.bands.iter().zip(results) {
                match result {
                    Ok(c) => good.push(c),
                    Err(e) => writeln!(
                        errors,
                        "{},{},{},{}",
                        row.row,
                        csv_field(row.id.as_deref().unwrap_or("")),
                        csv_field(band),
                        csv_field(&e)
                    )
                    .map_err(io_error)?,
                }
            }
            chunk_bytes += good.iter().map(|c| c.data.len() * 4).sum::<usize>();
            if sink.is_none() {
                match good.first() {
                    Some(first) => {
                        let shape = [total_rows, bands, first.height, first.width];
                        let stack = NpySink::create(&result_path, shape, &request.bands)?;
                        stack.fill_nan(&nan_rows).map_err(io_error)?;
                        sink = Some(Box::new(stack));
                    }
                    None => nan_rows.push(row.row),
                }
            }
            if let Some(s) = sink.as_mut() {
                s.add(row, &good).map_err(io_error)?;
            }
        }
        progress.add_done(chunk.len() as u64);
        // The next chunk holds about CHUNK_BYTES of pixels, from what these rows weighed.
        let per_row = (chunk_bytes / chunk.len().max(1)).max(1);
        rows_per_chunk = (CHUNK_BYTES / per_row).clamp(1, 4096);
        start += chunk.len();
    }
    errors.flush().map_err(io_error)?;
    drop(errors);
    let sink = match sink {
        Some(s) => s,
        // Nothing was cut: an empty stack still says so with its shape.
        None if request.format == BulkFormat::Npy => Box::new(NpySink::create(
            &result_path,
            [total_rows, bands, 0, 0],
            &request.bands,
        )?),
        None => return Err("internal: no output".into()),
    };
    sink.finish(&errors_path).map_err(io_error)?;
    Ok(vec![
        JobResult {
            id: "result".into(),
            file: request.format.file().into(),
            mime: request.format.mime().into(),
        },
        JobResult {
            id: "errors".into(),
            file: "errors.csv".into(),
            mime: "text/csv".into(),
        },
    ])
}

/// A failure to write the result: logged in full, told to the client without the server's
/// paths.
fn io_error(e: impl std::fmt::Display) -> String {
    tracing::error!("bulk cutout job: {e}");
    "the result could not be written on the server (see its log)".to_string()
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A file written beside its final name and renamed into place when complete.
fn partial(path: &Path) -> PathBuf {
    path.with_extension("partial")
}

/// A tar or zip of `<id>_<band>.fits` files, with `errors.csv` at the end.
struct ArchiveSink {
    archive: Archive,
    path: PathBuf,
}

enum Archive {
    Tar(tar::Builder<BufWriter<File>>),
    Zip(zip::ZipWriter<BufWriter<File>>),
}

impl ArchiveSink {
    fn create(path: &Path, format: BulkFormat) -> Result<ArchiveSink, String> {
        let out = BufWriter::new(File::create(partial(path)).map_err(io_error)?);
        let archive = match format {
            BulkFormat::Zip => Archive::Zip(zip::ZipWriter::new(out)),
            _ => Archive::Tar(tar::Builder::new(out)),
        };
        Ok(ArchiveSink {
            archive,
            path: path.to_path_buf(),
        })
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.archive {
            Archive::Tar(tar) => {
                let mut header = tar::Header::new_ustar();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(0);
                tar.append_data(&mut header, name, bytes)
            }
            Archive::Zip(zip) => {
                // FITS pixels hardly compress: stored, with ZIP64 for files past 4 GB.
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored)
                    .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
                zip.start_file(name, options)
                    .map_err(std::io::Error::other)?;
                zip.write_all(bytes)
            }
        }
    }
}

impl Sink for ArchiveSink {
    fn add(&mut self, row: &Row, cutouts: &[BandCutout]) -> std::io::Result<()> {
        for c in cutouts {
            let name = format!("{}_{}.fits", row.stem(), c.band);
            self.append(&name, &c.primary_hdu())?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, errors: &Path) -> std::io::Result<()> {
        let text = std::fs::read(errors)?;
        self.append("errors.csv", &text)?;
        let mut out = match self.archive {
            Archive::Tar(tar) => tar.into_inner()?,
            Archive::Zip(zip) => zip.finish().map_err(std::io::Error::other)?,
        };
        out.flush()?;
        std::fs::rename(partial(&self.path), &self.path)
    }
}

/// One multi-extension FITS file: an empty primary HDU, then an IMAGE extension per cutout
/// named `<id>_<band>`.
struct MefSink {
    out: BufWriter<File>,
    path: PathBuf,
}

impl MefSink {
    fn create(path: &Path) -> Result<MefSink, String> {
        let file = File::create(partial(path)).map_err(io_error)?;
        let mut out = BufWriter::new(file);
        // How many cutouts there will be is known only at the end: no NEXTEND.
        out.write_all(&empty_primary(None, "bulk cutouts"))
            .map_err(io_error)?;
        Ok(MefSink {
            out,
            path: path.to_path_buf(),
        })
    }
}

impl Sink for MefSink {
    fn add(&mut self, row: &Row, cutouts: &[BandCutout]) -> std::io::Result<()> {
        for c in cutouts {
            let name = format!("{}_{}", row.stem(), c.band);
            self.out.write_all(&c.extension_hdu(&name))?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, _errors: &Path) -> std::io::Result<()> {
        self.out.flush()?;
        std::fs::rename(partial(&self.path), &self.path)
    }
}

/// `[rows, bands, height, width]` float32, item `i` for catalogue row `i + 1`; a row or band
/// that could not be cut (or came out another shape) is NaN.
struct NpySink {
    writer: NpyWriter,
    bands: Vec<String>,
    shape: [usize; 4],
    scratch: Vec<u8>,
    item: Vec<f32>,
}

impl NpySink {
    fn create(path: &Path, shape: [usize; 4], bands: &[String]) -> Result<NpySink, String> {
        let writer = NpyWriter::create(path, &shape).map_err(io_error)?;
        Ok(NpySink {
            writer,
            bands: bands.to_vec(),
            shape,
            scratch: Vec::new(),
            item: Vec::new(),
        })
    }

    /// Writes NaN items for these (1-based) catalogue rows.
    fn fill_nan(&self, rows: &[usize]) -> std::io::Result<()> {
        let [_, b, h, w] = self.shape;
        let nan = vec![f32::NAN; b * h * w];
        let mut scratch = Vec::new();
        for &row in rows {
            self.writer
                .write_item(row.saturating_sub(1), &nan, &mut scratch)
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

impl Sink for NpySink {
    fn add(&mut self, row: &Row, cutouts: &[BandCutout]) -> std::io::Result<()> {
        let [_, _, h, w] = self.shape;
        self.item.clear();
        self.item.resize(self.bands.len() * h * w, f32::NAN);
        for c in cutouts {
            let band = self
                .bands
                .iter()
                .position(|b| b.eq_ignore_ascii_case(&c.band));
            if let Some(b) = band.filter(|_| c.width == w && c.height == h) {
                self.item[b * h * w..(b + 1) * h * w].copy_from_slice(&c.data);
            }
        }
        self.writer
            .write_item(row.row.saturating_sub(1), &self.item, &mut self.scratch)
            .map_err(std::io::Error::other)
    }

    fn finish(self: Box<Self>, _errors: &Path) -> std::io::Result<()> {
        self.writer.finish().map_err(std::io::Error::other)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(csv: &str) -> Vec<RecordBatch> {
        let limits = UploadLimits {
            max_bytes: 1 << 20,
            max_rows: 100,
            urls: false,
        };
        upload::read("catalog", csv.as_bytes(), limits).unwrap().2
    }

    #[test]
    fn catalogue_columns_are_found_and_bad_positions_kept_apart() {
        let batches = table("Object_ID,RA,Dec,mag\na/1,10.5,-3,20\nb,,5,21\nc,11,95,22\nd,12,6,\n");
        let (rows, bad) = catalogue_rows(&batches, None, None, None).unwrap();
        assert_eq!(
            rows,
            vec![
                Row {
                    row: 1,
                    id: Some("a/1".into()),
                    ra: 10.5,
                    dec: -3.0
                },
                Row {
                    row: 4,
                    id: Some("d".into()),
                    ra: 12.0,
                    dec: 6.0
                },
            ]
        );
        assert_eq!(
            bad.iter()
                .map(|b| (b.row, b.id.as_deref()))
                .collect::<Vec<_>>(),
            [(2, Some("b")), (3, Some("c"))]
        );
        // File names never leave the archive's folder.
        assert_eq!(rows[0].stem(), "a_1");
        let no_id = Row {
            row: 7,
            id: None,
            ra: 0.0,
            dec: 0.0,
        };
        assert_eq!(no_id.stem(), "row7");

        let batches = table("x,y,name\n1,2,n\n");
        let (rows, _) = catalogue_rows(&batches, Some("X"), Some("y"), None).unwrap();
        assert_eq!(rows[0].id.as_deref(), Some("n"));
        for (ra, dec, says) in [
            (None, None, "no ra column"),
            (Some("x"), Some("z"), "no column \"z\""),
        ] {
            let err = catalogue_rows(&batches, ra, dec, None).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        // A text position is a bad row, reported, not a failed job.
        let batches = table("ra,dec\nnorth,2\n1,2\n");
        let (rows, bad) = catalogue_rows(&batches, None, None, None).unwrap();
        assert_eq!((rows.len(), bad.len(), bad[0].row), (1, 1, 1));
    }

    #[test]
    fn formats_and_csv_fields() {
        assert_eq!(BulkFormat::parse(" ZIP").unwrap(), BulkFormat::Zip);
        assert!(BulkFormat::parse("rar")
            .unwrap_err()
            .contains("tar, zip, fits, npy"));
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
