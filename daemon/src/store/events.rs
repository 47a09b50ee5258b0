//! Reading and pruning the event log (events are written by the operations they describe).

use std::sync::Arc;

use hookd_shared::EventType;
use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::messages::{SUMMARY_WIDTH, summary_from_row};
use super::pipelines;
use super::writer::{Applied, Outcome};
use crate::events::{BusEvent, EventData};

/// Up to `limit` logged events after `after`, oldest first. Events of types this build does
/// not know are skipped.
pub fn after(conn: &Connection, after: u64, limit: u32) -> Result<Vec<BusEvent>, StoreError> {
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

/// Two subqueries: SQLite answers a lone min() or max() from one end of the B-tree, but
/// `SELECT min(seq), max(seq)` scans every row (100 ms and 38 MiB of reads at 1M events).
const BOUNDS: &str = "SELECT (SELECT min(seq) FROM events), (SELECT max(seq) FROM events)";

/// The oldest and newest logged seq, if any.
pub fn bounds(conn: &Connection) -> Result<Option<(u64, u64)>, StoreError> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        conn.query_row(BOUNDS, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(lo.zip(hi).map(|(lo, hi)| (lo as u64, hi as u64)))
}

/// Deletes the oldest events beyond `max_count` or older than `before_ms`, at most `chunk` rows
/// per call so the writer never stalls on one huge delete.
pub(super) fn prune(
    conn: &Connection,
    max_count: u64,
    before_ms: i64,
    chunk: u32,
) -> Result<Applied, StoreError> {
    let Some((_, hi)) = bounds(conn)? else {
        return Ok(Applied::new(Outcome::Pruned(0)));
    };
    let by_count = hi.saturating_sub(max_count) as i64;
    // `at` grows with `seq`, so walking from the oldest to the first young event touches only
    // rows that are about to go anyway.
    let first_young: Option<i64> = conn
        .query_row(
            "SELECT seq FROM events WHERE at >= ?1 ORDER BY seq LIMIT 1",
            [before_ms],
            |r| r.get(0),
        )
        .optional()?;
    let by_age = first_young.map_or(hi as i64, |s| s - 1);
    let cut = by_count.max(by_age);
    let n = conn.execute(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
        params![cut, chunk],
    )?;
    // Idempotency keys outlive no window (30 days at most).
    conn.execute(
        "DELETE FROM dedupe WHERE (webhook_uuid, key) IN \
         (SELECT webhook_uuid, key FROM dedupe WHERE at < ?1 LIMIT ?2)",
        params![crate::clock::now_ms() - 30 * 24 * 3600 * 1000, chunk],
    )?;
    Ok(Applied::new(Outcome::Pruned(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_reads_both_ends_without_scanning_the_log() {
        let mut conn = Connection::open_in_memory().expect("open");
        super::super::schema::migrate(&mut conn).expect("migrate");
        assert_eq!(bounds(&conn).expect("empty"), None);
        for at in [10, 20, 30] {
            conn.execute(
                "INSERT INTO events (at, type, data) VALUES (?1, 'x', '{}')",
                [at],
            )
            .expect("insert");
        }
        assert_eq!(bounds(&conn).expect("bounds"), Some((1, 3)));
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {BOUNDS}"))
            .expect("plan")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("detail");
        assert!(
            plan.iter().all(|d| !d.starts_with("SCAN events")),
            "start-up and pruning must not scan the event log: {plan:?}"
        );
    }
}
