//! The writer thread: the only place that writes to SQLite.
//!
//! It takes the first queued operation, drains whatever else is queued (up to `MAX_BATCH`),
//! puts each webhook's captures together, applies each management operation in its own
//! savepoint (so one bad operation does not sink the others) inside one transaction, and
//! commits once. Only after the commit does it update the in-memory caches,
//! move body files into place, publish events and answer the waiters. Concurrent receivers
//! therefore share one fsync instead of queueing one each.

use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Wrap;
use super::event_log::MessageSeqs;
use super::messages::{self};
use super::op::{Applied, Effect, Job, Op, Outcome};
use super::segments::Segments;
use super::tokens::{self};
use super::webhooks::{self};
use super::{Shared, StoreError};
use super::{deliveries, pipelines};

/// Most operations in one transaction; bounds the latency a large batch adds.
const MAX_BATCH: usize = 512;
/// Rows of each kind one prune operation deletes at most, so a batch it shares with captures
/// stays short.
const PRUNE_CHUNK: usize = 1000;

/// The writer loop; returns its connection when the channel closes or a `Shutdown` is committed.
pub(crate) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    wrap: &Wrap,
    mut segments: Segments,
) -> Connection {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        // Between two transactions: the only moment the WAL can be started over.
        wrap.before_batch(&conn);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let stop = batch.iter().any(|j| matches!(j.op, Op::Shutdown));
        commit_batch(&mut conn, &mut batch, &shared, &mut segments);
        if stop {
            rx.close();
            // Answer whatever raced in behind the shutdown instead of leaving it hanging.
            while let Ok(job) = rx.try_recv() {
                shared.dirs.discard(job.op.body_file().as_deref());
                let _ = job.reply.send(Err(StoreError::Closed));
            }
            break;
        }
    }
    conn
}

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<Job>,
    shared: &Shared,
    segments: &mut Segments,
) {
    if mixes_webhooks(batch) {
        // Only this thread writes spans, so the newest one cannot change before the transaction.
        match super::spans::newest_webhook(conn) {
            Ok(newest) => group_by_webhook(batch, newest.as_deref()),
            Err(e) => tracing::debug!("batch left in arrival order: {e}"),
        }
    }
    let mut results = Vec::with_capacity(batch.len());
    metrics::histogram!(crate::metrics::WRITER_BATCH).record(batch.len() as f64);
    let started = std::time::Instant::now();
    let mut pending = std::mem::take(batch).into_iter();
    let applied = apply_batch(conn, &mut pending, &mut results, shared, segments);
    metrics::histogram!(crate::metrics::WRITER_COMMIT_SECONDS)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = applied {
        tracing::error!(
            "commit failed, {} operations not stored: {e}",
            results.len() + pending.len()
        );
        let msg = e.to_string();
        let unapplied = pending.map(|job| (job.op.body_file(), job.reply));
        let applied = results.into_iter().map(|(reply, _, file)| (file, reply));
        for (file, reply) in applied.chain(unapplied) {
            shared.dirs.discard(file.as_deref());
            let _ = reply.send(Err(StoreError::Commit(msg.clone())));
        }
        return;
    }
    let mut promote = Vec::new();
    for (_, r, _) in &mut results {
        if let Ok(applied) = r {
            for effect in applied.effects.drain(..) {
                match effect {
                    Effect::CacheWebhook(w) => {
                        crate::locks::write(&shared.webhooks).insert(w.uuid.clone(), w);
                    }
                    Effect::UncacheWebhook(uuid) => {
                        crate::locks::write(&shared.webhooks).remove(&uuid);
                    }
                    Effect::CacheToken(t) => {
                        crate::locks::write(&shared.tokens).insert(t.hash, t.auth());
                    }
                    Effect::UncacheToken(hash) => {
                        crate::locks::write(&shared.tokens).remove(&hash);
                    }
                    Effect::CacheListener(name, pattern) => {
                        let mut listeners = crate::locks::write(&shared.listeners);
                        match pattern {
                            Some(p) => listeners.insert(name, p),
                            None => listeners.remove(&name),
                        };
                    }
                    Effect::PromoteFile(id) => promote.push(id),
                    Effect::DiscardFile(id) => shared.dirs.discard(Some(&id)),
                }
            }
        }
    }
    if let Err(e) = shared.dirs.promote(&promote) {
        // The rows are committed; start-up recovery finishes the move.
        tracing::error!("moving committed body files failed (recovered at next start): {e}");
    }
    for (reply, r, _) in results {
        let r = r.map(|applied| {
            for event in applied.events {
                shared.bus.publish(event);
            }
            shared.enqueue_runs(applied.runs);
            applied.outcome
        });
        let _ = reply.send(r);
    }
}

/// Whether the batch holds captures of more than one webhook (else grouping changes nothing).
fn mixes_webhooks(batch: &[Job]) -> bool {
    let mut uuids = batch.iter().filter_map(|job| match &job.op {
        Op::Capture(c, _) => Some(c.webhook_uuid.as_str()),
        _ => None,
    });
    let first = uuids.next();
    uuids.any(|u| Some(u) != first)
}

/// Puts a batch's captures of one webhook next to each other, those of `newest` (the newest
/// span's webhook) first and the rest in order of first arrival, after the batch's other
/// operations; each webhook's own captures keep their order. Webhooks whose requests interleave
/// then add a span per webhook per commit instead of one per message (spans.rs). Nothing is lost
/// by the reordering: no operation in a batch was answered before another in it arrived, so
/// their order within it is not one any client saw.
fn group_by_webhook(batch: &mut Vec<Job>, newest: Option<&str>) {
    let mut webhooks: Vec<String> = newest.into_iter().map(String::from).collect();
    let mut ranked: Vec<(usize, Job)> = batch
        .drain(..)
        .map(|job| {
            let rank = match &job.op {
                Op::Capture(c, _) => match webhooks.iter().position(|w| *w == c.webhook_uuid) {
                    Some(i) => i + 1,
                    None => {
                        webhooks.push(c.webhook_uuid.clone());
                        webhooks.len()
                    }
                },
                _ => 0,
            };
            (rank, job)
        })
        .collect();
    // Stable: equal ranks keep their arrival order.
    ranked.sort_by_key(|(rank, _)| *rank);
    batch.extend(ranked.into_iter().map(|(_, job)| job));
}

/// Applies every job in one transaction and commits it. Captures run without a savepoint (they
/// only fail on I/O errors, which doom the whole transaction anyway): their failure aborts the
/// batch. Management operations get a savepoint each, so a refused one leaves the rest intact.
fn apply_batch(
    conn: &mut Connection,
    pending: &mut std::vec::IntoIter<Job>,
    results: &mut Vec<(Reply, Result<Applied, StoreError>, Option<String>)>,
    shared: &Shared,
    segments: &mut Segments,
) -> Result<(), StoreError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut stored = Vec::new();
    let mut seqs = MessageSeqs::default();
    for job in pending.by_ref() {
        let file = job.op.body_file();
        let (applied, fatal) = if matches!(job.op, Op::Capture(..)) {
            (apply(&tx, job.op, shared, segments, &mut seqs), true)
        } else if let Err(e) = seqs.flush(&tx) {
            // Outside the savepoint: a refused operation must not take the captures' seqs back.
            (Err(e), true)
        } else {
            let sp = tx.savepoint()?;
            let applied = match apply(&sp, job.op, shared, segments, &mut seqs) {
                Ok(a) => sp.commit().map(|()| a).map_err(StoreError::from),
                Err(e) => Err(e),
            };
            (applied, false)
        };
        let mut applied = match applied {
            Err(e) if fatal => {
                results.push((job.reply, Err(StoreError::Commit(e.to_string())), file));
                return Err(e);
            }
            applied => applied,
        };
        // Keep the file's name while it may still need deleting (if the commit fails).
        let file = match &mut applied {
            // Only the batch's bookkeeping below reads it: moved, not copied.
            Ok(a) => {
                stored.extend(a.stored.take());
                file
            }
            Err(_) => {
                shared.dirs.discard(file.as_deref());
                None
            }
        };
        results.push((job.reply, applied, file));
    }
    seqs.flush(&tx)?;
    messages::account(&tx, &stored)?;
    // Rows may point into the segments: their bytes reach the disk first.
    segments.sync()?;
    tx.commit()?;
    Ok(())
}

fn apply(
    conn: &Connection,
    op: Op,
    shared: &Shared,
    segments: &mut Segments,
    seqs: &mut MessageSeqs,
) -> Result<Applied, StoreError> {
    let now = crate::clock::now_ms();
    match op {
        Op::Capture(c, listeners) => messages::insert(conn, *c, listeners, now, segments, seqs),
        Op::PutWebhook(put) => webhooks::put(
            conn,
            *put,
            now,
            &shared.public_url,
            &shared.retention.messages,
        ),
        Op::DeleteWebhook(uuid) => webhooks::delete(
            conn,
            &uuid,
            now,
            &shared.public_url,
            &shared.retention.messages,
        ),
        Op::CreateToken(t) => tokens::insert(conn, t),
        Op::DeleteToken(id) => tokens::delete(conn, &id),
        Op::Ping => {
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('health', ?1)",
                [now.to_string()],
            )?;
            Ok(Applied::new(Outcome::Done))
        }
        Op::PruneEvents {
            max_count,
            before_ms,
        } => super::events::prune(conn, max_count, before_ms, crate::store::PRUNE_CHUNK as u32),
        Op::Prune { grace_ms } => super::retention::prune(
            conn,
            &shared.retention,
            &shared.dirs,
            now,
            PRUNE_CHUNK,
            // While a backup runs, nothing is freed: it may still copy those bodies.
            if shared.backups.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                i64::MAX / 2
            } else {
                grace_ms
            },
        ),
        Op::PutPipeline(row) => pipelines::put(conn, *row, now),
        Op::DeletePipeline(name) => pipelines::delete(conn, &name, now),
        Op::QueueExecutions { new, cursor } => pipelines::create(conn, new, cursor, now),
        Op::ForgetDispatchCursor => pipelines::forget_cursor(conn),
        Op::StartExecution(seq) => pipelines::start(conn, seq, now),
        Op::FinishExecution(f) => pipelines::finish(conn, *f, now),
        Op::CreateDelivery(d) => deliveries::create(conn, *d, now),
        Op::RecordAttempt(a) => deliveries::record_attempt(conn, *a, now),
        Op::RetryDelivery(seq) => deliveries::retry(conn, seq, now),
        Op::CancelDelivery(seq) => deliveries::cancel(conn, seq),
        Op::SetParts { seq, parts } => messages::set_parts(conn, seq, &parts),
        Op::Shutdown => Ok(Applied::new(Outcome::Done)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::messages::tests::capture_for;

    fn capture(uuid: &str, n: i64) -> Job {
        let mut c = capture_for(uuid);
        c.received_at = n;
        Job {
            op: Op::Capture(Box::new(c), None),
            reply: oneshot::channel().0,
        }
    }

    fn order(batch: &[Job]) -> Vec<String> {
        batch
            .iter()
            .map(|j| match &j.op {
                Op::Capture(c, _) => format!("{}{}", c.webhook_uuid, c.received_at),
                Op::Ping => "ping".into(),
                _ => "other".into(),
            })
            .collect()
    }

    #[test]
    fn a_batch_groups_each_webhooks_captures_in_their_order_newest_spans_first() {
        let ping = || Job {
            op: Op::Ping,
            reply: oneshot::channel().0,
        };
        let arrivals = || {
            vec![
                capture("b", 1),
                capture("c", 2),
                ping(),
                capture("a", 3),
                capture("b", 4),
                capture("a", 5),
                capture("c", 6),
                capture("b", 7),
            ]
        };
        assert!(mixes_webhooks(&arrivals()));
        assert!(!mixes_webhooks(&[capture("a", 1), ping(), capture("a", 2)]));
        assert!(!mixes_webhooks(&[ping()]));
        let mut batch = arrivals();
        group_by_webhook(&mut batch, Some("a"));
        assert_eq!(
            order(&batch),
            ["ping", "a3", "a5", "b1", "b4", "b7", "c2", "c6"]
        );
        let mut batch = arrivals();
        group_by_webhook(&mut batch, None);
        assert_eq!(
            order(&batch),
            ["ping", "b1", "b4", "b7", "c2", "c6", "a3", "a5"]
        );
        let mut batch = arrivals();
        group_by_webhook(&mut batch, Some("z"));
        assert_eq!(
            order(&batch)[1..],
            ["b1", "b4", "b7", "c2", "c6", "a3", "a5"]
        );
    }
}
