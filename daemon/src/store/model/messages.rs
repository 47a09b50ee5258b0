//! Captured messages as the domain sees them: what receive hands the store, and what reads give back.

use bytes::Bytes;
use hookd_shared::MessageSummary;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// One part of a multipart body: where its bytes are inside the stored body. Text fields also
/// carry their value; file parts their hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub offset: u64,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl PartRecord {
    /// Whether this part is listed as a file (rather than a text form field).
    pub fn is_file(&self) -> bool {
        self.value.is_none()
    }

    /// The content's SHA-256 in hex: as stored (see [`hash_file_parts`]), else computed from
    /// `body`, the whole message body. Receiving does not hash parts: it already hashes each byte
    /// once for the whole body, and most parts' hashes are never asked for.
    pub fn sha256_hex(&self, body: Option<&[u8]>) -> String {
        if let Some(h) = &self.sha256 {
            return h.clone();
        }
        let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(self.size).unwrap_or(usize::MAX));
        body.and_then(|b| b.get(start..end))
            .map(|content| hex::encode(Sha256::digest(content)))
            .unwrap_or_default()
    }
}

/// Where a captured body's bytes are.
#[derive(Debug, Clone)]
pub enum CapturedBody {
    /// Small bodies go into the row.
    Inline(Bytes),
    /// Larger ones into `incoming/<id>` (already fsynced), moved to `files/<id>` on commit.
    File(String),
}

/// A request that `webhook.receive` accepted and wants committed.
#[derive(Debug, Clone)]
pub struct Capture {
    pub webhook_uuid: String,
    pub event_key: String,
    pub received_at: i64,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header pairs as a JSON array of `[name, value]`, serialized by the receiver.
    pub headers_json: String,
    pub remote_addr: String,
    pub content_type: Option<String>,
    pub size: u64,
    /// Known for a body received into a file; a body kept in memory is hashed when read.
    pub sha256: Option<[u8; 32]>,
    pub parts: Vec<PartRecord>,
    pub body: CapturedBody,
    /// `none`, or `passed` when the webhook verifies signatures.
    pub verification: &'static str,
    /// Why verification failed: stored as rejected, announced, fired nowhere.
    pub rejected: Option<String>,
    /// The idempotency key and the window (ms) a repeat of it is a duplicate in.
    pub dedupe: Option<(String, i64)>,
}

/// Filters of `message.list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub uuid: Option<String>,
    pub event_key_prefix: Option<String>,
    /// `accepted` or `rejected`.
    pub status: Option<String>,
    /// Text in the event key or in an inline (up to 64 KiB) body.
    pub search: Option<String>,
    /// Only messages older than this one.
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// Where a stored body is.
#[derive(Debug, Clone)]
pub enum StoredBody {
    Inline(Vec<u8>),
    File(String),
    /// In segment `id` from `offset`, exactly the message's `size` bytes long (see
    /// `segments.rs`; only accepted messages, whose stored body is all of it, go there).
    Segment {
        id: u32,
        offset: u64,
    },
}

/// Everything stored about one message.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub seq: i64,
    pub summary: MessageSummary,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote_addr: String,
    /// As received; `None` for a body of at most 64 KiB (see [`MessageRecord::sha256_hex`]).
    pub sha256: Option<[u8; 32]>,
    pub parts: Vec<PartRecord>,
    pub body: StoredBody,
    /// Milliseconds since the epoch, as in the message id.
    pub received_at: i64,
}

impl MessageRecord {
    /// The body's SHA-256 in hex: as stored, else computed from `body`, the whole body (always
    /// at hand for one of at most 64 KiB, the only kind stored without its hash).
    pub fn sha256_hex(&self, body: Option<&[u8]>) -> String {
        match (&self.sha256, body) {
            (Some(h), _) => hex::encode(h),
            (None, Some(b)) => hex::encode(Sha256::digest(b)),
            (None, None) => String::new(),
        }
    }
}

/// The message for an unknown message id.
pub fn no_such_message(id: &str) -> String {
    format!("no message with id {id}; message.list shows them")
}

/// Bytes of a stored body, as an adapter hands them out to be streamed.
#[derive(Debug, Clone)]
pub enum BodySource {
    Bytes(Bytes),
    /// `len` bytes of a local file from `offset`.
    File {
        path: std::path::PathBuf,
        offset: u64,
        len: u64,
    },
}
