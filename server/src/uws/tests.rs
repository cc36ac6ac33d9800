//! The UWS resources end to end through `routes` (no port bound), with a fake runner whose
//! behaviour each job picks with its `MODE` parameter; XML answers are read back with
//! quick-xml, an independent parser.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use futures::future::BoxFuture;
use quick_xml::events::Event;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::*;

const HOST: &str = "example.org:8080";
const BASE: &str = "/tap/async";

/// MODE=write (default): writes TEXT to `out.txt`; gate: waits for a permit of `gate` first;
/// fail: an error; panic: panics; upload: copies the uploaded part PART; ghost: returns a
/// result file it never wrote.
struct Fake {
    gate: Arc<Semaphore>,
    /// Runs dropped before they finished (aborted, timed out, store dropped).
    dropped: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
}

impl Fake {
    fn new(open_gate: bool) -> Arc<Fake> {
        Arc::new(Fake {
            gate: Arc::new(Semaphore::new(if open_gate { 1000 } else { 0 })),
            dropped: Arc::new(AtomicUsize::new(0)),
            started: Arc::new(AtomicUsize::new(0)),
        })
    }
}

/// Counts a run as dropped unless it is forgotten on completion.
struct Unfinished(Arc<AtomicUsize>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Runner for Fake {
    fn run(&self, job: JobInput) -> BoxFuture<'static, Result<Vec<JobResult>, String>> {
        let gate = self.gate.clone();
        let guard = Unfinished(self.dropped.clone());
        self.started.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let param = |name: &str| job.params.get(name).unwrap_or("").to_string();
            let text_result = |file: &str, mime: &str| {
                vec![JobResult {
                    id: "result".into(),
                    file: file.into(),
                    mime: mime.into(),
                }]
            };
            let outcome = match param("MODE").as_str() {
                "fail" => Err("deliberate failure <&>".to_string()),
                "panic" => panic!("deliberate panic"),
                "upload" => {
                    let bytes = std::fs::read(job.uploads_dir.join(param("PART"))).unwrap();
                    std::fs::write(job.results_dir.join("out.bin"), bytes).unwrap();
                    Ok(text_result("out.bin", "application/octet-stream"))
                }
                "ghost" => Ok(text_result("never.txt", "text/plain")),
                mode => {
                    if mode == "gate" {
                        job.progress.set_total(10);
                        job.progress.add_done(3);
                        gate.acquire().await.unwrap().forget();
                        job.progress.add_done(7);
                    }
                    std::fs::write(job.results_dir.join("out.txt"), param("TEXT")).unwrap();
                    Ok(text_result("out.txt", "text/plain"))
                }
            };
            std::mem::forget(guard);
            outcome
        })
    }
}

fn config(dir: &Path, workers: usize) -> UwsConfig {
    UwsConfig {
        dir: dir.join("jobs"),
        workers,
        default_execution_duration: 30,
        max_execution_duration: 100,
        default_destruction: Duration::from_secs(3600),
    }
}

fn open(dir: &Path, workers: usize, runner: Arc<Fake>) -> (Arc<Jobs>, Router) {
    let jobs = Jobs::open(config(dir, workers), runner).unwrap();
    let app = routes(jobs.clone(), BASE);
    (jobs, app)
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    fn location(&self) -> &str {
        self.headers[header::LOCATION].to_str().unwrap()
    }
}

async fn send(app: &Router, method: Method, uri: &str, form: &str) -> Reply {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(header::HOST, HOST);
    if method == Method::POST {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    call(app, request.body(Body::from(form.to_string())).unwrap()).await
}

async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Method::GET, uri, "").await
}

async fn post(app: &Router, uri: &str, form: &str) -> Reply {
    send(app, Method::POST, uri, form).await
}

/// Creates a job; checks the 303 to its absolute URL; its id.
async fn create(app: &Router, form: &str) -> String {
    let reply = post(app, BASE, form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let prefix = format!("http://{HOST}{BASE}/");
    let id = reply.location().strip_prefix(&prefix).unwrap().to_string();
    assert_eq!(id.len(), 16, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    id
}

async fn phase(app: &Router, id: &str) -> String {
    let reply = get(app, &format!("{BASE}/{id}/phase")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.text()
}

/// The job document after a blocking WAIT, repeated until the job is no longer active.
async fn wait_done(app: &Router, id: &str) -> String {
    // A job stuck in one phase fails this after 10 blocking WAITs of 2 s, not a hang.
    for _ in 0..10 {
        let doc = get(app, &format!("{BASE}/{id}?WAIT=2")).await.text();
        let phase = texts(&doc, "phase").remove(0);
        if !["PENDING", "QUEUED", "EXECUTING"].contains(&phase.as_str()) {
            return doc;
        }
    }
    panic!("job {id} never finished");
}

async fn wait_for_phase(app: &Router, id: &str, wanted: &str) {
    for _ in 0..500 {
        if phase(app, id).await == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} never reached {wanted}");
}

/// Texts of every element with local name `name`, entities resolved.
fn texts(doc: &str, name: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(doc);
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) if e.local_name().as_ref() == name.as_bytes() => {
                current = Some(String::new())
            }
            Event::Empty(e) if e.local_name().as_ref() == name.as_bytes() => {
                found.push(String::new())
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t.decode().unwrap());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(c) = current.as_mut() {
                    let name = r.decode().unwrap();
                    c.push_str(quick_xml::escape::resolve_predefined_entity(&name).unwrap());
                }
            }
            Event::End(e) if e.local_name().as_ref() == name.as_bytes() => {
                found.extend(current.take())
            }
            Event::Eof => return found,
            _ => {}
        }
    }
}

/// Values of attribute `attr` (qualified name as written) on elements with local name `name`.
fn attributes(doc: &str, name: &str, attr: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(doc);
    let mut found = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == name.as_bytes() => {
                if let Some(a) = e.try_get_attribute(attr).unwrap() {
                    found.push(a.unescape_value().unwrap().into_owned());
                }
            }
            Event::Eof => return found,
            _ => {}
        }
    }
}

/// The namespace of the root element, resolved by quick-xml's namespace reader.
fn root_namespace(doc: &str) -> (String, String) {
    let mut reader = quick_xml::NsReader::from_str(doc);
    loop {
        match reader.read_resolved_event().unwrap() {
            (quick_xml::name::ResolveResult::Bound(ns), Event::Start(e)) => {
                return (
                    String::from_utf8(ns.as_ref().to_vec()).unwrap(),
                    String::from_utf8(e.local_name().as_ref().to_vec()).unwrap(),
                )
            }
            (_, Event::Eof) => panic!("no bound root element in {doc}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn created_job_is_pending_then_runs_to_a_downloadable_result() {
    let dir = tempfile::tempdir().unwrap();
    let (_jobs, app) = open(dir.path(), 2, Fake::new(true));
    let id = create(
        &app,
        "MODE=write&TEXT=hello+%3Cworld%3E&RUNID=run+1&lang=ADQL",
    )
    .await;

    let doc = get(&app, &format!("{BASE}/{id}")).await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.text();
    let ns = "http://www.ivoa.net/xml/UWS/v1.0".to_string();
    assert_eq!(root_namespace(&doc), (ns, "job".to_string()));
    assert_eq!(texts(&doc, "jobId"), [id.as_str()]);
    assert_eq!(texts(&doc, "runId"), ["run 1"]);
    assert_eq!(texts(&doc, "phase"), ["PENDING"]);
    assert_eq!(attributes(&doc, "ownerId", "xsi:nil"), ["true"]);
    assert_eq!(attributes(&doc, "startTime", "xsi:nil"), ["true"]);
    assert_eq!(texts(&doc, "executionDuration"), ["30"]);
    // Lower-case ids, values as sent; PHASE and RUNID are UWS's, not parameters.
    assert_eq!(
        attributes(&doc, "parameter", "id"),
        ["mode", "text", "lang"]
    );
    assert_eq!(texts(&doc, "parameter"), ["write", "hello <world>", "ADQL"]);
    let created = time::parse_iso(&texts(&doc, "creationTime")[0]).unwrap();
    let destruction = time::parse_iso(&texts(&doc, "destruction")[0]).unwrap();
    assert_eq!((destruction - created) / 1000, 3_600_000);
    assert_eq!(
        get(&app, &format!("{BASE}/{id}/runid")).await.text(),
        "run 1"
    );

    let run = post(&app, &format!("{BASE}/{id}/phase"), "PHASE=RUN").await;
    assert_eq!(run.status, StatusCode::SEE_OTHER);
    assert_eq!(run.location(), format!("http://{HOST}{BASE}/{id}"));
    let doc = wait_done(&app, &id).await;
    assert_eq!(texts(&doc, "phase"), ["COMPLETED"]);
    let start = time::parse_iso(&texts(&doc, "startTime")[0]).unwrap();
    let end = time::parse_iso(&texts(&doc, "endTime")[0]).unwrap();
    assert!(created / 1000 <= start / 1000 && start <= end, "{doc}");
    let href = format!("http://{HOST}{BASE}/{id}/results/result");
    assert_eq!(attributes(&doc, "result", "xlink:href"), [href.as_str()]);
    assert_eq!(attributes(&doc, "result", "size"), ["13"]);

    let results = get(&app, &format!("{BASE}/{id}/results")).await.text();
    assert_eq!(root_namespace(&results).1, "results");
    assert_eq!(
        attributes(&results, "result", "xlink:href"),
        [href.as_str()]
    );
    let download = get(&app, href.strip_prefix(&format!("http://{HOST}")).unwrap()).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.headers[header::CONTENT_TYPE], "text/plain");
    assert_eq!(download.headers[header::CONTENT_LENGTH], "13");
    assert_eq!(download.text(), "hello <world>");
    assert_eq!(
        get(&app, &format!("{BASE}/{id}/results/other"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let params = get(&app, &format!("{BASE}/{id}/parameters")).await.text();
    assert_eq!(root_namespace(&params).1, "parameters");
    assert_eq!(
        texts(&params, "parameter"),
        ["write", "hello <world>", "ADQL"]
    );
    // No error for a completed job.
    assert_eq!(
        get(&app, &format!("{BASE}/{id}/error")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn wait_blocks_until_the_phase_changes() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(false);
    let (_jobs, app) = open(dir.path(), 1, fake.clone());
    let id = create(&app, "MODE=gate&TEXT=x&PHASE=RUN").await;
    wait_for_phase(&app, &id, "EXECUTING").await;

    // A client that saw another phase gets the document at once (a hang fails here).
    let uri = format!("{BASE}/{id}?WAIT=30&PHASE=QUEUED");
    let quick = tokio::time::timeout(Duration::from_secs(20), get(&app, &uri))
        .await
        .unwrap();
    assert_eq!(texts(&quick.text(), "phase"), ["EXECUTING"]);

    let waiting = tokio::spawn({
        let app = app.clone();
        let uri = format!("{BASE}/{id}?WAIT=30");
        async move { get(&app, &uri).await.text() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "WAIT returned while the job was still EXECUTING"
    );
    // The runner's progress shows while it runs, and stays once it is done.
    let running = get(&app, &format!("{BASE}/{id}")).await.text();
    assert!(running.contains(r#"done="3" total="10""#), "{running}");
    fake.gate.add_permits(1);
    let doc = waiting.await.unwrap();
    assert_eq!(texts(&doc, "phase"), ["COMPLETED"]);
    assert!(doc.contains(r#"<uws:jobInfo><progress xmlns="urn:insitu:uws:progress" done="10" total="10"/></uws:jobInfo>"#), "{doc}");
}

#[tokio::test]
async fn abort_stops_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(false);
    let (_jobs, app) = open(dir.path(), 1, fake.clone());
    let id = create(&app, "MODE=gate&PHASE=RUN").await;
    wait_for_phase(&app, &id, "EXECUTING").await;
    let abort = post(&app, &format!("{BASE}/{id}/phase"), "phase=abort").await;
    assert_eq!(abort.status, StatusCode::SEE_OTHER, "{}", abort.text());
    assert_eq!(phase(&app, &id).await, "ABORTED");
    for _ in 0..100 {
        if fake.dropped.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        fake.dropped.load(Ordering::SeqCst),
        1,
        "the runner was not stopped"
    );
    assert_eq!(phase(&app, &id).await, "ABORTED");
    let doc = get(&app, &format!("{BASE}/{id}")).await.text();
    assert_eq!(texts(&doc, "endTime").len(), 1);
    // Aborting again changes nothing; running an aborted job is refused.
    let again = post(&app, &format!("{BASE}/{id}/phase"), "PHASE=ABORT").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let run = post(&app, &format!("{BASE}/{id}/phase"), "PHASE=RUN").await;
    assert_eq!(run.status, StatusCode::BAD_REQUEST);
    assert!(run.text().contains("ABORTED"), "{}", run.text());

    // A QUEUED job can be aborted too, and the worker then skips it.
    let busy = create(&app, "MODE=gate&PHASE=RUN").await;
    wait_for_phase(&app, &busy, "EXECUTING").await;
    let queued = create(&app, "MODE=write&PHASE=RUN").await;
    assert_eq!(phase(&app, &queued).await, "QUEUED");
    post(&app, &format!("{BASE}/{queued}/phase"), "PHASE=ABORT").await;
    fake.gate.add_permits(1);
    assert_eq!(texts(&wait_done(&app, &busy).await, "phase"), ["COMPLETED"]);
    assert_eq!(phase(&app, &queued).await, "ABORTED");
    assert_eq!(fake.started.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn exceeding_the_execution_duration_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(false);
    let (_jobs, app) = open(dir.path(), 1, fake.clone());
    let id = create(&app, "MODE=gate").await;
    let uri = format!("{BASE}/{id}/executionduration");
    // Capped at the maximum (100 s); 0 (unlimited) becomes the maximum too.
    assert_eq!(
        post(&app, &uri, "EXECUTIONDURATION=1000").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(get(&app, &uri).await.text(), "100");
    post(&app, &uri, "EXECUTIONDURATION=0").await;
    assert_eq!(get(&app, &uri).await.text(), "100");
    assert_eq!(
        post(&app, &uri, "EXECUTIONDURATION=-3").await.status,
        StatusCode::BAD_REQUEST
    );
    post(&app, &uri, "executionDuration=1").await;
    assert_eq!(get(&app, &uri).await.text(), "1");
    post(&app, &format!("{BASE}/{id}/phase"), "PHASE=RUN").await;
    let doc = wait_done(&app, &id).await;
    assert_eq!(texts(&doc, "phase"), ["ERROR"]);
    let message = texts(&doc, "message").remove(0);
    assert!(
        message.contains("exceeded its execution duration of 1 s"),
        "{message}"
    );
    assert_eq!(fake.dropped.load(Ordering::SeqCst), 1);
    // Only a PENDING job's duration can change.
    assert_eq!(
        post(&app, &uri, "EXECUTIONDURATION=5").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn runner_errors_and_panics_end_in_phase_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_jobs, app) = open(dir.path(), 1, Fake::new(true));
    let failed = create(&app, "MODE=fail&PHASE=RUN").await;
    let doc = wait_done(&app, &failed).await;
    assert_eq!(texts(&doc, "phase"), ["ERROR"]);
    assert_eq!(texts(&doc, "message"), ["deliberate failure <&>"]);
    assert_eq!(attributes(&doc, "errorSummary", "hasDetail"), ["true"]);
    let error = get(&app, &format!("{BASE}/{failed}/error")).await;
    assert_eq!(error.status, StatusCode::OK);
    assert_eq!(
        error.headers[header::CONTENT_TYPE],
        "application/x-votable+xml"
    );
    assert_eq!(attributes(&error.text(), "INFO", "value"), ["ERROR"]);
    assert_eq!(texts(&error.text(), "INFO"), ["deliberate failure <&>"]);

    let panicked = create(&app, "MODE=panic&PHASE=RUN").await;
    let doc = wait_done(&app, &panicked).await;
    assert_eq!(texts(&doc, "phase"), ["ERROR"]);
    assert!(
        texts(&doc, "message")[0].contains("internal error"),
        "{doc}"
    );

    let ghost = create(&app, "MODE=ghost&PHASE=RUN").await;
    let doc = wait_done(&app, &ghost).await;
    assert!(texts(&doc, "message")[0].contains("never.txt"), "{doc}");

    // The single worker survived all of that.
    let fine = create(&app, "TEXT=still+here&PHASE=RUN").await;
    assert_eq!(texts(&wait_done(&app, &fine).await, "phase"), ["COMPLETED"]);
}

#[tokio::test]
async fn bad_requests_are_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let (_jobs, app) = open(dir.path(), 1, Fake::new(true));
    let done = create(&app, "TEXT=x&PHASE=RUN").await;
    wait_done(&app, &done).await;
    let phase_uri = format!("{BASE}/{done}/phase");
    for (uri, form, wanted) in [
        (
            phase_uri.as_str(),
            "PHASE=RUN",
            "only a PENDING job can be run",
        ),
        (phase_uri.as_str(), "PHASE=ABORT", "already COMPLETED"),
        (phase_uri.as_str(), "PHASE=SUSPEND", "RUN or ABORT"),
        (phase_uri.as_str(), "", "needs PHASE=RUN"),
        (BASE, "PHASE=ABORT", "only PHASE=RUN"),
        (&format!("{BASE}/{done}"), "ACTION=EXPLODE", "DELETE"),
        (
            &format!("{BASE}/{done}/destruction"),
            "DESTRUCTION=soon",
            "ISO-8601",
        ),
        (&format!("{BASE}/{done}/parameters"), "QUERY=x", "PENDING"),
    ] {
        let reply = post(&app, uri, form).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri} {form}");
        assert!(
            reply.text().contains(wanted),
            "{uri} {form}: {}",
            reply.text()
        );
    }
    for query in ["PHASE=FOO", "AFTER=yesterday", "LAST=-1"] {
        let reply = get(&app, &format!("{BASE}?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
    let reply = get(&app, &format!("{BASE}/{done}?WAIT=soon")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    for sub in [
        "",
        "/phase",
        "/results",
        "/results/result",
        "/parameters",
        "/error",
        "/quote",
    ] {
        let reply = get(&app, &format!("{BASE}/0123456789abcdef{sub}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{sub}");
        assert!(reply.text().contains("no job"), "{sub}: {}", reply.text());
    }
    let reply = send(
        &app,
        Method::DELETE,
        &format!("{BASE}/0123456789abcdef"),
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn job_list_filters_by_phase_after_and_last() {
    let dir = tempfile::tempdir().unwrap();
    let (_jobs, app) = open(dir.path(), 1, Fake::new(true));
    let a = create(&app, "TEXT=a&PHASE=RUN&RUNID=first").await;
    wait_done(&app, &a).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let b = create(&app, "TEXT=b").await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let c = create(&app, "TEXT=c").await;

    let ids = |doc: &str| attributes(doc, "jobref", "id");
    let all = get(&app, BASE).await.text();
    assert_eq!(root_namespace(&all).1, "jobs");
    assert_eq!(ids(&all), [a.clone(), b.clone(), c.clone()]);
    assert_eq!(texts(&all, "phase"), ["COMPLETED", "PENDING", "PENDING"]);
    assert_eq!(texts(&all, "runId"), ["first"]);
    let href = format!("http://{HOST}{BASE}/{a}");
    assert_eq!(attributes(&all, "jobref", "xlink:href")[0], href);

    let list = |query: String| {
        let app = app.clone();
        async move { ids(&get(&app, &format!("{BASE}?{query}")).await.text()) }
    };
    assert_eq!(list("PHASE=PENDING".into()).await, [b.clone(), c.clone()]);
    assert_eq!(list("PHASE=pending&PHASE=COMPLETED".into()).await.len(), 3);
    assert!(list("PHASE=HELD".into()).await.is_empty());
    let a_created = texts(&all, "creationTime").remove(0);
    assert_eq!(
        list(format!("AFTER={a_created}")).await,
        [b.clone(), c.clone()]
    );
    // LAST: the most recent, newest first (UWS 1.1 §2.2.2.1).
    assert_eq!(list("LAST=2".into()).await, [c.clone(), b.clone()]);
    assert_eq!(list("LAST=1&PHASE=COMPLETED".into()).await, [a.as_str()]);
    assert!(list("LAST=0".into()).await.is_empty());
}

#[tokio::test]
async fn delete_removes_the_job_and_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(false);
    let (_jobs, app) = open(dir.path(), 1, fake.clone());
    let done = create(&app, "TEXT=x").await;
    let folder = dir.path().join("jobs").join(&done);
    assert!(folder.join("job.json").is_file());
    let reply = send(&app, Method::DELETE, &format!("{BASE}/{done}"), "").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), format!("http://{HOST}{BASE}"));
    assert!(!folder.exists());
    assert_eq!(
        get(&app, &format!("{BASE}/{done}")).await.status,
        StatusCode::NOT_FOUND
    );

    // ACTION=DELETE on a running job stops it.
    let running = create(&app, "MODE=gate&PHASE=RUN").await;
    wait_for_phase(&app, &running, "EXECUTING").await;
    let reply = post(&app, &format!("{BASE}/{running}"), "action=delete").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(!dir.path().join("jobs").join(&running).exists());
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(fake.dropped.load(Ordering::SeqCst), 1);
    assert!(get(&app, BASE).await.text().find("jobref").is_none());
}

#[tokio::test]
async fn destruction_can_be_set_and_expired_jobs_go() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, app) = open(dir.path(), 1, Fake::new(true));
    let keep = create(&app, "TEXT=x").await;
    let old = create(&app, "TEXT=y").await;
    let uri = format!("{BASE}/{old}/destruction");
    let reply = post(&app, &uri, "DESTRUCTION=2001-02-03T04:05:06.789Z").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(get(&app, &uri).await.text(), "2001-02-03T04:05:06.789Z");
    assert_eq!(jobs.remove_expired().await, 1);
    assert_eq!(
        get(&app, &format!("{BASE}/{old}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(!dir.path().join("jobs").join(&old).exists());
    assert_eq!(jobs.phase(&keep), Some(Phase::Pending));
}

/// A multipart body: text fields, then file parts (name, bytes).
fn multipart(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "uws-test-boundary-4f1c9a0b7d";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"table.vot\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_multipart(app: &Router, content_type: String, body: Vec<u8>) -> Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri(BASE)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    call(app, request).await
}

#[tokio::test]
async fn multipart_parts_are_saved_for_the_runner_and_streamed_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_jobs, app) = open(dir.path(), 1, Fake::new(true));
    // Larger than a streaming chunk, and not UTF-8.
    let mut state = 12345u32;
    let upload: Vec<u8> = (0..700_000)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (state >> 24) as u8
        })
        .collect();
    let (content_type, body) = multipart(
        &[("MODE", "upload"), ("PART", "t1"), ("PHASE", "RUN")],
        &[("t1", &upload)],
    );
    let reply = post_multipart(&app, content_type, body).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let id = reply.location().rsplit('/').next().unwrap().to_string();
    assert_eq!(
        std::fs::read(dir.path().join("jobs").join(&id).join("uploads").join("t1")).unwrap(),
        upload
    );
    let doc = wait_done(&app, &id).await;
    assert_eq!(texts(&doc, "phase"), ["COMPLETED"], "{doc}");
    let download = get(&app, &format!("{BASE}/{id}/results/result")).await;
    assert_eq!(
        download.headers[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert!(
        download.body == upload,
        "the result differs from the upload"
    );

    for bad in ["../escape", "a/b", "..", "a\\b"] {
        let (content_type, body) = multipart(&[("MODE", "upload")], &[(bad, b"data")]);
        let reply = post_multipart(&app, content_type, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(
            reply.text().contains("cannot name a file"),
            "{}",
            reply.text()
        );
    }
    // Nothing but the one good job was created, nothing written outside the state folder.
    assert_eq!(
        std::fs::read_dir(dir.path().join("jobs")).unwrap().count(),
        1
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn a_restart_keeps_every_job_and_runs_the_unfinished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let first = Fake::new(false);
    let (jobs, app) = open(dir.path(), 1, first.clone());
    let done = create(&app, "TEXT=kept&PHASE=RUN").await;
    let pending = create(&app, "TEXT=later").await;
    // Blocks the single worker, so `queued` waits behind it.
    let executing = create(&app, "MODE=gate&TEXT=again&PHASE=RUN").await;
    let queued = create(&app, "TEXT=q&PHASE=RUN").await;
    // `done` was queued first, so it completes before `executing` takes the worker.
    assert_eq!(texts(&wait_done(&app, &done).await, "phase"), ["COMPLETED"]);
    wait_for_phase(&app, &executing, "EXECUTING").await;
    assert_eq!(phase(&app, &queued).await, "QUEUED");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("jobs").join(&executing).join("job.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["phase"], "EXECUTING");

    // The "crash": the store goes without recording anything more.
    drop(app);
    drop(jobs);
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(first.dropped.load(Ordering::SeqCst), 1);
    let damaged = dir.path().join("jobs").join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    std::fs::write(damaged.join("job.json"), "{not json").unwrap();
    std::fs::create_dir(dir.path().join("jobs").join("empty")).unwrap();

    let second = Fake::new(true);
    let (jobs, app) = open(dir.path(), 1, second.clone());
    // Before any worker ran: EXECUTING became QUEUED.
    assert_eq!(jobs.phase(&executing), Some(Phase::Queued));
    assert_eq!(jobs.phase(&queued), Some(Phase::Queued));
    let listed = get(&app, BASE).await.text();
    let mut ids = attributes(&listed, "jobref", "id");
    ids.sort();
    let mut expected = vec![
        done.clone(),
        pending.clone(),
        executing.clone(),
        queued.clone(),
    ];
    expected.sort();
    assert_eq!(ids, expected);

    for (id, text) in [(&executing, "again"), (&queued, "q")] {
        assert_eq!(texts(&wait_done(&app, id).await, "phase"), ["COMPLETED"]);
        let result = get(&app, &format!("{BASE}/{id}/results/result")).await;
        assert_eq!(result.text(), text);
    }
    assert_eq!(second.started.load(Ordering::SeqCst), 2);
    assert_eq!(phase(&app, &pending).await, "PENDING");
    assert_eq!(phase(&app, &done).await, "COMPLETED");
    let kept = get(&app, &format!("{BASE}/{done}/results/result")).await;
    assert_eq!(kept.text(), "kept");
    // The pending job still runs when asked.
    post(&app, &format!("{BASE}/{pending}/phase"), "PHASE=RUN").await;
    assert_eq!(
        texts(&wait_done(&app, &pending).await, "phase"),
        ["COMPLETED"]
    );
    assert!(
        damaged.join("job.json").exists(),
        "a damaged job is left for a person to look at"
    );
}

#[tokio::test]
async fn reopening_deletes_jobs_past_their_destruction() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, app) = open(dir.path(), 1, Fake::new(true));
    let old = create(&app, "TEXT=x").await;
    let uri = format!("{BASE}/{old}/destruction");
    post(&app, &uri, "DESTRUCTION=2001-01-01").await;
    drop((jobs, app));
    let (jobs, _app) = open(dir.path(), 1, Fake::new(true));
    assert_eq!(jobs.phase(&old), None);
    assert!(!dir.path().join("jobs").join(&old).exists());
}

#[test]
fn file_names_that_leave_the_folder_are_refused() {
    for good in ["t1", "table.vot", "my-upload_2"] {
        assert!(is_safe_name(good), "{good}");
    }
    for bad in [
        "", ".", "..", "../x", "a/b", "a\\b", "a..b", "x\u{0}y", "x\ny",
    ] {
        assert!(!is_safe_name(bad), "{bad:?}");
    }
}

#[test]
fn job_ids_are_unique_hex() {
    let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_job_id()).collect();
    assert_eq!(ids.len(), 10_000);
    assert!(ids
        .iter()
        .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
}

#[test]
fn opening_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Jobs::open(config(dir.path(), 1), Fake::new(true)).is_err());
}
