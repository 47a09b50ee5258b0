//! Events: what the daemon publishes on its bus and streams to clients.

use serde::{Deserialize, Serialize};

/// The kinds of event, named as on the wire (`message.received`, ...).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum EventType {
    #[serde(rename = "webhook.created")]
    WebhookCreated,
    #[serde(rename = "webhook.updated")]
    WebhookUpdated,
    #[serde(rename = "webhook.deleted")]
    WebhookDeleted,
    #[serde(rename = "message.received")]
    MessageReceived,
}

impl EventType {
    /// Every type, for parsing and for `?types=` filters.
    pub const ALL: [EventType; 4] = [
        EventType::WebhookCreated,
        EventType::WebhookUpdated,
        EventType::WebhookDeleted,
        EventType::MessageReceived,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::WebhookCreated => "webhook.created",
            EventType::WebhookUpdated => "webhook.updated",
            EventType::WebhookDeleted => "webhook.deleted",
            EventType::MessageReceived => "message.received",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One committed event: `{"seq", "type", "at", "data"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event {
    /// Increases by one per event over the daemon's whole life.
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339 time of the commit.
    pub at: String,
    pub data: serde_json::Value,
}
