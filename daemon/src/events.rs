//! The in-process event bus. The store publishes every event right after the commit that
//! logged it, in commit order; listeners and stream sessions subscribe.

use std::sync::Arc;

use hookd_shared::Event;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it is told it lagged. A lagging
/// subscriber catches up from the event log, so this bounds memory, not correctness.
const CAPACITY: usize = 8192;

/// Fan-out of committed events; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Event>>,
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
    pub fn publish(&self, event: Event) {
        // No subscribers is fine: the event is already in the log.
        let _ = self.tx.send(Arc::new(event));
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
