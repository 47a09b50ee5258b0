//! Pruning by retention, a chunk per writer operation so receives are never held up for long.
//!
//! Messages are pruned per webhook (the daemon's limits, or the webhook's override), oldest first,
//! walking the webhook's spans; executions and deliveries are pruned oldest first, always a prefix
//! of their table. What pruning never deletes: the newest message of all (its seq would be taken
//! again by the next capture, since message seqs are rowids), messages that a queued or running
//! execution or a pending delivery still needs, and executions and deliveries that are not
//! finished. A pruned body file or segment range is listed in `freed_bodies` and freed a grace
//! period later, by a later call, so a reader streaming it at that moment finishes reading.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::StoreError;
use super::files::Dirs;
use super::op::{Applied, Outcome};
use crate::retention::{self, Limits, RetentionConfig};
pub use crate::store::model::retention::*;

/// One chunk of pruning: at most `chunk` rows of each kind, and the bodies freed `grace_ms` or
/// longer ago.
pub(super) fn prune(
    conn: &Connection,
    cfg: &RetentionConfig,
    dirs: &Dirs,
    now: i64,
    chunk: usize,
    grace_ms: i64,
) -> Result<Applied, StoreError> {
    let mut p = Pruned::default();
    free_due(conn, dirs, now - grace_ms, chunk, &mut p)?;
    prune_messages(conn, &cfg.messages, now, chunk, &mut p)?;
    p.executions = prune_prefix(conn, &EXECUTIONS, &cfg.executions, now, chunk)?;
    p.deliveries = prune_prefix(conn, &DELIVERIES, &cfg.deliveries, now, chunk)?;
    p.more |= p.executions as usize >= chunk || p.deliveries as usize >= chunk;
    Ok(Applied::new(Outcome::Retained(p)))
}

/// Deletes body files and punches segment ranges of messages pruned before `before`.
fn free_due(
    conn: &Connection,
    dirs: &Dirs,
    before: i64,
    chunk: usize,
    p: &mut Pruned,
) -> Result<(), StoreError> {
    type Row = (i64, Option<String>, Option<i64>, Option<i64>, Option<i64>);
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT id, body_file, segment, offset, size FROM freed_bodies WHERE at <= ?1 \
             ORDER BY id LIMIT ?2",
        )?
        .query_map(params![before, chunk as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut ranges: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    for (_, file, segment, offset, size) in &rows {
        if let Some(id) = file {
            match std::fs::remove_file(dirs.files.join(id)) {
                Ok(()) => p.files_deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let (Some(seg), Some(at), Some(len)) = (segment, offset, size) {
            ranges
                .entry(*seg as u32)
                .or_default()
                .push((*at as u64, *len as u64));
        }
    }
    for (seg, mut r) in ranges {
        // Punching again what was punched before is harmless: a crash after this and before
        // the commit only repeats it.
        p.segment_bytes_freed += super::segments::punch(&dirs.segments, seg, &mut r)?;
    }
    let mut del = conn.prepare_cached("DELETE FROM freed_bodies WHERE id = ?1")?;
    for (id, ..) in rows {
        del.execute([id])?;
    }
    Ok(())
}

/// A webhook (or a deleted one whose messages are still stored) and its counters.
struct Group {
    uuid: String,
    retired: bool,
    limits: Limits,
    count: i64,
    bytes: i64,
}

fn groups(conn: &Connection, daemon: &Limits) -> Result<Vec<Group>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT uuid, retention, stored_count, stored_bytes, 0 FROM webhooks \
         UNION ALL SELECT uuid, retention, stored_count, stored_bytes, 1 FROM retired_webhooks",
    )?;
    let rows = st.query_map([], |r| {
        let over: Option<String> = r.get(1)?;
        let limits = over
            .as_deref()
            .and_then(retention::from_stored)
            .map_or(*daemon, |o| o.over(daemon));
        Ok(Group {
            uuid: r.get(0)?,
            limits,
            count: r.get(2)?,
            bytes: r.get(3)?,
            retired: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest message's seq: it stays, whatever the limits say.
fn newest_message(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT max(seq) FROM messages")?
        .query_row([], |r| r.get::<_, Option<i64>>(0))?)
}

fn prune_messages(
    conn: &Connection,
    daemon: &Limits,
    now: i64,
    chunk: usize,
    p: &mut Pruned,
) -> Result<(), StoreError> {
    let groups = groups(conn, daemon)?;
    if !groups.iter().any(|g| g.limits.any()) {
        return Ok(());
    }
    let Some(newest) = newest_message(conn)? else {
        return Ok(());
    };
    let mut budget = chunk;
    for g in groups {
        if budget == 0 {
            p.more = true;
            break;
        }
        let l = g.limits;
        let mut count_excess = l.max_count.map_or(0, |n| (g.count - n as i64).max(0));
        let mut bytes_excess = l.max_bytes.map_or(0, |n| (g.bytes - n as i64).max(0));
        let before = l.max_age.map(|a| now - a.as_millis() as i64);
        if count_excess == 0 && bytes_excess == 0 && before.is_none() {
            continue;
        }
        // The group's oldest messages, streamed; the walk stops at the first one kept by the
        // limits. Messages that a queued or running execution or a pending delivery still
        // needs are passed over (each subquery is evaluated once per statement).
        let mut st = conn.prepare_cached(
            "SELECT m.seq, m.received_at, m.size, m.body_file, m.body_segment, m.body_offset \
             FROM webhook_spans s CROSS JOIN messages m NOT INDEXED \
             ON m.seq BETWEEN s.first_seq AND s.last_seq \
             WHERE s.webhook_uuid = ?1 AND m.seq < ?2 \
             AND m.seq NOT IN (SELECT message_seq FROM executions \
                 WHERE status IN ('queued', 'running') AND message_seq IS NOT NULL) \
             AND m.seq NOT IN (SELECT message_seq FROM deliveries \
                 WHERE status = 'pending' AND message_seq IS NOT NULL) \
             ORDER BY s.first_seq, m.seq LIMIT ?3",
        )?;
        let mut rows = st.query(params![g.uuid, newest, budget as i64])?;
        let mut doomed = Vec::new();
        while let Some(r) = rows.next()? {
            let (seq, at, size): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let old = before.is_some_and(|b| at < b);
            if !(count_excess > 0 || bytes_excess > 0 || old) {
                break;
            }
            count_excess -= 1;
            bytes_excess -= size;
            let body: (Option<String>, Option<i64>, Option<i64>) =
                (r.get(3)?, r.get(4)?, r.get(5)?);
            doomed.push((seq, size, body));
        }
        drop(rows);
        drop(st);
        let Some(&(last, ..)) = doomed.last() else {
            continue;
        };
        budget -= doomed.len();
        let bytes: i64 = doomed.iter().map(|d| d.1).sum();
        let mut del = conn.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
        let mut free = conn.prepare_cached(
            "INSERT INTO freed_bodies (at, body_file, segment, offset, size) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (seq, size, (file, segment, offset)) in &doomed {
            del.execute([seq])?;
            if file.is_some() || segment.is_some() {
                free.execute(params![now, file, segment, offset, size])?;
            }
        }
        // Spans left empty go (one rowid probe each); one still holding a message that was
        // passed over stays, so every message keeps its span.
        conn.prepare_cached(
            "DELETE FROM webhook_spans WHERE webhook_uuid = ?1 AND last_seq <= ?2 AND NOT EXISTS \
             (SELECT 1 FROM messages m WHERE m.seq BETWEEN first_seq AND last_seq)",
        )?
        .execute(params![g.uuid, last])?;
        let n = doomed.len() as i64;
        if g.retired {
            conn.prepare_cached(
                "UPDATE retired_webhooks SET stored_count = stored_count - ?2, \
                 stored_bytes = stored_bytes - ?3 WHERE uuid = ?1",
            )?
            .execute(params![g.uuid, n, bytes])?;
            conn.prepare_cached(
                "DELETE FROM retired_webhooks WHERE uuid = ?1 AND stored_count <= 0",
            )?
            .execute([&g.uuid])?;
        } else {
            conn.prepare_cached(
                "UPDATE webhooks SET stored_count = max(stored_count - ?2, 0), \
                 stored_bytes = max(stored_bytes - ?3, 0) WHERE uuid = ?1",
            )?
            .execute(params![g.uuid, n, bytes])?;
        }
        p.messages += n as u64;
        p.message_bytes += bytes.max(0) as u64;
    }
    if budget == 0 {
        p.more = true;
    }
    Ok(())
}

/// A table pruned as a prefix of its seqs, and which of its rows must stay.
struct PrefixTable {
    table: &'static str,
    at: &'static str,
    /// Rows in these states are not finished: nothing from the first of them on is pruned.
    open: &'static str,
    /// Rows of other tables keyed by this one's seq, deleted with it.
    children: &'static [&'static str],
}

const EXECUTIONS: PrefixTable = PrefixTable {
    table: "executions",
    at: "created_at",
    open: "status IN ('queued', 'running')",
    children: &[],
};

const DELIVERIES: PrefixTable = PrefixTable {
    table: "deliveries",
    at: "created_at",
    open: "status = 'pending'",
    children: &["DELETE FROM delivery_attempts WHERE delivery_seq <= ?1"],
};

/// Deletes the oldest finished rows of `t` beyond `l`, up to `chunk`. Rows are only ever deleted
/// as a prefix, so the rows left are dense and their count is `max - min + 1`. The newest row is
/// kept, so its seq (part of its public id) is never taken again.
fn prune_prefix(
    conn: &Connection,
    t: &PrefixTable,
    l: &Limits,
    now: i64,
    chunk: usize,
) -> Result<u64, StoreError> {
    if !l.any() {
        return Ok(0);
    }
    let bounds: Option<(i64, i64)> = conn
        .prepare_cached(&format!("SELECT min(seq), max(seq) FROM {}", t.table))?
        .query_row([], |r| {
            Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
        })?;
    let Some((_, newest)) = bounds else {
        return Ok(0);
    };
    let open: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT min(seq) FROM {} WHERE {}",
            t.table, t.open
        ))?
        .query_row([], |r| r.get(0))?;
    let stop = open.map_or(newest, |o| o.min(newest));
    let by_count = l.max_count.map_or(i64::MIN, |n| newest - n as i64);
    let before = l.max_age.map(|a| now - a.as_millis() as i64);
    let mut st = conn.prepare_cached(&format!(
        "SELECT seq, {} FROM {} WHERE seq < ?1 ORDER BY seq LIMIT ?2",
        t.at, t.table
    ))?;
    let mut rows = st.query(params![stop, chunk as i64])?;
    let (mut last, mut n) = (None, 0u64);
    while let Some(r) = rows.next()? {
        let (seq, at): (i64, i64) = (r.get(0)?, r.get(1)?);
        if !(seq <= by_count || before.is_some_and(|b| at < b)) {
            break;
        }
        last = Some(seq);
        n += 1;
    }
    drop(rows);
    drop(st);
    let Some(last) = last else {
        return Ok(0);
    };
    conn.prepare_cached(&format!("DELETE FROM {} WHERE seq <= ?1", t.table))?
        .execute([last])?;
    for sql in t.children {
        conn.prepare_cached(sql)?.execute([last])?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::events::Bus;
    use crate::retention::Override;
    use crate::store::sqlite::SqliteStore as Store;
    use crate::store::sqlite::messages::{self, Capture, CapturedBody, ListFilter};
    use crate::store::{Captured, Storage, StoreConfig, WebhookPut};

    fn open(dir: &std::path::Path, retention: RetentionConfig) -> Store {
        Store::open(StoreConfig {
            url: crate::config::StorageUrl::Sqlite(dir.to_path_buf()),
            synchronous: crate::config::Synchronous::Normal,
            public_url: "http://h".into(),
            bus: Bus::default(),
            retention,
        })
        .expect("open")
    }

    async fn webhook(store: &Store, retention: Option<Override>) -> String {
        let (w, _) = store
            .put_webhook(WebhookPut {
                event_key: Some("a.b".into()),
                default_max_payload_length: 1 << 30,
                retention: Some(retention),
                ..WebhookPut::default()
            })
            .await
            .expect("put");
        w.uuid
    }

    /// A capture of `body`: inline up to 8 KiB, in a segment up to 64 KiB, else as a file
    /// written to `incoming/` as the receiver does.
    fn capture(store: &Store, uuid: &str, at: i64, body: Vec<u8>) -> Capture {
        let mut c = crate::store::sqlite::messages::tests::capture_for(uuid);
        c.received_at = at;
        c.size = body.len() as u64;
        c.body = if body.len() > 64 * 1024 {
            let id = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(store.dirs().incoming.join(&id), &body).expect("body file");
            CapturedBody::File(id)
        } else {
            CapturedBody::Inline(Bytes::from(body))
        };
        c
    }

    async fn stored(store: &Store, c: Capture) -> String {
        match store.capture(c).await.expect("capture") {
            Captured::Stored(s) => s.id.clone(),
            Captured::Duplicate(_) => panic!("stored"),
        }
    }

    async fn list(store: &Store, uuid: &str) -> Vec<String> {
        let f = ListFilter {
            uuid: Some(uuid.into()),
            limit: 1000,
            ..Default::default()
        };
        store
            .read(move |c| messages::list(c, &f))
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.id.clone())
            .collect()
    }

    /// Messages that lie in no span of their own webhook (there must be none).
    async fn unspanned(store: &Store) -> i64 {
        store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM \
                     webhook_spans s WHERE m.seq BETWEEN s.first_seq AND s.last_seq \
                     AND s.webhook_uuid = m.webhook_uuid)",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .expect("spans")
    }

    fn blocks(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").metadata().expect("meta").blocks() * 512)
            .sum()
    }

    /// A webhook that keeps 3 messages loses its oldest ones, rows and bodies: its files are
    /// deleted and its segment bytes punched out once the grace period has passed, not before.
    /// Another webhook without limits keeps everything, and both go on receiving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn count_retention_deletes_the_oldest_rows_and_frees_their_bodies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), RetentionConfig::default());
        let keep3 = Override {
            max_count: crate::retention::Field::Value(3),
            ..Override::default()
        };
        let small = webhook(&store, Some(keep3)).await;
        let other = webhook(&store, None).await;
        let mut ids = Vec::new();
        for i in 0..12u8 {
            // Alternately a 40 KiB segment body and a 100 KiB file, interleaved with the other
            // webhook's messages, so spans and segments are shared.
            let size = if i % 2 == 0 { 40 << 10 } else { 100 << 10 };
            ids.push(stored(&store, capture(&store, &small, i64::from(i), vec![i; size])).await);
            stored(
                &store,
                capture(&store, &other, i64::from(i), vec![b'o'; 100]),
            )
            .await;
        }
        let files_before = blocks(&store.dirs().files);
        let segments_before = blocks(&store.dirs().segments);

        let p = crate::store::prune_all(&store, Duration::from_secs(3600), |_| Duration::ZERO)
            .await
            .expect("prune");
        assert_eq!(p.messages, 9);
        assert_eq!(p.message_bytes, 5 * (40 << 10) + 4 * (100 << 10));
        // Within the grace period the bytes are still there.
        assert_eq!((p.files_deleted, p.segment_bytes_freed), (0, 0));
        let mut newest: Vec<String> = ids[9..].to_vec();
        newest.reverse();
        assert_eq!(list(&store, &small).await, newest);
        assert_eq!(list(&store, &other).await.len(), 12);

        let p = crate::store::prune_all(&store, Duration::ZERO, |_| Duration::ZERO)
            .await
            .expect("free");
        assert_eq!((p.messages, p.files_deleted), (0, 4));
        assert!(p.segment_bytes_freed >= 5 * (36 << 10), "{p:?}");
        assert!(blocks(&store.dirs().files) <= files_before - 4 * (100 << 10));
        assert!(blocks(&store.dirs().segments) <= segments_before - 5 * (36 << 10));

        // What is left reads back whole, and the counters say what is stored.
        let w = store.webhook_row(&small).await;
        assert_eq!((w.stored_count, w.message_count), (3, 12));
        assert_eq!(w.stored_bytes, (40 << 10) + 2 * (100 << 10));
        let dirs = store.dirs().clone();
        let last: uuid::Uuid = ids[11].parse().expect("id");
        let body = store
            .read(move |c| {
                let rec = messages::get(c, last)?.expect("kept");
                messages::read_range(&dirs, &rec.body, 0, rec.summary.size)
            })
            .await
            .expect("read");
        assert_eq!(body, vec![11u8; 100 << 10]);
        // Receiving goes on, into the same spans.
        let more = stored(&store, capture(&store, &small, 99, vec![7; 10])).await;
        crate::store::prune_all(&store, Duration::ZERO, |_| Duration::ZERO)
            .await
            .expect("prune");
        assert_eq!(list(&store, &small).await[0], more);
        assert_eq!(list(&store, &small).await.len(), 3);
        assert_eq!(unspanned(&store).await, 0);
        store.shutdown().await;
    }

    /// By age (the daemon's limit), by size (a webhook's override): the oldest go until both
    /// hold; the newest message of all stays even when it is too old, since its seq would be
    /// taken again; a message a queued run needs stays until the run is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn age_and_size_retention_keep_what_is_still_needed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = 86_400_000;
        let now = crate::clock::now_ms();
        let store = open(
            dir.path(),
            RetentionConfig {
                messages: Limits {
                    max_age: Some(Duration::from_secs(86_400)),
                    ..Limits::default()
                },
                ..RetentionConfig::default()
            },
        );
        let aged = webhook(&store, None).await;
        let sized = webhook(
            &store,
            Some(Override {
                max_bytes: crate::retention::Field::Value(250),
                max_age: crate::retention::Field::Unlimited,
                ..Override::default()
            }),
        )
        .await;
        let old = stored(&store, capture(&store, &aged, now - 3 * day, vec![1; 10])).await;
        let needed = stored(&store, capture(&store, &aged, now - 2 * day, vec![2; 10])).await;
        let young = stored(&store, capture(&store, &aged, now, vec![3; 10])).await;
        let mut sizes = Vec::new();
        for i in 0..5 {
            sizes.push(stored(&store, capture(&store, &sized, now - 9 * day, vec![i; 100])).await);
        }
        let needed_seq = messages::decode_message_id(needed.parse().expect("id"))
            .expect("seq")
            .1;
        store
            .queue_executions(
                vec![crate::store::sqlite::pipelines::NewExecution {
                    pipeline: "p".into(),
                    trigger: "event",
                    event_key: Some("a.b".into()),
                    message_seq: Some(needed_seq),
                    message_id: Some(needed.clone()),
                    replay_of: None,
                    input: None,
                    trace_id: "t".into(),
                    depth: 0,
                }],
                None,
            )
            .await
            .expect("queue");

        let p = crate::store::prune_all(&store, Duration::ZERO, |_| Duration::ZERO)
            .await
            .expect("prune");
        assert_eq!(p.messages, 1 + 3, "{p:?}");
        assert_eq!(list(&store, &aged).await, [young.clone(), needed.clone()]);
        // 250 bytes keep the newest two of 100 each, though they are nine days old (the
        // override lifts the age limit); the newest of all stays anyway.
        assert_eq!(
            list(&store, &sized).await,
            [sizes[4].clone(), sizes[3].clone()]
        );
        let _ = old;
        assert_eq!(unspanned(&store).await, 0);
        store.shutdown().await;
    }

    /// A deleted webhook's messages stay under retention, and come back with their counters
    /// when a webhook with its uuid is created again.
    #[tokio::test]
    async fn a_deleted_webhooks_messages_stay_counted_and_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(
            dir.path(),
            RetentionConfig {
                messages: Limits {
                    max_count: Some(2),
                    ..Limits::default()
                },
                ..RetentionConfig::default()
            },
        );
        let uuid = webhook(&store, None).await;
        for i in 0..4 {
            stored(&store, capture(&store, &uuid, i, vec![1; 10])).await;
        }
        store.delete_webhook(uuid.clone()).await.expect("delete");
        // The newest message of all belongs to another webhook, so all of these may go.
        let other = webhook(&store, None).await;
        stored(&store, capture(&store, &other, 9, vec![1; 10])).await;
        let p = crate::store::prune_all(&store, Duration::ZERO, |_| Duration::ZERO)
            .await
            .expect("prune");
        assert_eq!(p.messages, 2);
        assert_eq!(list(&store, &uuid).await.len(), 2);
        let (w, created) = store
            .put_webhook(WebhookPut {
                uuid: Some(uuid.clone()),
                event_key: Some("a.b".into()),
                default_max_payload_length: 100,
                ..WebhookPut::default()
            })
            .await
            .expect("again");
        assert!(created);
        assert_eq!((w.stored_count, w.stored_bytes), (2, 20));
        store.shutdown().await;
    }

    /// Executions and deliveries go oldest first beyond their count, but never one that is
    /// still queued (nor anything after it).
    #[tokio::test]
    async fn executions_are_pruned_as_a_prefix_up_to_the_first_open_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(
            dir.path(),
            RetentionConfig {
                executions: Limits {
                    max_count: Some(2),
                    ..Limits::default()
                },
                ..RetentionConfig::default()
            },
        );
        let new = |n: u32| crate::store::sqlite::pipelines::NewExecution {
            pipeline: format!("p{n}"),
            trigger: "manual",
            event_key: None,
            message_seq: None,
            message_id: None,
            replay_of: None,
            input: None,
            trace_id: format!("t{n}"),
            depth: 0,
        };
        let queued = store
            .queue_executions((0..6).map(new).collect(), None)
            .await
            .expect("queue");
        for (seq, _) in &queued[..3] {
            store.start_execution(*seq).await.expect("start");
            store
                .finish_execution(crate::store::sqlite::pipelines::Finish {
                    seq: *seq,
                    status: "succeeded",
                    run_as: None,
                    steps: "[]".into(),
                    body: None,
                    body_truncated: false,
                    error: None,
                    error_step: None,
                    body_from: None,
                    error_private: false,
                })
                .await
                .expect("finish");
        }
        // Six runs, keep two: but the fourth is still queued, so only the first three go.
        let p = crate::store::prune_all(&store, Duration::ZERO, |_| Duration::ZERO)
            .await
            .expect("prune");
        assert_eq!(p.executions, 3);
        let left = store
            .read(|c| {
                Ok(
                    c.query_row("SELECT min(seq), count(*) FROM executions", [], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })?,
                )
            })
            .await
            .expect("count");
        assert_eq!(left, (queued[3].0, 3));
        store.shutdown().await;
    }

    /// Upgrading to schema 11 counts each webhook's stored messages from its spans, and those of
    /// webhooks deleted before as retired.
    #[test]
    fn the_upgrade_counts_what_each_webhook_has_stored() {
        let (mut conn, _segs, _dir) = crate::store::sqlite::messages::tests::scratch(10);
        conn.execute(
            "INSERT INTO webhooks (uuid, event_key, payload_type, max_payload_length, \
             description, enabled, created_at, updated_at) VALUES ('a', 'a.b', 'raw', 9, '', 1, 0, 0)",
            [],
        )
        .expect("webhook");
        for (uuid, size) in [("a", 10), ("gone", 5), ("a", 20), ("gone", 1)] {
            conn.execute(
                "INSERT INTO messages (webhook_uuid, event_key, received_at, status, verification, \
                 method, path, query, headers, remote_addr, size, sha256, file_count) \
                 VALUES (?1, 'a.b', 0, 'accepted', 'none', 'POST', '', '', '[]', '', ?2, x'', 0)",
                params![uuid, size],
            )
            .expect("message");
            let seq = conn.last_insert_rowid();
            conn.execute(
                "INSERT INTO webhook_spans (first_seq, last_seq, webhook_uuid) VALUES (?1, ?1, ?2)",
                params![seq, uuid],
            )
            .expect("span");
        }
        crate::store::sqlite::schema::migrate(&mut conn).expect("upgrade");
        let counted = |sql: &str| -> (i64, i64) {
            conn.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("counters")
        };
        assert_eq!(
            counted("SELECT stored_count, stored_bytes FROM webhooks WHERE uuid = 'a'"),
            (2, 30)
        );
        assert_eq!(
            counted("SELECT stored_count, stored_bytes FROM retired_webhooks WHERE uuid = 'gone'"),
            (2, 6)
        );
    }
}
