//! Webhook rows: creation, edits, deletion and queries.

use std::sync::Arc;

use hookd_shared::{EventType, PayloadType, Webhook};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use super::writer::{Applied, Effect, Outcome, log_event};
use crate::clock::rfc3339;
use crate::events::EventData;

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRow {
    pub uuid: String,
    pub event_key: String,
    pub payload_type: PayloadType,
    pub max_payload_length: u64,
    pub description: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub message_count: u64,
    pub last_received_at: Option<i64>,
}

impl WebhookRow {
    /// The API view, with its receive URL under `public_url`.
    pub fn to_api(&self, public_url: &str) -> Webhook {
        Webhook {
            uuid: self.uuid.clone(),
            event_key: self.event_key.clone(),
            webhook_url: webhook_url(public_url, &self.uuid),
            payload_type: self.payload_type,
            max_payload_length: self.max_payload_length,
            description: self.description.clone(),
            enabled: self.enabled,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            message_count: self.message_count,
            last_received_at: self.last_received_at.map(rfc3339),
        }
    }
}

/// The URL external systems call for the webhook `uuid`.
pub fn webhook_url(public_url: &str, uuid: &str) -> String {
    format!("{public_url}/api/v3/command/webhook.receive?uuid={uuid}")
}

/// A validated `webhook.put`: `None` fields keep their value (or take the default on create).
#[derive(Debug, Clone, Default)]
pub struct WebhookPut {
    pub uuid: Option<String>,
    pub event_key: Option<String>,
    pub payload_type: Option<PayloadType>,
    pub max_payload_length: Option<u64>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// The global limit, used when creating without `maxPayloadLength`.
    pub default_max_payload_length: u64,
}

const COLUMNS: &str = "uuid, event_key, payload_type, max_payload_length, description, enabled, \
                       created_at, updated_at, message_count, last_received_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<WebhookRow> {
    let payload_type: String = r.get(2)?;
    Ok(WebhookRow {
        uuid: r.get(0)?,
        event_key: r.get(1)?,
        payload_type: PayloadType::parse(&payload_type).unwrap_or_default(),
        max_payload_length: r.get::<_, i64>(3)? as u64,
        description: r.get(4)?,
        enabled: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        message_count: r.get::<_, i64>(8)? as u64,
        last_received_at: r.get(9)?,
    })
}

/// Every webhook, oldest first.
pub fn load_all(conn: &Connection) -> Result<Vec<WebhookRow>, StoreError> {
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM webhooks ORDER BY created_at, uuid"
    ))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One webhook by uuid.
pub fn get(conn: &Connection, uuid: &str) -> Result<Option<WebhookRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM webhooks WHERE uuid = ?1"),
            [uuid],
            from_row,
        )
        .optional()?)
}

pub(super) fn put(
    conn: &Connection,
    put: WebhookPut,
    now: i64,
    public_url: &str,
) -> Result<Applied, StoreError> {
    let existing = match &put.uuid {
        Some(uuid) => get(conn, uuid)?,
        None => None,
    };
    let created = existing.is_none();
    let row = match existing {
        Some(mut w) => {
            if let Some(v) = put.event_key {
                w.event_key = v;
            }
            if let Some(v) = put.payload_type {
                w.payload_type = v;
            }
            if let Some(v) = put.max_payload_length {
                w.max_payload_length = v;
            }
            if let Some(v) = put.description {
                w.description = v;
            }
            if let Some(v) = put.enabled {
                w.enabled = v;
            }
            w.updated_at = now;
            conn.execute(
                "UPDATE webhooks SET event_key = ?2, payload_type = ?3, max_payload_length = ?4, \
                 description = ?5, enabled = ?6, updated_at = ?7 WHERE uuid = ?1",
                params![
                    w.uuid,
                    w.event_key,
                    w.payload_type.as_str(),
                    w.max_payload_length as i64,
                    w.description,
                    w.enabled,
                    w.updated_at
                ],
            )?;
            w
        }
        None => {
            let event_key = put.event_key.ok_or_else(|| {
                StoreError::Invalid(
                    "eventKey is required when creating a webhook, e.g. eventKey=webhook.github.push"
                        .into(),
                )
            })?;
            let w = WebhookRow {
                uuid: put.uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                event_key,
                payload_type: put.payload_type.unwrap_or_default(),
                max_payload_length: put
                    .max_payload_length
                    .unwrap_or(put.default_max_payload_length),
                description: put.description.unwrap_or_default(),
                enabled: put.enabled.unwrap_or(true),
                created_at: now,
                updated_at: now,
                message_count: 0,
                last_received_at: None,
            };
            conn.execute(
                &format!("INSERT INTO webhooks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, NULL)"),
                params![
                    w.uuid,
                    w.event_key,
                    w.payload_type.as_str(),
                    w.max_payload_length as i64,
                    w.description,
                    w.enabled,
                    w.created_at,
                    w.updated_at
                ],
            )?;
            w
        }
    };
    let kind = if created {
        EventType::WebhookCreated
    } else {
        EventType::WebhookUpdated
    };
    let data = EventData::Json(serde_json::to_value(row.to_api(public_url)).unwrap_or_default());
    let event = log_event(conn, kind, now, Some(&row.event_key), None, data)?;
    let mut applied = Applied::new(Outcome::Webhook(row.clone(), created));
    applied.events.push(event);
    applied.effects.push(Effect::CacheWebhook(Arc::new(row)));
    Ok(applied)
}

pub(super) fn delete(
    conn: &Connection,
    uuid: &str,
    now: i64,
    public_url: &str,
) -> Result<Applied, StoreError> {
    let row = get(conn, uuid)?.ok_or_else(|| StoreError::NotFound(no_such_webhook(uuid)))?;
    conn.execute("DELETE FROM webhooks WHERE uuid = ?1", [uuid])?;
    let data = EventData::Json(serde_json::to_value(row.to_api(public_url)).unwrap_or_default());
    let event = log_event(
        conn,
        EventType::WebhookDeleted,
        now,
        Some(&row.event_key),
        None,
        data,
    )?;
    let mut applied = Applied::new(Outcome::Webhook(row, false));
    applied.events.push(event);
    applied
        .effects
        .push(Effect::UncacheWebhook(uuid.to_string()));
    Ok(applied)
}

/// The message for an unknown uuid in management commands.
pub fn no_such_webhook(uuid: &str) -> String {
    format!("no webhook with uuid {uuid}; webhook.get lists them")
}
