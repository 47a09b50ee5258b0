//! The storage port: everything the daemon stores or reads goes through [`Storage`], in the
//! domain's types (`model/`). Adapters implement it: `sqlite/` (the default: one writer thread
//! with group commit, reader threads, body files and segments beside the database) and, later,
//! PostgreSQL. Nothing outside an adapter knows SQL or its backend's notions.
//!
//! A write returns once it is committed; its events are published on the bus after the commit.
//! Reads that requests make are refused with [`StoreError::Busy`] when the backend is saturated
//! (the client is told to retry); reads that background work makes wait for room instead, since
//! their own concurrency is bounded.

#[cfg(test)]
pub(crate) mod conformance;
mod error;
pub mod ids;
pub mod model;
pub mod spool;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use hookd_shared::{Delivery, MessageSummary, StoreStats};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::{StorageUrl, Synchronous};
use crate::events::{Bus, BusEvent};
use crate::retention::RetentionConfig;
pub use error::{StoreError, retry_pause};
pub use model::backup::Manifest;
pub use model::deliveries::{self, AttemptRecord, DeliveryRow, NewDelivery};
pub use model::messages::{
    self, BodySource, Capture, CapturedBody, MessageRecord, PartRecord, StoredBody,
};
pub use model::pipelines::{self, ExecutionRow, Finish, NewExecution, PipelineRow};
pub use model::retention::{self, Pruned};
pub use model::tokens::{TokenAuth, TokenRow};
pub use model::webhooks::{self, WebhookPut, WebhookRow};

/// A handle to the storage in use; cheap to clone.
pub type Store = Arc<dyn Storage>;

/// What a capture came to.
pub enum Captured {
    Stored(Arc<MessageSummary>),
    /// A repeat within the dedupe window: the original message's id.
    Duplicate(String),
}

/// The bootstrap admin token's file in the data dir (kept in backups).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Rows pruned per call of [`Storage::prune_events`]: a call that pruned fewer found no more.
pub const PRUNE_CHUNK: usize = 10_000;

/// Bytes the backend's files take on disk, for the gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub database_bytes: u64,
    /// The write-ahead log's (0 where there is none to report).
    pub log_bytes: u64,
}

/// What opening a store needs, whichever the backend.
pub struct StoreConfig {
    /// Which backend, and where: `sqlite://<path>` (see [`StorageUrl`]).
    pub url: StorageUrl,
    pub synchronous: Synchronous,
    /// Base of `webhookUrl` in webhook events.
    pub public_url: String,
    pub bus: Bus,
    /// What pruning keeps.
    pub retention: RetentionConfig,
}

/// Opens the backend `cfg.url` names (creating or upgrading its schema). Blocking: call it off
/// the runtime.
pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
    match &cfg.url {
        StorageUrl::Sqlite(_) => Ok(Arc::new(sqlite::SqliteStore::open(cfg)?)),
    }
}

/// Restores a backup archive into the store `url` names, which must be empty. Blocking.
pub fn restore(
    archive: impl std::io::Read,
    url: &StorageUrl,
) -> Result<Manifest, sqlite::backup::RestoreError> {
    match url {
        StorageUrl::Sqlite(dir) => sqlite::backup::restore(archive, dir),
    }
}

/// Everything the daemon stores, in domain types.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    // --- Lookups from memory (the adapter keeps them current on every change). ---

    /// The webhook with this uuid.
    fn webhook(&self, uuid: &str) -> Option<Arc<WebhookRow>>;
    /// The stored pipelines whose `event.listen` pattern matches `event_key`, by name: what a
    /// message or an `event.send` of that key runs. Changes take effect at the commit.
    fn listeners_of(&self, event_key: &str) -> Vec<String>;
    /// The listeners of `event_key` with a new trace id for their runs; `None` when nothing
    /// listens.
    fn listeners_for(&self, event_key: &str) -> Option<pipelines::Listeners> {
        let pipelines = self.listeners_of(event_key);
        (!pipelines.is_empty()).then(|| pipelines::Listeners {
            pipelines,
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
        })
    }
    /// Who a token hash belongs to.
    fn token(&self, hash: &[u8; 32]) -> Option<TokenAuth>;
    /// The token called `name` (names are how pipelines refer to users in iam.run.as).
    fn token_by_name(&self, name: &str) -> Option<TokenAuth>;
    /// Accepts a token that is not stored (the `HOOKD_ADMIN_TOKEN` one) until the daemon stops.
    fn accept_unstored_token(&self, hash: [u8; 32], auth: TokenAuth);
    /// The base of every `webhookUrl`.
    fn public_url(&self) -> &str;
    /// The daemon's retention limits.
    fn retention(&self) -> &RetentionConfig;
    /// A webhook's API view, with its URL and the retention in force.
    fn webhook_view(&self, w: &WebhookRow) -> hookd_shared::Webhook {
        w.to_api(self.public_url(), &self.retention().messages)
    }
    /// Where receive spools a large body before its capture (fsynced there; the adapter takes
    /// the file over at commit, and deletes what no committed capture names at start-up).
    fn incoming_dir(&self) -> &Path;

    // --- Captures and management writes. ---

    /// Commits a captured request; returns once it is on disk (or found to be a duplicate).
    async fn capture(&self, c: Capture) -> Result<Captured, StoreError>;
    /// Creates or edits a webhook; `true` when it was created.
    async fn put_webhook(&self, put: WebhookPut) -> Result<(WebhookRow, bool), StoreError>;
    /// Deletes a webhook (its messages stay).
    async fn delete_webhook(&self, uuid: String) -> Result<WebhookRow, StoreError>;
    /// Stores a new token.
    async fn create_token(&self, t: TokenRow) -> Result<TokenRow, StoreError>;
    /// Deletes a token by id.
    async fn delete_token(&self, id: String) -> Result<TokenRow, StoreError>;
    /// Stores (creates or replaces) a pipeline; `true` when it was created.
    async fn put_pipeline(&self, row: PipelineRow) -> Result<(PipelineRow, bool), StoreError>;
    /// Deletes a pipeline.
    async fn delete_pipeline(&self, name: String) -> Result<PipelineRow, StoreError>;

    // --- Reads for requests (refused with `Busy` when saturated). ---

    /// Every webhook as stored now (with its counters), oldest first.
    async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError>;
    /// One webhook as stored now.
    async fn webhook_stored(&self, uuid: String) -> Result<Option<WebhookRow>, StoreError>;
    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
    /// Messages, newest first, filtered.
    async fn messages(
        &self,
        filter: messages::ListFilter,
    ) -> Result<Vec<MessageSummary>, StoreError>;
    /// One message by id, with up to `preview` bytes of its body (part hashes filled in).
    async fn message_preview(
        &self,
        id: Uuid,
        preview: u64,
    ) -> Result<Option<(MessageRecord, Vec<u8>)>, StoreError>;
    /// One message by id, without its body.
    async fn message(&self, id: Uuid) -> Result<Option<MessageRecord>, StoreError>;
    /// One pipeline by name.
    async fn pipeline(&self, name: String) -> Result<Option<PipelineRow>, StoreError>;
    /// Executions, newest first, filtered.
    async fn executions(
        &self,
        filter: pipelines::ExecutionFilter,
    ) -> Result<Vec<ExecutionRow>, StoreError>;
    /// One execution by id.
    async fn execution(&self, id: Uuid) -> Result<Option<ExecutionRow>, StoreError>;
    /// Deliveries, newest first, filtered.
    async fn deliveries(
        &self,
        filter: deliveries::ListFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    /// One delivery with its attempts.
    async fn delivery(&self, seq: i64) -> Result<Option<Delivery>, StoreError>;
    /// Rows and bytes per kind (the retention part is the caller's to fill in).
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Deliveries still to be attempted.
    async fn pending_deliveries(&self) -> Result<u64, StoreError>;
    /// The backend's files on disk.
    fn disk_usage(&self) -> DiskUsage;

    // --- Reads for background work (they wait for room). ---

    /// Every pipeline, by name.
    async fn pipelines(&self) -> Result<Vec<PipelineRow>, StoreError>;
    /// Admin tokens stored.
    async fn admin_count(&self) -> Result<u64, StoreError>;
    /// The message stored at `seq` with its whole body (part hashes filled in); `None` once
    /// it is pruned.
    async fn message_with_body(
        &self,
        seq: i64,
    ) -> Result<Option<(MessageRecord, Vec<u8>)>, StoreError>;
    /// Up to `limit` events after `cursor`, in order.
    async fn events_after(&self, cursor: u64, limit: u32) -> Result<Vec<BusEvent>, StoreError>;
    /// The oldest and newest event seq kept, if any.
    async fn event_bounds(&self) -> Result<Option<(u64, u64)>, StoreError>;
    /// Executions waiting for a worker, oldest first.
    async fn queued_executions(&self) -> Result<Vec<i64>, StoreError>;
    /// The dispatch cursor left by hookd before schema 8, if any.
    async fn dispatch_cursor(&self) -> Result<Option<u64>, StoreError>;
    /// Up to `limit` deliveries due at `now`.
    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<DeliveryRow>, StoreError>;
    /// When the next pending delivery is due, if any.
    async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError>;

    // --- Bodies. ---

    /// `len` bytes of a message's body from `offset`, to stream out.
    fn body_source(
        &self,
        rec: &MessageRecord,
        offset: u64,
        len: u64,
    ) -> Result<BodySource, StoreError>;

    // --- Pipeline runs. ---

    /// The queue of executions for the pipeline workers: every execution a capture queues
    /// arrives on it after its commit. `None` once taken.
    fn take_run_queue(&self) -> Option<mpsc::UnboundedReceiver<i64>>;
    /// Hands queued executions to the pipeline workers.
    fn enqueue_runs(&self, seqs: Vec<i64>);
    /// Drops the dispatch cursor of hookd before schema 8, once what it left is dispatched.
    async fn forget_dispatch_cursor(&self) -> Result<(), StoreError>;
    /// Queues executions (and moves the dispatch cursor); returns their (seq, id).
    async fn queue_executions(
        &self,
        new: Vec<NewExecution>,
        cursor: Option<u64>,
    ) -> Result<Vec<(i64, String)>, StoreError>;
    /// Marks a queued execution running.
    async fn start_execution(&self, seq: i64) -> Result<ExecutionRow, StoreError>;
    /// Records how an execution ended.
    async fn finish_execution(&self, f: Finish) -> Result<ExecutionRow, StoreError>;
    /// Queues the record of how an execution ended and returns once it is queued ahead of any
    /// write sent after it, so a worker can start its next run without waiting for this commit.
    /// The returned future resolves when the record is committed.
    async fn finish_execution_queued(
        &self,
        f: Finish,
    ) -> Result<BoxFuture<'static, Result<(), StoreError>>, StoreError>;

    // --- Deliveries. ---

    /// Commits a delivery (before its first attempt).
    async fn create_delivery(&self, d: NewDelivery) -> Result<DeliveryRow, StoreError>;
    /// Records an attempt and what comes next.
    async fn record_attempt(&self, a: AttemptRecord) -> Result<DeliveryRow, StoreError>;
    /// Schedules a new attempt now.
    async fn retry_delivery(&self, seq: i64) -> Result<DeliveryRow, StoreError>;
    /// Cancels a pending delivery.
    async fn cancel_delivery(&self, seq: i64) -> Result<DeliveryRow, StoreError>;

    // --- Operations. ---

    /// Deletes old events beyond the limits (at most [`PRUNE_CHUNK`] per call); returns how many.
    async fn prune_events(&self, max_count: u64, before_ms: i64) -> Result<usize, StoreError>;
    /// One chunk of pruning by the retention limits; bodies pruned `grace` ago are freed.
    async fn prune(&self, grace: Duration) -> Result<Pruned, StoreError>;
    /// Writes a consistent backup archive to `out`. Blocking: run it off the runtime.
    fn backup(&self, out: &mut dyn std::io::Write) -> Result<Manifest, StoreError>;
    /// Commits a small write: proves the store is writable.
    async fn health(&self) -> Result<(), StoreError>;
    /// Lets queued writes commit, then stops. Later writes fail with `Closed`.
    async fn shutdown(&self);
}

/// Prunes chunk after chunk until nothing more is due; returns the sum. After a chunk that took
/// `d`, waits `pause(d)`, so a large prune can leave the store to receives.
pub async fn prune_all(
    store: &dyn Storage,
    grace: Duration,
    pause: impl Fn(Duration) -> Duration,
) -> Result<Pruned, StoreError> {
    let mut total = Pruned::default();
    loop {
        let started = std::time::Instant::now();
        let p = store.prune(grace).await?;
        total.add(&p);
        if !p.more {
            return Ok(total);
        }
        let wait = pause(started.elapsed());
        if wait.is_zero() {
            // Let the captures queued behind this chunk in before the next one.
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}
