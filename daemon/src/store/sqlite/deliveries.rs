//! Outgoing deliveries and their attempts. A delivery is committed before its first attempt;
//! every attempt is recorded with what came back.

use base64::Engine;
use hookd_shared::{Attempt, BodyEncoding, Delivery, EventType};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use super::StoreError;
use super::event_log::log_event;
use super::op::{Applied, Outcome};
use super::page::Page;
use crate::clock::rfc3339;
use crate::events::EventData;
pub use crate::store::model::deliveries::*;

const COLUMNS: &str = "seq, created_at, msg_id, url, method, headers, body, message_seq, message_id, \
     secret, timeout_ms, schedule, max_attempts, attempts, status, next_attempt_at, last_status, \
     last_error, source, local";

fn from_row(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    let headers: String = r.get(5)?;
    let schedule: String = r.get(11)?;
    Ok(DeliveryRow {
        seq: r.get(0)?,
        created_at: r.get(1)?,
        msg_id: r.get(2)?,
        url: r.get(3)?,
        method: r.get(4)?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: r.get(6)?,
        message_seq: r.get(7)?,
        message_id: r.get(8)?,
        secret: r.get(9)?,
        timeout_ms: r.get(10)?,
        schedule: serde_json::from_str(&schedule).unwrap_or_default(),
        max_attempts: r.get(12)?,
        attempts: r.get(13)?,
        status: r.get(14)?,
        next_attempt_at: r.get(15)?,
        last_status: r.get(16)?,
        last_error: r.get(17)?,
        source: r.get(18)?,
        local: r.get(19)?,
    })
}

/// One delivery by seq.
pub fn get(conn: &Connection, seq: i64) -> Result<Option<DeliveryRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM deliveries WHERE seq = ?1"))?
        .query_row([seq], from_row)
        .optional()?)
}

/// A delivery with its attempts.
pub fn detail(conn: &Connection, seq: i64) -> Result<Option<Delivery>, StoreError> {
    let Some(row) = get(conn, seq)? else {
        return Ok(None);
    };
    let mut st = conn.prepare(
        "SELECT n, at, duration_ms, status, response_headers, response_body, error \
         FROM delivery_attempts WHERE delivery_seq = ?1 ORDER BY n",
    )?;
    let attempts = st
        .query_map([seq], |r| {
            let headers: Option<String> = r.get(4)?;
            let body: Option<Vec<u8>> = r.get(5)?;
            let body = body.unwrap_or_default();
            let (response_body, response_encoding) = match String::from_utf8(body) {
                Ok(s) => (s, BodyEncoding::Utf8),
                Err(e) => (
                    base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                    BodyEncoding::Base64,
                ),
            };
            Ok(Attempt {
                n: r.get(0)?,
                at: rfc3339(r.get(1)?),
                duration_ms: r.get::<_, i64>(2)?.max(0) as u64,
                status: r.get(3)?,
                response_headers: headers
                    .and_then(|h| serde_json::from_str(&h).ok())
                    .unwrap_or_default(),
                response_body,
                response_encoding,
                error: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Delivery {
        summary: row.summary(),
        headers: row.headers,
        attempts_log: attempts,
    }))
}

/// Newest first, filtered.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut page = Page::of(COLUMNS, "deliveries");
    page.eq("status", f.status.as_ref());
    page.prefix("url", f.url_prefix.as_ref());
    page.fetch(conn, f.before, f.limit, from_row)
}

/// Pending deliveries due by `now`, soonest first, at most `limit`.
pub fn due(conn: &Connection, now: i64, limit: u32) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?1 \
         ORDER BY next_attempt_at LIMIT ?2"
    ))?;
    let rows = st.query_map(params![now, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next pending delivery is due, if any.
pub fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

pub(super) fn create(conn: &Connection, d: NewDelivery, now: i64) -> Result<Applied, StoreError> {
    let first = d.schedule.first().copied().unwrap_or(0).max(0);
    conn.prepare_cached(
        "INSERT INTO deliveries (created_at, msg_id, url, method, headers, body, message_seq, \
         message_id, secret, timeout_ms, schedule, max_attempts, attempts, status, next_attempt_at, \
         source, local) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, 'pending', ?13, ?14, ?15)",
    )?
    .execute(params![
            now,
            d.msg_id,
            d.url,
            d.method,
            serde_json::to_string(&d.headers).unwrap_or_else(|_| "[]".into()),
            d.body,
            d.message_seq,
            d.message_id,
            d.secret,
            d.timeout_ms,
            serde_json::to_string(&d.schedule).unwrap_or_else(|_| "[]".into()),
            d.max_attempts,
            now + first,
            d.source,
            d.local
        ])?;
    let row = get(conn, conn.last_insert_rowid())?
        .ok_or_else(|| StoreError::NotFound("delivery".into()))?;
    Ok(Applied::new(Outcome::Delivery(Box::new(row))))
}

pub(super) fn record_attempt(
    conn: &Connection,
    a: AttemptRecord,
    now: i64,
) -> Result<Applied, StoreError> {
    let row =
        get(conn, a.seq)?.ok_or_else(|| StoreError::NotFound(format!("delivery {}", a.seq)))?;
    let n = row.attempts + 1;
    conn.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_seq, n, at, duration_ms, status, response_headers, \
         response_body, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
            a.seq,
            n,
            a.at,
            a.duration_ms,
            a.status,
            serde_json::to_string(&a.response_headers).unwrap_or_else(|_| "[]".into()),
            a.response_body,
            a.error
        ])?;
    // A delivery cancelled while its attempt was in flight stays cancelled.
    let (status, next_at) = match (row.status.as_str(), a.next) {
        ("cancelled", _) => ("cancelled", None),
        (_, Next::Succeeded) => ("succeeded", None),
        (_, Next::Failed) => ("failed", None),
        (_, Next::RetryAt(t)) => ("pending", Some(t)),
    };
    conn.prepare_cached(
        "UPDATE deliveries SET attempts = ?2, status = ?3, next_attempt_at = ?4, last_status = ?5, \
         last_error = ?6 WHERE seq = ?1",
    )?
    .execute(params![a.seq, n, status, next_at, a.status, a.error])?;
    let row =
        get(conn, a.seq)?.ok_or_else(|| StoreError::NotFound(format!("delivery {}", a.seq)))?;
    let summary = row.summary();
    let attempted = json!({
        "id": summary.id, "url": summary.url, "n": n, "status": a.status, "error": a.error,
        "durationMs": a.duration_ms, "deliveryStatus": status, "nextAttemptAt": summary.next_attempt_at,
    });
    let mut applied = Applied::new(Outcome::Delivery(Box::new(row)));
    applied.events.push(log_event(
        conn,
        EventType::DeliveryAttempted,
        now,
        None,
        None,
        EventData::Json(attempted),
    )?);
    let end = match status {
        "succeeded" => Some(EventType::DeliverySucceeded),
        "failed" => Some(EventType::DeliveryFailed),
        _ => None,
    };
    if let Some(kind) = end {
        let data = EventData::Json(serde_json::to_value(&summary).unwrap_or_default());
        applied
            .events
            .push(log_event(conn, kind, now, None, None, data)?);
    }
    Ok(applied)
}

pub(super) fn retry(conn: &Connection, seq: i64, now: i64) -> Result<Applied, StoreError> {
    let n = conn.execute(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, \
         max_attempts = max(max_attempts, attempts + 1) WHERE seq = ?1",
        params![seq, now],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(no_such_delivery(seq)));
    }
    let row = get(conn, seq)?.ok_or_else(|| StoreError::NotFound(no_such_delivery(seq)))?;
    Ok(Applied::new(Outcome::Delivery(Box::new(row))))
}

pub(super) fn cancel(conn: &Connection, seq: i64) -> Result<Applied, StoreError> {
    let row = get(conn, seq)?.ok_or_else(|| StoreError::NotFound(no_such_delivery(seq)))?;
    if row.status != "pending" {
        return Err(StoreError::Invalid(format!(
            "the delivery is already {}; only pending deliveries can be cancelled",
            row.status
        )));
    }
    conn.execute(
        "UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL WHERE seq = ?1",
        [seq],
    )?;
    let row = get(conn, seq)?.ok_or_else(|| StoreError::NotFound(no_such_delivery(seq)))?;
    Ok(Applied::new(Outcome::Delivery(Box::new(row))))
}

/// Deliveries still to be attempted.
pub fn pending_count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM deliveries WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}
