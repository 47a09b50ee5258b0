//! Writing the event log: the row of an event, and the seqs message events take (a message's
//! event is its own row). Reading and pruning the log is `events.rs`.

use std::sync::Arc;

use hookd_shared::{EventType, MessageSummary};
use rusqlite::{Connection, OptionalExtension};

use crate::events::{BusEvent, EventData};
use crate::store::StoreError;

/// Appends an event to the log and returns it with its sequence number. `row` is the seq of the
/// execution an execution event is about (a message's event is the message's own row, numbered
/// by `events::MessageSeqs`; only rows from before schema 10 point at messages).
pub(crate) fn log_event(
    conn: &Connection,
    kind: hookd_shared::EventType,
    at: i64,
    event_key: Option<&str>,
    row: Option<i64>,
    data: EventData,
) -> Result<BusEvent, StoreError> {
    // Message and execution events point at their row instead of storing a second copy of its
    // summary; `events::after` rebuilds it.
    let (stored, message_seq, execution_seq) = match &data {
        EventData::Json(v) => (Some(v.to_string()), None, None),
        EventData::Message(_) => (None, row, None),
        EventData::Execution(_) => (None, None, row),
    };
    let mut st = conn.prepare_cached(
        "INSERT INTO events (at, type, event_key, message_seq, execution_seq, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    st.execute(rusqlite::params![
        at,
        kind.as_str(),
        event_key,
        message_seq,
        execution_seq,
        stored
    ])?;
    Ok(BusEvent {
        seq: conn.last_insert_rowid() as u64,
        kind,
        at,
        data,
    })
}

/// The event of a message stored with `event_seq`, as the writer publishes it and replay
/// rebuilds it from the row.
pub(super) fn message_event(
    event_seq: i64,
    received_at: i64,
    summary: Arc<MessageSummary>,
) -> BusEvent {
    let kind = if summary.status == "accepted" {
        EventType::MessageReceived
    } else {
        EventType::MessageRejected
    };
    BusEvent {
        seq: event_seq as u64,
        at: received_at,
        kind,
        data: EventData::Message(summary),
    }
}

/// The log's last seq, whichever kind of event took it.
pub(super) fn last(conn: &Connection) -> Result<u64, StoreError> {
    seq_at(
        conn,
        "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
    )
}

/// The seq one row of `sql` holds; 0 without one.
pub(super) fn seq_at(conn: &Connection, sql: &str) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached(sql)?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// The log's seqs one batch gives its message events (a message's event is its row): read
/// once from the counter in `sqlite_sequence`, counted here, and written back by `flush` before
/// anything else takes a seq (an insert into `events` reads that counter: AUTOINCREMENT) and
/// before the commit. So both kinds share one dense sequence, and a failed batch takes its
/// seqs back with it.
#[derive(Default)]
pub(crate) struct MessageSeqs {
    /// The last seq taken and not yet written back.
    taken: Option<i64>,
}

impl MessageSeqs {
    /// The next seq, for a message event.
    pub(super) fn next(&mut self, conn: &Connection) -> Result<i64, StoreError> {
        let seq = match self.taken {
            Some(last) => last + 1,
            None => last(conn)? as i64 + 1,
        };
        self.taken = Some(seq);
        Ok(seq)
    }

    /// Writes the seqs taken so far back to the counter.
    pub(super) fn flush(&mut self, conn: &Connection) -> Result<(), StoreError> {
        if let Some(last) = self.taken.take() {
            conn.prepare_cached("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'events'")?
                .execute([last])?;
        }
        Ok(())
    }
}
