//! IVOA SODA 1.0 cutouts of the volumes' images (<https://www.ivoa.net/documents/SODA/>), with
//! what clients use to find them: DataLink 1.1 `{links}` documents with a SODA service
//! descriptor per dataset, the files themselves, VOSI, and the Euclid archive's own cutout
//! form (astroquery's `Euclid.get_cutout`).
//!
//! Resources ([`routes`] serves them; `serve_command::app` opens `/soda/async`'s job store):
//! - `/soda/sync` (GET, POST) and `/soda/async` (UWS 1.1 jobs, the job machinery TAP uses):
//!   `ID` (ObsCore's `obs_publisher_did`, `ivo://insitu/<volume>?<path>`, or
//!   `<volume>/<path>`: only images the volume scan listed, so nothing outside a volume), and
//!   one of `POS` (`CIRCLE`, `RANGE`, `POLYGON`), `CIRCLE`, `POLYGON` (ICRS degrees) or
//!   CADC's pixel section `SUB=[ext][x1:x2,y1:y2]` ([`params`]). The result is a FITS file
//!   of the cut HDU, BITPIX and header kept and the WCS moved (`cut_window`), holding every
//!   pixel the region touches ([`pixel_box`]); no filter gives the whole image.
//! - Sync takes one value of each (`MultiValuedParamNotSupported` otherwise); async makes one
//!   result per ID and filter, `result-1`, `result-2`…, in the order given (IDs outer). As
//!   SODA 1.0 §6 asks, a combination with no pixels (or an unknown ID) still has its result:
//!   a `text/plain` message starting with `UsageError`.
//! - Errors (SODA 1.0 §5.2) are `text/plain`, starting with `UsageError` (400; 404 for an
//!   unknown ID), `MultiValuedParamNotSupported` (400) or `Error` (500, details only in the
//!   log); a region on no pixel of the image gives 204 No Content.
//! - `/soda/capabilities` and `/soda/availability` (VOSI); `/datalink/links` ([`datalink`]);
//!   `/files/<volume>/<path>` (the whole file, with byte ranges); `/sas-cutout/cutout`
//!   ([`euclid`]).

pub mod datalink;
pub mod euclid;
mod files;
pub mod params;
pub mod pixel_box;
pub mod region;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use insitu_engine::cutout::{cut_window, Window, MAX_BYTES};
use insitu_engine::fits::Card;

use crate::dali::DaliParams;
use crate::tap::base_url;
use crate::uws;
use crate::volumes::{LookupError, TileId, Tiles};
use crate::votable::xml;
use params::{Extension, Filter, ParamError, Section};

/// The most results one async job may ask for (IDs × filters).
pub const MAX_RESULTS: usize = 1000;

/// What the SODA, DataLink, file and Euclid handlers share.
#[derive(Debug)]
pub struct SodaState {
    pub tiles: Arc<Tiles>,
    /// Public base URL (`https://host/prefix`); from the request's Host header when unset.
    pub base_url: Option<String>,
}

impl SodaState {
    fn base(&self, headers: &HeaderMap) -> String {
        base_url(self.base_url.as_deref(), headers)
    }
}

/// A refused or failed SODA request; its text starts with the SODA 1.0 §5.2 error label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SodaError {
    /// A bad parameter value: 400.
    #[error("UsageError: {0}")]
    Usage(String),
    /// Several values where the service takes one: 400.
    #[error("MultiValuedParamNotSupported: {0}")]
    MultiValued(String),
    /// An ID (or file) that names no dataset: 404.
    #[error("UsageError: {0}")]
    NotFound(String),
    /// The service failed: 500, the message only in the log.
    #[error("Error: {0}")]
    Internal(String),
}

impl SodaError {
    pub fn status(&self) -> StatusCode {
        match self {
            SodaError::Usage(_) | SodaError::MultiValued(_) => StatusCode::BAD_REQUEST,
            SodaError::NotFound(_) => StatusCode::NOT_FOUND,
            SodaError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ParamError> for SodaError {
    fn from(e: ParamError) -> SodaError {
        match e {
            ParamError::Usage(m) => SodaError::Usage(m),
            ParamError::MultiValued(m) => SodaError::MultiValued(m),
        }
    }
}

impl From<LookupError> for SodaError {
    fn from(e: LookupError) -> SodaError {
        match e {
            LookupError::NotFound(_) => SodaError::NotFound(e.to_string()),
            LookupError::Unreadable(..) => SodaError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for SodaError {
    fn into_response(self) -> Response {
        let status = self.status();
        let text = match &self {
            SodaError::Internal(message) => {
                tracing::error!("SODA: {message}");
                "Error: the cutout failed; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{text}\n"),
        )
            .into_response()
    }
}

/// A SODA request's parameters (DALI's reading); a request that cannot be read (malformed
/// query string or body) is answered as SODA answers errors, `text/plain` starting with
/// `UsageError`, with the status the reading gave.
pub struct SodaParams(pub DaliParams);

impl<S: Send + Sync> FromRequest<S> for SodaParams {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        DaliParams::read(req, state)
            .await
            .map(SodaParams)
            .map_err(|(status, message)| {
                let mut response = SodaError::Usage(message).into_response();
                *response.status_mut() = status;
                response
            })
    }
}

/// A finished cutout: a complete FITS file and a name for it.
#[derive(Debug, Clone)]
pub struct CutoutFile {
    pub bytes: Vec<u8>,
    /// `<file stem>_cutout.fits`.
    pub name: String,
}

impl IntoResponse for CutoutFile {
    fn into_response(self) -> Response {
        (
            [
                (header::CONTENT_TYPE, "application/fits".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"{}\"", files::header_safe(&self.name)),
                ),
            ],
            self.bytes,
        )
            .into_response()
    }
}

/// The dataset an `ID` names. An absolute path is never one (and is not echoed back).
pub fn resolve(tiles: &Tiles, id: &str) -> Result<TileId, SodaError> {
    if id.trim_start().starts_with('/') {
        return Err(SodaError::NotFound(
            "no dataset: an absolute path is not a dataset id; give an id from ivoa.obscore \
             (obs_publisher_did) or <volume>/<path> from a mosaic_product table"
                .into(),
        ));
    }
    tiles.dataset(id).map_err(SodaError::from)
}

/// Cuts `filter` out of a dataset; `Ok(None)` when it holds no pixel of the image. Blocking
/// (it reads the pixels): call it off the async runtime.
pub fn cut(tiles: &Tiles, tile: TileId, filter: &Filter) -> Result<Option<CutoutFile>, SodaError> {
    let open = tiles.open(tile)?;
    let (volume, row) = tiles.row(tile);
    let did = tiles.did(tile);
    let unreadable = |e: insitu_engine::Error| {
        // Engine errors name the server's path: log them, show the dataset only.
        SodaError::Internal(format!("{}/{}: {e}", volume.name, row.relative_path))
    };
    let (hdu, image) = match filter {
        Filter::Sub(section) => {
            let hdu = section_hdu(&open.file, open.hdu, section)?;
            let image = open.file.image(hdu).map_err(|e| match e {
                insitu_engine::Error::NotAnImage { .. }
                | insitu_engine::Error::NoSuchHdu { .. } => SodaError::Usage(format!(
                    "SUB={}: HDU {hdu} of {did} is not an image",
                    section.text
                )),
                other => unreadable(other),
            })?;
            (hdu, image)
        }
        _ => (open.hdu, open.image().map_err(unreadable)?),
    };
    let (window, planes) = match filter {
        Filter::Whole => (
            Window {
                x0: 0,
                y0: 0,
                width: image.width(),
                height: image.height(),
            },
            0..image.planes(),
        ),
        Filter::Region(region) => {
            match pixel_box::pixel_box(region, &open.wcs, image.width(), image.height()) {
                Some(w) => (w, 0..image.planes()),
                None => return Ok(None),
            }
        }
        Filter::Sub(section) => match section_window(section, image.axes())? {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    let bytes = window
        .width
        .saturating_mul(window.height)
        .saturating_mul(planes.len())
        .saturating_mul(image.bitpix().bytes());
    if bytes > MAX_BYTES {
        return Err(SodaError::Usage(format!(
            "the cutout would hold {bytes} bytes ({}×{} pixels, {} planes); the limit is \
             {MAX_BYTES}: cut a smaller region, or download the file from /datalink/links",
            window.width,
            window.height,
            planes.len()
        )));
    }
    // Where the cutout lies, as the cfitsio section that would cut it (1-based, inclusive).
    let mut section = format!(
        "[{hdu}][{}:{},{}:{}",
        window.x0 + 1,
        window.x0 + window.width as i64,
        window.y0 + 1,
        window.y0 + window.height as i64
    );
    if image.axes().len() == 3 {
        let _ = write!(section, ",{}:{}", planes.start + 1, planes.end);
    }
    section.push(']');
    let mut cutout = cut_window(&image, window, planes);
    for text in [
        format!("insitu SODA cutout of {did}"),
        format!("section {section}"),
        format!("filter {}", filter.describe()),
    ] {
        cutout.header.push(Card::commentary("HISTORY", &text));
    }
    let name = row.file_name();
    let lower = name.to_ascii_lowercase();
    let stem = [".fits.gz", ".fits.fz", ".fits", ".fit", ".fts"]
        .iter()
        .find(|ending| lower.ends_with(*ending))
        .map_or(name, |ending| &name[..name.len() - ending.len()]);
    Ok(Some(CutoutFile {
        bytes: cutout.to_fits_bytes(),
        name: format!("{stem}_cutout.fits"),
    }))
}

/// The HDU a section names (cfitsio counts HDUs from 0, the primary one).
fn section_hdu(
    file: &insitu_engine::fits::FitsFile,
    dataset_hdu: usize,
    section: &Section,
) -> Result<usize, SodaError> {
    match &section.extension {
        Extension::Dataset => Ok(dataset_hdu),
        Extension::Index(i) if *i < file.hdu_count() => Ok(*i),
        Extension::Index(i) => Err(SodaError::Usage(format!(
            "SUB={}: the file has {} HDUs, numbered from 0; there is no HDU {i}",
            section.text,
            file.hdu_count()
        ))),
        Extension::Name(name, version) => (0..file.hdu_count())
            .find(|&i| {
                file.header(i).is_ok_and(|h| {
                    h.string("EXTNAME")
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
                        && h.integer("EXTVER").unwrap_or(1) == *version
                })
            })
            .ok_or_else(|| {
                SodaError::Usage(format!(
                    "SUB={}: the file has no HDU with EXTNAME {name} and EXTVER {version}",
                    section.text
                ))
            }),
    }
}

/// The window and planes of a section on an image of `axes` (NAXIS1…), clipped to the
/// image (SODA 1.0 §3.3: values beyond the data are reduced to it); `None` when the section
/// lies wholly outside.
fn section_window(
    section: &Section,
    axes: &[usize],
) -> Result<Option<(Window, std::ops::Range<usize>)>, SodaError> {
    if section.axes.len() > 2 && axes.len() != section.axes.len() {
        return Err(SodaError::Usage(format!(
            "SUB={}: {} axes given, the image has {}",
            section.text,
            section.axes.len(),
            axes.len()
        )));
    }
    // 1-based inclusive → 0-based half-open, clipped; `None` when past the end.
    let clip = |range: Option<&params::AxisRange>, n: usize| match range.copied().flatten() {
        None => Some(0..n),
        Some((first, last)) => {
            let first = usize::try_from(first - 1).unwrap_or(usize::MAX);
            let last = usize::try_from(last).unwrap_or(usize::MAX).min(n);
            (first < last).then_some(first..last)
        }
    };
    let planes: usize = axes[2..].iter().product();
    let (Some(x), Some(y), Some(p)) = (
        clip(section.axes.first(), axes[0]),
        clip(section.axes.get(1), axes[1]),
        clip(section.axes.get(2), planes),
    ) else {
        return Ok(None);
    };
    Ok(Some((
        Window {
            x0: x.start as i64,
            y0: y.start as i64,
            width: x.len(),
            height: y.len(),
        },
        p,
    )))
}

/// `/soda` (sync, async, VOSI), `/datalink/links`, `/files/…` and `/sas-cutout/cutout`;
/// `/soda/async` is served by `jobs`, whose runner should be an [`AsyncRunner`].
pub fn routes(state: Arc<SodaState>, jobs: Arc<uws::Jobs>) -> Router {
    Router::new()
        .route("/soda", get(landing))
        .route("/soda/sync", get(sync).post(sync))
        .route("/soda/capabilities", get(capabilities))
        .route("/soda/availability", get(availability))
        .route(
            "/datalink/links",
            get(datalink::links).post(datalink::links),
        )
        .route("/files/{volume}/{*path}", get(files::download))
        .route(
            "/sas-cutout/cutout",
            get(euclid::cutout).post(euclid::cutout),
        )
        .with_state(state)
        .merge(uws::routes(jobs, "/soda/async"))
}

/// Cuts on the blocking pool and answers: the FITS file, 204 when no pixel is in the
/// region, or the error.
async fn answer(tiles: Arc<Tiles>, id: String, filter: Filter) -> Response {
    let done = tokio::task::spawn_blocking(move || {
        let tile = resolve(&tiles, &id)?;
        cut(&tiles, tile, &filter)
    })
    .await;
    match done {
        Ok(Ok(Some(file))) => file.into_response(),
        Ok(Ok(None)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => SodaError::Internal(format!("the cutout task stopped: {e}")).into_response(),
    }
}

async fn sync(State(state): State<Arc<SodaState>>, SodaParams(params): SodaParams) -> Response {
    let request = match params::parse(&params, true) {
        Ok(r) => r,
        Err(e) => return SodaError::from(e).into_response(),
    };
    let (Some(id), Some(filter)) = (request.ids.first(), request.filters.first()) else {
        return SodaError::Usage("ID is missing".into()).into_response();
    };
    answer(state.tiles.clone(), id.clone(), filter.clone()).await
}

/// Runs `/soda/async` jobs: one result file per ID and filter.
pub struct AsyncRunner {
    pub tiles: Arc<Tiles>,
}

impl uws::Runner for AsyncRunner {
    fn run(&self, job: uws::JobInput) -> BoxFuture<'static, Result<Vec<uws::JobResult>, String>> {
        let tiles = self.tiles.clone();
        Box::pin(async move {
            let request =
                params::parse(&job.params, false).map_err(|e| SodaError::from(e).to_string())?;
            let count = request.ids.len().saturating_mul(request.filters.len());
            if count > MAX_RESULTS {
                return Err(format!(
                    "UsageError: {count} results asked for ({} IDs × {} regions); a job makes \
                     at most {MAX_RESULTS}",
                    request.ids.len(),
                    request.filters.len()
                ));
            }
            tokio::task::spawn_blocking(move || write_results(&tiles, &request, &job.results_dir))
                .await
                .map_err(|e| format!("Error: the job's task stopped: {e}"))?
        })
    }
}

/// Cuts every combination into `dir`: `result-n.fits`, or `result-n.txt` with the reason
/// when a combination gives no cutout.
fn write_results(
    tiles: &Tiles,
    request: &params::Request,
    dir: &Path,
) -> Result<Vec<uws::JobResult>, String> {
    let mut results = Vec::new();
    let combinations = request
        .ids
        .iter()
        .flat_map(|id| request.filters.iter().map(move |f| (id, f)));
    for (n, (id, filter)) in combinations.enumerate() {
        let name = format!("result-{}", n + 1);
        let outcome = resolve(tiles, id).and_then(|tile| cut(tiles, tile, filter));
        let (file, mime, bytes) = match outcome {
            Ok(Some(cutout)) => (format!("{name}.fits"), "application/fits", cutout.bytes),
            Ok(None) => (
                format!("{name}.txt"),
                "text/plain",
                format!(
                    "UsageError: no pixel of {id} lies in {}\n",
                    filter.describe()
                )
                .into_bytes(),
            ),
            Err(e) => {
                if let SodaError::Internal(m) = &e {
                    tracing::error!("SODA job: {m}");
                }
                let text = match e {
                    SodaError::Internal(_) => {
                        "Error: the cutout failed; the server log has the details".to_string()
                    }
                    other => other.to_string(),
                };
                (
                    format!("{name}.txt"),
                    "text/plain",
                    format!("{text}\n").into_bytes(),
                )
            }
        };
        std::fs::write(dir.join(&file), bytes)
            .map_err(|e| format!("Error: result {name} not written: {e}"))?;
        results.push(uws::JobResult {
            id: name,
            file,
            mime: mime.into(),
        });
    }
    Ok(results)
}

async fn landing(State(state): State<Arc<SodaState>>, headers: HeaderMap) -> Response {
    let base = state.base(&headers);
    let body = format!(
        "insitu SODA 1.0 service (cutouts of the volumes' images)\n\n\
         sync:         {base}/soda/sync?ID=...&CIRCLE=ra dec radius\n\
         async:        {base}/soda/async\n\
         capabilities: {base}/soda/capabilities\n\
         availability: {base}/soda/availability\n\
         datalink:     {base}/datalink/links?ID=...\n\
         euclid:       {base}/sas-cutout/cutout (astroquery.esa.euclid get_cutout)\n"
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// VOSI capabilities (SODA 1.0 §2.5): sync, async, the VOSI resources and DataLink.
pub fn capabilities_document(base: &str) -> String {
    let base = xml(base);
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <vosi:capabilities xmlns:vosi=\"http://www.ivoa.net/xml/VOSICapabilities/v1.0\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\">\n",
    );
    for (standard, role, path) in [
        (
            "ivo://ivoa.net/std/SODA#sync-1.0",
            " role=\"std\"",
            "soda/sync",
        ),
        (
            "ivo://ivoa.net/std/SODA#async-1.0",
            " role=\"std\"",
            "soda/async",
        ),
        (
            "ivo://ivoa.net/std/VOSI#capabilities",
            "",
            "soda/capabilities",
        ),
        (
            "ivo://ivoa.net/std/VOSI#availability",
            "",
            "soda/availability",
        ),
    ] {
        let _ = writeln!(
            out,
            "<capability standardID=\"{standard}\"><interface xsi:type=\"vs:ParamHTTP\"{role} \
             version=\"1.0\"><accessURL use=\"full\">{base}/{path}</accessURL></interface>\
             </capability>"
        );
    }
    let _ = writeln!(
        out,
        "<capability standardID=\"ivo://ivoa.net/std/DataLink#links-1.1\">\
         <interface xsi:type=\"vs:ParamHTTP\" role=\"std\" version=\"1.1\">\
         <accessURL use=\"base\">{base}/datalink/links</accessURL>\
         <queryType>GET</queryType><queryType>POST</queryType>\
         <resultType>application/x-votable+xml;content=datalink</resultType>\
         <param std=\"true\" use=\"required\"><name>ID</name>\
         <description>publisher dataset identifier</description>\
         <ucd>meta.id;meta.main</ucd><dataType>string</dataType></param>\
         </interface></capability>"
    );
    out.push_str("</vosi:capabilities>\n");
    out
}

async fn capabilities(State(state): State<Arc<SodaState>>, headers: HeaderMap) -> Response {
    xml_response(capabilities_document(&state.base(&headers)))
}

async fn availability() -> Response {
    xml_response(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <vosi:availability xmlns:vosi=\"http://www.ivoa.net/xml/VOSIAvailability/v1.0\">\
         <vosi:available>true</vosi:available>\
         <vosi:note>insitu is cutting images</vosi:note></vosi:availability>\n"
            .to_string(),
    )
}

fn xml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sections_clip_to_the_image() {
        let section = |t: &str| params::parse_sub(t).unwrap();
        let (w, p) = section_window(&section("[3:5,2:4]"), &[10, 8])
            .unwrap()
            .unwrap();
        assert_eq!((w.x0, w.y0, w.width, w.height, p), (2, 1, 3, 3, 0..1));
        let (w, _) = section_window(&section("[8:20,*]"), &[10, 8])
            .unwrap()
            .unwrap();
        assert_eq!((w.x0, w.width, w.y0, w.height), (7, 3, 0, 8));
        assert!(section_window(&section("[11:20,*]"), &[10, 8])
            .unwrap()
            .is_none());
        let (_, p) = section_window(&section("[*,*,2:3]"), &[10, 8, 4])
            .unwrap()
            .unwrap();
        assert_eq!(p, 1..3);
        assert!(section_window(&section("[*,*,2:3]"), &[10, 8]).is_err());
    }

    #[test]
    fn errors_carry_their_label_and_status() {
        let e = SodaError::from(ParamError::MultiValued("ID: 2 values".into()));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e
            .to_string()
            .starts_with("MultiValuedParamNotSupported: ID"));
        let e = SodaError::from(LookupError::NotFound("v/x".into()));
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert!(e.to_string().starts_with("UsageError: "));
        let e = SodaError::from(LookupError::Unreadable("v/x".into(), "gone".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.to_string().starts_with("Error: "));
    }

    #[test]
    fn capabilities_declare_sync_and_async() {
        let doc = capabilities_document("http://h:1/x&y");
        assert!(doc.contains("standardID=\"ivo://ivoa.net/std/SODA#sync-1.0\""));
        assert!(doc.contains("standardID=\"ivo://ivoa.net/std/SODA#async-1.0\""));
        assert!(doc.contains("<accessURL use=\"full\">http://h:1/x&amp;y/soda/sync</accessURL>"));
    }
}
