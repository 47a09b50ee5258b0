//! Stored pipelines and their executions, and the listener dispatch cursor.

use hookd_shared::{EventType, ExecutionSummary, PayloadType, Role};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::StoreError;
use super::event_log::log_event;
use super::ids::{decode_public_id, public_id};
use super::op::{Applied, Effect, Outcome};
use super::page::Page;
use crate::events::EventData;
pub use crate::store::model::pipelines::*;

const PIPELINE_COLUMNS: &str =
    "name, source, listen, stored_by, stored_by_role, created_at, updated_at, last_run_at";

fn pipeline_from_row(r: &Row<'_>) -> rusqlite::Result<PipelineRow> {
    let role: String = r.get(4)?;
    Ok(PipelineRow {
        name: r.get(0)?,
        source: r.get(1)?,
        listen: r.get(2)?,
        stored_by: r.get(3)?,
        stored_by_role: Role::parse(&role).unwrap_or(Role::Viewer),
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        last_run_at: r.get(7)?,
    })
}

/// Every pipeline, by name.
pub fn load_all(conn: &Connection) -> Result<Vec<PipelineRow>, StoreError> {
    let mut st = conn.prepare(&format!(
        "SELECT {PIPELINE_COLUMNS} FROM pipelines ORDER BY name"
    ))?;
    let rows = st.query_map([], pipeline_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One pipeline by name.
pub fn get(conn: &Connection, name: &str) -> Result<Option<PipelineRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE name = ?1"
        ))?
        .query_row([name], pipeline_from_row)
        .optional()?)
}

fn pipeline_event_data(row: &PipelineRow) -> EventData {
    let mut v = serde_json::to_value(row.to_api()).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        // Events stay small; pipeline.get has the source.
        m.remove("source");
        if let Some(k) = &row.listen {
            m.insert("eventKey".into(), k.clone().into());
        }
    }
    EventData::Json(v)
}

pub(super) fn put(
    conn: &Connection,
    mut row: PipelineRow,
    now: i64,
) -> Result<Applied, StoreError> {
    let existing = get(conn, &row.name)?;
    let created = existing.is_none();
    if let Some(old) = existing {
        row.created_at = old.created_at;
        row.last_run_at = old.last_run_at;
    } else {
        row.created_at = now;
    }
    row.updated_at = now;
    conn.execute(
        &format!(
            "INSERT INTO pipelines ({PIPELINE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (name) DO UPDATE SET source = ?2, listen = ?3, stored_by = ?4, \
             stored_by_role = ?5, updated_at = ?7"
        ),
        params![
            row.name,
            row.source,
            row.listen,
            row.stored_by,
            row.stored_by_role.as_str(),
            row.created_at,
            row.updated_at,
            row.last_run_at
        ],
    )?;
    let kind = if created {
        EventType::PipelineCreated
    } else {
        EventType::PipelineUpdated
    };
    let event = log_event(
        conn,
        kind,
        now,
        row.listen.as_deref(),
        None,
        pipeline_event_data(&row),
    )?;
    let listener = Effect::CacheListener(row.name.clone(), row.listen.clone());
    let mut applied = Applied::new(Outcome::Pipeline(row, created));
    applied.events.push(event);
    applied.effects.push(listener);
    Ok(applied)
}

pub(super) fn delete(conn: &Connection, name: &str, now: i64) -> Result<Applied, StoreError> {
    let row = get(conn, name)?.ok_or_else(|| StoreError::NotFound(no_such_pipeline(name)))?;
    conn.execute("DELETE FROM pipelines WHERE name = ?1", [name])?;
    let event = log_event(
        conn,
        EventType::PipelineDeleted,
        now,
        row.listen.as_deref(),
        None,
        pipeline_event_data(&row),
    )?;
    let listener = Effect::CacheListener(row.name.clone(), None);
    let mut applied = Applied::new(Outcome::Pipeline(row, false));
    applied.events.push(event);
    applied.effects.push(listener);
    Ok(applied)
}

const EXECUTION_COLUMNS: &str = "seq, created_at, pipeline, trigger, event_key, message_seq, \
     message_id, replay_of, input, trace_id, depth, run_as, status, started_at, finished_at, \
     steps, body, body_truncated, error, error_step, body_from, error_private";

fn execution_from_row(r: &Row<'_>) -> rusqlite::Result<ExecutionRow> {
    execution_at(r, 0)
}

/// `EXECUTION_COLUMNS` of an `executions x` alias, for joins.
pub(super) fn execution_columns_x() -> String {
    EXECUTION_COLUMNS
        .split(", ")
        .map(|c| format!("x.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary an execution event carried when it was logged: a started event's is the row as
/// it was at the start (running, nothing of its end yet); a finished event's the row as it is.
pub(super) fn logged_summary(row: &ExecutionRow, kind: EventType) -> ExecutionSummary {
    let mut s = row.summary();
    if kind == EventType::ExecutionStarted {
        s.status = "running".into();
        s.run_as = None;
        s.finished_at = None;
        s.duration_ms = None;
        s.error = None;
    }
    s
}

/// An execution from its columns starting at column `base`.
pub(super) fn execution_at(r: &Row<'_>, base: usize) -> rusqlite::Result<ExecutionRow> {
    Ok(ExecutionRow {
        seq: r.get(base)?,
        created_at: r.get(base + 1)?,
        pipeline: r.get(base + 2)?,
        trigger: r.get(base + 3)?,
        event_key: r.get(base + 4)?,
        message_seq: r.get(base + 5)?,
        message_id: r.get(base + 6)?,
        replay_of: r.get(base + 7)?,
        input: r.get(base + 8)?,
        trace_id: r.get(base + 9)?,
        depth: r.get(base + 10)?,
        run_as: r.get(base + 11)?,
        status: r.get(base + 12)?,
        started_at: r.get(base + 13)?,
        finished_at: r.get(base + 14)?,
        steps: r.get(base + 15)?,
        body: r.get(base + 16)?,
        body_truncated: r.get(base + 17)?,
        error: r.get(base + 18)?,
        error_step: r.get(base + 19)?,
        body_from: r
            .get::<_, Option<String>>(base + 20)?
            .and_then(|f| PayloadType::parse(f.strip_prefix(MESSAGE_EVENT)?)),
        error_private: r.get(base + 21)?,
    })
}

/// One execution by seq.
pub fn get_execution(conn: &Connection, seq: i64) -> Result<Option<ExecutionRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE seq = ?1"
        ))?
        .query_row([seq], execution_from_row)
        .optional()?)
}

/// One execution by public id.
pub fn find_execution(conn: &Connection, id: Uuid) -> Result<Option<ExecutionRow>, StoreError> {
    let Some((created_at, seq)) = decode_public_id(id) else {
        return Ok(None);
    };
    Ok(get_execution(conn, seq)?.filter(|e| e.created_at == created_at))
}

/// Newest first, filtered.
pub fn list_executions(
    conn: &Connection,
    f: &ExecutionFilter,
) -> Result<Vec<ExecutionRow>, StoreError> {
    let mut page = Page::of(EXECUTION_COLUMNS, "executions");
    page.eq("pipeline", f.pipeline.as_ref());
    page.eq("status", f.status.as_ref());
    page.eq("message_seq", f.message_seq.as_ref());
    page.fetch(conn, f.before, f.limit, execution_from_row)
}

/// Executions waiting for a worker, oldest first.
pub fn queued(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    let mut st = conn.prepare("SELECT seq FROM executions WHERE status = 'queued' ORDER BY seq")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks runs that were going when hookd stopped as failed, announcing each with an
/// `execution.finished` event; returns how many. Runs at start, before the writer exists.
pub fn fail_interrupted(conn: &mut Connection, now: i64) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let seqs: Vec<i64> = {
        let mut st = tx.prepare("SELECT seq FROM executions WHERE status = 'running'")?;
        st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    for seq in &seqs {
        let row = tx.query_row(
            &format!(
                "UPDATE executions SET status = 'failed', finished_at = ?2, \
                 error = 'interrupted: hookd stopped during this run' WHERE seq = ?1 \
                 RETURNING {EXECUTION_COLUMNS}"
            ),
            params![seq, now],
            execution_from_row,
        )?;
        announce(&tx, row, EventType::ExecutionFinished, now)?;
    }
    tx.commit()?;
    Ok(seqs.len())
}

/// How far the listener dispatcher of hookd before schema 8 got in the event log: `None` once
/// what it left has been dispatched (see schema 8).
pub fn dispatch_cursor(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'dispatch_cursor'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.map(|v| v.parse().unwrap_or(0)))
}

fn set_cursor(conn: &Connection, cursor: u64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE meta SET value = ?1 WHERE key = 'dispatch_cursor' \
         AND CAST(value AS INTEGER) < CAST(?1 AS INTEGER)",
    )?
    .execute([cursor.to_string()])?;
    Ok(())
}

/// Drops the cursor: from now on every message's runs are queued with the message.
pub(super) fn forget_cursor(conn: &Connection) -> Result<Applied, StoreError> {
    conn.execute("DELETE FROM meta WHERE key = 'dispatch_cursor'", [])?;
    Ok(Applied::new(Outcome::Done))
}

pub(super) fn create(
    conn: &Connection,
    new: Vec<NewExecution>,
    cursor: Option<u64>,
    now: i64,
) -> Result<Applied, StoreError> {
    let seqs = insert(conn, new, now)?;
    if let Some(c) = cursor {
        set_cursor(conn, c)?;
    }
    Ok(Applied::new(Outcome::Executions(seqs)))
}

/// Inserts queued executions; their (seq, public id).
pub(super) fn insert(
    conn: &Connection,
    new: Vec<NewExecution>,
    now: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut st = conn.prepare_cached(
        "INSERT INTO executions (created_at, pipeline, trigger, event_key, message_seq, message_id, \
         replay_of, input, trace_id, depth, status, body_truncated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', 0)",
    )?;
    let mut seqs = Vec::with_capacity(new.len());
    for e in new {
        st.execute(params![
            now,
            e.pipeline,
            e.trigger,
            e.event_key,
            e.message_seq,
            e.message_id,
            e.replay_of,
            e.input,
            e.trace_id,
            e.depth
        ])?;
        let seq = conn.last_insert_rowid();
        seqs.push((seq, public_id(now, seq).to_string()));
    }
    Ok(seqs)
}

pub(super) fn start(conn: &Connection, seq: i64, now: i64) -> Result<Applied, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "UPDATE executions SET status = 'running', started_at = ?2 \
             WHERE seq = ?1 AND status = 'queued' RETURNING {EXECUTION_COLUMNS}"
        ))?
        .query_row(params![seq, now], execution_from_row)
        .optional()?
        .ok_or_else(|| StoreError::Invalid(format!("execution {seq} is not queued")))?;
    announce(conn, row, EventType::ExecutionStarted, now)
}

/// Logs `kind` for execution `row` (as just written, from the statement's `RETURNING`, so
/// the row is not read a second time); the row and its event, applied.
fn announce(
    conn: &Connection,
    row: ExecutionRow,
    kind: EventType,
    now: i64,
) -> Result<Applied, StoreError> {
    let data = EventData::Execution(std::sync::Arc::new(row.summary()));
    let event = log_event(
        conn,
        kind,
        now,
        row.event_key.as_deref(),
        Some(row.seq),
        data,
    )?;
    let mut applied = Applied::new(Outcome::Execution(Box::new(row)));
    applied.events.push(event);
    Ok(applied)
}

pub(super) fn finish(conn: &Connection, f: Finish, now: i64) -> Result<Applied, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "UPDATE executions SET status = ?2, run_as = ?3, steps = ?4, body = ?5, \
             body_truncated = ?6, error = ?7, error_step = ?8, finished_at = ?9, \
             started_at = coalesce(started_at, ?9), body_from = ?10, error_private = ?11 \
             WHERE seq = ?1 RETURNING {EXECUTION_COLUMNS}"
        ))?
        .query_row(
            params![
                f.seq,
                f.status,
                f.run_as,
                f.steps,
                f.body,
                f.body_truncated,
                f.error,
                f.error_step,
                now,
                f.body_from
                    .map(|p| format!("{MESSAGE_EVENT}{}", p.as_str())),
                f.error_private,
            ],
            execution_from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("execution {}", f.seq)))?;
    conn.prepare_cached("UPDATE pipelines SET last_run_at = ?2 WHERE name = ?1")?
        .execute(params![row.pipeline, now])?;
    announce(conn, row, EventType::ExecutionFinished, now)
}
