//! Keeping the store within its limits: the event log within `[events] maxCount`/`maxAge`,
//! everything else within `[retention]`, every `[retention] interval` and on `store.prune`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::burst::Burst;
use crate::config::{Config, EventsConfig};
use crate::store::retention::Pruned;
use crate::store::{Store, StoreError};

/// Prunes now and then every `[retention] interval` until `shutdown`.
pub async fn run(
    store: Store,
    burst: Arc<Burst>,
    config: Arc<Config>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.retention.interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                events_once(&store, &config.events).await;
                retained_once(&store, &burst).await;
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Share of the writer's time a large prune takes while requests are being received: after a
/// chunk that took `d`, it waits `PRUNE_PAUSE * d`. Back to back, chunks halved the receive rate
/// of a concurrent load; at one in five it is within docs/BENCHMARKS.md's 0.8x (issue 22). With
/// nothing being received, chunks follow each other at once.
const PRUNE_PAUSE: u32 = 4;

/// Prunes by retention chunk by chunk, stepping aside for receives (see [`PRUNE_PAUSE`]).
pub async fn paced(
    store: &Store,
    burst: &Arc<Burst>,
    grace: Duration,
) -> Result<Pruned, StoreError> {
    let burst = burst.clone();
    crate::store::prune_all(&**store, grace, move |took| {
        if burst.receiving() > 0 {
            took * PRUNE_PAUSE
        } else {
            Duration::ZERO
        }
    })
    .await
}

/// One pass of retention, chunk by chunk (each a short writer operation between captures).
async fn retained_once(store: &Store, burst: &Arc<Burst>) {
    let grace = Duration::from_millis(crate::store::retention::GRACE_MS as u64);
    match paced(store, burst, grace).await {
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
pub async fn events_once(store: &Store, limits: &EventsConfig) {
    if let Err(e) = events_now(store, limits).await {
        tracing::warn!("pruning the event log failed: {e}");
    }
}

/// Prunes the event log in chunks until nothing more is due; returns how many events went.
pub async fn events_now(store: &Store, limits: &EventsConfig) -> Result<u64, StoreError> {
    let max_age = limits.max_age.as_millis() as i64;
    let mut total = 0;
    loop {
        let before = crate::clock::now_ms() - max_age;
        let n = store.prune_events(limits.max_count, before).await?;
        total += n as u64;
        // A full chunk: more may be due; let other writes in between.
        if n < crate::store::PRUNE_CHUNK {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}
