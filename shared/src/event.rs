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
    #[serde(rename = "message.rejected")]
    MessageRejected,
    #[serde(rename = "pipeline.created")]
    PipelineCreated,
    #[serde(rename = "pipeline.updated")]
    PipelineUpdated,
    #[serde(rename = "pipeline.deleted")]
    PipelineDeleted,
    #[serde(rename = "execution.started")]
    ExecutionStarted,
    #[serde(rename = "execution.finished")]
    ExecutionFinished,
    #[serde(rename = "delivery.attempted")]
    DeliveryAttempted,
    #[serde(rename = "delivery.succeeded")]
    DeliverySucceeded,
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
    /// Not logged: tells a stream client it fell behind (and how many events it lost, if any).
    #[serde(rename = "stream.lagged")]
    StreamLagged,
}

impl EventType {
    /// Every type, for parsing and for `?types=` filters.
    pub const ALL: [EventType; 14] = [
        EventType::WebhookCreated,
        EventType::WebhookUpdated,
        EventType::WebhookDeleted,
        EventType::MessageReceived,
        EventType::MessageRejected,
        EventType::PipelineCreated,
        EventType::PipelineUpdated,
        EventType::PipelineDeleted,
        EventType::ExecutionStarted,
        EventType::ExecutionFinished,
        EventType::DeliveryAttempted,
        EventType::DeliverySucceeded,
        EventType::DeliveryFailed,
        EventType::StreamLagged,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::WebhookCreated => "webhook.created",
            EventType::WebhookUpdated => "webhook.updated",
            EventType::WebhookDeleted => "webhook.deleted",
            EventType::MessageReceived => "message.received",
            EventType::MessageRejected => "message.rejected",
            EventType::PipelineCreated => "pipeline.created",
            EventType::PipelineUpdated => "pipeline.updated",
            EventType::PipelineDeleted => "pipeline.deleted",
            EventType::ExecutionStarted => "execution.started",
            EventType::ExecutionFinished => "execution.finished",
            EventType::DeliveryAttempted => "delivery.attempted",
            EventType::DeliverySucceeded => "delivery.succeeded",
            EventType::DeliveryFailed => "delivery.failed",
            EventType::StreamLagged => "stream.lagged",
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

/// `data` of a `stream.lagged` frame.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Lagged {
    /// Events the client will never get (pruned from the log); 0 when it catches up from the log.
    pub missed: u64,
    pub reason: String,
}
