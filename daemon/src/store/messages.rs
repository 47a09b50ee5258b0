//! Captured messages: the commit of one capture, and the queries over them.

use bytes::Bytes;
use hookd_shared::{EventType, MessageSummary};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use super::writer::{Applied, Effect, Outcome, log_event};
use crate::clock::rfc3339;

/// One part of a multipart body: where its bytes are inside the stored body. Text fields also
/// carry their value; file parts their hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub offset: u64,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl PartRecord {
    /// Whether this part is listed as a file (rather than a text form field).
    pub fn is_file(&self) -> bool {
        self.value.is_none()
    }
}

/// Where a captured body's bytes are.
#[derive(Debug, Clone)]
pub enum CapturedBody {
    /// Small bodies go into the row.
    Inline(Bytes),
    /// Larger ones into `incoming/<id>` (already fsynced), moved to `files/<id>` on commit.
    File(String),
}

/// A request that `webhook.receive` accepted and wants committed.
#[derive(Debug, Clone)]
pub struct Capture {
    pub id: Uuid,
    pub webhook_uuid: String,
    pub event_key: String,
    pub received_at: i64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote_addr: String,
    pub content_type: Option<String>,
    pub size: u64,
    pub sha256: [u8; 32],
    pub parts: Vec<PartRecord>,
    pub body: CapturedBody,
}

pub(super) fn insert(conn: &Connection, c: Capture, now: i64) -> Result<Applied, StoreError> {
    let file_count = c.parts.iter().filter(|p| p.is_file()).count() as u32;
    let headers = serde_json::to_string(&c.headers).unwrap_or_else(|_| "[]".into());
    let parts = (!c.parts.is_empty())
        .then(|| serde_json::to_string(&c.parts).unwrap_or_else(|_| "[]".into()));
    let (body_file, body) = match &c.body {
        CapturedBody::Inline(b) => (None, Some(&b[..])),
        CapturedBody::File(id) => (Some(id.as_str()), None),
    };
    let mut st = conn.prepare_cached(
        "INSERT INTO messages (id, webhook_uuid, event_key, received_at, status, verification, \
         method, path, query, headers, remote_addr, content_type, size, sha256, file_count, parts, \
         body_file, body) VALUES (?1, ?2, ?3, ?4, 'accepted', 'none', ?5, ?6, ?7, ?8, ?9, ?10, \
         ?11, ?12, ?13, ?14, ?15, ?16)",
    )?;
    st.execute(params![
        &c.id.as_bytes()[..],
        c.webhook_uuid,
        c.event_key,
        c.received_at,
        c.method,
        c.path,
        c.query,
        headers,
        c.remote_addr,
        c.content_type,
        c.size as i64,
        &c.sha256[..],
        file_count,
        parts,
        body_file,
        body,
    ])?;
    let seq = conn.last_insert_rowid();
    conn.prepare_cached(
        "UPDATE webhooks SET message_count = message_count + 1, last_received_at = ?2 WHERE uuid = ?1",
    )?
    .execute(params![c.webhook_uuid, c.received_at])?;
    let summary = MessageSummary {
        id: c.id.to_string(),
        uuid: c.webhook_uuid,
        event_key: c.event_key,
        received_at: rfc3339(c.received_at),
        method: c.method,
        content_type: c.content_type,
        size: c.size,
        file_count,
        status: "accepted".into(),
        verification: "none".into(),
    };
    let data = serde_json::to_value(&summary).unwrap_or_default();
    let event = log_event(
        conn,
        EventType::MessageReceived,
        now,
        Some(&summary.event_key),
        Some(seq),
        data,
    )?;
    let mut applied = Applied::new(Outcome::Captured(summary));
    applied.events.push(event);
    if let CapturedBody::File(id) = c.body {
        applied.effects.push(Effect::PromoteFile(id));
    }
    Ok(applied)
}

/// Filters of `message.list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub uuid: Option<String>,
    pub event_key_prefix: Option<String>,
    /// Only messages older than this one.
    pub before: Option<Uuid>,
    pub limit: u32,
}

const SUMMARY_COLUMNS: &str = "seq, id, webhook_uuid, event_key, received_at, method, content_type, \
                               size, file_count, status, verification";

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<MessageSummary> {
    let id: Vec<u8> = r.get(1)?;
    Ok(MessageSummary {
        id: Uuid::from_slice(&id).unwrap_or_default().to_string(),
        uuid: r.get(2)?,
        event_key: r.get(3)?,
        received_at: rfc3339(r.get(4)?),
        method: r.get(5)?,
        content_type: r.get(6)?,
        size: r.get::<_, i64>(7)? as u64,
        file_count: r.get(8)?,
        status: r.get(9)?,
        verification: r.get(10)?,
    })
}

/// Newest first, filtered.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<Vec<MessageSummary>, StoreError> {
    let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM messages WHERE 1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(before) = f.before {
        let seq = seq_of(conn, before)?.ok_or_else(|| {
            StoreError::NotFound(format!("before={before}: no message with that id"))
        })?;
        sql.push_str(" AND seq < ?");
        args.push(Box::new(seq));
    }
    if let Some(uuid) = &f.uuid {
        sql.push_str(" AND webhook_uuid = ?");
        args.push(Box::new(uuid.clone()));
    }
    if let Some(prefix) = &f.event_key_prefix {
        sql.push_str(" AND substr(event_key, 1, ?) = ?");
        args.push(Box::new(prefix.len() as i64));
        args.push(Box::new(prefix.clone()));
    }
    sql.push_str(" ORDER BY seq DESC LIMIT ?");
    args.push(Box::new(f.limit));
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args.iter()), summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn seq_of(conn: &Connection, id: Uuid) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq FROM messages WHERE id = ?1",
            [&id.as_bytes()[..]],
            |r| r.get(0),
        )
        .optional()?)
}

/// Where a stored body is.
#[derive(Debug, Clone)]
pub enum StoredBody {
    Inline(Vec<u8>),
    File(String),
}

/// Everything stored about one message.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub seq: i64,
    pub summary: MessageSummary,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote_addr: String,
    pub sha256: [u8; 32],
    pub parts: Vec<PartRecord>,
    pub body: StoredBody,
}

/// One message by id.
pub fn get(conn: &Connection, id: Uuid) -> Result<Option<MessageRecord>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS}, path, query, headers, remote_addr, sha256, parts, body_file, body \
         FROM messages WHERE id = ?1"
    ))?;
    let rec = st
        .query_row([&id.as_bytes()[..]], |r| {
            let headers: String = r.get(13)?;
            let sha: Vec<u8> = r.get(15)?;
            let parts: Option<String> = r.get(16)?;
            let body_file: Option<String> = r.get(17)?;
            let body = match body_file {
                Some(f) => StoredBody::File(f),
                None => StoredBody::Inline(r.get::<_, Option<Vec<u8>>>(18)?.unwrap_or_default()),
            };
            Ok(MessageRecord {
                seq: r.get(0)?,
                summary: summary_from_row(r)?,
                path: r.get(11)?,
                query: r.get(12)?,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                remote_addr: r.get(14)?,
                sha256: sha.try_into().unwrap_or([0; 32]),
                parts: parts
                    .and_then(|p| serde_json::from_str(&p).ok())
                    .unwrap_or_default(),
                body,
            })
        })
        .optional()?;
    Ok(rec)
}

/// The message for an unknown message id.
pub fn no_such_message(id: &str) -> String {
    format!("no message with id {id}; message.list shows them")
}
