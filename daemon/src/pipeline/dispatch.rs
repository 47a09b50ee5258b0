//! From events to runs. A captured message's listener runs are queued in the transaction that
//! stores it (`store::messages::insert`), and the writer hands them to the workers here after
//! the commit; `event.send` chains and replays queue theirs through `fire` and the commands.
//! Workers take queued executions and run them, never on the receive path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hookd_shared::{EventType, PayloadType, Role};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::Env;
use super::expr::Engine;
use super::parse::Pipeline;
use super::run::{self, Identity, Run};
use crate::burst::Burst;
use crate::config::PipelineConfig;
use crate::events::EventData;
use crate::registry::Catalog;
use crate::store::ids::decode_public_id;
use crate::store::pipelines::{self, Finish, NewExecution, PipelineRow};
use crate::store::{Store, StoreError};

/// Events read from the log per query while dispatching what an older hookd left.
const PAGE: u32 = 500;

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

/// Compiled pipelines and what their runs share (the queue of runs is the store's:
/// `Store::take_run_queue`).
pub struct Runtime {
    pub engine: Engine,
    pipelines: RwLock<HashMap<String, Arc<Stored>>>,
    /// Runs `event.send` queued per trace (see `fire`); forgotten oldest first past
    /// `TRACES_KEPT` traces, and at a restart.
    chained: std::sync::Mutex<TraceBudget>,
    /// Where runs are queued and recorded.
    pub store: Store,
    pub config: PipelineConfig,
    /// Receives in progress: workers step aside during a burst.
    burst: Arc<Burst>,
    /// One permit per program `exec` runs at once (`[pipeline] programs`).
    pub programs: tokio::sync::Semaphore,
    /// Where the programs' process groups are written down.
    pub groups: super::process::Groups,
    /// Cancelled when the daemon stops.
    pub shutdown: CancellationToken,
    /// The runs' own runtime, once the workers are up: where `pipeline.run` runs too.
    threads: std::sync::OnceLock<tokio::runtime::Handle>,
}

/// Traces whose chained runs are counted at once.
const TRACES_KEPT: usize = 4096;

/// Chained runs per trace, in the order the traces began.
#[derive(Default)]
struct TraceBudget {
    runs: HashMap<String, u32>,
    order: std::collections::VecDeque<String>,
}

impl TraceBudget {
    /// Takes `n` runs of `trace`'s budget of `max`; how many it had left when it cannot.
    fn take(&mut self, trace: &str, n: u32, max: u32) -> Result<(), u32> {
        let used = self.runs.get(trace).copied().unwrap_or(0);
        if used.saturating_add(n) > max {
            return Err(max.saturating_sub(used));
        }
        if used == 0 {
            self.order.push_back(trace.to_string());
            if self.order.len() > TRACES_KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.runs.remove(&old);
            }
        }
        self.runs.insert(trace.to_string(), used + n);
        Ok(())
    }
}

impl Runtime {
    /// Compiles every stored pipeline (one that no longer compiles is skipped, with a warning).
    /// Runs are recorded in `store`, step aside for `burst` and stop at `shutdown`.
    pub async fn load(
        store: Store,
        catalog: &dyn Catalog,
        config: PipelineConfig,
        burst: Arc<Burst>,
        groups: super::process::Groups,
        shutdown: CancellationToken,
    ) -> Result<Runtime, StoreError> {
        let engine = Engine::default();
        let rows = store.pipelines().await?;
        let mut map = HashMap::new();
        for row in rows {
            match super::parse(&row.source, catalog, &engine) {
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
        Ok(Runtime {
            engine,
            pipelines: RwLock::new(map),
            chained: Default::default(),
            programs: tokio::sync::Semaphore::new(config.programs),
            groups,
            store,
            config,
            burst,
            shutdown,
            threads: std::sync::OnceLock::new(),
        })
    }

    /// The compiled pipeline called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Stored>> {
        crate::locks::read(&self.pipelines).get(name).cloned()
    }

    /// Registers a compiled pipeline; the one now registered under its name.
    pub fn put(&self, stored: Stored) -> Arc<Stored> {
        let stored = Arc::new(stored);
        crate::locks::write(&self.pipelines).insert(stored.row.name.clone(), stored.clone());
        stored
    }

    /// Forgets a deleted pipeline.
    pub fn remove(&self, name: &str) {
        crate::locks::write(&self.pipelines).remove(name);
    }
}

/// The compiled pipeline called `name`, compiled from the store if this runtime has not seen
/// it yet (a run queued between a new pipeline's commit and its registration here, or stored by
/// another hookd on the same database).
async fn compiled(env: &Env, name: &str) -> Result<Arc<Stored>, String> {
    if let Some(s) = env.runtime.get(name) {
        return Ok(s);
    }
    let gone = || format!("pipeline '{name}' was deleted before this run started");
    let row = env
        .runtime
        .store
        .pipeline(name.to_string())
        .await
        .map_err(|e| format!("pipeline '{name}' could not be read: {e}"))?
        .ok_or_else(gone)?;
    let pipeline = super::parse(&row.source, &*env.commands, &env.runtime.engine)
        .map_err(|e| format!("pipeline '{name}' no longer compiles: {e}"))?;
    Ok(env.runtime.put(Stored {
        pipeline: Arc::new(pipeline),
        row,
    }))
}

/// Starts the workers with what a stop left queued, after dispatching what a hookd before
/// schema 8 left undispatched.
pub async fn start(env: &Env) -> Result<(), StoreError> {
    let Some(rx) = env.runtime.store.take_run_queue() else {
        return Ok(());
    };
    let left = env.runtime.store.queued_executions().await?;
    if !left.is_empty() {
        tracing::info!(
            "{} queued pipeline runs left from the last stop; running them",
            left.len()
        );
    }
    env.runtime.store.enqueue_runs(left);
    dispatch_left_by_the_log(env).await?;
    let rx = Arc::new(Mutex::new(rx));
    let runs = env.clone();
    std::thread::Builder::new()
        .name("hookd-runs".into())
        .spawn(move || run_workers(runs, rx))
        .map_err(|e| StoreError::Invalid(format!("cannot start the pipeline workers: {e}")))?;
    Ok(())
}

/// Before schema 8 a dispatcher queued runs from the event log and saved how far it got; the
/// messages it had not reached are dispatched here, once (a page at a time, each committed with
/// the cursor, so a crash mid-way repeats nothing), and then the cursor is dropped.
async fn dispatch_left_by_the_log(env: &Env) -> Result<(), StoreError> {
    let Some(mut cursor) = env.runtime.store.dispatch_cursor().await? else {
        return Ok(());
    };
    loop {
        let page = env.runtime.store.events_after(cursor, PAGE).await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        let mut new = Vec::new();
        for ev in &page {
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
            if ev.kind != EventType::MessageReceived {
                continue;
            }
            if let Some(l) = env.runtime.store.listeners_for(&m.event_key) {
                new.extend(l.executions(m, seq));
            }
        }
        let queued = env.runtime.store.queue_executions(new, Some(last)).await?;
        env.runtime
            .store
            .enqueue_runs(queued.into_iter().map(|(seq, _)| seq).collect());
        cursor = last;
        if page.len() < PAGE as usize {
            break;
        }
    }
    env.runtime.store.forget_dispatch_cursor().await
}

/// Runs queued executions on a runtime of their own, whose threads (and the programs runs
/// `exec`) have `[pipeline] nice`: under a burst the OS gives the CPU to capturing requests
/// first, and the queued runs (stored, so none is lost) catch up after it.
fn run_workers(env: Env, rx: Arc<Mutex<mpsc::UnboundedReceiver<i64>>>) {
    let nice = env.runtime.config.nice;
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
    let _ = env.runtime.threads.set(rt.handle().clone());
    rt.block_on(async {
        for i in 0..env.runtime.config.workers {
            tokio::spawn(worker(env.clone(), rx.clone(), i == 0));
        }
        env.runtime.shutdown.cancelled().await;
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

/// Runs `r` to its end on the runs' threads (at `[pipeline] nice`), not on the caller's: a
/// request's thread serves many connections, and a run's expressions evaluate without yielding
/// (each up to its operation limit and a second). Before the workers start (a unit test, say), on
/// the caller's.
pub async fn run_apart(env: &Env, r: super::run::Run) -> super::run::Outcome {
    let Some(threads) = env.runtime.threads.get() else {
        return super::run::run(env, r).await;
    };
    let apart = env.clone();
    let name = r.name.clone();
    match threads
        .spawn(async move { super::run::run(&apart, r).await })
        .await
    {
        Ok(outcome) => outcome,
        Err(e) => super::run::Outcome::failed(format!("the run of {name} stopped: {e}")),
    }
}

/// `event.send`: queues a run of every listener of `event_key`; returns how many.
pub async fn fire(
    env: &Env,
    event_key: &str,
    payload: Value,
    depth: u32,
    trace_id: &str,
) -> Result<usize, String> {
    let input = serde_json::to_string(&payload).map_err(|e| e.to_string())?;
    let new: Vec<NewExecution> = env
        .runtime
        .store
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
    // A fan-out (two event.send per run, say) grows in breadth, which MAX_DEPTH does not bound.
    let max = env.runtime.config.max_runs_per_trace;
    if n > 0
        && let Err(left) = crate::locks::lock(&env.runtime.chained).take(trace_id, n as u32, max)
    {
        return Err(format!(
            "trace {trace_id} has queued its {max} runs ([pipeline] maxRunsPerTrace); {event_key} \
             would add {n} with {left} left: is a listener fanning events out without end?"
        ));
    }
    if n > 0 {
        let queued = env
            .runtime
            .store
            .queue_executions(new, None)
            .await
            .map_err(|e| e.to_string())?;
        env.runtime
            .store
            .enqueue_runs(queued.into_iter().map(|(seq, _)| seq).collect());
    }
    Ok(n)
}

/// Takes queued runs one at a time. All but the `steady` worker pause while a burst is being
/// received (including one that was waiting for work when it began), so its runs queue (stored)
/// instead of slowing the writer every receive waits for; the steady one keeps them moving
/// however long the burst lasts.
async fn worker(env: Env, rx: Arc<Mutex<mpsc::UnboundedReceiver<i64>>>, steady: bool) {
    // Grows while runs cannot start because the store cannot write (a full disk, say).
    let mut pause = Duration::ZERO;
    loop {
        if !steady {
            tokio::select! {
                () = env.runtime.burst.quiet() => {}
                () = env.runtime.shutdown.cancelled() => return,
            }
        }
        let next = tokio::select! {
            seq = async { rx.lock().await.recv().await } => seq,
            () = env.runtime.burst.begun(), if !steady => continue,
            () = env.runtime.shutdown.cancelled() => return,
        };
        let Some(seq) = next else {
            return;
        };
        match execute(&env, seq).await {
            Ok(()) => pause = Duration::ZERO,
            Err(e) => {
                // Still queued in the table: queued again here, so it runs once the store
                // writes again instead of at the next start. Pausing keeps the workers from
                // cycling through every queued run meanwhile.
                pause = crate::store::retry_pause(pause);
                tracing::warn!(
                    "execution {seq} could not start ({e}); this worker pauses {} s",
                    pause.as_secs()
                );
                env.runtime.store.enqueue_runs(vec![seq]);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = env.runtime.shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Runs a queued execution to its end and records the outcome. An error means the store could
/// not record its start (the run stays queued); a run that is no longer queued is skipped.
pub async fn execute(env: &Env, seq: i64) -> Result<(), StoreError> {
    let row = match env.runtime.store.start_execution(seq).await {
        Ok(r) => r,
        Err(e @ (StoreError::Invalid(_) | StoreError::NotFound(_) | StoreError::Closed)) => {
            tracing::debug!("execution {seq} not started: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let started = std::time::Instant::now();
    let outcome = prepare_and_run(env, &row).await;
    let finish = match outcome {
        Ok(Some((o, body_from))) => {
            let (body, truncated) = match body_from {
                Some(_) => (None, false),
                None => o.stored_body(),
            };
            let steps = o.stored_steps();
            Finish {
                seq,
                status: o.status,
                run_as: Some(o.run_as),
                steps,
                body,
                body_truncated: truncated,
                error: o.error,
                error_step: o.error_step,
                body_from,
                error_private: o.error_private,
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
            error_private: false,
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
            error_private: false,
        },
    };
    metrics::counter!(crate::metrics::EXECUTIONS, "status" => finish.status).increment(1);
    metrics::histogram!(crate::metrics::EXECUTION_SECONDS).record(started.elapsed().as_secs_f64());
    // The worker moves on once the record is queued: the writer's queue keeps it ahead of the
    // next run's start, and waiting for its commit too would halve what a worker can run.
    let again = finish.clone();
    match env.runtime.store.finish_execution_queued(finish).await {
        Ok(committed) => {
            let env = env.clone();
            tokio::spawn(async move {
                if let Err(e) = committed.await {
                    record_end_again(&env, again, e).await;
                }
            });
        }
        Err(e) => record_end_again(env, again, e).await,
    }
    Ok(())
}

/// Every run is recorded: when the store could not record a run's end (a full disk, say), try
/// again, pausing longer each time, until it can or the daemon stops (a run still `running` at
/// the next start is marked failed then).
async fn record_end_again(env: &Env, finish: Finish, first: StoreError) {
    let seq = finish.seq;
    let mut e = first;
    let mut pause = Duration::ZERO;
    loop {
        if matches!(
            e,
            StoreError::Closed | StoreError::Invalid(_) | StoreError::NotFound(_)
        ) {
            tracing::error!("recording the end of execution {seq} failed: {e}");
            return;
        }
        pause = crate::store::retry_pause(pause);
        tracing::warn!(
            "recording the end of execution {seq} failed ({e}); trying again in {} s",
            pause.as_secs()
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = env.runtime.shutdown.cancelled() => return,
        }
        match env.runtime.store.finish_execution(finish.clone()).await {
            Ok(_) => return,
            Err(next) => e = next,
        }
    }
}

/// Builds the run's input and runs it; `Ok(None)` when the listener's filter skips it. With the
/// outcome, the payload type of the message event it started with if it ended with it unchanged.
async fn prepare_and_run(
    env: &Env,
    row: &pipelines::ExecutionRow,
) -> Result<Option<(run::Outcome, Option<PayloadType>)>, String> {
    let stored = compiled(env, &row.pipeline).await?;
    let mut from_message = None;
    let body = match row.trigger.as_str() {
        "event" | "replay" => {
            let seq = row
                .message_seq
                .ok_or("the triggering message is not recorded")?;
            let (event, payload_type) =
                message_event(&env.runtime.store, seq, &row.trace_id, None).await?;
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
        let v = env
            .runtime
            .engine
            .eval(filter, &ctx)
            .map_err(|e| format!("filter: {e}"))?;
        if !run::truthy(&v) {
            return Ok(None);
        }
    }
    let r = stored.run_for(Identity::Anonymous, body, row.depth, row.trace_id.clone());
    let outcome = run::run(env, r).await;
    // A message event the run left as it was is rebuilt from the message when asked for
    // (execution.get), not stored: it is larger than the message itself.
    let body_from = from_message.filter(|_| outcome.body_unchanged);
    Ok(Some((outcome, body_from)))
}

/// The event body for the message stored at `seq`, built with its webhook's payload type
/// (`payload_type` overrides it: to rebuild the event a finished run saw).
pub async fn message_event(
    store: &Store,
    seq: i64,
    trace_id: &str,
    payload_type: Option<PayloadType>,
) -> Result<(Value, PayloadType), String> {
    let (rec, body) = store
        .message_with_body(seq)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("message {seq} no longer exists"))?;
    let payload_type = payload_type.unwrap_or_else(|| {
        store
            .webhook(&rec.summary.uuid)
            .map_or(PayloadType::Raw, |w| w.payload_type)
    });
    let event = super::event::for_message(&rec, &body, payload_type, trace_id);
    Ok((event, payload_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::testing::Harness;
    use hookd_shared::{EventType, Role};
    use serde_json::json;
    use tokio::sync::broadcast;

    /// Stores a listener of `pattern` named `global/app/t/pipeline/<name>` that logs the event key.
    async fn listener(h: &Harness, name: &str, pattern: &str) {
        let yaml = format!(
            "pipeline:\n  - event.listen:\n      eventKey: {pattern}\n  - log:\n      message: \"got ${{body.eventKey}}\"\n"
        );
        h.ok(
            "pipeline.put",
            json!({"name": format!("global/app/t/pipeline/{name}"), "pipeline": yaml}),
            Role::Admin,
        )
        .await;
    }

    /// The id and status of the next run that finishes.
    async fn finished(rx: &mut broadcast::Receiver<Arc<crate::events::BusEvent>>) -> Value {
        loop {
            let e = rx.recv().await.expect("the bus stays open");
            if e.kind == EventType::ExecutionFinished {
                return e.data.to_json();
            }
        }
    }

    #[tokio::test]
    async fn a_capture_queues_only_its_matching_listeners_and_each_run_happens_once() {
        let h = Harness::new().await;
        listener(&h, "push", "webhook.github.#").await;
        listener(&h, "other", "webhook.stripe.#").await;
        let uuid = h.webhook("webhook.github.push").await;
        let mut queue = h.store.take_run_queue().expect("the run queue");
        let mut bus = h.ctx.bus.subscribe();
        let message = h.capture(&uuid, br#"{"a":1}"#, &[]).await;

        let seq = queue.recv().await.expect("one run queued");
        assert!(
            queue.try_recv().is_err(),
            "the stripe listener must not be queued for a github event"
        );
        let env = h.env();
        execute(&env, seq).await.expect("run");
        let done = finished(&mut bus).await;
        assert_eq!(done["pipeline"], "global/app/t/pipeline/push");
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["messageId"], message.as_str());

        // A run taken twice (a worker restarted after the start was recorded, say) runs once.
        execute(&env, seq).await.expect("second take");
        let all = h
            .store
            .executions(crate::store::pipelines::ExecutionFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].status, "succeeded");
        let steps = all[0].steps.as_deref().unwrap_or_default();
        assert!(
            steps.contains("got webhook.github.push"),
            "the log step saw the event key: {steps}"
        );
    }

    #[tokio::test]
    async fn a_pipeline_this_runtime_has_not_compiled_is_compiled_from_the_store_at_its_run() {
        let h = Harness::new().await;
        // Stored past this runtime (as another hookd on the same database would): the store's
        // listener index queues its runs, and the run compiles it.
        let row = |name: &str, source: &str| PipelineRow {
            name: name.into(),
            source: source.into(),
            listen: Some("webhook.#".into()),
            stored_by: "admin".into(),
            stored_by_role: Role::Admin,
            created_at: 0,
            updated_at: 0,
            last_run_at: None,
        };
        h.store
            .put_pipeline(row(
                "global/app/t/pipeline/fresh",
                "pipeline:\n  - event.listen:\n      eventKey: webhook.#\n  - log:\n      message: fresh\n",
            ))
            .await
            .expect("put");
        h.store
            .put_pipeline(row(
                "global/app/t/pipeline/stale",
                "pipeline:\n  - event.listen:\n      eventKey: webhook.#\n  - no.such.command: {}\n",
            ))
            .await
            .expect("put");
        let uuid = h.webhook("webhook.a").await;
        let mut queue = h.store.take_run_queue().expect("the run queue");
        let mut bus = h.ctx.bus.subscribe();
        h.capture(&uuid, b"x", &[]).await;
        let env = h.env();
        let mut by_name = HashMap::new();
        for _ in 0..2 {
            let seq = queue.recv().await.expect("queued");
            execute(&env, seq).await.expect("run");
            let done = finished(&mut bus).await;
            by_name.insert(
                done["pipeline"].as_str().unwrap_or_default().to_string(),
                done,
            );
        }
        assert_eq!(
            by_name["global/app/t/pipeline/fresh"]["status"],
            "succeeded"
        );
        let stale = &by_name["global/app/t/pipeline/stale"];
        assert_eq!(stale["status"], "failed");
        let error = stale["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("no longer compiles") && error.contains("no.such.command"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_run_that_only_computes_stops_at_its_time_limit() {
        let h = Harness::with(|c| c.pipeline.timeout = std::time::Duration::from_millis(500)).await;
        // Each step's expression stays inside the operation limit; together they take far
        // longer than the limit, and none of them ever waits.
        let step = "  - log:\n      message: '${\"ab\".pad(1000000, \"x\")}'\n";
        let yaml = format!("pipeline:\n{}", step.repeat(2000));
        let out = h
            .ok("pipeline.run", json!({"pipeline": yaml}), Role::Admin)
            .await;
        assert_eq!(out["status"], "failed", "{}", out["error"]);
        let error = out["error"].as_str().unwrap_or_default();
        assert!(error.contains("time limit of 500ms"), "{error}");
        let steps = out["steps"].as_array().map(Vec::len).unwrap_or_default();
        assert!(
            (1..2000).contains(&steps),
            "stopped part of the way: {steps} steps recorded"
        );
        let first = &out["steps"][0];
        assert_eq!(first["status"], "ok", "the steps themselves work: {first}");
    }

    #[tokio::test]
    async fn a_fan_out_past_the_trace_budget_is_refused_and_queues_nothing() {
        let h = Harness::with(|c| c.pipeline.max_runs_per_trace = 2).await;
        for n in ["a", "b", "c"] {
            listener(&h, n, "chain.wide").await;
        }
        listener(&h, "d", "chain.narrow").await;
        let mut queue = h.store.take_run_queue().expect("the run queue");
        let env = h.env();

        let e = fire(&env, "chain.wide", json!({}), 1, "trace-1")
            .await
            .expect_err("three runs do not fit a budget of two");
        assert!(e.contains("maxRunsPerTrace"), "{e}");
        assert!(queue.try_recv().is_err(), "nothing queued");

        assert_eq!(
            fire(&env, "chain.narrow", json!({}), 1, "trace-1").await,
            Ok(1)
        );
        assert_eq!(
            fire(&env, "chain.narrow", json!({}), 1, "trace-1").await,
            Ok(1)
        );
        let e = fire(&env, "chain.narrow", json!({}), 1, "trace-1")
            .await
            .expect_err("the budget is spent");
        assert!(e.contains("trace-1"), "{e}");
        assert_eq!(
            fire(&env, "chain.narrow", json!({}), 1, "trace-2").await,
            Ok(1),
            "another trace has its own budget"
        );
        let mut queued = 0;
        while queue.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 3);
    }

    #[test]
    fn a_trace_budget_refuses_what_would_pass_it_and_forgets_old_traces() {
        let mut b = TraceBudget::default();
        assert_eq!(b.take("t", 600, 1000), Ok(()));
        assert_eq!(b.take("t", 400, 1000), Ok(()));
        assert_eq!(b.take("t", 1, 1000), Err(0));
        assert_eq!(b.take("u", 2, 1000), Ok(()), "other traces have their own");
        for i in 0..TRACES_KEPT {
            b.take(&format!("x{i}"), 1, 1000).expect("new trace");
        }
        assert!(b.runs.len() <= TRACES_KEPT);
        assert_eq!(
            b.take("t", 1, 1000),
            Ok(()),
            "the oldest trace was forgotten"
        );
    }
}
