//! Stored pipelines, the runs a message queues, and executions.

use hookd_shared::{
    Execution, ExecutionSummary, MessageSummary, PayloadType, PipelineInfo, Role, StepLog,
};

use crate::clock::rfc3339;
use crate::store::ids::public_id;

/// A stored pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRow {
    pub name: String,
    pub source: String,
    /// The `event.listen` pattern, if it is a listener.
    pub listen: Option<String>,
    pub stored_by: String,
    pub stored_by_role: Role,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_run_at: Option<i64>,
}

impl PipelineRow {
    /// The API view.
    pub fn to_api(&self) -> PipelineInfo {
        PipelineInfo {
            name: self.name.clone(),
            event_key: self.listen.clone(),
            source: self.source.clone(),
            stored_by: self.stored_by.clone(),
            stored_by_role: self.stored_by_role,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            last_run_at: self.last_run_at.map(rfc3339),
        }
    }
}

/// The message for an unknown pipeline name.
pub fn no_such_pipeline(name: &str) -> String {
    format!("no pipeline named '{name}'; pipeline.get lists them")
}

/// The listeners a captured message runs: queued in the transaction that stores it, so a
/// stored message never misses its runs.
#[derive(Debug, Clone)]
pub struct Listeners {
    pub pipelines: Vec<String>,
    pub trace_id: String,
}

impl Listeners {
    /// One queued run per listener of the message stored at `seq`.
    pub fn executions(self, message: &MessageSummary, seq: i64) -> Vec<NewExecution> {
        let Listeners {
            pipelines,
            trace_id,
        } = self;
        pipelines
            .into_iter()
            .map(|pipeline| NewExecution {
                pipeline,
                trigger: "event",
                event_key: Some(message.event_key.clone()),
                message_seq: Some(seq),
                message_id: Some(message.id.clone()),
                replay_of: None,
                input: None,
                trace_id: trace_id.clone(),
                depth: 0,
            })
            .collect()
    }
}

/// An execution to queue.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub pipeline: String,
    /// `event`, `replay`, `chain` or `manual`.
    pub trigger: &'static str,
    pub event_key: Option<String>,
    pub message_seq: Option<i64>,
    pub message_id: Option<String>,
    pub replay_of: Option<String>,
    /// The event payload (chains) or the body (manual runs), as JSON.
    pub input: Option<String>,
    pub trace_id: String,
    pub depth: u32,
}

/// A stored execution.
#[derive(Debug, Clone)]
pub struct ExecutionRow {
    pub seq: i64,
    pub created_at: i64,
    pub pipeline: String,
    pub trigger: String,
    pub event_key: Option<String>,
    pub message_seq: Option<i64>,
    pub message_id: Option<String>,
    pub replay_of: Option<String>,
    pub input: Option<String>,
    pub trace_id: String,
    pub depth: u32,
    pub run_as: Option<String>,
    pub status: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub steps: Option<String>,
    pub body: Option<String>,
    pub body_truncated: bool,
    pub error: Option<String>,
    pub error_step: Option<u32>,
    /// Where the final body is when `body` is not stored: the run left its message event
    /// unchanged, built with this payload type (see [`MESSAGE_EVENT`]).
    pub body_from: Option<PayloadType>,
    /// The error may quote what an admin-only command returned (see `ExecutionSummary`).
    pub error_private: bool,
}

/// `body_from`'s prefix for a body that is the run's message event.
pub const MESSAGE_EVENT: &str = "message:";

impl ExecutionRow {
    /// Its public id.
    pub fn id(&self) -> String {
        public_id(self.created_at, self.seq).to_string()
    }

    /// The list view.
    pub fn summary(&self) -> ExecutionSummary {
        ExecutionSummary {
            id: self.id(),
            pipeline: self.pipeline.clone(),
            status: self.status.clone(),
            trigger: self.trigger.clone(),
            event_key: self.event_key.clone(),
            message_id: self.message_id.clone(),
            replay_of: self.replay_of.clone(),
            run_as: self.run_as.clone(),
            created_at: rfc3339(self.created_at),
            started_at: self.started_at.map(rfc3339),
            finished_at: self.finished_at.map(rfc3339),
            duration_ms: self
                .started_at
                .zip(self.finished_at)
                .map(|(s, f)| (f - s).max(0) as u64),
            error: self.error.clone(),
            error_private: self.error_private,
        }
    }

    /// The full view.
    pub fn detail(&self) -> Execution {
        Execution {
            summary: self.summary(),
            trace_id: self.trace_id.clone(),
            depth: self.depth,
            steps: self
                .steps
                .as_deref()
                .and_then(|s| serde_json::from_str::<Vec<StepLog>>(s).ok())
                .unwrap_or_default(),
            body: self
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok()),
            body_truncated: self.body_truncated,
            error_step: self.error_step,
            hidden: None,
        }
    }
}

/// Filters of `execution.list`.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub pipeline: Option<String>,
    pub status: Option<String>,
    pub message_seq: Option<i64>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Finish {
    pub seq: i64,
    /// `succeeded`, `failed` or `skipped`.
    pub status: &'static str,
    pub run_as: Option<String>,
    pub steps: String,
    pub body: Option<String>,
    pub body_truncated: bool,
    pub error: Option<String>,
    pub error_step: Option<u32>,
    /// Set instead of `body` when the final body is the unchanged message event.
    pub body_from: Option<PayloadType>,
    /// The error may quote what an admin-only command returned (see `ExecutionSummary`).
    pub error_private: bool,
}
