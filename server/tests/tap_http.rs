//! The TAP service through its router (no port bound): sync queries in every format, MAXREC,
//! uploads, errors, VOSI, async jobs and metrics. Real clients (pyvo, astroquery, taplint)
//! are in `server/tests/tap/`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use insitu_adql::arrow::array::{AsArray, RecordBatch};
use insitu_adql::arrow::datatypes::Int64Type;
use insitu_server::serve_command::app;
use insitu_server::serve_config::ServeConfig;
use insitu_server::tap::TapConfig;
use insitu_server::votable;
use tower::ServiceExt;

/// Rows (id, ra, dec) on a small patch, deterministic.
fn catalogue(n: usize) -> Vec<(i64, f64, f64)> {
    (0..n)
        .map(|i| {
            let x = (i as f64 * 0.618_033_988_75).fract();
            let y = (i as f64 * 0.754_877_666_25).fract();
            (i as i64, 10.0 + x, -5.0 + y)
        })
        .collect()
}

fn write_csv(path: &Path, rows: &[(i64, f64, f64)], id: &str) {
    let mut text = format!("{id},ra,dec\n");
    for (i, a, d) in rows {
        text.push_str(&format!("{i},{a:?},{d:?}\n"));
    }
    std::fs::write(path, text).unwrap();
}

async fn service(dir: &Path, tap: TapConfig) -> Router {
    let table = dir.join("cat.csv");
    write_csv(&table, &catalogue(2000), "id");
    let config = ServeConfig {
        listen: "127.0.0.1:0".into(),
        tables: vec![("t.cat".into(), table)],
        volumes: vec![],
        cache_dir: dir.join("cache"),
        state_dir: dir.join("state"),
        tap,
        async_workers: 1,
        demo: false,
        launcher: None,
    };
    app(&config).await.unwrap().0
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let mime = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, mime, body.to_vec())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::HOST, "tap.test")
        .body(Body::empty())
        .unwrap()
}

fn form(uri: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    let body = serde_urlencoded::to_string(pairs).unwrap();
    Request::post(uri)
        .header(header::HOST, "tap.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

fn multipart(uri: &str, pairs: &[(&str, &str)], files: &[(&str, &[u8])]) -> Request<Body> {
    let boundary = "insitu-test-boundary-7d1c";
    let mut body = Vec::new();
    for (k, v) in pairs {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}.dat\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Request::post(uri)
        .header(header::HOST, "tap.test")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap()
}

fn ids(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn sync_uri(query: &str, extra: &str) -> String {
    format!(
        "/tap/sync?LANG=ADQL&QUERY={}{extra}",
        serde_urlencoded::to_string([("", query)])
            .unwrap()
            .trim_start_matches('=')
    )
}

#[tokio::test]
async fn sync_queries_in_every_format_with_maxrec() {
    let dir = tempfile::tempdir().unwrap();
    let app = service(dir.path(), TapConfig::default()).await;
    let q = "SELECT TOP 5 id, ra FROM t.cat WHERE dec > -4.5 ORDER BY id";
    let want: Vec<i64> = catalogue(2000)
        .into_iter()
        .filter(|r| r.2 > -4.5)
        .map(|r| r.0)
        .take(5)
        .collect();

    let (status, mime, body) = call(&app, get(&sync_uri(q, ""))).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(mime.starts_with("application/x-votable+xml"), "{mime}");
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(
        text.contains("<TABLEDATA>") && text.contains("QUERY_STATUS\" value=\"OK"),
        "{text}"
    );
    let (_, batches) = votable::read(&body, 100).unwrap();
    assert_eq!(ids(&batches, 0), want);

    // POST form, REQUEST given, BINARY2.
    let request = form(
        "/tap/sync",
        &[
            ("request", "doQuery"),
            ("lang", "ADQL"),
            ("query", q),
            (
                "RESPONSEFORMAT",
                "application/x-votable+xml;serialization=BINARY2",
            ),
        ],
    );
    let (status, mime, body) = call(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(mime.contains("BINARY2"), "{mime}");
    assert!(String::from_utf8_lossy(&body).contains("<BINARY2>"));
    assert_eq!(ids(&votable::read(&body, 100).unwrap().1, 0), want);

    let (status, mime, body) = call(&app, get(&sync_uri(q, "&RESPONSEFORMAT=csv"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(mime.starts_with("text/csv"), "{mime}");
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,ra");
    let got: Vec<i64> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, want);

    let (_, mime, body) = call(&app, get(&sync_uri(q, "&FORMAT=tsv"))).await;
    assert!(mime.starts_with("text/tab-separated-values"));
    assert!(String::from_utf8(body).unwrap().starts_with("id\tra\n"));

    for (fmt, magic) in [("fits", &b"SIMPLE  ="[..]), ("parquet", &b"PAR1"[..])] {
        let (status, _, body) =
            call(&app, get(&sync_uri(q, &format!("&RESPONSEFORMAT={fmt}")))).await;
        assert_eq!(status, StatusCode::OK, "{fmt}");
        assert!(body.starts_with(magic), "{fmt}");
    }

    // MAXREC cuts the result and says so; MAXREC=0 gives the columns only.
    let all = "SELECT id FROM t.cat ORDER BY id";
    let (_, _, body) = call(&app, get(&sync_uri(all, "&MAXREC=7"))).await;
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains("value=\"OVERFLOW\""), "{text}");
    assert_eq!(
        ids(&votable::read(&body, 100).unwrap().1, 0),
        (0..7).collect::<Vec<i64>>()
    );
    let (_, _, body) = call(&app, get(&sync_uri(all, "&MAXREC=0"))).await;
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(
        text.contains("OVERFLOW") && text.contains("<FIELD name=\"id\""),
        "{text}"
    );
    let (_, _, body) = call(
        &app,
        get(&sync_uri("SELECT COUNT(*) AS n FROM t.cat", "&MAXREC=1")),
    )
    .await;
    assert!(!String::from_utf8(body).unwrap().contains("OVERFLOW"));
}

#[tokio::test]
async fn bad_requests_get_dali_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = service(dir.path(), TapConfig::default()).await;
    let cases = [
        (sync_uri("SELEC id FROM t.cat", ""), "syntax"),
        (sync_uri("SELECT id FROM t.nope", ""), "nope"),
        (sync_uri("SELECT nope FROM t.cat", ""), "nope"),
        (sync_uri("DROP TABLE t.cat", ""), ""),
        (
            sync_uri("SELECT id FROM t.cat", "&RESPONSEFORMAT=text/html"),
            "RESPONSEFORMAT",
        ),
        (sync_uri("SELECT id FROM t.cat", "&MAXREC=-1"), "MAXREC"),
        (
            sync_uri("SELECT id FROM t.cat", "&REQUEST=getCapabilities"),
            "REQUEST",
        ),
        ("/tap/sync?LANG=SQL&QUERY=SELECT%201".to_string(), "LANG"),
        ("/tap/sync?LANG=ADQL".to_string(), "QUERY"),
        (
            sync_uri(
                "SELECT id FROM t.cat",
                "&UPLOAD=x,https://example.org/x.xml",
            ),
            "URL",
        ),
        (
            sync_uri("SELECT id FROM t.cat", "&UPLOAD=x,http://127.0.0.1:9/x.csv"),
            "cannot fetch",
        ),
        (
            sync_uri("SELECT id FROM t.cat", "&UPLOAD=x,param:missing"),
            "missing",
        ),
    ];
    for (uri, needle) in cases {
        let (status, mime, body) = call(&app, get(&uri)).await;
        let text = String::from_utf8(body).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
        assert!(mime.starts_with("application/x-votable+xml"), "{uri}");
        assert!(
            text.contains("name=\"QUERY_STATUS\" value=\"ERROR\""),
            "{uri}: {text}"
        );
        assert!(
            text.to_lowercase().contains(&needle.to_lowercase()),
            "{uri}: {text}"
        );
    }
    // Huge MAXREC is capped, not an error.
    let (status, _, _) = call(
        &app,
        get(&sync_uri(
            "SELECT TOP 1 id FROM t.cat",
            "&MAXREC=99999999999999",
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn uploads_cross_match_and_respect_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut tap = TapConfig::default();
    tap.upload.max_rows = 50;
    tap.upload.max_bytes = 4000;
    let app = service(dir.path(), tap).await;
    let cat = catalogue(2000);
    // The user's targets: every 97th row nudged by 0.5″, as CSV.
    let targets: Vec<(i64, f64, f64)> = cat
        .iter()
        .step_by(97)
        .map(|&(i, a, d)| (1000 + i, a, d + 0.5 / 3600.0))
        .collect();
    let mut csv = String::from("tid,ra,dec\n");
    for (i, a, d) in &targets {
        csv.push_str(&format!("{i},{a:?},{d:?}\n"));
    }
    let r: f64 = 1.0 / 3600.0;
    let q = format!(
        "SELECT u.tid, c.id FROM TAP_UPLOAD.mine AS u JOIN t.cat AS c \
         ON DISTANCE(u.ra, u.dec, c.ra, c.dec) < {r} ORDER BY u.tid, c.id"
    );
    let mut want = Vec::new();
    for (tid, a, d) in &targets {
        for (id, b, e) in &cat {
            let (a1, d1, a2, d2) = (
                a.to_radians(),
                d.to_radians(),
                b.to_radians(),
                e.to_radians(),
            );
            let h = ((d2 - d1) / 2.0).sin().powi(2)
                + d1.cos() * d2.cos() * ((a2 - a1) / 2.0).sin().powi(2);
            if 2.0 * h.sqrt().asin() < r.to_radians() {
                want.push((*tid, *id));
            }
        }
    }
    assert!(want.len() >= targets.len());
    let request = multipart(
        "/tap/sync",
        &[
            ("LANG", "ADQL"),
            ("QUERY", &q),
            ("UPLOAD", "mine,param:targets"),
        ],
        &[("targets", csv.as_bytes())],
    );
    let (status, _, body) = call(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let batches = votable::read(&body, 10_000).unwrap().1;
    let got: Vec<(i64, i64)> = ids(&batches, 0).into_iter().zip(ids(&batches, 1)).collect();
    assert_eq!(got, want);
    // The upload was for that query only.
    let (status, _, _) = call(&app, get(&sync_uri("SELECT * FROM TAP_UPLOAD.mine", ""))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The same table by URL (TAP 1.1 §2.5.3 upload-http), from a server on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = csv.clone();
    let files = Router::new().route(
        "/targets.csv",
        axum::routing::get(move || async move { served }),
    );
    tokio::spawn(async move { axum::serve(listener, files).await });
    let uri = sync_uri(&q, &format!("&UPLOAD=mine,http://{address}/targets.csv"));
    let (status, _, body) = call(&app, get(&uri)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let batches = votable::read(&body, 10_000).unwrap().1;
    let by_url: Vec<(i64, i64)> = ids(&batches, 0).into_iter().zip(ids(&batches, 1)).collect();
    assert_eq!(by_url, want);

    let many = format!("x\n{}", "1\n".repeat(60));
    let request = multipart(
        "/tap/sync",
        &[
            ("LANG", "ADQL"),
            ("QUERY", "SELECT * FROM TAP_UPLOAD.m"),
            ("UPLOAD", "m,param:p"),
        ],
        &[("p", many.as_bytes())],
    );
    let (status, _, body) = call(&app, request).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("50 rows") && text.contains("ERROR"), "{text}");
    let big = format!("x\n{}", "123456789\n".repeat(500));
    let request = multipart(
        "/tap/sync",
        &[
            ("LANG", "ADQL"),
            ("QUERY", "SELECT * FROM TAP_UPLOAD.m"),
            ("UPLOAD", "m,param:p"),
        ],
        &[("p", big.as_bytes())],
    );
    let (status, _, body) = call(&app, request).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.contains("4000 bytes"), "{text}");
}

#[tokio::test]
async fn vosi_async_jobs_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let app = service(dir.path(), TapConfig::default()).await;
    let (status, _, body) = call(&app, get("/tap/tables")).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("<name>t.cat</name>") && text.contains("<name>tap_schema.columns</name>")
    );
    let (_, _, body) = call(&app, get("/tap/capabilities")).await;
    let text = String::from_utf8(body).unwrap();
    for needle in [
        "ivo://ivoa.net/std/TAP",
        "<accessURL use=\"base\">http://tap.test/tap</accessURL>",
        "serialization=BINARY2",
        "upload-inline",
        "<form>CONTAINS</form>",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    let (_, _, body) = call(&app, get("/tap/availability")).await;
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("<vosi:available>true</vosi:available>"));

    let request = form(
        "/tap/async",
        &[
            ("LANG", "ADQL"),
            ("QUERY", "SELECT COUNT(*) AS n FROM t.cat"),
            ("PHASE", "RUN"),
            ("RESPONSEFORMAT", "csv"),
        ],
    );
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let job = location.trim_start_matches("http://tap.test").to_string();
    assert!(job.starts_with("/tap/async/"), "{location}");
    // WAIT returns on every phase change (UWS 1.1 §2.2.3.2): wait until it is final.
    let mut text = String::new();
    for _ in 0..10 {
        let (status, _, body) = call(&app, get(&format!("{job}?WAIT=30"))).await;
        assert_eq!(status, StatusCode::OK);
        text = String::from_utf8(body).unwrap();
        if !["PENDING", "QUEUED", "EXECUTING"]
            .iter()
            .any(|p| text.contains(&format!("<uws:phase>{p}<")))
        {
            break;
        }
    }
    assert!(text.contains("<uws:phase>COMPLETED<"), "{text}");
    let (status, mime, body) = call(&app, get(&format!("{job}/results/result"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(mime.starts_with("text/csv"), "{mime}");
    assert_eq!(String::from_utf8(body).unwrap(), "n\n2000\n");

    let (_, _, body) = call(&app, get("/metrics")).await;
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("insitu_http_requests_total{route=\"/tap/tables\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("insitu_adql_queries_total{outcome=\"ok\"} 1"),
        "{text}"
    );
}
