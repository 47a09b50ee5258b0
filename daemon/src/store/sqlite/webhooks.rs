//! Webhook rows: creation, edits, deletion and queries.

use std::sync::Arc;

use hookd_shared::{EventType, PayloadType};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::StoreError;
use super::event_log::log_event;
use super::op::{Applied, Effect, Outcome};
use crate::events::EventData;
use crate::retention::{self, Limits, Override};
pub use crate::store::model::webhooks::*;

const COLUMNS: &str = "uuid, event_key, payload_type, max_payload_length, description, enabled, \
                       created_at, updated_at, message_count, last_received_at, verify, dedupe, \
                       dedupe_window, rate_limit, allow_cidrs, retention, stored_count, \
                       stored_bytes";

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
        verify: json_col(r, 10)?,
        dedupe: r.get(11)?,
        dedupe_window: r
            .get::<_, Option<i64>>(12)?
            .unwrap_or(DEFAULT_DEDUPE_WINDOW),
        rate_limit: json_col(r, 13)?,
        allow_cidrs: json_col::<Vec<String>>(r, 14)?
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
        retention: r
            .get::<_, Option<String>>(15)?
            .as_deref()
            .and_then(retention::from_stored),
        stored_count: r.get::<_, i64>(16)?.max(0) as u64,
        stored_bytes: r.get::<_, i64>(17)?.max(0) as u64,
    })
}

/// A JSON column, `None` when NULL (or unreadable: written by a newer hookd).
fn json_col<T: serde::de::DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<T>> {
    Ok(r.get::<_, Option<String>>(i)?
        .and_then(|s| serde_json::from_str(&s).ok()))
}

fn to_json<T: Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
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
    retention: &Limits,
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
            if let Some(v) = put.verify {
                w.verify = v;
            }
            if let Some(v) = put.dedupe {
                w.dedupe = v;
            }
            if let Some(v) = put.dedupe_window {
                w.dedupe_window = v;
            }
            if let Some(v) = put.rate_limit {
                w.rate_limit = v;
            }
            if let Some(v) = put.allow_cidrs {
                w.allow_cidrs = v;
            }
            if let Some(v) = put.retention {
                w.retention = v;
            }
            w.updated_at = now;
            conn.execute(
                "UPDATE webhooks SET event_key = ?2, payload_type = ?3, max_payload_length = ?4, \
                 description = ?5, enabled = ?6, updated_at = ?7, verify = ?8, dedupe = ?9, \
                 dedupe_window = ?10, rate_limit = ?11, allow_cidrs = ?12, retention = ?13 \
                 WHERE uuid = ?1",
                params![
                    w.uuid,
                    w.event_key,
                    w.payload_type.as_str(),
                    w.max_payload_length as i64,
                    w.description,
                    w.enabled,
                    w.updated_at,
                    to_json(&w.verify),
                    w.dedupe,
                    w.dedupe_window,
                    to_json(&w.rate_limit),
                    cidrs_json(&w.allow_cidrs),
                    retention_json(&w.retention),
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
            let uuid = put.uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            // A webhook created again with the uuid of a deleted one takes its stored messages
            // (and their counters) back.
            let retired: Option<(i64, i64)> = conn
                .query_row(
                    "DELETE FROM retired_webhooks WHERE uuid = ?1 \
                     RETURNING stored_count, stored_bytes",
                    [&uuid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (stored_count, stored_bytes) = retired.unwrap_or((0, 0));
            let w = WebhookRow {
                uuid,
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
                verify: put.verify.flatten(),
                dedupe: put.dedupe.flatten(),
                dedupe_window: put.dedupe_window.unwrap_or(DEFAULT_DEDUPE_WINDOW),
                rate_limit: put.rate_limit.flatten(),
                allow_cidrs: put.allow_cidrs.unwrap_or_default(),
                retention: put.retention.flatten(),
                stored_count: stored_count.max(0) as u64,
                stored_bytes: stored_bytes.max(0) as u64,
            };
            conn.execute(
                &format!(
                    "INSERT INTO webhooks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, NULL, \
                     ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ),
                params![
                    w.uuid,
                    w.event_key,
                    w.payload_type.as_str(),
                    w.max_payload_length as i64,
                    w.description,
                    w.enabled,
                    w.created_at,
                    w.updated_at,
                    to_json(&w.verify),
                    w.dedupe,
                    w.dedupe_window,
                    to_json(&w.rate_limit),
                    cidrs_json(&w.allow_cidrs),
                    retention_json(&w.retention),
                    w.stored_count as i64,
                    w.stored_bytes as i64,
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
    let data = EventData::Json(
        serde_json::to_value(row.to_api(public_url, retention)).unwrap_or_default(),
    );
    let event = log_event(conn, kind, now, Some(&row.event_key), None, data)?;
    let mut applied = Applied::new(Outcome::Webhook(Box::new(row.clone()), created));
    applied.events.push(event);
    applied.effects.push(Effect::CacheWebhook(Arc::new(row)));
    Ok(applied)
}

pub(super) fn delete(
    conn: &Connection,
    uuid: &str,
    now: i64,
    public_url: &str,
    retention: &Limits,
) -> Result<Applied, StoreError> {
    let row = get(conn, uuid)?.ok_or_else(|| StoreError::NotFound(no_such_webhook(uuid)))?;
    conn.execute("DELETE FROM webhooks WHERE uuid = ?1", [uuid])?;
    // Its messages stay, and so does their retention.
    if row.stored_count > 0 {
        conn.execute(
            "INSERT INTO retired_webhooks (uuid, retention, stored_count, stored_bytes) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (uuid) DO UPDATE SET \
             retention = excluded.retention, \
             stored_count = stored_count + excluded.stored_count, \
             stored_bytes = stored_bytes + excluded.stored_bytes",
            params![
                uuid,
                retention_json(&row.retention),
                row.stored_count as i64,
                row.stored_bytes as i64
            ],
        )?;
    }
    let data = EventData::Json(
        serde_json::to_value(row.to_api(public_url, retention)).unwrap_or_default(),
    );
    let event = log_event(
        conn,
        EventType::WebhookDeleted,
        now,
        Some(&row.event_key),
        None,
        data,
    )?;
    let mut applied = Applied::new(Outcome::Webhook(Box::new(row), false));
    applied.events.push(event);
    applied
        .effects
        .push(Effect::UncacheWebhook(uuid.to_string()));
    Ok(applied)
}

fn retention_json(r: &Option<Override>) -> Option<String> {
    r.as_ref().map(|o| o.to_json().to_string())
}

fn cidrs_json(c: &[ipnet::IpNet]) -> Option<String> {
    (!c.is_empty()).then(|| {
        serde_json::to_string(&c.iter().map(ToString::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    })
}
