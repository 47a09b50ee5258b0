//! Everything a request handler needs, opened once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::commands::Registry;
use crate::config::Config;
use crate::error::Error;
use crate::events::Bus;
use crate::store::{Store, StoreConfig, StoreError};

/// The daemon's shared state.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub bus: Bus,
    pub registry: Registry,
    /// Where the generated admin token is, when there is one.
    pub admin_token_file: Option<PathBuf>,
    /// Cancelled when the daemon stops; long-lived tasks (stream sessions) watch it.
    pub shutdown: CancellationToken,
    /// One permit per event stream client.
    pub stream_permits: Arc<Semaphore>,
    /// Compiled pipelines and their listeners.
    pub pipelines: crate::pipeline::Runtime,
    /// Outgoing webhooks.
    pub deliverer: crate::deliver::Deliverer,
    /// Rate limits of the receive path.
    pub limits: crate::receive::limits::Limits,
    /// Whether a burst is being received (pipeline runs step aside).
    pub burst: Arc<crate::receive::burst::Burst>,
    /// One permit per program `exec` runs at once (`[pipeline] programs`).
    pub programs: Semaphore,
    /// The Prometheus recorder, when `[metrics] enabled`.
    pub metrics: Option<crate::metrics::Metrics>,
    /// `[metrics] listen`, bound at start-up (so a busy port fails the start) until served.
    pub metrics_listener: std::sync::Mutex<Option<std::net::TcpListener>>,
}

/// Concurrent receives that make a burst. A steady 1,000 requests/s at 2 ms each is ~2 at once;
/// 8 or more means senders are queueing on the writer, which each run's two writes slow down.
const BURST_RECEIVES: usize = 8;

/// Start-up failures.
#[derive(thiserror::Error, Debug)]
pub enum OpenError {
    // Not named `source`: that would make it the error's cause too, and `{:#}` would print the
    // message twice.
    #[error("cannot open the store in {dir}: {cause}")]
    Store { dir: PathBuf, cause: StoreError },
    #[error("cannot set up the admin token: {0}")]
    Auth(Error),
    #[error("cannot set up outgoing webhooks: {0}")]
    Deliver(String),
    #[error("cannot start the threads that serve connections: {0}")]
    Threads(std::io::Error),
    #[error("{0}")]
    Metrics(String),
}

impl App {
    /// Opens the store in the data dir and sets up the bootstrap admin token. `bound` is the
    /// address actually listened on, for the default public URL.
    pub async fn open(config: Config, bound: SocketAddr) -> Result<Arc<App>, OpenError> {
        let metrics_listener = match config.metrics.listen.filter(|_| config.metrics.enabled) {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|e| {
                        OpenError::Metrics(format!(
                            "cannot listen on {addr} ([metrics] listen): {e}"
                        ))
                    })?;
                if let Ok(a) = l.local_addr() {
                    tracing::info!("metrics on http://{a}/metrics");
                }
                Some(l)
            }
            None => None,
        };
        let bus = Bus::default();
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url(bound));
        let store_cfg = StoreConfig {
            url: config.storage.clone(),
            synchronous: config.synchronous,
            public_url,
            bus: bus.clone(),
            retention: config.retention.clone(),
        };
        let dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || crate::store::open(store_cfg))
            .await
            .map_err(|e| OpenError::Store {
                dir: dir.clone(),
                cause: StoreError::Commit(e.to_string()),
            })?
            .map_err(|cause| OpenError::Store { dir, cause })?;
        let admin_token_file =
            crate::auth::bootstrap(&store, &config.data_dir, config.admin_token.as_deref())
                .await
                .map_err(OpenError::Auth)?;
        let registry = Registry::default();
        let pipelines = crate::pipeline::Runtime::load(&store, &registry)
            .await
            .map_err(|cause| OpenError::Store {
                dir: config.data_dir.clone(),
                cause,
            })?;
        let deliverer = crate::deliver::Deliverer::new(&config).map_err(OpenError::Deliver)?;
        let metrics = if config.metrics.enabled {
            crate::metrics::Metrics::install()
        } else {
            None
        };
        let app = Arc::new(App {
            metrics,
            metrics_listener: std::sync::Mutex::new(metrics_listener),
            limits: crate::receive::limits::Limits::default(),
            // `nice = 0` asks for runs that compete equally with receiving: no stepping aside.
            burst: crate::receive::burst::Burst::new(if config.pipeline.nice == 0 {
                0
            } else {
                BURST_RECEIVES
            }),
            deliverer,
            stream_permits: Arc::new(Semaphore::new(config.events.max_clients)),
            programs: Semaphore::new(config.pipeline.programs),
            config,
            store,
            bus,
            registry,
            admin_token_file,
            shutdown: CancellationToken::new(),
            pipelines,
        });
        crate::pipeline::dispatch::start(&app)
            .await
            .map_err(|cause| OpenError::Store {
                dir: app.config.data_dir.clone(),
                cause,
            })?;
        tokio::spawn(crate::deliver::run(app.clone()));
        // One pass before serving, so `?since=` already sees a log within the limits.
        prune_once(&app).await;
        tokio::spawn(prune_events(app.clone()));
        Ok(app)
    }
}

/// Keeps the event log within `[events] maxCount` and `maxAge`, and everything else within
/// `[retention]`, every `[retention] interval`.
async fn prune_events(app: Arc<App>) {
    let mut tick = tokio::time::interval(app.config.retention.interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                prune_once(&app).await;
                prune_retained(&app).await;
            }
            () = app.shutdown.cancelled() => return,
        }
    }
}

/// Share of the writer's time a large prune takes while requests are being received: after a
/// chunk that took `d`, it waits `PRUNE_PAUSE * d`. Back to back, chunks halved the receive rate
/// of a concurrent load; at one in five it is within docs/BENCHMARKS.md's 0.8x (issue 22). With
/// nothing being received, chunks follow each other at once.
const PRUNE_PAUSE: u32 = 4;

/// Prunes by retention chunk by chunk, stepping aside for receives (see [`PRUNE_PAUSE`]).
pub async fn prune_paced(
    app: &App,
    grace: std::time::Duration,
) -> Result<crate::store::retention::Pruned, StoreError> {
    let burst = app.burst.clone();
    crate::store::prune_all(&*app.store, grace, move |took| {
        if burst.receiving() > 0 {
            took * PRUNE_PAUSE
        } else {
            std::time::Duration::ZERO
        }
    })
    .await
}

/// One pass of retention, chunk by chunk (each a short writer operation between captures).
async fn prune_retained(app: &App) {
    let grace = std::time::Duration::from_millis(crate::store::retention::GRACE_MS as u64);
    match prune_paced(app, grace).await {
        Ok(p) if p.messages + p.executions + p.deliveries > 0 => {
            for (kind, n) in [
                ("messages", p.messages),
                ("executions", p.executions),
                ("deliveries", p.deliveries),
            ] {
                metrics::counter!(crate::metrics::PRUNED, "kind" => kind).increment(n);
            }
            tracing::info!(
                messages = p.messages,
                bytes = p.message_bytes,
                executions = p.executions,
                deliveries = p.deliveries,
                "pruned by retention"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("pruning by retention failed: {e}"),
    }
}

/// Prunes the event log in chunks until nothing more is due (logging a failure).
async fn prune_once(app: &App) {
    if let Err(e) = prune_events_now(app).await {
        tracing::warn!("pruning the event log failed: {e}");
    }
}

/// Prunes the event log in chunks until nothing more is due; returns how many events went.
pub async fn prune_events_now(app: &App) -> Result<u64, StoreError> {
    let max_age = app.config.events.max_age.as_millis() as i64;
    let mut total = 0;
    loop {
        let before = crate::clock::now_ms() - max_age;
        let n = app
            .store
            .prune_events(app.config.events.max_count, before)
            .await?;
        total += n as u64;
        // A full chunk: more may be due; let other writes in between.
        if n < crate::store::PRUNE_CHUNK {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// `http://<bound address>`, with a wildcard address replaced by loopback.
fn default_public_url(bound: SocketAddr) -> String {
    let mut addr = bound;
    if addr.ip().is_unspecified() {
        tracing::warn!(
            "listening on {bound} without --public-url: webhook URLs will say localhost; \
             set --public-url to the address senders use"
        );
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}
