//! What pruning by retention did.

/// How long a pruned body's bytes stay on disk after its row is deleted.
pub const GRACE_MS: i64 = 60_000;

/// What one call pruned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub messages: u64,
    /// Body bytes of the pruned messages.
    pub message_bytes: u64,
    pub executions: u64,
    pub deliveries: u64,
    /// Body files deleted and segment bytes punched out (of messages pruned a grace period ago).
    pub files_deleted: u64,
    pub segment_bytes_freed: u64,
    /// The chunk was used up: call again.
    pub more: bool,
}

impl Pruned {
    /// Adds another call's counts.
    pub fn add(&mut self, o: &Pruned) {
        self.messages += o.messages;
        self.message_bytes += o.message_bytes;
        self.executions += o.executions;
        self.deliveries += o.deliveries;
        self.files_deleted += o.files_deleted;
        self.segment_bytes_freed += o.segment_bytes_freed;
        self.more = o.more;
    }
}
