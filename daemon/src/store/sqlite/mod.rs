//! The SQLite adapter of the storage port. One writer thread commits batches (group commit) and
//! answers each operation only after its batch is committed; reader threads serve queries on
//! their own read-only connections. The async side talks to both through channels, so no
//! rusqlite type ever crosses an `.await`.

pub mod backup;
mod checkpoint;
pub mod deliveries;
mod event_log;
pub mod events;
pub mod files;
pub mod messages;
mod op;
mod page;
pub mod pipelines;
mod reader;
pub mod retention;
pub mod schema;
pub mod segments;
mod spans;
pub mod stats;
pub mod tokens;
pub mod webhooks;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use hookd_shared::{Delivery, MessageSummary, StoreStats};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::Synchronous;
use crate::events::{Bus, BusEvent};
use crate::retention::RetentionConfig;
use crate::store::ids;
use crate::store::{
    BodySource, DiskUsage, ExecutionRow, Finish, Manifest, MessageRecord, NewExecution,
    PipelineRow, Pruned, Storage, StoredBody,
};
pub use crate::store::{Captured, StoreConfig, StoreError};
pub use files::Dirs;
pub use messages::Capture;
#[cfg(test)]
use messages::{CapturedBody, PartRecord};
use op::{Job, Op, Outcome};
pub use tokens::{TokenAuth, TokenRow};
pub use webhooks::{WebhookPut, WebhookRow};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Operations queued for the writer before senders wait; bounds memory under bursts.
const WRITE_QUEUE: usize = 4096;
/// Reader threads; each has its own connection.
const READERS: usize = 2;
/// Queries queued or running at once on the readers; a request past it gets 503 at once.
const READ_QUEUE: usize = 512;
/// Page cache of each reader connection, as SQLite's negative-KiB `cache_size`.
const READER_CACHE_KIB: i64 = -512;

/// The SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: mpsc::Sender<Job>,
    readers: reader::Pool,
    shared: Arc<Shared>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// The workers' end of `Shared::runs`, until they take it.
    run_queue: Mutex<Option<mpsc::UnboundedReceiver<i64>>>,
    /// Held for the store's life: one daemon per data dir.
    _lock: std::fs::File,
}

/// State the writer updates after each commit and the async side reads without a query.
pub(crate) struct Shared {
    webhooks: RwLock<HashMap<String, Arc<WebhookRow>>>,
    tokens: RwLock<HashMap<[u8; 32], TokenAuth>>,
    /// Each listener's `event.listen` pattern, by pipeline name (ordered, so runs queue in the
    /// order of their names).
    listeners: RwLock<BTreeMap<String, String>>,
    dirs: Dirs,
    bus: Bus,
    public_url: String,
    /// The daemon's retention limits.
    retention: RetentionConfig,
    /// Queued executions for the pipeline workers, sent after their commit.
    runs: mpsc::UnboundedSender<i64>,
    /// Backups running: while any is, pruned bodies are not freed (the backup may need them).
    backups: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn enqueue_runs(&self, seqs: impl IntoIterator<Item = i64>) {
        for s in seqs {
            // Closed only when the workers have stopped; the runs stay queued in the table.
            let _ = self.runs.send(s);
        }
    }
}

impl SqliteStore {
    /// Opens (creating or migrating) the database, settles files left by a crash, loads the
    /// webhook and token caches and starts the writer and reader threads.
    pub fn open(cfg: StoreConfig) -> Result<SqliteStore, StoreError> {
        let dirs = Dirs::create(cfg.url.sqlite_dir())?;
        let lock = dirs.lock()?;
        let mut conn = Connection::open(dirs.db())?;
        configure(&conn)?;
        conn.pragma_update(
            None,
            "synchronous",
            match cfg.synchronous {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            },
        )?;
        // Checkpoints run on their own thread (checkpoint.rs), never inside a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // After a burst, the WAL file shrinks back to this size once checkpointed. Above the
        // checkpointer's early threshold, so under a steady load the file is reused, not regrown.
        conn.pragma_update(None, "journal_size_limit", 128 * 1024 * 1024)?;
        schema::migrate(&mut conn)?;
        let interrupted = pipelines::fail_interrupted(&mut conn, crate::clock::now_ms())?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "pipeline runs were cut off by the last stop; marked failed"
            );
        }
        let (moved, deleted) = dirs.recover(&conn)?;
        let segments = segments::Segments::open(&dirs.segments)?;
        if moved + deleted > 0 {
            tracing::info!(moved, deleted, "settled body files left by an unclean stop");
        }
        let webhooks = webhooks::load_all(&conn)?
            .into_iter()
            .map(|w| (w.uuid.clone(), Arc::new(w)))
            .collect();
        let listeners = pipelines::load_all(&conn)?
            .into_iter()
            .filter_map(|p| Some((p.name, p.listen?)))
            .collect();
        let tokens = tokens::load_all(&conn)?
            .into_iter()
            .map(|t| (t.hash, t.auth()))
            .collect();
        let (runs, run_queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            webhooks: RwLock::new(webhooks),
            tokens: RwLock::new(tokens),
            listeners: RwLock::new(listeners),
            dirs: dirs.clone(),
            bus: cfg.bus,
            public_url: cfg.public_url,
            retention: cfg.retention,
            runs,
            backups: Default::default(),
        });
        let readers = reader::Pool::start(READERS, READ_QUEUE, || {
            let c = Connection::open_with_flags(
                dirs.db(),
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&c)?;
            // Readers serve short pages of recent rows; the OS page cache holds the rest. The
            // default 2 MiB each was idle memory (RSS at 1M messages, docs/BENCHMARKS.md).
            c.pragma_update(None, "cache_size", READER_CACHE_KIB)?;
            Ok(c)
        })?;
        let checkpoints = Connection::open(dirs.db())?;
        configure(&checkpoints)?;
        let db_file = std::fs::OpenOptions::new().write(true).open(dirs.db())?;
        let checkpointer =
            checkpoint::Checkpointer::start(checkpoints, db_file, checkpoint::EARLY_FRAMES)?;
        let wrap = checkpointer.watch(&mut conn)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hookd-writer".into())
            .spawn(move || {
                let conn = writer::run(conn, rx, writer_shared, &wrap, segments);
                // Stop the periodic checkpoints, then fold the whole WAL into the database so a
                // clean stop leaves a single file.
                drop(checkpointer);
                if let Err(e) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
                    tracing::warn!("final checkpoint failed: {e}");
                }
            })?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: tx,
                readers,
                shared,
                writer_thread: Mutex::new(Some(thread)),
                run_queue: Mutex::new(Some(run_queue)),
                _lock: lock,
            }),
        })
    }

    /// Runs a query on a reader thread; `Busy` at once when `READ_QUEUE` queries are queued
    /// (for requests: the client is told to retry).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.run(f).await
    }

    /// Runs a query on a reader thread, waiting for room in the queue (for background work,
    /// whose own concurrency is bounded: dispatch, deliveries, stream replay).
    async fn read_waiting<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.run_waiting(f).await
    }

    async fn write(&self, op: Op) -> Result<Outcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .writer
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn delivery_op(&self, op: Op) -> Result<deliveries::DeliveryRow, StoreError> {
        match self.write(op).await? {
            Outcome::Delivery(d) => Ok(*d),
            _ => Err(unexpected()),
        }
    }

    /// Stores a message's parts again (see [`messages::hash_file_parts`]).
    pub async fn set_parts(&self, seq: i64, parts: String) -> Result<(), StoreError> {
        self.write(Op::SetParts { seq, parts }).await.map(|_| ())
    }

    /// [`SqliteStore::set_parts`] without waiting for the commit: for readers that computed part
    /// hashes, whose answer should not wait on the writer. A lost write only means computing
    /// the hashes again.
    fn keep_parts(&self, seq: i64, parts: Option<String>) {
        let Some(parts) = parts else { return };
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.set_parts(seq, parts).await {
                tracing::warn!("part hashes of message {seq} not stored: {e}");
            }
        });
    }

    /// The data dir's layout.
    pub fn dirs(&self) -> &Dirs {
        &self.inner.shared.dirs
    }

    /// A webhook as stored now (with its counters), for tests.
    #[cfg(test)]
    pub(crate) async fn webhook_row(&self, uuid: &str) -> WebhookRow {
        let uuid = uuid.to_string();
        self.read(move |c| webhooks::get(c, &uuid))
            .await
            .expect("read")
            .expect("webhook")
    }

    /// The message at `seq` (or with `id`) with up to `preview` bytes of its body, its file
    /// parts' missing hashes computed (and kept).
    async fn message_and_body(
        &self,
        find: Find,
        preview: Option<u64>,
        waiting: bool,
    ) -> Result<Option<(MessageRecord, Vec<u8>)>, StoreError> {
        let dirs = self.dirs().clone();
        let query = move |c: &Connection| {
            let rec = match find {
                Find::Seq(seq) => messages::get_by_seq(c, seq)?,
                Find::Id(id) => messages::get(c, id)?,
            };
            let Some(mut rec) = rec else {
                return Ok(None);
            };
            // File reads happen on a reader thread too, off the async workers.
            let len = preview.map_or(rec.summary.size, |p| p.min(rec.summary.size));
            let body = messages::read_range(&dirs, &rec.body, 0, len)?;
            let hashed = messages::hash_file_parts(&dirs, &mut rec)?;
            Ok(Some((rec, body, hashed)))
        };
        let found = if waiting {
            self.read_waiting(query).await?
        } else {
            self.read(query).await?
        };
        Ok(found.map(|(rec, body, hashed)| {
            self.keep_parts(rec.seq, hashed);
            (rec, body)
        }))
    }
}

/// How a message is looked up.
#[derive(Clone, Copy)]
enum Find {
    Seq(i64),
    Id(Uuid),
}

#[async_trait]
impl Storage for SqliteStore {
    fn webhook(&self, uuid: &str) -> Option<Arc<WebhookRow>> {
        crate::locks::read(&self.inner.shared.webhooks)
            .get(uuid)
            .cloned()
    }

    fn listeners_of(&self, event_key: &str) -> Vec<String> {
        crate::locks::read(&self.inner.shared.listeners)
            .iter()
            .filter(|(_, pattern)| hookd_shared::key::matches(pattern, event_key))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn token(&self, hash: &[u8; 32]) -> Option<TokenAuth> {
        crate::locks::read(&self.inner.shared.tokens)
            .get(hash)
            .cloned()
    }

    fn token_by_name(&self, name: &str) -> Option<TokenAuth> {
        crate::locks::read(&self.inner.shared.tokens)
            .values()
            .find(|t| t.name == name)
            .cloned()
    }

    fn accept_unstored_token(&self, hash: [u8; 32], auth: TokenAuth) {
        crate::locks::write(&self.inner.shared.tokens).insert(hash, auth);
    }

    fn public_url(&self) -> &str {
        &self.inner.shared.public_url
    }

    fn retention(&self) -> &RetentionConfig {
        &self.inner.shared.retention
    }

    fn incoming_dir(&self) -> &std::path::Path {
        &self.inner.shared.dirs.incoming
    }

    async fn capture(&self, c: Capture) -> Result<Captured, StoreError> {
        // Queued in the message's own transaction: a 2xx means its runs are stored too.
        let listeners = self.listeners_for(&c.event_key);
        match self.write(Op::Capture(Box::new(c), listeners)).await? {
            Outcome::Captured(s) => Ok(Captured::Stored(s)),
            Outcome::Duplicate(id) => Ok(Captured::Duplicate(id)),
            _ => Err(unexpected()),
        }
    }

    async fn put_webhook(&self, put: WebhookPut) -> Result<(WebhookRow, bool), StoreError> {
        match self.write(Op::PutWebhook(Box::new(put))).await? {
            Outcome::Webhook(w, created) => Ok((*w, created)),
            _ => Err(unexpected()),
        }
    }

    async fn delete_webhook(&self, uuid: String) -> Result<WebhookRow, StoreError> {
        match self.write(Op::DeleteWebhook(uuid)).await? {
            Outcome::Webhook(w, _) => Ok(*w),
            _ => Err(unexpected()),
        }
    }

    async fn create_token(&self, t: TokenRow) -> Result<TokenRow, StoreError> {
        match self.write(Op::CreateToken(t)).await? {
            Outcome::Token(t) => Ok(t),
            _ => Err(unexpected()),
        }
    }

    async fn delete_token(&self, id: String) -> Result<TokenRow, StoreError> {
        match self.write(Op::DeleteToken(id)).await? {
            Outcome::Token(t) => Ok(t),
            _ => Err(unexpected()),
        }
    }

    async fn put_pipeline(&self, row: PipelineRow) -> Result<(PipelineRow, bool), StoreError> {
        match self.write(Op::PutPipeline(Box::new(row))).await? {
            Outcome::Pipeline(p, created) => Ok((p, created)),
            _ => Err(unexpected()),
        }
    }

    async fn delete_pipeline(&self, name: String) -> Result<PipelineRow, StoreError> {
        match self.write(Op::DeletePipeline(name)).await? {
            Outcome::Pipeline(p, _) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        self.read(webhooks::load_all).await
    }

    async fn webhook_stored(&self, uuid: String) -> Result<Option<WebhookRow>, StoreError> {
        self.read(move |c| webhooks::get(c, &uuid)).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.read(tokens::load_all).await
    }

    async fn messages(
        &self,
        filter: messages::ListFilter,
    ) -> Result<Vec<MessageSummary>, StoreError> {
        self.read(move |c| messages::list(c, &filter)).await
    }

    async fn message_preview(
        &self,
        id: Uuid,
        preview: u64,
    ) -> Result<Option<(MessageRecord, Vec<u8>)>, StoreError> {
        self.message_and_body(Find::Id(id), Some(preview), false)
            .await
    }

    async fn message(&self, id: Uuid) -> Result<Option<MessageRecord>, StoreError> {
        self.read(move |c| messages::get(c, id)).await
    }

    async fn pipeline(&self, name: String) -> Result<Option<PipelineRow>, StoreError> {
        self.read(move |c| pipelines::get(c, &name)).await
    }

    async fn executions(
        &self,
        filter: pipelines::ExecutionFilter,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        self.read(move |c| pipelines::list_executions(c, &filter))
            .await
    }

    async fn execution(&self, id: Uuid) -> Result<Option<ExecutionRow>, StoreError> {
        self.read(move |c| pipelines::find_execution(c, id)).await
    }

    async fn deliveries(
        &self,
        filter: deliveries::ListFilter,
    ) -> Result<Vec<deliveries::DeliveryRow>, StoreError> {
        self.read(move |c| deliveries::list(c, &filter)).await
    }

    async fn delivery(&self, seq: i64) -> Result<Option<Delivery>, StoreError> {
        self.read(move |c| deliveries::detail(c, seq)).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let dirs = self.dirs().clone();
        self.read(move |c| stats::collect(c, &dirs)).await
    }

    async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        self.read(deliveries::pending_count).await
    }

    fn disk_usage(&self) -> DiskUsage {
        let len = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        let dirs = self.dirs();
        DiskUsage {
            database_bytes: len(dirs.db()),
            log_bytes: len(dirs.root.join("hookd.db-wal")),
        }
    }

    async fn pipelines(&self) -> Result<Vec<PipelineRow>, StoreError> {
        self.read_waiting(pipelines::load_all).await
    }

    async fn admin_count(&self) -> Result<u64, StoreError> {
        self.read_waiting(tokens::admin_count).await
    }

    async fn message_with_body(
        &self,
        seq: i64,
    ) -> Result<Option<(MessageRecord, Vec<u8>)>, StoreError> {
        self.message_and_body(Find::Seq(seq), None, true).await
    }

    async fn events_after(&self, cursor: u64, limit: u32) -> Result<Vec<BusEvent>, StoreError> {
        self.read_waiting(move |c| events::after(c, cursor, limit))
            .await
    }

    async fn event_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.read_waiting(events::bounds).await
    }

    async fn queued_executions(&self) -> Result<Vec<i64>, StoreError> {
        self.read_waiting(pipelines::queued).await
    }

    async fn dispatch_cursor(&self) -> Result<Option<u64>, StoreError> {
        self.read_waiting(pipelines::dispatch_cursor).await
    }

    async fn due_deliveries(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<deliveries::DeliveryRow>, StoreError> {
        self.read_waiting(move |c| deliveries::due(c, now, limit))
            .await
    }

    async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        self.read_waiting(deliveries::next_due).await
    }

    fn body_source(
        &self,
        rec: &MessageRecord,
        offset: u64,
        len: u64,
    ) -> Result<BodySource, StoreError> {
        let dirs = self.dirs();
        Ok(match &rec.body {
            StoredBody::Inline(b) => {
                let start = (offset as usize).min(b.len());
                let end = start.saturating_add(len as usize).min(b.len());
                BodySource::Bytes(bytes::Bytes::copy_from_slice(&b[start..end]))
            }
            StoredBody::File(id) => BodySource::File {
                path: dirs.committed_path(id)?,
                offset,
                len,
            },
            StoredBody::Segment { id, offset: at } => BodySource::File {
                path: segments::path(&dirs.segments, *id),
                offset: at + offset,
                len,
            },
        })
    }

    fn take_run_queue(&self) -> Option<mpsc::UnboundedReceiver<i64>> {
        crate::locks::lock(&self.inner.run_queue).take()
    }

    fn enqueue_runs(&self, seqs: Vec<i64>) {
        self.inner.shared.enqueue_runs(seqs);
    }

    async fn forget_dispatch_cursor(&self) -> Result<(), StoreError> {
        self.write(Op::ForgetDispatchCursor).await.map(|_| ())
    }

    async fn queue_executions(
        &self,
        new: Vec<NewExecution>,
        cursor: Option<u64>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        match self.write(Op::QueueExecutions { new, cursor }).await? {
            Outcome::Executions(seqs) => Ok(seqs),
            _ => Err(unexpected()),
        }
    }

    async fn start_execution(&self, seq: i64) -> Result<ExecutionRow, StoreError> {
        match self.write(Op::StartExecution(seq)).await? {
            Outcome::Execution(e) => Ok(*e),
            _ => Err(unexpected()),
        }
    }

    async fn finish_execution(&self, f: Finish) -> Result<ExecutionRow, StoreError> {
        match self.write(Op::FinishExecution(Box::new(f))).await? {
            Outcome::Execution(e) => Ok(*e),
            _ => Err(unexpected()),
        }
    }

    async fn finish_execution_queued(
        &self,
        f: Finish,
    ) -> Result<BoxFuture<'static, Result<(), StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .writer
            .send(Job {
                op: Op::FinishExecution(Box::new(f)),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Box::pin(async move {
            match rx.await.map_err(|_| StoreError::Closed)?? {
                Outcome::Execution(_) => Ok(()),
                _ => Err(unexpected()),
            }
        }))
    }

    async fn create_delivery(
        &self,
        d: deliveries::NewDelivery,
    ) -> Result<deliveries::DeliveryRow, StoreError> {
        self.delivery_op(Op::CreateDelivery(Box::new(d))).await
    }

    async fn record_attempt(
        &self,
        a: deliveries::AttemptRecord,
    ) -> Result<deliveries::DeliveryRow, StoreError> {
        self.delivery_op(Op::RecordAttempt(Box::new(a))).await
    }

    async fn retry_delivery(&self, seq: i64) -> Result<deliveries::DeliveryRow, StoreError> {
        self.delivery_op(Op::RetryDelivery(seq)).await
    }

    async fn cancel_delivery(&self, seq: i64) -> Result<deliveries::DeliveryRow, StoreError> {
        self.delivery_op(Op::CancelDelivery(seq)).await
    }

    async fn prune_events(&self, max_count: u64, before_ms: i64) -> Result<usize, StoreError> {
        match self
            .write(Op::PruneEvents {
                max_count,
                before_ms,
            })
            .await?
        {
            Outcome::Pruned(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    async fn prune(&self, grace: std::time::Duration) -> Result<Pruned, StoreError> {
        let grace_ms = grace.as_millis().min(i64::MAX as u128) as i64;
        match self.write(Op::Prune { grace_ms }).await? {
            Outcome::Retained(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    fn backup(&self, out: &mut dyn std::io::Write) -> Result<Manifest, StoreError> {
        use std::sync::atomic::Ordering;
        struct Running<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.inner.shared.backups.fetch_add(1, Ordering::SeqCst);
        let _running = Running(&self.inner.shared.backups);
        backup::write(self.dirs(), out)
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.write(Op::Ping).await.map(|_| ())
    }

    async fn shutdown(&self) {
        let _ = self.write(Op::Shutdown).await;
        let thread = crate::locks::lock(&self.inner.writer_thread).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

fn unexpected() -> StoreError {
    StoreError::Commit("the writer answered with an unexpected outcome".into())
}

/// SQLite page size of a new database: SQLite's default, chosen by measurement. The WAL writes
/// whole pages, so with 16 KiB pages every commit wrote four times the bytes for the same rows
/// and receive throughput fell by ~25 % (docs/BENCHMARKS.md, target 6); since the receive path
/// is packed, three message rows fit a 4 KiB page and the database is as small as with 16 KiB.
const PAGE_SIZE: u32 = 4 * 1024;

/// Settings every connection gets.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !conn.is_readonly(rusqlite::MAIN_DB)? {
        // Only takes effect when the file is created; must precede WAL mode, which fixes it.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Schema(format!(
                "SQLite refused WAL mode (got '{mode}'); is the data dir on a network filesystem?"
            )));
        }
    }
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Every hot statement stays compiled: with rusqlite's default of 16, the writer's mix of
    // captures, events, executions and deliveries evicts statements it needs again a moment later.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// A store in `dir` for tests, publishing on `bus`.
#[cfg(test)]
fn open_for_test(dir: &std::path::Path, bus: Bus) -> SqliteStore {
    SqliteStore::open(StoreConfig {
        url: crate::store::StorageUrl::Sqlite(dir.to_path_buf()),
        synchronous: Synchronous::Normal,
        public_url: "http://h".into(),
        bus,
        retention: RetentionConfig::default(),
    })
    .expect("open")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hookd_shared::EventType;

    fn capture(uuid: &str, body: &'static [u8]) -> Capture {
        Capture {
            webhook_uuid: uuid.into(),
            event_key: "a.b".into(),
            received_at: crate::clock::now_ms(),
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers_json: r#"[["x-a","1"]]"#.into(),
            remote_addr: "127.0.0.1:1".into(),
            content_type: None,
            size: body.len() as u64,
            sha256: None,
            parts: Vec::new(),
            body: CapturedBody::Inline(Bytes::from_static(body)),
            verification: "none",
            rejected: None,
            dedupe: None,
        }
    }

    #[test]
    fn new_databases_get_the_chosen_page_size_and_existing_ones_keep_theirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.db");
        let page_size = |c: &Connection| -> u32 {
            c.query_row("PRAGMA page_size", [], |r| r.get(0))
                .expect("page_size")
        };
        let conn = Connection::open(&path).expect("open");
        configure(&conn).expect("configure");
        conn.execute("CREATE TABLE t(x)", []).expect("create");
        assert_eq!(page_size(&conn), PAGE_SIZE);
        drop(conn);

        // A database created with other pages (16 KiB, as builds of 2026-11-29 made them) must
        // open unchanged, not be rebuilt.
        let other = if PAGE_SIZE == 16384 { 8192 } else { 16384 };
        let old = dir.path().join("old.db");
        let conn = Connection::open(&old).expect("open old");
        conn.pragma_update(None, "page_size", other)
            .expect("old page size");
        conn.execute("CREATE TABLE t(x)", []).expect("create old");
        drop(conn);
        let conn = Connection::open(&old).expect("reopen old");
        configure(&conn).expect("configure old");
        assert_eq!(page_size(&conn), other);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn events_are_logged_and_published_in_commit_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = Bus::default();
        let mut rx = bus.subscribe();
        let store = open_for_test(dir.path(), bus);
        let (w, created) = store
            .put_webhook(WebhookPut {
                event_key: Some("a.b".into()),
                default_max_payload_length: 100,
                ..WebhookPut::default()
            })
            .await
            .expect("put");
        assert!(created);
        // Concurrent captures share batches; each still gets its own event.
        let (a, b) = tokio::join!(
            store.capture(capture(&w.uuid, b"1")),
            store.capture(capture(&w.uuid, b"2"))
        );
        let id = |c: Result<Captured, StoreError>| match c {
            Ok(Captured::Stored(s)) => s.id.clone(),
            _ => panic!("stored"),
        };
        let ids = [id(a), id(b)];

        let first = rx.recv().await.expect("event");
        assert_eq!((first.seq, first.kind), (1, EventType::WebhookCreated));
        assert_eq!(
            first.data.to_json()["webhookUrl"],
            format!("http://h/api/v3/command/webhook.receive?uuid={}", w.uuid)
        );
        let mut seen = Vec::new();
        for seq in [2, 3] {
            let e = rx.recv().await.expect("event");
            assert_eq!((e.seq, e.kind), (seq, EventType::MessageReceived));
            seen.push(
                e.data.to_json()["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        let live = seen.clone();
        seen.sort();
        let mut want = ids.to_vec();
        want.sort();
        assert_eq!(seen, want);
        // Read back, the log holds the same three events in the same order (the messages' events
        // are their own rows, the webhook's a row of `events`).
        let logged = store.read(|c| events::after(c, 0, 100)).await.expect("log");
        let logged: Vec<_> = logged
            .iter()
            .map(|e| (e.seq, e.kind, e.data.to_json()["id"].clone()))
            .collect();
        assert_eq!(
            logged,
            [
                (1, EventType::WebhookCreated, serde_json::Value::Null),
                (2, EventType::MessageReceived, live[0].clone().into()),
                (3, EventType::MessageReceived, live[1].clone().into()),
            ]
        );
        store.shutdown().await;
        assert!(matches!(store.health().await, Err(StoreError::Closed)));
    }

    /// Captures, refused operations and logged ones, concurrent so they share batches: what is
    /// published is one dense sequence, and replay yields exactly that.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mixed_batches_keep_the_event_log_one_dense_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = Bus::default();
        let mut rx = bus.subscribe();
        let store = open_for_test(dir.path(), bus);
        let put = |uuid: Option<String>, i: usize| WebhookPut {
            uuid,
            event_key: Some("a.b".into()),
            description: Some(i.to_string()),
            default_max_payload_length: 100,
            ..WebhookPut::default()
        };
        let (w, _) = store.put_webhook(put(None, 0)).await.expect("put");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..600 {
            let (store, uuid) = (store.clone(), w.uuid.clone());
            tasks.spawn(async move {
                match i % 4 {
                    0 => assert!(matches!(
                        store.delete_webhook("no-such-webhook".into()).await,
                        Err(StoreError::NotFound(_))
                    )),
                    1 => drop(store.put_webhook(put(Some(uuid), i)).await.expect("put")),
                    _ => drop(store.capture(capture(&uuid, b"x")).await.expect("capture")),
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task");
        }
        let mut live = Vec::new();
        while let Ok(e) = rx.try_recv() {
            live.push((e.seq, e.kind, e.data.to_json()));
        }
        let seqs: Vec<u64> = live.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=451).collect::<Vec<_>>());
        let logged = store
            .read(|c| events::after(c, 0, 1000))
            .await
            .expect("log");
        let logged: Vec<_> = logged
            .into_iter()
            .map(|e| (e.seq, e.kind, e.data.to_json()))
            .collect();
        assert_eq!(logged, live);
        store.shutdown().await;
    }

    /// Captures of webhooks whose requests interleave, stored in shared batches (grouped by
    /// webhook within each), are each listed under their own webhook, newest first, and the
    /// spans are exactly the stretches of one webhook's messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interleaved_captures_are_listed_under_their_own_webhooks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_for_test(dir.path(), Bus::default());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..300 {
            let (store, uuid) = (store.clone(), ["a", "b", "c"][i % 3]);
            tasks.spawn(async move {
                match store.capture(capture(uuid, b"x")).await {
                    Ok(Captured::Stored(s)) => (uuid, s.id.clone()),
                    _ => panic!("stored"),
                }
            });
        }
        let mut captured = Vec::new();
        while let Some(r) = tasks.join_next().await {
            captured.push(r.expect("task"));
        }
        let seq = |id: &str| {
            messages::decode_message_id(id.parse().expect("uuid"))
                .expect("id")
                .1
        };
        for uuid in ["a", "b", "c"] {
            let mut want: Vec<&str> = captured
                .iter()
                .filter(|(u, _)| *u == uuid)
                .map(|(_, id)| id.as_str())
                .collect();
            want.sort_by_key(|id| std::cmp::Reverse(seq(id)));
            let f = messages::ListFilter {
                uuid: Some(uuid.into()),
                limit: 1000,
                ..Default::default()
            };
            let got = store
                .read(move |c| messages::list(c, &f))
                .await
                .expect("list");
            let got: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(got, want, "{uuid}");
        }
        let (spans, islands) = store
            .read(|c| {
                let rows = |sql: &str| -> Result<Vec<(i64, String)>, StoreError> {
                    let mut st = c.prepare(sql)?;
                    let r = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    Ok(r.collect::<Result<_, _>>()?)
                };
                let spans = rows("SELECT first_seq, webhook_uuid FROM webhook_spans ORDER BY 1")?;
                let mut islands = rows("SELECT seq, webhook_uuid FROM messages ORDER BY seq")?;
                islands.dedup_by(|next, prev| next.1 == prev.1);
                Ok((spans, islands))
            })
            .await
            .expect("spans");
        assert_eq!(spans, islands);
        store.shutdown().await;
    }

    /// Receiving does not hash parts; the first reader of a file-stored body computes the hashes
    /// of its file parts from the file, and once stored, later readers read none of it again.
    #[tokio::test]
    async fn file_part_hashes_are_computed_once_and_kept() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_for_test(dir.path(), Bus::default());
        let (w, _) = store
            .put_webhook(WebhookPut {
                event_key: Some("a.b".into()),
                default_max_payload_length: 1 << 30,
                ..WebhookPut::default()
            })
            .await
            .expect("put");
        // Two file parts (the second larger than one read buffer) around a text field.
        let first = b"first file".to_vec();
        let second: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let body = [&b"xx"[..], &first, b"--note--", &second, b"yy"].concat();
        std::fs::write(store.dirs().incoming.join("f1"), &body).expect("body file");
        let part = |name: &str, offset: usize, size: usize, value: Option<&str>| PartRecord {
            name: name.into(),
            filename: value.is_none().then(|| format!("{name}.bin")),
            content_type: None,
            offset: offset as u64,
            size: size as u64,
            value: value.map(str::to_string),
            sha256: None,
        };
        let mut c = capture(&w.uuid, b"");
        c.size = body.len() as u64;
        c.body = CapturedBody::File("f1".into());
        c.parts = vec![
            part("a", 2, first.len(), None),
            part("note", 2 + first.len() + 2, 4, Some("note")),
            part("b", 2 + first.len() + 8, second.len(), None),
        ];
        let Captured::Stored(s) = store.capture(c).await.expect("capture") else {
            panic!("stored")
        };
        let id: uuid::Uuid = s.id.parse().expect("uuid");
        let get = || async {
            store
                .read(move |c| Ok(messages::get(c, id)?.expect("message")))
                .await
                .expect("get")
        };

        let mut rec = get().await;
        assert!(rec.parts.iter().all(|p| p.sha256.is_none()));
        let dirs = store.dirs().clone();
        let parts = messages::hash_file_parts(&dirs, &mut rec)
            .expect("hash")
            .expect("hashes were missing");
        let hex = |b: &[u8]| hex::encode(Sha256::digest(b));
        let want = [Some(hex(&first)), None, Some(hex(&second))];
        let got: Vec<Option<String>> = rec.parts.iter().map(|p| p.sha256.clone()).collect();
        assert_eq!(got, want);

        store.set_parts(rec.seq, parts).await.expect("set parts");
        let mut again = get().await;
        let kept: Vec<Option<String>> = again.parts.iter().map(|p| p.sha256.clone()).collect();
        assert_eq!(kept, want);
        assert_eq!(again.parts[1].value.as_deref(), Some("note"));
        // Nothing left to compute: the file is not even opened.
        std::fs::remove_file(dirs.committed_path("f1").expect("path")).expect("remove");
        assert!(
            messages::hash_file_parts(&dirs, &mut again)
                .expect("no read")
                .is_none()
        );
        store.shutdown().await;
    }
}

#[cfg(test)]
mod execution_tests {
    use super::*;
    use hookd_shared::EventType;

    /// Each state change of a run is written and announced with the row as it now is; a run
    /// that was going when hookd stopped is failed at the next start, and says so.
    #[tokio::test]
    async fn runs_are_announced_as_written_and_interrupted_ones_fail_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = Bus::default();
        let mut live = bus.subscribe();
        let store = open_for_test(dir.path(), bus);
        let new = |n: u32| pipelines::NewExecution {
            pipeline: format!("p{n}"),
            trigger: "manual",
            event_key: Some("a.b".into()),
            message_seq: None,
            message_id: None,
            replay_of: None,
            input: None,
            trace_id: format!("t{n}"),
            depth: 0,
        };
        let queued = store
            .queue_executions(vec![new(1), new(2)], None)
            .await
            .expect("queue");
        let (done, cut) = (queued[0].0, queued[1].0);
        let started = store.start_execution(done).await.expect("start");
        assert_eq!(
            (started.status.as_str(), started.pipeline.as_str()),
            ("running", "p1")
        );
        assert!(started.started_at.is_some());
        assert!(matches!(
            store.start_execution(done).await,
            Err(StoreError::Invalid(_))
        ));
        let finished = store
            .finish_execution(pipelines::Finish {
                seq: done,
                status: "succeeded",
                run_as: None,
                steps: "[]".into(),
                body: Some("{}".into()),
                body_truncated: false,
                error: None,
                error_step: None,
                body_from: None,
                error_private: false,
            })
            .await
            .expect("finish");
        assert_eq!(finished.status, "succeeded");
        assert_eq!(finished.trace_id, "t1");
        assert!(finished.finished_at.is_some());
        store.start_execution(cut).await.expect("start second");
        // The log keeps a reference to the execution row, not its summary; read back, each event
        // must carry exactly what was published live.
        let logged = store.read(|c| events::after(c, 0, 100)).await.expect("log");
        for ev in &logged {
            let published = live.recv().await.expect("published");
            assert_eq!(published.seq, ev.seq);
            assert_eq!(published.data.to_json(), ev.data.to_json(), "{:?}", ev.kind);
        }
        assert_eq!(logged.len(), 3);
        store.shutdown().await;
        drop(store);

        let store = open_for_test(dir.path(), Bus::default());
        let (row, events) = store
            .read(move |c| {
                let row = pipelines::get_execution(c, cut)?.expect("row");
                Ok((row, events::after(c, 0, 100)?))
            })
            .await
            .expect("read");
        assert_eq!(row.status, "failed");
        assert_eq!(
            row.error.as_deref(),
            Some("interrupted: hookd stopped during this run")
        );
        let announced: Vec<(EventType, String)> = events
            .iter()
            .map(|e| {
                let d = e.data.to_json();
                (e.kind, format!("{} {}", d["pipeline"], d["status"]))
            })
            .collect();
        assert_eq!(
            announced,
            [
                (EventType::ExecutionStarted, r#""p1" "running""#.to_string()),
                (EventType::ExecutionFinished, r#""p1" "succeeded""#.into()),
                (EventType::ExecutionStarted, r#""p2" "running""#.into()),
                (EventType::ExecutionFinished, r#""p2" "failed""#.into()),
            ]
        );
        store.shutdown().await;
    }
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    #[tokio::test]
    async fn pruning_runs_its_statements() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_for_test(dir.path(), Bus::default());
        // Every statement of the prune (events, idempotency keys) must be valid SQL.
        store
            .prune_events(0, crate::clock::now_ms())
            .await
            .expect("prune");
        store.shutdown().await;
    }
}
