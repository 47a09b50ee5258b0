//! Accepting connections: a connection cap, HTTP/1.1 (with upgrades) and HTTP/2, timeouts, and
//! graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::{App, OpenError};
use crate::coarse_timer::CoarseTimer;
use crate::config::Config;

/// How long open connections get to finish when the daemon stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;

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
    run(listener, app, shutdown).await;
    Ok(())
}

/// Serves an opened app on `listener` until `shutdown` completes, then drains connections and
/// lets the store commit what is queued.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let max = app.config.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let stopping = app.shutdown.clone();
    let mut backoff = Duration::from_millis(5);
    let header_timer = CoarseTimer::start();
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
        let app = app.clone();
        let stopping = stopping.clone();
        let header_timer = header_timer.clone();
        tokio::spawn(async move {
            connection(app, stream, remote, stopping, header_timer).await;
            drop(permit);
        });
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
    app.store.shutdown().await;
}

async fn connection(
    app: Arc<App>,
    stream: TcpStream,
    remote: SocketAddr,
    stopping: CancellationToken,
    header_timer: CoarseTimer,
) {
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
    let io = TokioIo::new(stream);
    // On shutdown, a connection finishes its current request and closes instead of idling on.
    let result = if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(128)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = b.serve_connection(io, svc);
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
        b.timer(header_timer)
            .header_read_timeout(timeout)
            .max_buf_size(MAX_HEAD);
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
