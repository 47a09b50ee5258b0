//! Request and response bodies of the command API (`/api/v3/command/<name>`), camelCase on the wire.

use serde::{Deserialize, Serialize};

/// How a webhook's body is handed to pipelines (PIPEFORCE's `payloadType`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayloadType {
    /// The body as text (base64 when it is not UTF-8).
    #[default]
    Raw,
    /// The body always base64-encoded.
    Base64,
    /// The body is stored but not handed to pipelines.
    Ignore,
}

impl PayloadType {
    /// The wire name (`raw`, `base64`, `ignore`).
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadType::Raw => "raw",
            PayloadType::Base64 => "base64",
            PayloadType::Ignore => "ignore",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(PayloadType::Raw),
            "base64" => Some(PayloadType::Base64),
            "ignore" => Some(PayloadType::Ignore),
            _ => None,
        }
    }
}

/// What a token may do. Ordered: every role can do what the roles below it can.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only commands.
    Viewer,
    /// Everything.
    Admin,
}

impl Role {
    /// The wire name (`viewer`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// An incoming webhook as `webhook.put` and `webhook.get` return it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub uuid: String,
    pub event_key: String,
    pub webhook_url: String,
    pub payload_type: PayloadType,
    pub max_payload_length: u64,
    pub description: String,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Messages captured since the webhook was created.
    pub message_count: u64,
    pub last_received_at: Option<String>,
    /// Signature verification: the scheme and its settings, secrets shown as "••••".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<serde_json::Value>,
    /// Idempotency source: absent for the defaults (webhook-id, X-GitHub-Delivery,
    /// Idempotency-Key, X-Request-Id), a header name, or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe: Option<String>,
    /// Seconds a repeat counts as a duplicate (default 86400).
    pub dedupe_window: u64,
    /// `{"perSecond": …, "burst": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<serde_json::Value>,
    /// Source networks allowed to call it (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_cidrs: Vec<String>,
    /// The retention in force: the webhook's own override over the daemon's `[retention]`.
    #[serde(default)]
    pub retention: RetentionView,
    /// What `webhook.put retention=…` set (absent: the daemon's limits apply as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_override: Option<serde_json::Value>,
    /// Messages of this webhook stored now (after retention), accepted and rejected.
    #[serde(default)]
    pub stored_count: u64,
    /// Their body bytes.
    #[serde(default)]
    pub stored_bytes: u64,
}

/// Retention limits as a person reads them; `null` is no limit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetentionView {
    /// e.g. `"7d"`.
    pub max_age: Option<String>,
    pub max_count: Option<u64>,
    /// e.g. `"1GiB"`.
    pub max_bytes: Option<String>,
}

/// One captured request as `message.list` returns it (and `message.received` events carry).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageSummary {
    pub id: String,
    /// The webhook's uuid.
    pub uuid: String,
    pub event_key: String,
    pub received_at: String,
    pub method: String,
    pub content_type: Option<String>,
    /// Body size in bytes.
    pub size: u64,
    pub file_count: u32,
    /// `accepted` (stored and fired) or `rejected` (failed verification; stored, not fired).
    pub status: String,
    /// `none` (not verified), `passed` or `failed`.
    pub verification: String,
    /// Why a rejected message was refused, e.g. `signature mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How `Message::body` is encoded.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    Utf8,
    Base64,
}

/// A file part of a multipart capture.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// The `index=` that `message.file` takes.
    pub index: u32,
    /// The form field name.
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub size: u64,
    pub sha256: String,
}

/// The full capture of one request, as `message.get` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[serde(flatten)]
    pub summary: MessageSummary,
    pub path: String,
    /// The query string exactly as received (without `?`).
    pub query_string: String,
    /// Decoded query pairs in order, repeated keys kept.
    pub query: Vec<(String, String)>,
    /// Header pairs, repeats kept; names lower-case (HTTP/1 names are case-insensitive).
    pub headers: Vec<(String, String)>,
    pub remote_addr: String,
    pub sha256: String,
    /// The body, or its first `bodyLimit` bytes when `bodyTruncated`; `message.body` gives all.
    pub body: String,
    pub encoding: BodyEncoding,
    pub body_truncated: bool,
    /// Form fields of urlencoded and multipart bodies, in order.
    pub form: Vec<(String, String)>,
    pub files: Vec<FileInfo>,
}

/// The answer to a successful `webhook.receive`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiveResponse {
    pub message_id: String,
    pub event_key: String,
    pub status: String,
    /// True when this was a repeat of `message_id` within the dedupe window: nothing stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Every error response: `{"error": {...}}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// The body of an error response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ErrorBody {
    pub status: u16,
    /// Stable machine-readable code, e.g. `invalid_param`.
    pub code: String,
    /// What went wrong and what to do, for a person.
    pub message: String,
}

/// An API token as `token.list` shows it (never the secret).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
}

/// `token.create`'s answer: the only time the secret is shown.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// A command as `command.list` describes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommandInfo {
    pub name: String,
    pub description: String,
    /// The role needed; `None` for public commands.
    pub role: Option<Role>,
    pub params: Vec<ParamInfo>,
}

/// One parameter of a command.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParamInfo {
    pub name: String,
    /// `string`, `integer`, `boolean` or `json`.
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub description: String,
}

/// A stored pipeline as `pipeline.get` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineInfo {
    /// Its key, e.g. `global/app/myapp/pipeline/on-lead`.
    pub name: String,
    /// The pattern of its `event.listen`, when it is a listener.
    pub event_key: Option<String>,
    /// The YAML (or JSON) as stored (absent in `pipeline.*` events).
    #[serde(default)]
    pub source: String,
    /// The token name that stored it, and that token's role then.
    pub stored_by: String,
    pub stored_by_role: Role,
    pub created_at: String,
    pub updated_at: String,
    pub last_run_at: Option<String>,
}

/// One run of a pipeline, as `execution.list` returns it (and `execution.*` events carry).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    pub id: String,
    pub pipeline: String,
    /// `queued`, `running`, `succeeded`, `failed` or `skipped`.
    pub status: String,
    /// `event`, `replay`, `chain` (event.send) or `manual` (pipeline.run).
    pub trigger: String,
    pub event_key: Option<String>,
    pub message_id: Option<String>,
    /// The message whose event was replayed.
    pub replay_of: Option<String>,
    /// The user the run ended as (`anonymous` unless iam.run.as switched).
    pub run_as: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    /// The error arose at or after a step that ran an admin-only command, so it may quote what
    /// that returned: only admins see it; others get [`HIDDEN`] in its place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error_private: bool,
}

/// What stands for a value a caller may not see.
pub const HIDDEN: &str = "(hidden)";

impl ExecutionSummary {
    /// This summary as a caller that is not an admin sees it.
    pub fn for_non_admin(&self) -> Option<ExecutionSummary> {
        (self.error_private && self.error.is_some()).then(|| ExecutionSummary {
            error: Some(HIDDEN.into()),
            ..self.clone()
        })
    }
}

/// A finished run in full, as `execution.get` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    #[serde(flatten)]
    pub summary: ExecutionSummary,
    pub trace_id: String,
    /// How deep in an event.send chain this run is (0 for a webhook's event).
    pub depth: u32,
    pub steps: Vec<StepLog>,
    /// The final body (capped at 64 KiB; see `bodyTruncated`).
    pub body: Option<serde_json::Value>,
    pub body_truncated: bool,
    /// Index (from 0) of the step that failed the run.
    pub error_step: Option<u32>,
    /// Why `body` and some steps' logs and errors are left out: the run used a command this
    /// caller may not (what it returned is for the roles that may run it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<String>,
}

/// What one step of a run did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepLog {
    pub index: u32,
    pub command: String,
    /// Line in the pipeline's source.
    pub line: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `ok`, `skipped` (if was false), `failed`, or `continued` (failed, onError CONTINUE/LOG).
    pub status: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An outgoing delivery as `delivery.list` returns it (and `delivery.*` events carry).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySummary {
    pub id: String,
    pub url: String,
    pub method: String,
    /// `pending`, `succeeded`, `failed` (gave up) or `cancelled`.
    pub status: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub next_attempt_at: Option<String>,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    /// The `webhook-id` sent with every attempt: the receiver's idempotency key.
    pub webhook_id: String,
    /// `api`, `pipeline:<name>` or `forward`.
    pub source: String,
    /// The forwarded message, for `message.forward`.
    pub message_id: Option<String>,
}

/// A delivery with its attempts, as `delivery.get` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    #[serde(flatten)]
    pub summary: DeliverySummary,
    pub headers: Vec<(String, String)>,
    pub attempts_log: Vec<Attempt>,
}

/// One attempt of a delivery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1 for the first attempt.
    pub n: u32,
    pub at: String,
    pub duration_ms: u64,
    /// The response status, when there was a response.
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    /// The first 64 KiB of the response body (base64 when `responseEncoding` says so).
    pub response_body: String,
    pub response_encoding: BodyEncoding,
    /// The network error, when there was no response.
    pub error: Option<String>,
}

/// What `store.stats` reports: rows and bytes per kind, and the disk the store takes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StoreStats {
    /// Messages stored now (accepted and rejected) and their body bytes.
    pub messages: KindStats,
    pub executions: KindStats,
    pub deliveries: KindStats,
    /// Attempts of the stored deliveries.
    pub delivery_attempts: u64,
    /// Events the log can replay (`since=`).
    pub events: KindStats,
    /// Bodies over 64 KiB, one file each (`files/`).
    pub body_files: KindStats,
    /// Bodies of 8–64 KiB, in segment files (`segments/`): bytes actually on disk.
    pub segment_bytes: u64,
    /// Pruned bodies whose bytes are freed after a grace period.
    pub bodies_awaiting_free: u64,
    pub database: DatabaseStats,
    /// Everything in the data dir together.
    pub total_bytes: u64,
    /// The retention in force for each kind (messages: the daemon's, each webhook may override).
    pub retention: RetentionStats,
}

/// A count and, where it applies, bytes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KindStats {
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// The SQLite files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStats {
    /// `hookd.db`.
    pub bytes: u64,
    /// Pages inside it free for reuse (pruned rows); SQLite fills them before growing the file.
    pub free_bytes: u64,
    /// `hookd.db-wal`.
    pub wal_bytes: u64,
}

/// The retention per kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetentionStats {
    pub messages: RetentionView,
    pub executions: RetentionView,
    pub deliveries: RetentionView,
    pub events: RetentionView,
}

/// What `store.prune` did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub messages: u64,
    pub message_bytes: u64,
    pub executions: u64,
    pub deliveries: u64,
    pub events: u64,
    pub files_deleted: u64,
    pub segment_bytes_freed: u64,
}

/// The path of every webhook URL (`/api/v3/webhook.receive` is accepted too).
pub const RECEIVE_PATH: &str = "/api/v3/command/webhook.receive";
