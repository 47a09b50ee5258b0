//! From events to runs. The dispatcher follows the event log (live through the bus, catching
//! up from SQLite after a restart or a lag) and queues one execution per matching listener,
//! committing the queued executions and its cursor together: a message committed but not yet
//! dispatched when hookd dies is dispatched after the restart (at-least-once). Workers take
//! queued executions and run them, never on the receive path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hookd_shared::{EventType, PayloadType, Role};
use serde_json::Value;
use tokio::sync::{Mutex, broadcast, mpsc};

use super::expr::Engine;
use super::parse::Pipeline;
use super::run::{self, Identity, Run};
use crate::app::App;
use crate::commands::Registry;
use crate::events::{BusEvent, EventData};
use crate::store::events as log;
use crate::store::ids::decode_public_id;
use crate::store::messages;
use crate::store::pipelines::{self, Finish, NewExecution, PipelineRow};
use crate::store::{Store, StoreError};

/// Events read from the log per query while catching up.
const PAGE: u32 = 500;
/// How often a cursor that moved without queueing anything is saved.
const CURSOR_SAVE: Duration = Duration::from_secs(2);

/// A stored pipeline, compiled.
pub struct Stored {
    pub pipeline: Arc<Pipeline>,
    pub row: PipelineRow,
}

impl Stored {
    fn run_for(&self, identity: Identity, body: Value, depth: u32, trace_id: String) -> Run {
        Run {
            pipeline: self.pipeline.clone(),
            name: self.row.name.clone(),
            stored_by_admin: self.row.stored_by_role == Role::Admin,
            stored_by: self.row.stored_by.clone(),
            identity,
            body,
            depth,
            trace_id,
        }
    }
}

/// Compiled pipelines and the run queue.
pub struct Runtime {
    pub engine: Engine,
    pipelines: RwLock<HashMap<String, Arc<Stored>>>,
    queue: mpsc::UnboundedSender<i64>,
    queued: Mutex<Option<mpsc::UnboundedReceiver<i64>>>,
}

impl Runtime {
    /// Compiles every stored pipeline (one that no longer compiles is skipped, with a warning).
    pub async fn load(store: &Store, registry: &Registry) -> Result<Runtime, StoreError> {
        let engine = Engine::default();
        let rows = store.read(pipelines::load_all).await?;
        let mut map = HashMap::new();
        for row in rows {
            match super::parse(&row.source, registry, &engine) {
                Ok(p) => {
                    map.insert(
                        row.name.clone(),
                        Arc::new(Stored {
                            pipeline: Arc::new(p),
                            row,
                        }),
                    );
                }
                Err(e) => tracing::warn!(
                    "pipeline '{}' no longer compiles ({e}); it will not run",
                    row.name
                ),
            }
        }
        let (queue, rx) = mpsc::unbounded_channel();
        Ok(Runtime {
            engine,
            pipelines: RwLock::new(map),
            queue,
            queued: Mutex::new(Some(rx)),
        })
    }

    /// The compiled pipeline called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Stored>> {
        self.pipelines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Registers a stored pipeline (a listener takes effect at once).
    pub fn put(&self, stored: Stored) {
        self.pipelines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stored.row.name.clone(), Arc::new(stored));
    }

    /// Forgets a deleted pipeline.
    pub fn remove(&self, name: &str) {
        self.pipelines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Names of the listeners whose pattern matches `event_key`.
    pub fn listeners_of(&self, event_key: &str) -> Vec<String> {
        let map = self.pipelines.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = map
            .values()
            .filter(|s| {
                s.pipeline
                    .listen
                    .as_ref()
                    .is_some_and(|l| hookd_shared::key::matches(&l.event_key, event_key))
            })
            .map(|s| s.row.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Hands queued executions to the workers.
    pub fn enqueue(&self, seqs: impl IntoIterator<Item = i64>) {
        for s in seqs {
            let _ = self.queue.send(s);
        }
    }
}

/// Starts the dispatcher and the workers, and re-queues what a stop left queued.
pub async fn start(app: &Arc<App>) -> Result<(), StoreError> {
    let rx = app.pipelines.queued.lock().await.take();
    let Some(rx) = rx else {
        return Ok(());
    };
    let left = app.store.read(pipelines::queued).await?;
    if !left.is_empty() {
        tracing::info!(
            "{} queued pipeline runs left from the last stop; running them",
            left.len()
        );
    }
    app.pipelines.enqueue(left);
    let rx = Arc::new(Mutex::new(rx));
    let runs = app.clone();
    std::thread::Builder::new()
        .name("hookd-runs".into())
        .spawn(move || run_workers(runs, rx))
        .map_err(|e| StoreError::Invalid(format!("cannot start the pipeline workers: {e}")))?;
    tokio::spawn(dispatcher(app.clone()));
    Ok(())
}

/// Runs queued executions on a runtime of their own, whose threads (and the programs runs
/// `exec`) have `[pipeline] nice`: under a burst the OS gives the CPU to capturing requests
/// first, and the queued runs (stored, so none is lost) catch up after it.
fn run_workers(app: Arc<App>, rx: Arc<Mutex<mpsc::UnboundedReceiver<i64>>>) {
    let nice = app.config.pipeline.nice;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("hookd-run")
        .on_thread_start(move || lower_priority(nice))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("pipeline runs cannot start: {e}");
            return;
        }
    };
    rt.block_on(async {
        for _ in 0..app.config.pipeline.workers {
            tokio::spawn(worker(app.clone(), rx.clone()));
        }
        app.shutdown.cancelled().await;
    });
    // Runs cut off here are marked interrupted at the next start, as when the process ends.
    rt.shutdown_background();
}

/// Sets the calling thread's nice value (on Linux, nice is per thread).
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: two syscalls about the calling thread, no memory passed.
    let ok = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    };
    if !ok {
        tracing::warn!(
            "cannot lower the pipeline threads' priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

async fn dispatcher(app: Arc<App>) {
    let mut rx = app.bus.subscribe();
    let mut cursor = match app.store.read(pipelines::dispatch_cursor).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("listener dispatch cannot start: {e}");
            return;
        }
    };
    let mut unsaved = false;
    catch_up(&app, &mut cursor, &mut rx).await;
    let mut save = tokio::time::interval(CURSOR_SAVE);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if ev.seq <= cursor {
                        continue;
                    }
                    if ev.seq > cursor + 1 {
                        catch_up(&app, &mut cursor, &mut rx).await;
                        if ev.seq <= cursor {
                            continue;
                        }
                    }
                    // Take whatever else is already waiting, to queue it in one commit.
                    let mut batch = vec![ev];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let contiguous = batch.windows(2).all(|w| w[1].seq == w[0].seq + 1);
                    if !contiguous {
                        catch_up(&app, &mut cursor, &mut rx).await;
                        continue;
                    }
                    unsaved |= dispatch(&app, &batch, &mut cursor).await == Dispatched::CursorOnly;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => catch_up(&app, &mut cursor, &mut rx).await,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = save.tick(), if unsaved => {
                if app.store.queue_executions(Vec::new(), Some(cursor)).await.is_ok() {
                    unsaved = false;
                }
            }
            () = app.shutdown.cancelled() => return,
        }
    }
}

/// Dispatches every logged event after `cursor`; resubscribes first so nothing slips between
/// the log and the bus.
async fn catch_up(app: &Arc<App>, cursor: &mut u64, rx: &mut broadcast::Receiver<Arc<BusEvent>>) {
    *rx = app.bus.subscribe();
    loop {
        let from = *cursor;
        let page = match app.store.read(move |c| log::after(c, from, PAGE)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("listener dispatch cannot read the event log: {e}");
                return;
            }
        };
        let full = page.len() == PAGE as usize;
        let page: Vec<Arc<BusEvent>> = page.into_iter().map(Arc::new).collect();
        if page.is_empty() {
            return;
        }
        // A page is committed with its executions and cursor, so a crash mid-way repeats nothing.
        if dispatch(app, &page, cursor).await == Dispatched::Failed || !full {
            return;
        }
    }
}

#[derive(PartialEq)]
enum Dispatched {
    Queued,
    CursorOnly,
    Failed,
}

/// Queues the executions `events` call for and moves the cursor past them.
async fn dispatch(app: &Arc<App>, events: &[Arc<BusEvent>], cursor: &mut u64) -> Dispatched {
    let Some(last) = events.last().map(|e| e.seq) else {
        return Dispatched::CursorOnly;
    };
    let mut new = Vec::new();
    for ev in events {
        if ev.kind != EventType::MessageReceived {
            continue;
        }
        let EventData::Message(m) = &ev.data else {
            continue;
        };
        let Some(seq) = uuid::Uuid::parse_str(&m.id)
            .ok()
            .and_then(decode_public_id)
            .map(|(_, s)| s)
        else {
            continue;
        };
        let listeners = app.pipelines.listeners_of(&m.event_key);
        if listeners.is_empty() {
            continue;
        }
        let trace = uuid::Uuid::new_v4().simple().to_string();
        for name in listeners {
            new.push(NewExecution {
                pipeline: name,
                trigger: "event",
                event_key: Some(m.event_key.clone()),
                message_seq: Some(seq),
                message_id: Some(m.id.clone()),
                replay_of: None,
                input: None,
                trace_id: trace.clone(),
                depth: 0,
            });
        }
    }
    if new.is_empty() {
        *cursor = last;
        return Dispatched::CursorOnly;
    }
    match app.store.queue_executions(new, Some(last)).await {
        Ok(queued) => {
            *cursor = last;
            app.pipelines
                .enqueue(queued.into_iter().map(|(seq, _)| seq));
            Dispatched::Queued
        }
        Err(e) => {
            tracing::error!("queueing pipeline runs failed (retried from the log): {e}");
            Dispatched::Failed
        }
    }
}

/// `event.send`: queues a run of every listener of `event_key`; returns how many.
pub async fn fire(
    app: &Arc<App>,
    event_key: &str,
    payload: Value,
    depth: u32,
    trace_id: &str,
) -> Result<usize, String> {
    let input = serde_json::to_string(&payload).map_err(|e| e.to_string())?;
    let new: Vec<NewExecution> = app
        .pipelines
        .listeners_of(event_key)
        .into_iter()
        .map(|name| NewExecution {
            pipeline: name,
            trigger: "chain",
            event_key: Some(event_key.to_string()),
            message_seq: None,
            message_id: None,
            replay_of: None,
            input: Some(input.clone()),
            trace_id: trace_id.to_string(),
            depth,
        })
        .collect();
    let n = new.len();
    if n > 0 {
        let queued = app
            .store
            .queue_executions(new, None)
            .await
            .map_err(|e| e.to_string())?;
        app.pipelines
            .enqueue(queued.into_iter().map(|(seq, _)| seq));
    }
    Ok(n)
}

async fn worker(app: Arc<App>, rx: Arc<Mutex<mpsc::UnboundedReceiver<i64>>>) {
    loop {
        let next = tokio::select! {
            seq = async { rx.lock().await.recv().await } => seq,
            () = app.shutdown.cancelled() => return,
        };
        let Some(seq) = next else {
            return;
        };
        execute(&app, seq).await;
    }
}

/// Runs a queued execution to its end and records the outcome.
pub async fn execute(app: &Arc<App>, seq: i64) {
    let row = match app.store.start_execution(seq).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("execution {seq} not started: {e}");
            return;
        }
    };
    let outcome = prepare_and_run(app, &row).await;
    let finish = match outcome {
        Ok(Some((o, body_from))) => {
            let (body, truncated) = match body_from {
                Some(_) => (None, false),
                None => o.stored_body(),
            };
            Finish {
                seq,
                status: o.status,
                run_as: Some(o.run_as),
                steps: serde_json::to_string(&o.steps).unwrap_or_else(|_| "[]".into()),
                body,
                body_truncated: truncated,
                error: o.error,
                error_step: o.error_step,
                body_from,
            }
        }
        Ok(None) => Finish {
            seq,
            status: "skipped",
            run_as: None,
            steps: "[]".into(),
            body: None,
            body_truncated: false,
            error: None,
            error_step: None,
            body_from: None,
        },
        Err(e) => Finish {
            seq,
            status: "failed",
            run_as: None,
            steps: "[]".into(),
            body: None,
            body_truncated: false,
            error: Some(e),
            error_step: None,
            body_from: None,
        },
    };
    // The worker moves on once the record is queued: the writer's queue keeps it ahead of the
    // next run's start, and waiting for its commit too would halve what a worker can run.
    let failed =
        move |e: StoreError| tracing::error!("recording the end of execution {seq} failed: {e}");
    match app.store.finish_execution_queued(finish).await {
        Ok(committed) => {
            tokio::spawn(async move {
                if let Err(e) = committed.await {
                    failed(e);
                }
            });
        }
        Err(e) => failed(e),
    }
}

/// Builds the run's input and runs it; `Ok(None)` when the listener's filter skips it. With the
/// outcome, the payload type of the message event it started with if it ended with it unchanged.
async fn prepare_and_run(
    app: &Arc<App>,
    row: &pipelines::ExecutionRow,
) -> Result<Option<(run::Outcome, Option<PayloadType>)>, String> {
    let stored = app.pipelines.get(&row.pipeline).ok_or_else(|| {
        format!(
            "pipeline '{}' was deleted before this run started",
            row.pipeline
        )
    })?;
    let mut from_message = None;
    let body = match row.trigger.as_str() {
        "event" | "replay" => {
            let seq = row
                .message_seq
                .ok_or("the triggering message is not recorded")?;
            let (event, payload_type) = message_event(app, seq, &row.trace_id, None).await?;
            from_message = Some(payload_type);
            event
        }
        "chain" => super::event::for_internal(
            row.event_key.as_deref().unwrap_or_default(),
            row.input
                .as_deref()
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or(Value::Null),
            &row.trace_id,
        ),
        _ => row
            .input
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(Value::Null),
    };
    if row.trigger != "manual"
        && let Some(filter) = stored
            .pipeline
            .listen
            .as_ref()
            .and_then(|l| l.filter.as_ref())
    {
        let (vars, headers) = (&stored.pipeline.vars, &stored.pipeline.headers);
        let ctx = super::expr::Context {
            body: &body,
            vars,
            headers,
        };
        let v = app
            .pipelines
            .engine
            .eval(filter, &ctx)
            .map_err(|e| format!("filter: {e}"))?;
        if !run::truthy(&v) {
            return Ok(None);
        }
    }
    let r = stored.run_for(Identity::Anonymous, body, row.depth, row.trace_id.clone());
    let outcome = run::run(app, r).await;
    // A message event the run left as it was is rebuilt from the message when asked for
    // (execution.get), not stored: it is larger than the message itself.
    let body_from = from_message.filter(|_| outcome.body_unchanged);
    Ok(Some((outcome, body_from)))
}

/// The event body for the message stored at `seq`, built with its webhook's payload type
/// (`payload_type` overrides it: to rebuild the event a finished run saw).
pub async fn message_event(
    app: &Arc<App>,
    seq: i64,
    trace_id: &str,
    payload_type: Option<PayloadType>,
) -> Result<(Value, PayloadType), String> {
    let dirs = app.store.dirs().clone();
    let (rec, body, hashed) = app
        .store
        .read(move |c| {
            let mut rec = messages::get_by_seq(c, seq)?
                .ok_or_else(|| StoreError::NotFound(format!("message {seq} no longer exists")))?;
            let body = messages::read_range(&dirs, &rec.body, 0, rec.summary.size)?;
            let hashed = messages::hash_file_parts(&dirs, &mut rec)?;
            Ok((rec, body, hashed))
        })
        .await
        .map_err(|e| e.to_string())?;
    if let Some(parts) = hashed {
        app.store.keep_parts(rec.seq, parts);
    }
    let payload_type = payload_type.unwrap_or_else(|| {
        app.store
            .webhook(&rec.summary.uuid)
            .map_or(PayloadType::Raw, |w| w.payload_type)
    });
    let event = super::event::for_message(&rec, &body, payload_type, trace_id);
    Ok((event, payload_type))
}
