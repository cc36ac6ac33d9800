//! IVOA TAP 1.1 over HTTP (axum): ADQL queries at `/tap/sync` and as UWS jobs at
//! `/tap/async`, with `TAP_UPLOAD` tables, and the VOSI resources (`/tap/capabilities`,
//! `/tap/availability`, `/tap/tables`) that pyvo, astroquery and TOPCAT read first.
//!
//! Parameters follow TAP 1.1 §2.3 and DALI: names are case-insensitive, `REQUEST=doQuery` is
//! optional, `LANG` is `ADQL` (also `ADQL-2.0`, `ADQL-2.1`), `RESPONSEFORMAT` (or `FORMAT`)
//! picks the output ([`mod@format`]), `MAXREC` caps the rows (with `QUERY_STATUS=OVERFLOW` when
//! the result was cut) and `UPLOAD` names uploaded tables ([`upload`]). Errors are VOTable
//! documents with `QUERY_STATUS=ERROR`: 400 for a bad request or query, 413 for an upload over
//! the limits, 500 for a failure of the service.

pub mod format;
pub mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use insitu_adql::arrow::datatypes::SchemaRef;
use insitu_adql::arrow::record_batch::RecordBatch;
use insitu_adql::{AdqlEngine, Error as AdqlError};

use crate::dali::{self, DaliParams};
use crate::metrics::Metrics;
use crate::uws;
use crate::vosi;
use format::Format;
use upload::UploadLimits;

/// Limits and identity of the service.
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Rows returned when the client gives no MAXREC.
    pub default_maxrec: usize,
    /// Rows never exceeded, whatever MAXREC says.
    pub hard_maxrec: usize,
    /// Public base URL (`http://host:port`); taken from the request's Host header if unset.
    pub base_url: Option<String>,
    /// Longest a synchronous query may run.
    pub sync_timeout: Duration,
    /// Size and rows of uploaded tables.
    pub upload: UploadLimits,
    /// Run time of an async job when the client sets none, and the most it may set.
    pub async_timeout: Duration,
    pub async_timeout_max: Duration,
    /// How long a job and its results are kept after creation.
    pub retention: Duration,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            default_maxrec: 100_000,
            hard_maxrec: 10_000_000,
            base_url: None,
            sync_timeout: Duration::from_secs(60),
            upload: UploadLimits {
                max_bytes: 64 << 20,
                max_rows: 1_000_000,
                urls: true,
            },
            async_timeout: Duration::from_secs(3600),
            async_timeout_max: Duration::from_secs(6 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What every handler shares.
pub struct TapState {
    pub engine: AdqlEngine,
    pub config: TapConfig,
    pub metrics: Arc<Metrics>,
}

/// A refused or failed request, with the HTTP status it gets; rendered as a DALI error.
#[derive(Debug)]
pub struct TapError {
    pub status: StatusCode,
    pub message: String,
}

impl TapError {
    fn bad(message: impl Into<String>) -> TapError {
        TapError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for TapError {
    fn into_response(self) -> Response {
        dali::error(self.status, &self.message)
    }
}

/// The TAP routes; `/tap/async` is served by `jobs`, whose runner should be [`AsyncRunner`].
pub fn routes(state: Arc<TapState>, jobs: Arc<uws::Jobs>) -> Router {
    // Uploads arrive in the body: let it be as large as an upload may be, plus the query.
    let body_limit = state.config.upload.max_bytes.saturating_add(1 << 20);
    Router::new()
        .route("/tap", get(landing))
        .route("/tap/sync", get(sync).post(sync))
        .route("/tap/capabilities", get(capabilities))
        .route("/tap/availability", get(availability))
        .route("/tap/tables", get(tables))
        .with_state(state)
        .merge(uws::routes(jobs, "/tap/async"))
        .layer(DefaultBodyLimit::max(body_limit))
}

/// A query's result, ready to be written.
pub struct Outcome {
    pub format: Format,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub overflow: bool,
}

impl Outcome {
    /// Writes the result in its format.
    pub fn write(&self, out: impl std::io::Write + Send) -> anyhow::Result<()> {
        format::write(
            self.format,
            &self.schema,
            &self.batches,
            &[],
            self.overflow,
            out,
        )
    }
}

/// Checks a TAP request's parameters, reads its uploads (`part` gives a multipart part's
/// bytes by name) and runs its query.
pub async fn execute(
    state: &TapState,
    params: &DaliParams,
    part: &(dyn Fn(&str) -> Option<Bytes> + Sync),
    timeout: Option<Duration>,
) -> Result<Outcome, TapError> {
    if let Some(request) = params.get("REQUEST") {
        if !request.eq_ignore_ascii_case("doQuery") {
            return Err(TapError::bad(format!(
                "REQUEST={request} is not supported: use doQuery"
            )));
        }
    }
    match params.get("LANG").map(|l| l.trim().to_ascii_uppercase()) {
        None => return Err(TapError::bad("LANG is missing: use LANG=ADQL")),
        Some(l) if ["ADQL", "ADQL-2.0", "ADQL-2.1"].contains(&l.as_str()) => {}
        Some(l) => {
            return Err(TapError::bad(format!(
                "LANG={l} is not supported: use ADQL"
            )))
        }
    }
    let Some(query) = params.get("QUERY").filter(|q| !q.trim().is_empty()) else {
        return Err(TapError::bad("QUERY is missing"));
    };
    let format_text = params
        .get("RESPONSEFORMAT")
        .or_else(|| params.get("FORMAT"));
    let format = Format::parse(format_text).ok_or_else(|| {
        TapError::bad(format!(
            "RESPONSEFORMAT={} is not supported: use one of {}",
            format_text.unwrap_or(""),
            Format::names()
        ))
    })?;
    let maxrec = match params.get("MAXREC").map(|m| m.trim().parse::<usize>()) {
        None => state.config.default_maxrec,
        Some(Ok(m)) => m.min(state.config.hard_maxrec),
        Some(Err(_)) => return Err(TapError::bad("MAXREC must be a non-negative integer")),
    };
    let mut uploads = Vec::new();
    let limits = state.config.upload;
    for (name, source) in
        upload::requested(params.all("UPLOAD"), limits.urls).map_err(TapError::bad)?
    {
        let bytes = match source {
            upload::Source::Part(part_name) => part(&part_name).ok_or_else(|| {
                TapError::bad(format!(
                    "UPLOAD {name}: the request has no multipart part called {part_name:?}"
                ))
            })?,
            upload::Source::Url(url) => {
                let wait = timeout.unwrap_or(state.config.async_timeout);
                tokio::task::spawn_blocking(move || upload::fetch(&url, limits, wait))
                    .await
                    .map_err(|e| TapError::bad(e.to_string()))?
                    .map(Bytes::from)
                    .map_err(|e| TapError::bad(format!("UPLOAD {name}: {e}")))?
            }
        };
        let table = upload::read(&name, &bytes, limits).map_err(|message| TapError {
            status: if bytes.len() > limits.max_bytes {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            },
            message,
        })?;
        uploads.push(table);
    }
    let started = Instant::now();
    let run = async {
        if uploads.is_empty() {
            state
                .engine
                .run_limited(query, maxrec.saturating_add(1))
                .await
        } else {
            let session = state.engine.with_uploads(uploads)?;
            session.run_limited(query, maxrec.saturating_add(1)).await
        }
    };
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(r) => r,
            Err(_) => {
                state.metrics.query(started.elapsed(), false);
                return Err(TapError::bad(format!(
                    "the query ran longer than the {} s allowed for synchronous queries: \
                     submit it to /tap/async",
                    limit.as_secs()
                )));
            }
        },
        None => run.await,
    };
    state.metrics.query(started.elapsed(), result.is_ok());
    let (schema, mut batches) = result.map_err(|e| TapError {
        status: match e {
            AdqlError::Execution(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        },
        message: e.to_string(),
    })?;
    let overflow = truncate(&mut batches, maxrec);
    Ok(Outcome {
        format,
        schema,
        batches,
        overflow,
    })
}

async fn sync(State(state): State<Arc<TapState>>, params: DaliParams) -> Response {
    let part = |name: &str| params.part(name).map(|p| p.bytes.clone());
    let outcome = match execute(&state, &params, &part, Some(state.config.sync_timeout)).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    // Rendering is CPU work: off the async workers.
    let rendered = tokio::task::spawn_blocking(move || {
        let mut body = Vec::new();
        outcome.write(&mut body).map(|()| (outcome.format, body))
    })
    .await;
    match rendered {
        Ok(Ok((format, body))) => ([(header::CONTENT_TYPE, format.mime())], body).into_response(),
        Ok(Err(e)) => {
            // A result the format cannot hold (e.g. a FITS column name that is not ASCII) is
            // the query's fault; anything else is ours.
            let users = matches!(
                e.downcast_ref::<insitu_engine::Error>(),
                Some(insitu_engine::Error::TableWrite(_))
            );
            let status = if users {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            dali::error(status, &format!("{e:#}"))
        }
        Err(e) => dali::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Runs `/tap/async` jobs: the query of the job's parameters, its result written to the job's
/// results folder.
pub struct AsyncRunner {
    pub state: Arc<TapState>,
}

impl uws::Runner for AsyncRunner {
    fn run(&self, job: uws::JobInput) -> BoxFuture<'static, Result<Vec<uws::JobResult>, String>> {
        let state = self.state.clone();
        Box::pin(async move {
            let uploads_dir = job.uploads_dir.clone();
            let part = move |name: &str| read_part(&uploads_dir, name);
            let outcome = execute(&state, &job.params, &part, None)
                .await
                .map_err(|e| e.message)?;
            let file = format!("result.{}", outcome.format.extension());
            let path = job.results_dir.join(&file);
            let mime = outcome.format.mime().to_string();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let out = std::fs::File::create(&path)?;
                outcome.write(std::io::BufWriter::new(out))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the result could not be written: {e:#}"))?;
            Ok(vec![uws::JobResult {
                id: "result".into(),
                file,
                mime,
            }])
        })
    }
}

/// A multipart part that job creation saved under `dir` (file named after the part).
fn read_part(dir: &Path, name: &str) -> Option<Bytes> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
        return None;
    }
    std::fs::read(PathBuf::from(dir).join(name))
        .ok()
        .map(Bytes::from)
}

/// Keeps the first `maxrec` rows; whether rows were dropped.
fn truncate(batches: &mut Vec<RecordBatch>, maxrec: usize) -> bool {
    let mut left = maxrec;
    let mut overflow = false;
    for b in batches.iter_mut() {
        if b.num_rows() > left {
            *b = b.slice(0, left);
            overflow = true;
        }
        left -= b.num_rows();
    }
    batches.retain(|b| b.num_rows() > 0);
    overflow
}

/// The service's public base URL: configured, or from the request's Host header.
pub fn base_url(configured: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(b) = configured {
        return b.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn landing(State(state): State<Arc<TapState>>, headers: HeaderMap) -> Response {
    let base = base_url(state.config.base_url.as_deref(), &headers);
    let body = format!(
        "insitu TAP 1.1 service\n\nsync:         {base}/tap/sync\nasync:        {base}/tap/async\n\
         capabilities: {base}/tap/capabilities\navailability: {base}/tap/availability\n\
         tables:       {base}/tap/tables\n"
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn capabilities(State(state): State<Arc<TapState>>, headers: HeaderMap) -> Response {
    let base = base_url(state.config.base_url.as_deref(), &headers);
    xml(vosi::capabilities(&base, &state.config))
}

async fn availability() -> Response {
    xml(vosi::availability())
}

async fn tables(State(state): State<Arc<TapState>>) -> Response {
    match state.engine.tables() {
        Ok(t) => xml(vosi::tableset(&t)),
        Err(e) => dali::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}
