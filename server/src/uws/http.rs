//! The UWS 1.1 HTTP resources (UWS 1.1 §2.2): the job list, job creation, each job and its
//! sub-resources, with blocking `WAIT`. Parameters are read by [`DaliParams`] (query string,
//! form or multipart body, names case-insensitive as DALI 1.1 §3.1 asks); UWS errors are short
//! text/plain messages.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::time::{format_iso, parse_iso};
use super::{xml, Jobs, Phase, Record, UwsError};
use crate::dali::DaliParams;

/// The longest a blocking `WAIT` holds a request: UWS 1.1 §2.2.1 (blocking behaviour) lets the
/// service cap it, and `WAIT=-1`, "as long as the service allows", gets this.
const MAX_WAIT: Duration = Duration::from_secs(60);

const XML: &str = "text/xml; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

#[derive(Clone)]
struct Ctx {
    jobs: Arc<Jobs>,
    /// The job list's path, e.g. `/tap/async` (no trailing slash).
    base: Arc<str>,
}

/// The UWS resources of `jobs` under `base` (a path such as `/tap/async`): `GET`/`POST base`,
/// `GET`/`POST`/`DELETE base/{id}` and the job's `phase`, `quote`, `executionduration`,
/// `destruction`, `error`, `results`, `results/{result}`, `parameters`, `owner` and `runid`.
pub fn routes(jobs: Arc<Jobs>, base: &str) -> Router {
    let base = format!("/{}", base.trim_matches('/'));
    let job = format!("{}/{{id}}", base.trim_end_matches('/'));
    Router::new()
        .route(&base, get(list).post(create))
        .route(&job, get(job_document).post(job_post).delete(job_delete))
        .route(&format!("{job}/phase"), get(phase_get).post(phase_post))
        .route(&format!("{job}/quote"), get(quote_get))
        .route(
            &format!("{job}/executionduration"),
            get(execution_duration_get).post(execution_duration_post),
        )
        .route(
            &format!("{job}/destruction"),
            get(destruction_get).post(destruction_post),
        )
        .route(&format!("{job}/error"), get(error_get))
        .route(&format!("{job}/results"), get(results_get))
        .route(&format!("{job}/results/{{result}}"), get(result_get))
        .route(
            &format!("{job}/parameters"),
            get(parameters_get).post(parameters_post),
        )
        .route(&format!("{job}/owner"), get(owner_get))
        .route(&format!("{job}/runid"), get(run_id_get))
        .with_state(Ctx {
            jobs,
            base: base.trim_end_matches('/').into(),
        })
}

impl IntoResponse for UwsError {
    fn into_response(self) -> Response {
        match self {
            UwsError::NotFound(message) => (StatusCode::NOT_FOUND, text(message)).into_response(),
            UwsError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, text(message)).into_response()
            }
            UwsError::Internal(message) => {
                // The server's fault: details in the log, not for the client.
                tracing::error!("UWS: {message}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text("internal error; the server log has the details".to_string()),
                )
                    .into_response()
            }
        }
    }
}

type Answer = Result<Response, UwsError>;

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, TEXT)], body).into_response()
}

fn xml_document(body: String) -> Response {
    ([(header::CONTENT_TYPE, XML)], body).into_response()
}

fn bad(message: impl Into<String>) -> UwsError {
    UwsError::BadRequest(message.into())
}

/// `http://{Host}` (or `https` behind a proxy that says so): UWS links and redirects are
/// absolute, as pyvo and astroquery follow them as given. Empty (links become absolute paths)
/// when the request has no usable Host header.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let plausible = |c: char| c.is_ascii_alphanumeric() || ".-_:[]".contains(c);
    if host.is_empty() || !host.chars().all(plausible) {
        return String::new();
    }
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let scheme = if forwarded.trim().eq_ignore_ascii_case("https") {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

fn list_url(ctx: &Ctx, headers: &HeaderMap) -> String {
    format!("{}{}", origin(headers), ctx.base)
}

fn job_url(ctx: &Ctx, headers: &HeaderMap, id: &str) -> String {
    format!("{}/{id}", list_url(ctx, headers))
}

/// `GET base` (UWS 1.1 §2.2.2.1): the job list, filtered by `PHASE` (repeatable), `AFTER`
/// (created strictly after, to the millisecond as written) and `LAST` (the n most recent,
/// newest first as UWS 1.1 asks; otherwise oldest first).
async fn list(State(ctx): State<Ctx>, headers: HeaderMap, params: DaliParams) -> Answer {
    let mut phases = Vec::new();
    for name in params.all("PHASE") {
        match Phase::parse(name) {
            Some(phase) => phases.push(Some(phase)),
            // Phases of UWS 1.1 §2.1.3 this service never uses: valid, matching no job.
            None if ["UNKNOWN", "HELD", "SUSPENDED", "ARCHIVED"]
                .iter()
                .any(|p| p.eq_ignore_ascii_case(name.trim())) =>
            {
                phases.push(None)
            }
            None => return Err(bad(format!("PHASE={name:?} is not a UWS 1.1 phase"))),
        }
    }
    let after = match params.get("AFTER") {
        Some(t) => Some(parse_iso(t).ok_or_else(|| {
            bad(format!(
                "AFTER={t:?} is not an ISO-8601 time such as 2024-05-01T12:00:00Z"
            ))
        })?),
        None => None,
    };
    let last = match params.get("LAST") {
        Some(n) => Some(
            n.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("LAST={n:?} is not a number of jobs (0 or more)")))?,
        ),
        None => None,
    };
    let mut records: Vec<Record> = ctx
        .jobs
        .lock()
        .values()
        .map(|e| &e.record)
        .filter(|r| phases.is_empty() || phases.contains(&Some(r.phase)))
        .filter(|r| after.is_none_or(|t| r.creation_time / 1000 > t / 1000))
        .cloned()
        .collect();
    records.sort_by(|a, b| (a.creation_time, &a.job_id).cmp(&(b.creation_time, &b.job_id)));
    if let Some(n) = last {
        records.reverse();
        records.truncate(n);
    }
    Ok(xml_document(xml::job_list(
        &records,
        &list_url(&ctx, &headers),
    )))
}

/// `POST base` (UWS 1.1 §2.2.3.1): a new job, PENDING, or QUEUED at once with `PHASE=RUN`;
/// 303 to it.
async fn create(State(ctx): State<Ctx>, headers: HeaderMap, params: DaliParams) -> Answer {
    let run = match params.get("PHASE") {
        None => false,
        Some(p) if p.trim().eq_ignore_ascii_case("RUN") => true,
        Some(p) => {
            return Err(bad(format!(
                "PHASE={p:?} at job creation: only PHASE=RUN (run at once) is possible"
            )))
        }
    };
    let id = ctx.jobs.create(params, run).await?;
    Ok(Redirect::to(&job_url(&ctx, &headers, &id)).into_response())
}

/// `GET base/{id}`: the job document, after blocking while `WAIT` asks (UWS 1.1 §2.2.1):
/// up to `WAIT` seconds (capped) while the job is PENDING, QUEUED or EXECUTING and still in
/// the phase the client saw (`PHASE`, or the current one).
async fn job_document(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: DaliParams,
) -> Answer {
    if let Some(wait) = params.get("WAIT") {
        let seconds: i64 = wait
            .trim()
            .parse()
            .map_err(|_| bad(format!("WAIT={wait:?} is not a whole number of seconds")))?;
        let limit = match u64::try_from(seconds) {
            Ok(s) => MAX_WAIT.min(Duration::from_secs(s)),
            Err(_) => MAX_WAIT,
        };
        let seen = match params.get("PHASE") {
            Some(p) => {
                Some(Phase::parse(p).ok_or_else(|| bad(format!("PHASE={p:?} is not a phase")))?)
            }
            None => None,
        };
        let mut phase = ctx.jobs.watch(&id)?;
        let now = *phase.borrow_and_update();
        if now.is_active() && seen.is_none_or(|s| s == now) {
            // Ends at a phase change, at the limit, or when the job is deleted (the sender
            // goes with it).
            let _ = tokio::time::timeout(limit, async {
                while phase.changed().await.is_ok() {
                    if *phase.borrow_and_update() != now {
                        break;
                    }
                }
            })
            .await;
        }
    }
    let record = ctx.jobs.record(&id)?;
    Ok(xml_document(xml::job(
        &record,
        &job_url(&ctx, &headers, &id),
    )))
}

/// `POST base/{id}` with `ACTION=DELETE` (UWS 1.1 §2.2.3.2): deletes the job; 303 to the list.
async fn job_post(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: DaliParams,
) -> Answer {
    match params.get("ACTION") {
        Some(a) if a.trim().eq_ignore_ascii_case("DELETE") => {
            ctx.jobs.delete(&id).await?;
            Ok(Redirect::to(&list_url(&ctx, &headers)).into_response())
        }
        Some(a) => Err(bad(format!(
            "ACTION={a:?}: the only action on a job is DELETE"
        ))),
        None => Err(bad(
            "POST to a job needs ACTION=DELETE; phase, parameters and times have their own \
             resources",
        )),
    }
}

/// `DELETE base/{id}` (UWS 1.1 §2.2.3.2): deletes the job; 303 to the list.
async fn job_delete(State(ctx): State<Ctx>, Path(id): Path<String>, headers: HeaderMap) -> Answer {
    ctx.jobs.delete(&id).await?;
    Ok(Redirect::to(&list_url(&ctx, &headers)).into_response())
}

async fn phase_get(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    Ok(text(ctx.jobs.record(&id)?.phase.as_str().to_string()))
}

/// `POST base/{id}/phase` with `PHASE=RUN` or `PHASE=ABORT` (UWS 1.1 §2.2.3.5,
/// §2.2.3.6); 303 to the job.
async fn phase_post(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: DaliParams,
) -> Answer {
    let phase = params.get("PHASE").map(str::trim).unwrap_or("");
    if phase.eq_ignore_ascii_case("RUN") {
        ctx.jobs.run(&id)?;
    } else if phase.eq_ignore_ascii_case("ABORT") {
        ctx.jobs.abort(&id)?;
    } else if phase.is_empty() {
        return Err(bad("POST to a job's phase needs PHASE=RUN or PHASE=ABORT"));
    } else {
        return Err(bad(format!(
            "PHASE={phase:?}: a job's phase can be set to RUN or ABORT only"
        )));
    }
    Ok(Redirect::to(&job_url(&ctx, &headers, &id)).into_response())
}

/// No quotes are estimated (UWS 1.1 §2.1.6 allows a "don't know").
async fn quote_get(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    ctx.jobs.record(&id)?;
    Ok(text(String::new()))
}

async fn execution_duration_get(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    Ok(text(ctx.jobs.record(&id)?.execution_duration.to_string()))
}

/// `POST …/executionduration` with `EXECUTIONDURATION=seconds` (0: as long as allowed).
async fn execution_duration_post(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: DaliParams,
) -> Answer {
    let value = params
        .get("EXECUTIONDURATION")
        .ok_or_else(|| bad("POST to executionduration needs EXECUTIONDURATION=seconds"))?;
    let seconds = value.trim().parse::<u64>().map_err(|_| {
        bad(format!(
            "EXECUTIONDURATION={value:?} is not a whole number of seconds (0 or more)"
        ))
    })?;
    ctx.jobs.set_execution_duration(&id, seconds)?;
    Ok(Redirect::to(&job_url(&ctx, &headers, &id)).into_response())
}

async fn destruction_get(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    Ok(text(format_iso(ctx.jobs.record(&id)?.destruction)))
}

/// `POST …/destruction` with `DESTRUCTION=ISO-8601 time`.
async fn destruction_post(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: DaliParams,
) -> Answer {
    let value = params
        .get("DESTRUCTION")
        .ok_or_else(|| bad("POST to destruction needs DESTRUCTION=an ISO-8601 time"))?;
    let micros = parse_iso(value).ok_or_else(|| {
        bad(format!(
            "DESTRUCTION={value:?} is not an ISO-8601 time such as 2024-05-01T12:00:00Z"
        ))
    })?;
    ctx.jobs.set_destruction(&id, micros)?;
    Ok(Redirect::to(&job_url(&ctx, &headers, &id)).into_response())
}

/// The error of a job in phase ERROR (UWS 1.1 §2.1.7) as a VOTable error document, the form
/// TAP 1.1 gives errors; 404 for a job without an error.
async fn error_get(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    let record = ctx.jobs.record(&id)?;
    match (record.phase, &record.error) {
        (Phase::Error, Some(message)) => Ok((
            [(header::CONTENT_TYPE, "application/x-votable+xml")],
            crate::votable::error_document(message),
        )
            .into_response()),
        (phase, _) => Err(UwsError::NotFound(format!(
            "job {id} has no error: it is {}",
            phase.as_str()
        ))),
    }
}

async fn results_get(State(ctx): State<Ctx>, Path(id): Path<String>, headers: HeaderMap) -> Answer {
    let record = ctx.jobs.record(&id)?;
    Ok(xml_document(xml::results(
        &record,
        &job_url(&ctx, &headers, &id),
    )))
}

/// One result file, streamed from disk in chunks with its media type.
async fn result_get(State(ctx): State<Ctx>, Path((id, result)): Path<(String, String)>) -> Answer {
    let record = ctx.jobs.record(&id)?;
    let stored = record
        .results
        .iter()
        .find(|s| s.result.id == result)
        .ok_or_else(|| {
            UwsError::NotFound(format!(
                "job {id} has no result {result:?} (it is {})",
                record.phase.as_str()
            ))
        })?;
    let path = ctx
        .jobs
        .job_dir(&id)
        .join("results")
        .join(&stored.result.file);
    let file = std::fs::File::open(&path)
        .map_err(|e| UwsError::Internal(format!("result {} not opened: {e}", path.display())))?;
    let length = file
        .metadata()
        .map_err(|e| UwsError::Internal(format!("result {} not read: {e}", path.display())))?
        .len();
    Ok((
        [
            (header::CONTENT_TYPE, stored.result.mime.clone()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(crate::file_stream::chunks(file, 0, length)),
    )
        .into_response())
}

async fn parameters_get(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    Ok(xml_document(xml::parameters(&ctx.jobs.record(&id)?)))
}

/// `POST …/parameters` (UWS 1.1 §2.1.11): the values given replace those of the same names,
/// while the job is PENDING.
async fn parameters_post(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: DaliParams,
) -> Answer {
    let pairs = params
        .pairs
        .into_iter()
        .filter(|(name, _)| name != "PHASE" && name != "RUNID")
        .collect();
    ctx.jobs.set_parameters(&id, pairs)?;
    Ok(Redirect::to(&job_url(&ctx, &headers, &id)).into_response())
}

/// Jobs are anonymous: the owner is empty (UWS 1.1 §2.1.8).
async fn owner_get(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    ctx.jobs.record(&id)?;
    Ok(text(String::new()))
}

async fn run_id_get(State(ctx): State<Ctx>, Path(id): Path<String>) -> Answer {
    Ok(text(ctx.jobs.record(&id)?.run_id.unwrap_or_default()))
}
