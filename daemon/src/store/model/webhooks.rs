//! Webhooks as stored, and the edits `webhook.put` makes.

use hookd_shared::{PayloadType, RECEIVE_PATH, Webhook};
use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;
use crate::retention::{Limits, Override};
use hookd_shared::verify::VerifyConfig;

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
    pub verify: Option<VerifyConfig>,
    /// `None`: the default idempotency headers; `Some("none")`: no dedupe; else a header.
    pub dedupe: Option<String>,
    /// Seconds.
    pub dedupe_window: i64,
    pub rate_limit: Option<RateLimit>,
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// This webhook's own retention, over the daemon's.
    pub retention: Option<Override>,
    /// Messages stored now (accepted and rejected) and their body bytes.
    pub stored_count: u64,
    pub stored_bytes: u64,
}

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// Dedupe window when none is set: 24 h.
pub const DEFAULT_DEDUPE_WINDOW: i64 = 24 * 3600;

impl WebhookRow {
    /// The retention in force, given the daemon's limits.
    pub fn limits(&self, daemon: &Limits) -> Limits {
        self.retention.as_ref().map_or(*daemon, |o| o.over(daemon))
    }

    /// The API view, with its receive URL under `public_url` and the retention in force given
    /// the daemon's `retention`.
    pub fn to_api(&self, public_url: &str, retention: &Limits) -> Webhook {
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
            verify: self.verify.as_ref().map(VerifyConfig::masked),
            dedupe: self.dedupe.clone(),
            dedupe_window: self.dedupe_window.max(0) as u64,
            rate_limit: self.rate_limit.and_then(|r| serde_json::to_value(r).ok()),
            allow_cidrs: self.allow_cidrs.iter().map(ToString::to_string).collect(),
            retention: self.limits(retention).view(),
            retention_override: self.retention.as_ref().map(Override::view),
            stored_count: self.stored_count,
            stored_bytes: self.stored_bytes,
        }
    }
}

/// The URL external systems call for the webhook `uuid`.
pub fn webhook_url(public_url: &str, uuid: &str) -> String {
    format!("{public_url}{RECEIVE_PATH}?uuid={uuid}")
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
    /// `Some(None)` removes verification.
    pub verify: Option<Option<VerifyConfig>>,
    /// `Some(None)` goes back to the default idempotency headers.
    pub dedupe: Option<Option<String>>,
    pub dedupe_window: Option<i64>,
    /// `Some(None)` removes the limit.
    pub rate_limit: Option<Option<RateLimit>>,
    pub allow_cidrs: Option<Vec<ipnet::IpNet>>,
    /// `Some(None)` removes the override: the daemon's retention applies.
    pub retention: Option<Option<Override>>,
    /// The global limit, used when creating without `maxPayloadLength`.
    pub default_max_payload_length: u64,
}

/// The message for an unknown uuid in management commands.
pub fn no_such_webhook(uuid: &str) -> String {
    format!("no webhook with uuid {uuid}; webhook.get lists them")
}
