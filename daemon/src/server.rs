//! Accepting connections: a connection cap, the threads that serve them, HTTP/1.1 (with
//! upgrades) and HTTP/2, timeouts, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::app::{App, OpenError};
use crate::coarse_timer::CoarseTimer;
use crate::config::Config;

/// How long open connections get to finish when the daemon stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's buffer: a whole head passed by the guard, and the first read of its body.
const HYPER_BUFFER: usize = crate::framing::MAX_HEAD + 32 * 1024;

/// Opens the store and serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OpenError> {
    let bound = listener.local_addr().map_err(|e| OpenError::Store {
        dir: config.data_dir.clone(),
        cause: e.into(),
    })?;
    let app = App::open(config, bound).await?;
    run(listener, app, shutdown).await
}

/// Serves an opened app on `listener` until `shutdown` completes, then drains connections and
/// lets the store commit what is queued. Fails only if the connection threads cannot start.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), OpenError> {
    let metrics_listener = crate::locks::lock(&app.metrics_listener).take();
    if let Some(l) = metrics_listener {
        match TcpListener::from_std(l) {
            Ok(l) => drop(tokio::spawn(serve_metrics(l, app.clone()))),
            Err(e) => tracing::error!("the metrics listener cannot serve: {e}"),
        }
    }
    let max = app.config.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let stopping = app.shutdown.clone();
    let mut backoff = Duration::from_millis(5);
    let header_timer = CoarseTimer::start();
    let mut lanes = match Lanes::start(app.config.threads, &app, &header_timer) {
        Ok(l) => l,
        Err(e) => {
            app.store.shutdown().await;
            return Err(OpenError::Threads(e));
        }
    };
    tokio::pin!(shutdown);
    loop {
        // The permit is taken before accepting, so at the cap new clients wait in the backlog
        // instead of being accepted and starved.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => {
                    backoff = Duration::from_millis(5);
                    conn
                }
                Err(e) => {
                    // Typically EMFILE: back off rather than spin.
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        lanes.hand(stream, remote, permit);
    }
    drop(listener);
    stopping.cancel();
    // Every connection holds a permit until it ends, so holding them all means all have ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    // The store first: event streams, which hold no permit, get the time it takes to send
    // their close frames before their lanes end.
    app.store.shutdown().await;
    lanes.stop().await;
    Ok(())
}

/// The `[metrics] listen` address: `/metrics`, `/healthz` and `/readyz` without a token, for a
/// Prometheus on the same host or network. A handful of connections at most, so no lanes.
async fn serve_metrics(listener: TcpListener, app: Arc<App>) {
    let stopping = app.shutdown.clone();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopping.cancelled() => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let r = match req.uri().path() {
                        "/metrics" => crate::http::metrics_response(&app).await,
                        "/healthz" => Ok(crate::http::body::json_response(
                            http::StatusCode::OK,
                            &serde_json::json!({"status": "ok"}),
                        )),
                        "/readyz" => app.store.health().await.map_err(Into::into).map(|()| {
                            crate::http::body::json_response(
                                http::StatusCode::OK,
                                &serde_json::json!({"status": "ok"}),
                            )
                        }),
                        p => Err(crate::error::Error::NotFound(format!(
                            "nothing at {p}; this address serves /metrics, /healthz and /readyz"
                        ))),
                    };
                    Ok::<_, Infallible>(r.unwrap_or_else(|e| crate::http::error::response(&e)))
                }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// An accepted connection on its way to a lane, with what it holds until it closes.
struct Accepted {
    stream: std::net::TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    counted: Counted,
}

/// Threads that each serve their connections on a single-threaded runtime. A connection stays
/// on one thread from accept to close, so a request's wake-ups (the writer's answer, the
/// socket) wake that thread only, where work stealing woke a second worker to look for work:
/// 6-9 % more receives per second on two cores (docs/BENCHMARKS.md, target 1).
struct Lanes {
    lanes: Vec<Lane>,
    next: usize,
}

struct Lane {
    tx: mpsc::UnboundedSender<Accepted>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// One connection in its lane's count, until dropped (also when the connection's task panics).
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Counted {
        open.fetch_add(1, Ordering::Relaxed);
        Counted(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lanes {
    fn start(count: usize, app: &Arc<App>, header_timer: &CoarseTimer) -> std::io::Result<Lanes> {
        let count = count.max(1);
        let mut lanes = Vec::with_capacity(count);
        for i in 0..count {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
            let (app, header_timer) = (app.clone(), header_timer.clone());
            let thread = std::thread::Builder::new()
                .name(format!("hookd-http-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        while let Some(a) = rx.recv().await {
                            let (app, header_timer) = (app.clone(), header_timer.clone());
                            tokio::spawn(async move {
                                let remote = a.remote;
                                match TcpStream::from_std(a.stream) {
                                    Ok(stream) => {
                                        connection(app, stream, remote, header_timer).await
                                    }
                                    Err(e) => tracing::warn!(
                                        "cannot serve the connection from {remote}: {e}"
                                    ),
                                }
                                drop((a.permit, a.counted));
                            });
                        }
                    });
                })?;
            lanes.push(Lane {
                tx,
                open: Arc::new(AtomicUsize::new(0)),
                thread,
            });
        }
        Ok(Lanes { lanes, next: 0 })
    }

    /// Gives the connection to the lane with the fewest open, starting the search one lane on
    /// from the last choice so that ties rotate.
    fn hand(&mut self, stream: TcpStream, remote: SocketAddr, permit: OwnedSemaphorePermit) {
        self.next = (self.next + 1) % self.lanes.len();
        let open: Vec<usize> = self
            .lanes
            .iter()
            .map(|l| l.open.load(Ordering::Relaxed))
            .collect();
        let lane = &self.lanes[least_open(&open, self.next)];
        match stream.into_std() {
            Ok(stream) => {
                let _ = lane.tx.send(Accepted {
                    stream,
                    remote,
                    permit,
                    counted: Counted::new(&lane.open),
                });
            }
            Err(e) => tracing::warn!("cannot hand over the connection from {remote}: {e}"),
        }
    }

    /// Ends the lanes; what they still serve (connections past the drain, event streams) is
    /// closed.
    async fn stop(self) {
        for lane in self.lanes {
            drop(lane.tx);
            let _ = tokio::task::spawn_blocking(move || lane.thread.join()).await;
        }
    }
}

/// The lane with the fewest open connections; among equals, the first from `start` on.
fn least_open(open: &[usize], start: usize) -> usize {
    let n = open.len();
    (0..n)
        .map(|k| (start + k) % n)
        .min_by_key(|&i| open[i])
        .unwrap_or(0)
}

async fn connection(
    app: Arc<App>,
    stream: TcpStream,
    remote: SocketAddr,
    header_timer: CoarseTimer,
) {
    let stopping = app.shutdown.clone();
    let _ = stream.set_nodelay(true);
    let timeout = app.config.header_read_timeout;
    // hyper's own header timeout does not cover protocol detection, so a client that connects
    // and sends nothing is cut off here.
    let mut first = [0u8; 4];
    let h2 = match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => n == 4 && &first == b"PRI ",
        _ => return,
    };
    let svc = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(crate::http::handle(app, req, remote).await) }
    });
    // On shutdown, a connection finishes its current request and closes instead of idling on.
    let result = if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(128)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = b.serve_connection(TokioIo::new(stream), svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            () = stopping.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        // The header timeout is armed once per request: tokio's timer would cost a syscall each.
        // A refused head ends what hyper reads; half-close lets it still answer the requests
        // before it (the guard's refusal follows them).
        b.timer(header_timer)
            .header_read_timeout(timeout)
            .half_close(true)
            .max_buf_size(HYPER_BUFFER);
        let io = TokioIo::new(crate::framing::Guarded::new(stream));
        let conn = b.serve_connection(io, svc).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            () = stopping.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection from {remote} ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::least_open;

    #[test]
    fn a_connection_goes_to_the_least_busy_lane_and_ties_rotate() {
        assert_eq!(least_open(&[3, 1, 2], 0), 1);
        assert_eq!(least_open(&[0, 0], 0), 0);
        assert_eq!(least_open(&[0, 0], 1), 1);
        assert_eq!(
            least_open(&[2, 5, 2], 1),
            2,
            "the first equal from the start on"
        );
        assert_eq!(least_open(&[7], 0), 0);
    }

    /// The embedding entry point: bind 127.0.0.1:0, serve, answer, stop when told, and leave the
    /// store closed (a second `serve` on the same data dir may start at once).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_answers_on_an_ephemeral_port_and_stops_when_told() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..2 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let mut config = crate::config::Config::with_data_dir(dir.path());
            config.threads = 1;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(super::serve(listener, config, async {
                let _ = stopped.await;
            }));
            let mut answer = String::new();
            for _ in 0..200 {
                if let Ok(mut c) = tokio::net::TcpStream::connect(addr).await {
                    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                        .await
                        .expect("write");
                    c.read_to_string(&mut answer).await.expect("read");
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            let _ = stop.send(());
            server.await.expect("task").expect("served");
        }
    }
}
