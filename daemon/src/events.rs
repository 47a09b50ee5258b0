//! The in-process event bus. The store publishes every event right after the commit that
//! logged it, in commit order; listeners and stream sessions subscribe.

use std::sync::Arc;

use hookd_shared::{EventType, ExecutionSummary, MessageSummary};
use serde_json::Value;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it is told it lagged. A lagging
/// subscriber catches up from the event log, so this bounds memory, not correctness.
const CAPACITY: usize = 8192;

/// A committed event as it travels inside the daemon. Payloads stay typed until a subscriber
/// needs JSON, so the receive path builds no JSON tree for an event nobody may read.
#[derive(Debug, Clone)]
pub struct BusEvent {
    pub seq: u64,
    pub kind: EventType,
    /// Commit time, Unix milliseconds.
    pub at: i64,
    pub data: EventData,
}

/// What an event carries.
#[derive(Debug, Clone)]
pub enum EventData {
    Message(Arc<MessageSummary>),
    /// `execution.*` events: two per run, so worth skipping the JSON tree for too.
    Execution(Arc<ExecutionSummary>),
    Json(Value),
}

impl EventData {
    /// The payload as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            EventData::Message(m) => serde_json::to_value(m.as_ref()).unwrap_or_default(),
            EventData::Execution(e) => serde_json::to_value(e.as_ref()).unwrap_or_default(),
            EventData::Json(v) => v.clone(),
        }
    }

    /// The event key the payload is about, for `eventKey` filters.
    pub fn event_key(&self) -> Option<&str> {
        match self {
            EventData::Message(m) => Some(&m.event_key),
            EventData::Execution(e) => e.event_key.as_deref(),
            EventData::Json(v) => v.get("eventKey").and_then(Value::as_str),
        }
    }
}

/// Fan-out of committed events; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<BusEvent>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Bus {
    /// Sends a committed event to every current subscriber; never blocks.
    pub fn publish(&self, event: BusEvent) {
        // No subscribers is fine: the event is already in the log.
        let _ = self.tx.send(Arc::new(event));
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusEvent>> {
        self.tx.subscribe()
    }
}
