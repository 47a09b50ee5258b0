//! The writer's protocol: the operations it performs, what each produced, and what applying one
//! inside the transaction yields. Table modules implement operations against it; `writer.rs`
//! runs the loop on top.

use std::sync::Arc;

use hookd_shared::MessageSummary;
use tokio::sync::oneshot;

use crate::events::BusEvent;
use crate::store::StoreError;
use crate::store::model::messages::{Capture, CapturedBody};
use crate::store::model::pipelines::Listeners;
use crate::store::model::tokens::TokenRow;
use crate::store::model::webhooks::{WebhookPut, WebhookRow};
use crate::store::model::{deliveries, pipelines, retention::Pruned};

/// A write the writer thread performs.
pub(crate) enum Op {
    /// A capture, with the listeners whose runs it queues in the same transaction.
    Capture(Box<Capture>, Option<Listeners>),
    PutWebhook(Box<WebhookPut>),
    DeleteWebhook(String),
    CreateToken(TokenRow),
    DeleteToken(String),
    Ping,
    /// Prune the event log to `max_count` events and none older than `before_ms`.
    PruneEvents {
        max_count: u64,
        before_ms: i64,
    },
    /// One chunk of pruning by the retention limits, freeing bodies pruned `grace_ms` ago.
    Prune {
        grace_ms: i64,
    },
    PutPipeline(Box<pipelines::PipelineRow>),
    DeletePipeline(String),
    /// Queue executions; advance the listener dispatch cursor to `cursor`.
    QueueExecutions {
        new: Vec<pipelines::NewExecution>,
        cursor: Option<u64>,
    },
    /// Drop the dispatch cursor once what it had not reached is dispatched.
    ForgetDispatchCursor,
    StartExecution(i64),
    FinishExecution(Box<pipelines::Finish>),
    CreateDelivery(Box<deliveries::NewDelivery>),
    RecordAttempt(Box<deliveries::AttemptRecord>),
    RetryDelivery(i64),
    CancelDelivery(i64),
    /// Store a message's parts again, with the hashes computed on first read.
    SetParts {
        seq: i64,
        parts: String,
    },
    Shutdown,
}

impl Op {
    /// The `incoming/` body file this operation commits, if any: the writer owns it from now on.
    pub(super) fn body_file(&self) -> Option<String> {
        match self {
            Op::Capture(c, _) => match &c.body {
                CapturedBody::File(id) => Some(id.clone()),
                CapturedBody::Inline(_) => None,
            },
            _ => None,
        }
    }
}

/// What a committed operation produced.
pub(crate) enum Outcome {
    Captured(Arc<MessageSummary>),
    /// A repeat within the dedupe window: the original message's id.
    Duplicate(String),
    Webhook(Box<WebhookRow>, bool),
    Token(TokenRow),
    Pruned(usize),
    Retained(Pruned),
    Pipeline(pipelines::PipelineRow, bool),
    /// (seq, public id) of each queued execution.
    Executions(Vec<(i64, String)>),
    Execution(Box<pipelines::ExecutionRow>),
    Delivery(Box<deliveries::DeliveryRow>),
    Done,
}

/// An operation and the channel its committed outcome goes back on.
pub(crate) struct Job {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// What applying an operation inside the transaction yields; acted on only after the commit.
pub(crate) struct Applied {
    pub outcome: Outcome,
    pub events: Vec<BusEvent>,
    pub effects: Vec<Effect>,
    /// A stored message, for the bookkeeping done once per batch (spans, counters).
    pub stored: Option<Stored>,
    /// Executions queued for the workers, handed to them after the commit.
    pub runs: Vec<i64>,
}

/// A change to make outside SQLite once the transaction has committed.
pub(crate) enum Effect {
    CacheWebhook(Arc<WebhookRow>),
    UncacheWebhook(String),
    CacheToken(TokenRow),
    UncacheToken([u8; 32]),
    /// A stored pipeline: a listener of the pattern, or (`None`) not a listener.
    CacheListener(String, Option<String>),
    PromoteFile(String),
    /// A body file that turned out not to be needed (a duplicate).
    DiscardFile(String),
}

impl Applied {
    pub fn new(outcome: Outcome) -> Applied {
        Applied {
            outcome,
            events: Vec::new(),
            effects: Vec::new(),
            stored: None,
            runs: Vec::new(),
        }
    }
}

/// A message a batch stored: what the batch's bookkeeping after the last message needs.
#[derive(Debug)]
pub(crate) struct Stored {
    pub seq: i64,
    pub uuid: String,
    pub received_at: i64,
    pub accepted: bool,
    pub size: u64,
}
