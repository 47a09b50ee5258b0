//! Outgoing deliveries and their attempts, as the domain sees them.

use hookd_shared::DeliverySummary;

use crate::clock::rfc3339;
use crate::store::ids::public_id;

/// A delivery to commit.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The `webhook-id` (same for every attempt).
    pub msg_id: String,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    /// The body, or `None` to send the exact body of `message_seq`.
    pub body: Option<Vec<u8>>,
    pub message_seq: Option<i64>,
    pub message_id: Option<String>,
    pub secret: Option<String>,
    pub timeout_ms: i64,
    /// Delay before each attempt, in ms (the first is usually 0).
    pub schedule: Vec<i64>,
    pub max_attempts: u32,
    pub source: String,
    /// May reach loopback (message.forward to a local URL).
    pub local: bool,
}

/// A stored delivery.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub seq: i64,
    pub created_at: i64,
    pub msg_id: String,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub message_seq: Option<i64>,
    pub message_id: Option<String>,
    pub secret: Option<String>,
    pub timeout_ms: i64,
    pub schedule: Vec<i64>,
    pub max_attempts: u32,
    pub attempts: u32,
    pub status: String,
    pub next_attempt_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub source: String,
    pub local: bool,
}

impl DeliveryRow {
    /// Its public id.
    pub fn id(&self) -> String {
        public_id(self.created_at, self.seq).to_string()
    }

    /// The list view.
    pub fn summary(&self) -> DeliverySummary {
        DeliverySummary {
            id: self.id(),
            url: self.url.clone(),
            method: self.method.clone(),
            status: self.status.clone(),
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            next_attempt_at: self.next_attempt_at.map(rfc3339),
            last_status: self.last_status,
            last_error: self.last_error.clone(),
            created_at: rfc3339(self.created_at),
            webhook_id: self.msg_id.clone(),
            source: self.source.clone(),
            message_id: self.message_id.clone(),
        }
    }
}

/// Filters of `delivery.list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub url_prefix: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// What an attempt found, and what happens next.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub seq: i64,
    pub at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    pub error: Option<String>,
    pub next: Next,
}

/// After an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Succeeded,
    /// No more attempts (410 Gone, or the last one failed).
    Failed,
    /// Try again at this time (ms).
    RetryAt(i64),
}

/// The message for an unknown delivery.
pub fn no_such_delivery(seq: i64) -> String {
    format!("no delivery {seq}; delivery.list shows them")
}
