//! `webhook.receive`: capture one incoming request byte for byte and commit it before answering.
//!
//! The body streams in under the webhook's limit: small bodies stay in memory, larger ones spill
//! to `incoming/<id>` (fsynced before the commit), so a 100 MiB upload costs a few buffers of
//! memory. A multipart body is parsed on the fly into (offset, size) views of the same bytes.

pub mod limits;
pub mod multipart;
pub mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hookd_shared::ReceiveResponse;
use http::request::Parts;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::burst::Burst;
use crate::config::Config;
use crate::error::Error;
use crate::store::spool::sync_dir;
use crate::store::{Capture, Captured, CapturedBody, PartRecord, Store, WebhookRow};
use multipart::{MultipartError, Parser, header_text};
use verify::Start;

/// Bodies up to this size are kept in memory and stored in the database row.
pub const INLINE_MAX: usize = 64 * 1024;
const SPILL_BUFFER: usize = 256 * 1024;

/// The one answer for unknown, deleted and disabled webhooks: no hint whether one existed.
const NO_WEBHOOK: &str = "no webhook at this URL";

/// What receiving a request uses.
pub struct Receiver {
    pub store: Store,
    pub config: Arc<Config>,
    pub limits: Arc<limits::Limits>,
    /// Counts receives, so pipeline runs can step aside during a burst.
    pub burst: Arc<Burst>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Captures the request and commits it; the answer means the capture is on disk.
pub async fn receive<B>(
    ctx: &Receiver,
    parts: Parts,
    body: B,
    remote: SocketAddr,
) -> Result<ReceiveResponse, Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let _receiving = ctx.burst.enter();
    let received_at = crate::clock::now_ms();
    let started = Instant::now();
    if !matches!(
        parts.method.as_str(),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
    ) {
        return Err(Error::MethodNotAllowed(format!(
            "webhook.receive accepts GET, POST, PUT, PATCH and DELETE, not {}",
            parts.method
        )));
    }
    let uuid = webhook_uuid(&parts).ok_or_else(|| Error::NotFound(NO_WEBHOOK.into()))?;
    let hook = ctx
        .store
        .webhook(&uuid)
        .filter(|h| h.enabled)
        .ok_or_else(|| Error::NotFound(NO_WEBHOOK.into()))?;
    let result = capture(ctx, parts, body, remote, &hook, received_at, started).await;
    if let Some(m) = &ctx.metrics {
        count(m, &hook, &result);
    }
    result
}

/// Counts a webhook's stored capture or refusal, per webhook.
fn count(m: &crate::metrics::Metrics, hook: &WebhookRow, result: &Result<ReceiveResponse, Error>) {
    let reason = match result {
        Ok(r) if r.duplicate => "duplicate",
        Ok(_) => return m.message(&hook.uuid, &hook.event_key),
        Err(Error::Forbidden(_)) => "source",
        Err(Error::TooManyRequests { .. }) => "rate_limit",
        Err(Error::PayloadTooLarge(_)) => "too_large",
        Err(Error::Unauthorized(_)) => "signature",
        Err(Error::BadRequest(_)) => "bad_request",
        Err(Error::Timeout(_)) => "timeout",
        Err(Error::Unavailable(_)) => "unavailable",
        Err(_) => "error",
    };
    metrics::counter!(
        crate::metrics::REJECTIONS,
        "webhook" => crate::metrics::webhook_label(&hook.uuid),
        "event_key" => hook.event_key.clone(),
        "reason" => reason,
    )
    .increment(1);
}

/// The capture of a request to an enabled webhook, from its source checks to the commit.
async fn capture<B>(
    ctx: &Receiver,
    parts: Parts,
    mut body: B,
    remote: SocketAddr,
    hook: &WebhookRow,
    received_at: i64,
    started: Instant,
) -> Result<ReceiveResponse, Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let client = client_ip(&ctx.config.trusted_proxies, remote.ip(), &parts.headers);
    if !hook.allow_cidrs.is_empty() && !hook.allow_cidrs.iter().any(|n| n.contains(&client)) {
        return Err(Error::Forbidden(format!(
            "{client} may not send to this webhook"
        )));
    }
    let limited = |wait: std::time::Duration, what: &str| Error::TooManyRequests {
        message: format!("too many requests {what}; retry later"),
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    };
    let cfg = &ctx.config;
    if cfg.per_ip_rate > 0.0 {
        ctx.limits
            .per_ip
            .take(
                &limits::source_key(client, cfg.per_ip_v6_prefix),
                cfg.per_ip_rate,
                f64::from(cfg.per_ip_burst),
            )
            .map_err(|w| limited(w, &format!("from {client}")))?;
    }
    if let Some(r) = hook.rate_limit {
        ctx.limits
            .per_webhook
            .take(&hook.uuid, r.per_second, f64::from(r.burst.max(1)))
            .map_err(|w| limited(w, "to this webhook"))?;
    }

    let limit = hook.max_payload_length.min(cfg.max_body);
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(sink_error(limit, SinkError::TooLarge));
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| header_text(v.as_bytes()));
    let parser = match content_type.as_deref().map(multipart::boundary).transpose() {
        Ok(b) => b.flatten().map(|b| Parser::new(&b, cfg.max_parts)),
        Err(e) => return Err(Error::BadRequest(e.to_string())),
    };
    let query = parts.uri.query().unwrap_or("");
    let mut verifier = hook
        .verify
        .as_ref()
        .map(|v| v.start(&parts.headers, query, received_at / 1000));

    let mut sink = Sink {
        limit,
        size: 0,
        hasher: Sha256::new(),
        mem: BytesMut::new(),
        head: BytesMut::new(),
        spill: None,
        parser,
        store: ctx.store.clone(),
    };
    if declared.is_some_and(|n| n as usize > INLINE_MAX) {
        sink.spill().await.map_err(|e| sink_error(limit, e))?;
    }
    // The header timeout doubles as the body's idle limit and as the grace period before the
    // minimum rate applies: a client that trickles its body cannot hold a connection.
    let idle = cfg.header_read_timeout;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "no part of the body arrived for {} s; nothing was stored",
                    idle.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(f)) => f,
        };
        let frame = frame.map_err(|e| {
            Error::BadRequest(format!(
                "the request body could not be read ({e}); nothing was stored"
            ))
        })?;
        if let Ok(chunk) = frame.into_data() {
            if let Some(v) = verifier.as_mut() {
                v.update(&chunk);
            }
            sink.push(chunk).await.map_err(|e| sink_error(limit, e))?;
        }
        let elapsed = started.elapsed();
        let incomplete = declared.is_none_or(|n| sink.size < n);
        if incomplete
            && elapsed > idle
            && (sink.size as f64) < elapsed.as_secs_f64() * cfg.min_body_rate as f64
        {
            return Err(Error::Timeout(format!(
                "the body arrived slower than {} bytes/s; nothing was stored",
                cfg.min_body_rate
            )));
        }
    }
    let verdict = verifier.map(|v| v.finish());
    let Finished {
        body: stored,
        head,
        guard,
        sha256,
        size,
        parts: parts_found,
    } = sink.finish().await.map_err(|e| sink_error(limit, e))?;

    let mut capture = Capture {
        webhook_uuid: hook.uuid.clone(),
        event_key: hook.event_key.clone(),
        received_at,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: query.to_string(),
        headers_json: headers_json(&parts.headers),
        remote_addr: remote.to_string(),
        content_type,
        size,
        sha256,
        parts: parts_found
            .into_iter()
            .map(|p| PartRecord {
                name: p.name,
                filename: p.filename,
                content_type: p.content_type,
                offset: p.offset,
                size: p.size,
                sha256: None,
                value: p.value,
            })
            .collect(),
        body: stored,
        verification: if verdict.is_some() { "passed" } else { "none" },
        rejected: None,
        dedupe: None,
    };
    if let Some(Err(reason)) = verdict {
        // Kept for the operator (first 64 KiB, hash of all of it), rate-capped; the sender
        // learns nothing that helps it forge the next attempt. `guard` deletes any spilled file.
        drop(guard);
        if ctx.limits.may_record_rejection(&hook.uuid) {
            capture.body = CapturedBody::Inline(head);
            capture.parts = Vec::new();
            capture.rejected = Some(reason);
            ctx.store.capture(capture).await?;
        } else {
            tracing::warn!(webhook = %crate::metrics::webhook_label(&hook.uuid), "rejected request not recorded (rejection records are rate-capped): {reason}");
        }
        return Err(Error::Unauthorized(
            "the request could not be verified".into(),
        ));
    }
    capture.dedupe =
        dedupe_key(hook.dedupe.as_deref(), &parts.headers).map(|k| (k, hook.dedupe_window * 1000));
    // From here the store owns the file: it moves it into place on commit and deletes it if the
    // commit fails, even if this request is dropped while waiting.
    if let Some(mut g) = guard {
        g.disarm();
    }
    let size = capture.size;
    match ctx.store.capture(capture).await? {
        Captured::Stored(summary) => {
            if let Some(m) = &ctx.metrics {
                m.received_bytes.increment(size);
            }
            Ok(ReceiveResponse {
                message_id: summary.id.clone(),
                event_key: summary.event_key.clone(),
                status: "ok".into(),
                duplicate: false,
            })
        }
        Captured::Duplicate(original) => Ok(ReceiveResponse {
            message_id: original,
            event_key: hook.event_key.clone(),
            status: "ok".into(),
            duplicate: true,
        }),
    }
}

/// Headers that carry an idempotency key, by default, in order of preference.
const DEDUPE_HEADERS: [&str; 4] = [
    "webhook-id",
    "x-github-delivery",
    "idempotency-key",
    "x-request-id",
];

/// The idempotency key of a request: from the webhook's `dedupe` header, or the first default
/// header present; none with `dedupe: none`.
fn dedupe_key(setting: Option<&str>, headers: &http::HeaderMap) -> Option<String> {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 512)
            .map(str::to_string)
    };
    match setting {
        Some("none") => None,
        Some(h) => value(h),
        None => DEDUPE_HEADERS.iter().find_map(|h| value(h)),
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address in
/// `X-Forwarded-For` that is not a trusted proxy itself.
fn client_ip(
    trusted: &[ipnet::IpNet],
    peer: std::net::IpAddr,
    headers: &http::HeaderMap,
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    chain
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// `[["name","value"],...]` in the order hyper keeps (repeats kept), written into one buffer.
fn headers_json(headers: &http::HeaderMap) -> String {
    let mut out = Vec::with_capacity(64 * headers.len());
    out.push(b'[');
    for (i, (k, v)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let value = match v.to_str() {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => std::borrow::Cow::Owned(header_text(v.as_bytes())),
        };
        // Writing a (&str, &str) tuple into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &(k.as_str(), value.as_ref()));
    }
    out.push(b']');
    String::from_utf8(out).unwrap_or_else(|_| "[]".into())
}

/// The webhook uuid from `?uuid=`, `?token=` or a `token` header (PIPEFORCE accepts all three).
fn webhook_uuid(parts: &Parts) -> Option<String> {
    let query = parts.uri.query().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "uuid" || k == "token")
        .map(|(_, v)| v.into_owned())
        .or_else(|| {
            parts
                .headers
                .get("token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .map(|u| u.trim().to_ascii_lowercase())
}

enum SinkError {
    TooLarge,
    Multipart(MultipartError),
    Io(std::io::Error),
}

/// The request error for a sink failure, given the limit that applied.
fn sink_error(limit: u64, e: SinkError) -> Error {
    match e {
        SinkError::TooLarge => Error::PayloadTooLarge(format!(
            "the body exceeds this webhook's limit of {limit} bytes; nothing was stored"
        )),
        SinkError::Multipart(m) => Error::BadRequest(format!("{m}; nothing was stored")),
        // Most often a full disk: the sender should retry later, as for a failed commit.
        SinkError::Io(io) => Error::Unavailable(format!(
            "the body could not be written to disk ({io}); nothing was stored"
        )),
    }
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        SinkError::Io(e)
    }
}

/// Where the body goes while it streams in.
struct Sink {
    limit: u64,
    size: u64,
    /// Fed only once the body spills to a file. A body that stays in memory (at most
    /// `INLINE_MAX`) is hashed when `message.get` reads it: hashing every byte here was a fifth of
    /// the CPU of a 31 KiB multipart receive (docs/BENCHMARKS.md, target 3), for a hash few
    /// messages are ever asked for; a file body is hashed on its way in, as reading it back
    /// would cost a read of the whole file.
    hasher: Sha256,
    mem: BytesMut,
    /// The first `INLINE_MAX` bytes once the body spilled to a file (for rejection records).
    head: BytesMut,
    spill: Option<Spill>,
    parser: Option<Parser>,
    /// Where a body that spills goes (`Storage::incoming_dir`): a handle, so a body kept in
    /// memory costs no path copy.
    store: crate::store::Store,
}

struct Spill {
    id: String,
    file: tokio::io::BufWriter<tokio::fs::File>,
    guard: TempFile,
}

impl Sink {
    async fn push(&mut self, chunk: Bytes) -> Result<(), SinkError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(SinkError::TooLarge);
        }
        if let Some(p) = self.parser.as_mut() {
            p.feed(&chunk).map_err(SinkError::Multipart)?;
        }
        if self.spill.is_none() && self.mem.len() + chunk.len() > INLINE_MAX {
            self.spill().await?;
        }
        match self.spill.as_mut() {
            Some(s) => {
                let room = INLINE_MAX.saturating_sub(self.head.len());
                self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                self.hasher.update(&chunk);
                s.file.write_all(&chunk).await?
            }
            None => self.mem.extend_from_slice(&chunk),
        }
        Ok(())
    }

    /// Moves the body from memory to a file in `incoming/`.
    async fn spill(&mut self) -> Result<(), SinkError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let path = self.store.incoming_dir().join(&id);
        let guard = TempFile {
            path: Some(path.clone()),
        };
        let file = tokio::fs::File::create(&path).await?;
        let mut file = tokio::io::BufWriter::with_capacity(SPILL_BUFFER, file);
        self.hasher.update(&self.mem);
        file.write_all(&self.mem).await?;
        self.head = std::mem::take(&mut self.mem);
        self.spill = Some(Spill { id, file, guard });
        Ok(())
    }

    /// Ends the body; a file is made durable before this returns.
    async fn finish(self) -> Result<Finished, SinkError> {
        let parts = match self.parser {
            Some(p) => p.finish().map_err(SinkError::Multipart)?,
            None => Vec::new(),
        };
        let sha256 = self.spill.is_some().then(|| self.hasher.finalize().into());
        let head_limit = |b: Bytes| b.slice(..b.len().min(INLINE_MAX));
        let (body, head, guard) = match self.spill {
            None => {
                let all = self.mem.freeze();
                (CapturedBody::Inline(all.clone()), head_limit(all), None)
            }
            Some(mut s) => {
                s.file.flush().await?;
                s.file.get_ref().sync_all().await?;
                let incoming = self.store.incoming_dir().to_path_buf();
                tokio::task::spawn_blocking(move || sync_dir(&incoming))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))??;
                let head = head_limit(self.head.freeze());
                (CapturedBody::File(s.id), head, Some(s.guard))
            }
        };
        Ok(Finished {
            body,
            head,
            guard,
            sha256,
            size: self.size,
            parts,
        })
    }
}

/// A fully received body.
struct Finished {
    body: CapturedBody,
    /// The first 64 KiB.
    head: Bytes,
    /// Deletes the body file unless disarmed.
    guard: Option<TempFile>,
    /// Only for a body in a file (see [`Sink`]).
    sha256: Option<[u8; 32]>,
    size: u64,
    parts: Vec<multipart::ParsedPart>,
}

/// Deletes an uncommitted body file when the request fails or is dropped mid-way.
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn disarm(&mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_serialize_as_pairs_with_repeats_and_escapes() {
        let mut h = http::HeaderMap::new();
        h.append("x-dup", http::HeaderValue::from_static("a"));
        h.append("x-dup", http::HeaderValue::from_static("b\"c"));
        h.append(
            "x-bin",
            http::HeaderValue::from_bytes(b"caf\xe9").expect("obs-text"),
        );
        let v: Vec<(String, String)> = serde_json::from_str(&headers_json(&h)).expect("valid JSON");
        assert_eq!(
            v,
            [
                ("x-dup".to_string(), "a".to_string()),
                ("x-dup".into(), "b\"c".into()),
                ("x-bin".into(), "caf\u{e9}".into())
            ]
        );
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;

    #[test]
    fn dedupe_keys_come_from_the_configured_or_default_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("x-request-id", "r1".parse().expect("value"));
        h.insert("x-github-delivery", "g1".parse().expect("value"));
        assert_eq!(
            dedupe_key(None, &h).as_deref(),
            Some("g1"),
            "X-GitHub-Delivery before X-Request-Id"
        );
        assert_eq!(dedupe_key(Some("x-request-id"), &h).as_deref(), Some("r1"));
        assert_eq!(dedupe_key(Some("none"), &h), None);
        assert_eq!(dedupe_key(None, &http::HeaderMap::new()), None);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.7, 10.0.0.2".parse().expect("value"),
        );
        let proxy: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
        let stranger: std::net::IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(client_ip(&trusted, proxy, &h).to_string(), "203.0.113.7");
        assert_eq!(client_ip(&trusted, stranger, &h), stranger);
        assert_eq!(client_ip(&[], proxy, &h), proxy);
    }
}
