//! Everything a request handler needs, opened once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::burst::Burst;
use crate::commands::{Context, Ctx};
use crate::config::Config;
use crate::error::Error;
use crate::events::Bus;
use crate::pipeline::{Env, Runtime};
use crate::receive::Receiver;
use crate::receive::limits::Limits;
use crate::store::{Store, StoreConfig, StoreError};
use crate::stream::Streams;

/// The daemon, wired: each part gets only what it uses, and this is where they meet.
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    /// What command handlers are given; pipelines call commands through it too.
    pub commands: Ctx,
    /// What `webhook.receive` uses.
    pub receiver: Receiver,
    /// The event stream's sessions.
    pub streams: Arc<Streams>,
    /// Where the generated admin token is, when there is one.
    pub admin_token_file: Option<PathBuf>,
    /// Cancelled when the daemon stops; long-lived tasks (stream sessions) watch it.
    pub shutdown: CancellationToken,
    /// The Prometheus recorder, when `[metrics] enabled`.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
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
        let config = Arc::new(config);
        let shutdown = CancellationToken::new();
        let registry = Arc::new(crate::commands::registry());
        // `nice = 0` asks for runs that compete equally with receiving: no stepping aside.
        let burst = Burst::new(if config.pipeline.nice == 0 {
            0
        } else {
            BURST_RECEIVES
        });
        let pipelines = Arc::new(
            Runtime::load(
                store.clone(),
                &*registry,
                config.pipeline.clone(),
                burst.clone(),
                crate::pipeline::process::Groups::open(config.data_dir.join("programs")),
                shutdown.clone(),
            )
            .await
            .map_err(|cause| OpenError::Store {
                dir: config.data_dir.clone(),
                cause,
            })?,
        );
        let deliverer = Arc::new(
            crate::deliver::Deliverer::new(&config, store.clone()).map_err(OpenError::Deliver)?,
        );
        let metrics = if config.metrics.enabled {
            crate::metrics::Metrics::install().map(Arc::new)
        } else {
            None
        };
        let limits = Arc::new(Limits::default());
        let commands: Ctx = Arc::new(Context {
            store: store.clone(),
            bus: bus.clone(),
            config: config.clone(),
            deliverer: deliverer.clone(),
            pipelines: pipelines.clone(),
            limits: limits.clone(),
            burst: burst.clone(),
            registry,
        });
        let receiver = Receiver {
            store: store.clone(),
            config: config.clone(),
            limits,
            burst: burst.clone(),
            metrics: metrics.clone(),
        };
        let streams = Arc::new(Streams::new(
            store.clone(),
            bus,
            config.events.max_clients,
            shutdown.clone(),
        ));
        let env = Env {
            runtime: pipelines,
            commands: Arc::new(commands.clone()),
        };
        crate::pipeline::dispatch::start(&env)
            .await
            .map_err(|cause| OpenError::Store {
                dir: config.data_dir.clone(),
                cause,
            })?;
        tokio::spawn(crate::deliver::run(deliverer, shutdown.clone()));
        // One pass before serving, so `?since=` already sees a log within the limits.
        crate::prune::events_once(&store, &config.events).await;
        tokio::spawn(crate::prune::run(
            store.clone(),
            burst,
            config.clone(),
            shutdown.clone(),
        ));
        Ok(Arc::new(App {
            metrics,
            metrics_listener: std::sync::Mutex::new(metrics_listener),
            commands,
            receiver,
            streams,
            config,
            store,
            admin_token_file,
            shutdown,
        }))
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
