//! Reading and pruning the event log (events are written by the operations they describe).

use std::sync::Arc;

use hookd_shared::EventType;
use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::event_log::{last, message_event, seq_at};
use super::messages::{SUMMARY_WIDTH, summary_from_row};
use super::op::{Applied, Outcome};
use super::pipelines;
use crate::events::{BusEvent, EventData};

/// Up to `limit` logged events after `after`, oldest first: the rows of `events` merged with
/// the message events, which are the messages' own rows (schema 10). Events of types this build
/// does not know are skipped.
pub fn after(conn: &Connection, after: u64, limit: u32) -> Result<Vec<BusEvent>, StoreError> {
    let from = after.max(horizon(conn)?);
    let rows = logged_after(conn, from, limit)?;
    let messages = messages_after(conn, from, limit)?;
    let mut out = Vec::with_capacity(rows.len() + messages.len());
    let (mut rows, mut messages) = (rows.into_iter().peekable(), messages.into_iter().peekable());
    while out.len() < limit as usize {
        let take_row = match (rows.peek(), messages.peek()) {
            (Some(r), Some(m)) => r.seq < m.seq,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_row {
            rows.next()
        } else {
            messages.next()
        });
    }
    Ok(out)
}

/// The rows of `events` after `after`.
fn logged_after(conn: &Connection, after: u64, limit: u32) -> Result<Vec<BusEvent>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT e.seq, e.at, e.type, e.data, {}, {} FROM events e \
         LEFT JOIN messages m ON m.seq = e.message_seq \
         LEFT JOIN executions x ON x.seq = e.execution_seq \
         WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2",
        super::messages::SUMMARY_COLUMNS_M,
        pipelines::execution_columns_x(),
    ))?;
    let mut rows = st.query(params![after as i64, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let kind: String = r.get(2)?;
        let Some(kind) = EventType::parse(&kind) else {
            continue;
        };
        let execution = 4 + SUMMARY_WIDTH;
        let data = match r.get::<_, Option<String>>(3)? {
            Some(json) => EventData::Json(serde_json::from_str(&json).unwrap_or_default()),
            None if r.get::<_, Option<i64>>(4)?.is_some() => {
                EventData::Message(Arc::new(summary_from_row(r, 4)?))
            }
            None if r.get::<_, Option<i64>>(execution)?.is_some() => {
                let row = pipelines::execution_at(r, execution)?;
                EventData::Execution(Arc::new(pipelines::logged_summary(&row, kind)))
            }
            // The row was deleted (retention); the event stays, without its summary.
            None => EventData::Json(serde_json::Value::Null),
        };
        out.push(BusEvent {
            seq: r.get::<_, i64>(0)? as u64,
            at: r.get(1)?,
            kind,
            data,
        });
    }
    Ok(out)
}

/// The events of messages stored with an `event_seq`, after `after`: a rowid range from the
/// first such message, found by binary search (`event_seq` grows with `seq`), so no index.
fn messages_after(conn: &Connection, after: u64, limit: u32) -> Result<Vec<BusEvent>, StoreError> {
    let Some((first, _)) = first_message(conn, |event_seq, _| event_seq > after as i64)? else {
        return Ok(Vec::new());
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT m.event_seq, {} FROM messages m WHERE m.seq >= ?1 ORDER BY m.seq LIMIT ?2",
        super::messages::SUMMARY_COLUMNS_M,
    ))?;
    let mut rows = st.query(params![first, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let summary = summary_from_row(r, 1)?;
        out.push(message_event(r.get(0)?, r.get(2)?, Arc::new(summary)));
    }
    Ok(out)
}

/// The first message with an `event_seq` for which `wanted(event_seq, received_at)` holds, as
/// (seq, event_seq), assuming it holds for every later one: ~20 rowid lookups for a million
/// messages. Messages from before schema 10 (no `event_seq`) come first and never count.
fn first_message(
    conn: &Connection,
    wanted: impl Fn(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>, StoreError> {
    let mut at_or_after = conn.prepare_cached(
        "SELECT seq, event_seq, received_at FROM messages WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    let mut probe = |seq: i64| -> Result<Option<(i64, Option<i64>, i64)>, StoreError> {
        Ok(at_or_after
            .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?)
    };
    let holds = |row: &(i64, Option<i64>, i64)| row.1.is_some_and(|e| wanted(e, row.2));
    let last: Option<(i64, Option<i64>, i64)> = conn
        .prepare_cached(
            "SELECT seq, event_seq, received_at FROM messages ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some(last) = last.filter(holds) else {
        return Ok(None);
    };
    // Invariant: the first message at or after `hi` is wanted; none before `lo` is (rowids
    // start at 1).
    let (mut lo, mut hi) = (0, last.0);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Some(row) = probe(mid)? else {
            break;
        };
        if holds(&row) {
            hi = mid;
        } else {
            lo = row.0 + 1;
        }
    }
    Ok(probe(lo)?.and_then(|(seq, event_seq, _)| Some((seq, event_seq?))))
}

/// The seq below which the log was pruned: message events at or below it are not replayed.
fn horizon(conn: &Connection) -> Result<u64, StoreError> {
    seq_at(
        conn,
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'events_horizon'",
    )
}

/// The oldest and newest logged seq, if any. The log is dense between them: every seq was
/// taken by an event row or a message, and pruning removes a prefix.
pub fn bounds(conn: &Connection) -> Result<Option<(u64, u64)>, StoreError> {
    let (lo, hi) = (horizon(conn)? + 1, last(conn)?);
    Ok((hi >= lo).then_some((lo, hi)))
}

/// Prunes the oldest events beyond `max_count` or older than `before_ms`: deletes rows of
/// `events`, at most `chunk` per call so the writer never stalls on one huge delete, and moves
/// the horizon past the message events below them. Returns how many events left the log. Also
/// forgets idempotency keys past any window, whether or not anything is logged.
pub(super) fn prune(
    conn: &Connection,
    max_count: u64,
    before_ms: i64,
    chunk: u32,
) -> Result<Applied, StoreError> {
    let pruned = prune_log(conn, max_count, before_ms, chunk)?;
    // Idempotency keys outlive no window (30 days at most).
    conn.execute(
        "DELETE FROM dedupe WHERE (webhook_uuid, key) IN \
         (SELECT webhook_uuid, key FROM dedupe WHERE at < ?1 LIMIT ?2)",
        params![crate::clock::now_ms() - 30 * 24 * 3600 * 1000, chunk],
    )?;
    Ok(Applied::new(Outcome::Pruned(pruned)))
}

/// The event log's part of `prune`: how many events left the log.
fn prune_log(
    conn: &Connection,
    max_count: u64,
    before_ms: i64,
    chunk: u32,
) -> Result<usize, StoreError> {
    let Some((lo, hi)) = bounds(conn)? else {
        return Ok(0);
    };
    let by_count = hi.saturating_sub(max_count) as i64;
    // `at` grows with `seq`, so walking from the oldest to the first young event touches only
    // rows that are about to go anyway. A message's `received_at` grows with it only roughly
    // (clocks step), which moves the cut by a few events at most.
    let young_row: Option<i64> = conn
        .query_row(
            "SELECT seq FROM events WHERE at >= ?1 ORDER BY seq LIMIT 1",
            [before_ms],
            |r| r.get(0),
        )
        .optional()?;
    let young_message = first_message(conn, |event_seq, received_at| {
        event_seq >= lo as i64 && received_at >= before_ms
    })?
    .map(|(_, event_seq)| event_seq);
    let by_age = match (young_row, young_message) {
        (Some(a), Some(b)) => a.min(b) - 1,
        (a, b) => a.or(b).map_or(hi as i64, |s| s - 1),
    };
    let mut cut = by_count.max(by_age);
    // Beyond a chunk of rows, this call stops just below the first row it leaves.
    let rest: Option<i64> = conn
        .query_row(
            "SELECT seq FROM events WHERE seq <= ?1 ORDER BY seq LIMIT 1 OFFSET ?2",
            params![cut, chunk],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(first_left) = rest {
        cut = first_left - 1;
    }
    let pruned = cut.saturating_sub(lo as i64 - 1).max(0);
    if pruned > 0 {
        conn.execute("DELETE FROM events WHERE seq <= ?1", [cut])?;
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('events_horizon', ?1)",
            [cut.to_string()],
        )?;
    }
    Ok(pruned as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::event_log::log_event;
    use crate::store::sqlite::messages::tests::{
        capture_for, insert_before_10, insert_one, scratch,
    };
    use crate::store::sqlite::messages::{self, Capture};
    use crate::store::sqlite::segments::Segments;

    const HOOK: &str = "0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10";

    fn store(conn: &Connection, segs: &mut Segments, c: Capture) -> BusEvent {
        let mut applied = insert_one(conn, c, segs);
        applied.events.pop().expect("a message event")
    }

    fn received_at(at: i64) -> Capture {
        Capture {
            received_at: at,
            ..capture_for(HOOK)
        }
    }

    fn note(conn: &Connection, at: i64) -> BusEvent {
        let data = EventData::Json(serde_json::json!({ "at": at }));
        log_event(conn, EventType::WebhookUpdated, at, None, None, data).expect("log")
    }

    fn seqs(events: &[BusEvent]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    /// What replay yields, in the form the live bus carried it.
    fn replayed(conn: &Connection, from: u64) -> Vec<(u64, i64, EventType, serde_json::Value)> {
        after(conn, from, 1000)
            .expect("after")
            .into_iter()
            .map(|e| (e.seq, e.at, e.kind, e.data.to_json()))
            .collect()
    }

    #[test]
    fn messages_and_logged_rows_share_one_dense_sequence_and_replay_as_published() {
        let (conn, mut segs, _dir) = scratch(usize::MAX);
        assert_eq!(bounds(&conn).expect("empty"), None);
        let mut live = vec![store(&conn, &mut segs, received_at(10))];
        // A refused operation's savepoint takes its seq back with it.
        conn.execute_batch("SAVEPOINT refused").expect("savepoint");
        note(&conn, 11);
        conn.execute_batch("ROLLBACK TO refused; RELEASE refused")
            .expect("rollback");
        live.push(note(&conn, 12));
        let rejected = Capture {
            rejected: Some("bad signature".into()),
            ..received_at(13)
        };
        live.push(store(&conn, &mut segs, rejected));
        for at in 14..40 {
            live.push(if at % 7 == 0 {
                note(&conn, at)
            } else {
                store(&conn, &mut segs, received_at(at))
            });
        }
        assert_eq!(seqs(&live), (1..=29).collect::<Vec<_>>());
        assert_eq!(live[2].kind, EventType::MessageRejected);
        let live: Vec<_> = live
            .iter()
            .map(|e| (e.seq, e.at, e.kind, e.data.to_json()))
            .collect();
        assert_eq!(replayed(&conn, 0), live);
        // Every starting point and page size, across the two kinds.
        for from in 0..=29u64 {
            assert_eq!(replayed(&conn, from), live[from as usize..]);
            for limit in 1..4u32 {
                let page = after(&conn, from, limit).expect("page");
                let want: Vec<u64> = (from + 1..=29).take(limit as usize).collect();
                assert_eq!(seqs(&page), want, "after {from}, limit {limit}");
            }
        }
        assert_eq!(bounds(&conn).expect("bounds"), Some((1, 29)));
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 5, "only the non-message events are rows of their own");
    }

    #[test]
    fn pruning_moves_past_message_events_and_deletes_rows_a_chunk_at_a_time() {
        let (conn, mut segs, _dir) = scratch(usize::MAX);
        // seqs 1..=30, every third a row of `events`; `at` is the seq times ten.
        for seq in 1..=30 {
            if seq % 3 == 0 {
                note(&conn, seq * 10);
            } else {
                store(&conn, &mut segs, received_at(seq * 10));
            }
        }
        let pruned = |max_count, before, chunk| match prune(&conn, max_count, before, chunk)
            .expect("prune")
            .outcome
        {
            Outcome::Pruned(n) => n,
            _ => panic!("pruned"),
        };
        let rows = || -> i64 {
            conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .expect("count")
        };
        // By count: the newest 25 stay.
        assert_eq!(pruned(25, 0, 100), 5);
        assert_eq!(bounds(&conn).expect("bounds"), Some((6, 30)));
        assert_eq!(
            seqs(&after(&conn, 0, 100).expect("after")),
            (6..=30).collect::<Vec<_>>()
        );
        assert_eq!(rows(), 9);
        // By age: events before at=125 (seqs up to 12) go, one row of `events` per call: each
        // call stops below the next row it leaves (9, then 12).
        assert_eq!(pruned(100, 125, 1), 3);
        assert_eq!(bounds(&conn).expect("bounds"), Some((9, 30)));
        assert_eq!(pruned(100, 125, 1), 3);
        assert_eq!(bounds(&conn).expect("bounds"), Some((12, 30)));
        assert_eq!(pruned(100, 125, 1), 1);
        assert_eq!(pruned(100, 125, 1), 0);
        assert_eq!(seqs(&after(&conn, 7, 100).expect("after"))[0], 13);
        assert_eq!(rows(), 6);
        // Everything: the log is empty and the next event continues the sequence.
        assert_eq!(pruned(0, 1000, 100), 18);
        assert_eq!(bounds(&conn).expect("bounds"), None);
        assert!(after(&conn, 0, 100).expect("after").is_empty());
        assert_eq!(rows(), 0);
        assert_eq!(store(&conn, &mut segs, received_at(310)).seq, 31);
        assert_eq!(bounds(&conn).expect("bounds"), Some((31, 31)));
    }

    #[test]
    fn old_idempotency_keys_go_even_when_the_log_is_empty() {
        let (conn, _segs, _dir) = scratch(usize::MAX);
        let now = crate::clock::now_ms();
        for (key, at) in [("old", 0), ("new", now)] {
            conn.execute(
                "INSERT INTO dedupe (webhook_uuid, key, message_seq, at) VALUES (?1, ?2, 1, ?3)",
                params![HOOK, key, at],
            )
            .expect("key");
        }
        assert_eq!(bounds(&conn).expect("bounds"), None);
        prune(&conn, 10, 0, 100).expect("prune");
        let keys: Vec<String> = conn
            .prepare("SELECT key FROM dedupe")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("keys");
        assert_eq!(keys, ["new"]);
    }

    #[test]
    fn the_upgrade_keeps_old_event_rows_and_continues_their_sequence() {
        let (mut conn, mut segs, _dir) = scratch(9);
        for at in [10, 20, 30] {
            insert_before_10(&conn, HOOK, at);
        }
        conn.execute("DELETE FROM events WHERE seq = 1", [])
            .expect("pruned before");
        crate::store::sqlite::schema::migrate(&mut conn).expect("upgrade");
        assert_eq!(bounds(&conn).expect("bounds"), Some((2, 3)));
        let new = store(&conn, &mut segs, received_at(40));
        assert_eq!(new.seq, 4);
        let log = after(&conn, 0, 100).expect("after");
        assert_eq!(seqs(&log), [2, 3, 4]);
        let ids: Vec<serde_json::Value> =
            log.iter().map(|e| e.data.to_json()["id"].clone()).collect();
        assert_eq!(ids[0], messages::message_id(20, 2).to_string().as_str());
        assert_eq!(ids[2], new.data.to_json()["id"]);

        // A log pruned to nothing before the upgrade continues after its last seq.
        let (mut conn, mut segs, _dir) = scratch(9);
        conn.execute_batch(
            "INSERT INTO events (at, type) VALUES (1, 'webhook.created'); DELETE FROM events;",
        )
        .expect("pruned log");
        crate::store::sqlite::schema::migrate(&mut conn).expect("upgrade");
        assert_eq!(bounds(&conn).expect("bounds"), None);
        assert_eq!(store(&conn, &mut segs, received_at(5)).seq, 2);
    }

    #[test]
    fn replay_finds_its_start_by_binary_search_not_a_scan() {
        let (conn, mut segs, _dir) = scratch(usize::MAX);
        for at in 0..2000 {
            store(&conn, &mut segs, received_at(at));
        }
        // A gap in the rowids (as a future retention would leave) keeps the search correct.
        conn.execute("DELETE FROM messages WHERE seq BETWEEN 500 AND 1500", [])
            .expect("gap");
        assert_eq!(seqs(&after(&conn, 700, 2).expect("after")), [1501, 1502]);
        assert_eq!(seqs(&after(&conn, 300, 1).expect("after")), [301]);
        let probes = std::cell::Cell::new(0);
        first_message(&conn, |e, _| {
            probes.set(probes.get() + 1);
            e > 1700
        })
        .expect("search");
        assert!(probes.get() <= 16, "{} probes for 2000 rows", probes.get());
    }
}
