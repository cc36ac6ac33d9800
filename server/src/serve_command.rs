//! `insitu serve`: the HTTP service (TAP today; SODA and tensors next) over the tables and
//! volumes of the configuration, or over the demo tables when none is given. One log line per
//! request (tracing), Prometheus metrics at `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use insitu_adql::AdqlEngine;

use crate::cli::ServeArgs;
use crate::metrics::Metrics;
use crate::serve_config::ServeConfig;
use crate::tap::{self, AsyncRunner, TapState};
use crate::uws;

/// How long a stopping server waits for open connections.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (tests calling run twice) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let config = ServeConfig::resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Deeply nested queries recurse in DataFusion's planner.
        .thread_stack_size(16 << 20)
        .build()
        .context("cannot start the server runtime")?;
    let result = runtime.block_on(serve(config));
    // Jobs still running are re-queued at the next start: do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// Opens the tables and the job store, then serves until Ctrl-C or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let (router, tables) = app(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        "insitu {} serving {} table(s){} on http://{address}/tap (state in {}, cache in {})",
        env!("CARGO_PKG_VERSION"),
        tables,
        if config.demo { " (demo)" } else { "" },
        config.state_dir.display(),
        config.cache_dir.display()
    );
    // On SIGTERM/Ctrl-C stop accepting, let requests in flight finish, but do not wait on
    // idle keep-alive connections for more than SHUTDOWN_GRACE.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("stopping: finishing requests in flight");
        signalled.notify_one();
    });
    tokio::select! {
        result = server => result.context("the server stopped")?,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!(
            "connections still open {} s after the stop signal: closing them",
            SHUTDOWN_GRACE.as_secs()
        ),
    }
    tracing::info!("insitu stopped");
    Ok(())
}

/// The whole service as a router (tests call it without binding a port), and how many
/// tables it serves.
pub async fn app(config: &ServeConfig) -> anyhow::Result<(Router, usize)> {
    let engine = AdqlEngine::new().with_index_cache(config.cache_dir.join("index"));
    let tables = if config.demo {
        crate::demo_tables::ensure(&config.cache_dir)?
    } else {
        config.tables.clone()
    };
    for (name, path) in &tables {
        engine
            .register(name, path)
            .await
            .with_context(|| format!("table {name} ({})", path.display()))?;
    }
    // Header scans read files (in parallel): keep them off the async runtime.
    let (mounts, demo, cache) = (
        config.volumes.clone(),
        config.demo,
        config.cache_dir.clone(),
    );
    let volumes =
        tokio::task::spawn_blocking(move || crate::volumes::open_all(&mounts, demo, &cache))
            .await
            .context("the volume scan stopped")??;
    let volume_tables =
        crate::volumes::register_tables(&engine, &volumes, config.tap.base_url.as_deref())?;
    let tiles = Arc::new(crate::volumes::Tiles::new(volumes));
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(TapState {
        engine,
        config: config.tap.clone(),
        metrics: metrics.clone(),
    });
    let jobs = open_jobs(
        config,
        "tap-jobs",
        Arc::new(AsyncRunner {
            state: state.clone(),
        }),
    )?;
    let bulk_jobs = open_jobs(
        config,
        "cutout-jobs",
        Arc::new(crate::bulk_jobs::BulkRunner {
            tiles: tiles.clone(),
        }),
    )?;
    let soda_jobs = open_jobs(
        config,
        "soda-jobs",
        Arc::new(crate::soda::AsyncRunner {
            tiles: tiles.clone(),
        }),
    )?;
    let soda = Arc::new(crate::soda::SodaState {
        tiles: tiles.clone(),
        base_url: config.tap.base_url.clone(),
    });
    let mut router = Router::new()
        .route("/", get(index))
        .route("/metrics", get(render_metrics))
        .with_state(metrics.clone())
        .merge(tap::routes(state, jobs))
        .merge(crate::volumes::routes(tiles.volumes()))
        .merge(crate::cutout_service::routes(tiles.clone()))
        .merge(crate::bulk_jobs::routes(bulk_jobs))
        .merge(crate::soda::routes(soda, soda_jobs))
        .merge(crate::tensors::routes(Arc::new(
            crate::tensors::TensorState::new(tiles.clone()),
        )));
    if let Some(file) = &config.launcher {
        let launcher = insitu_launcher::Launcher::open(insitu_launcher::LauncherConfig::new(
            file.clone(),
            config.state_dir.join("launcher"),
            config.volumes.clone(),
            // Other users' jobs and the instances' secrets: datalabs do not see them.
            vec![config.state_dir.clone(), config.cache_dir.clone()],
        ))
        .await
        .context("cannot start the datalab launcher")?;
        router = router.merge(insitu_launcher::api::routes(launcher));
    }
    let router = router.layer(middleware::from_fn_with_state(metrics, log_request));
    Ok((router, tables.len() + volume_tables))
}

/// A UWS job store in `<state_dir>/<folder>`, with the async limits of the configuration.
fn open_jobs(
    config: &ServeConfig,
    folder: &str,
    runner: Arc<dyn uws::Runner>,
) -> anyhow::Result<Arc<uws::Jobs>> {
    let dir = config.state_dir.join(folder);
    uws::Jobs::open(
        uws::UwsConfig {
            dir: dir.clone(),
            workers: config.async_workers,
            default_execution_duration: config.tap.async_timeout.as_secs(),
            max_execution_duration: config.tap.async_timeout_max.as_secs(),
            default_destruction: config.tap.retention,
        },
        runner,
    )
    .with_context(|| format!("cannot open the job store in {}", dir.display()))
}

/// One log line and one metrics count per request, and the `Server` header.
async fn log_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().path().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::SERVER,
        header::HeaderValue::from_static(concat!("insitu/", env!("CARGO_PKG_VERSION"))),
    );
    let status = response.status().as_u16();
    metrics.request(&route, status);
    tracing::info!(
        "{method} {uri} {status} {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    response
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "insitu: bring your questions to the data\n\n\
         /tap            IVOA TAP 1.1 (sync, async, capabilities, availability, tables)\n\
         /volumes        the mounted volumes (tile index: <volume>.mosaic_product, ivoa.obscore)\n\
         /cutout         ?ra=&dec=&size=&band=[&format=png|jpeg]: cutouts stitched across tiles\n\
         /cutout/async   bulk cutout jobs (UWS): a catalogue in, tar/zip/FITS/npy out\n\
         /soda           IVOA SODA 1.0 (sync, async, capabilities) on dataset ids\n\
         /datalink/links IVOA DataLink 1.1 for dataset ids (ivoa.obscore obs_publisher_did)\n\
         /tensors        ML-ready [N, C, H, W] tensors of catalogue positions\n\
         /launcher       datalabs (with a [launcher] configuration): /datalabs, /instances,\n\
         \x20               /workspaces, /user/NAME/INSTANCE/ (the proxy)\n\
         /metrics        Prometheus metrics\n",
    )
        .into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
