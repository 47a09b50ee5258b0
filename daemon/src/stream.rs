//! `GET /api/v3/events`: the live event stream over WebSocket.
//!
//! A session subscribes to the bus *before* answering `101`, so nothing committed after the
//! handshake is missed. `?since=` replays the SQLite event log first; events seen twice at the
//! seam are dropped by seq. A client that reads too slowly falls behind in the bus's ring (the
//! receive path never waits for it); when it notices, it sends `stream.lagged` and catches up
//! from the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hookd_shared::{EventType, ExecutionSummary, Lagged, MessageSummary, key};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Semaphore, broadcast};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::events::{Bus, BusEvent, EventData};
use crate::framing::Guarded;
use crate::store::Store;

/// What every stream session shares: where events come from, and the cap on clients.
pub struct Streams {
    store: Store,
    bus: Bus,
    /// One per client (`[events] maxClients`).
    permits: Arc<Semaphore>,
    max_clients: usize,
    shutdown: CancellationToken,
}

impl Streams {
    /// Sessions read `store`'s log and `bus`, at most `max_clients` at once, until `shutdown`.
    pub fn new(store: Store, bus: Bus, max_clients: usize, shutdown: CancellationToken) -> Streams {
        Streams {
            store,
            bus,
            permits: Arc::new(Semaphore::new(max_clients)),
            max_clients,
            shutdown,
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.max_clients
            .saturating_sub(self.permits.available_permits())
    }
}

/// Events read from the log per query while catching up.
const PAGE: u32 = 500;
const PING_EVERY: Duration = Duration::from_secs(20);
/// A client silent (no pong, no frame) for this long is dropped.
const DEAD_AFTER: Duration = Duration::from_secs(60);
/// A frame that cannot be written within this time means the client is stuck; it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Kernel send buffer per stream socket: bounds what a stalled client costs.
const SEND_BUFFER: usize = 256 * 1024;
/// Clients only send control frames; anything bigger is refused.
const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// What a client asked to see.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Type patterns (`message.*`); empty: all types.
    types: Vec<String>,
    /// Event key pattern (`webhook.github.#`).
    event_key: Option<String>,
}

impl Filter {
    fn matches(&self, e: &BusEvent) -> bool {
        let type_ok =
            self.types.is_empty() || self.types.iter().any(|p| key::matches(p, e.kind.as_str()));
        let key_ok = match &self.event_key {
            None => true,
            Some(p) => e.data.event_key().is_some_and(|k| key::matches(p, k)),
        };
        type_ok && key_ok
    }
}

/// Checks the request, subscribes, and answers `101 Switching Protocols` (headers only; http/
/// gives it its empty body); the session runs in its own task once the connection is upgraded.
pub fn handle<B>(streams: &Arc<Streams>, mut req: Request<B>) -> Result<Response<()>, Error> {
    // RFC 6455 §4.1: the opening handshake is a GET with `Connection: Upgrade`.
    if req.method() != http::Method::GET {
        return Err(Error::MethodNotAllowed(format!(
            "/api/v3/events is a WebSocket endpoint: open it with GET, not {}",
            req.method()
        )));
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let caller = match crate::auth::authenticate(&streams.store, req.headers())? {
        Some(c) => Some(c),
        None => match param("token") {
            Some(t) => streams.store.token(&crate::auth::hash_token(t)),
            None => None,
        },
    };
    let Some(caller) = caller else {
        return Err(Error::Unauthorized(
            "the event stream needs a token: 'Authorization: Bearer <token>' or ?token=".into(),
        ));
    };
    let admin = caller.role == hookd_shared::Role::Admin;
    let since = param("since")
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                Error::InvalidParam(format!("since must be an event seq (a number), got '{s}'"))
            })
        })
        .transpose()?;
    let mut filter = Filter::default();
    if let Some(types) = param("types") {
        for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            key::validate_pattern(t)
                .map_err(|e| Error::InvalidParam(format!("types pattern '{t}' {e}")))?;
            // A pattern no type matches would leave the client waiting for nothing.
            if !EventType::ALL.iter().any(|k| key::matches(t, k.as_str())) {
                let known: Vec<&str> = EventType::ALL.iter().map(|k| k.as_str()).collect();
                return Err(Error::InvalidParam(format!(
                    "types pattern '{t}' matches no event type; the types are {}",
                    known.join(", ")
                )));
            }
            filter.types.push(t.to_string());
        }
    }
    if let Some(p) = param("eventKey") {
        key::validate_pattern(p).map_err(|e| Error::InvalidParam(format!("eventKey {e}")))?;
        filter.event_key = Some(p.to_string());
    }

    let h = req.headers();
    let wants_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        });
    let key = h
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()));
    let (true, Some(accept)) = (wants_ws, key) else {
        return Err(Error::BadRequest(
            "/api/v3/events is a WebSocket endpoint (Upgrade: websocket, Connection: Upgrade); connect with a WebSocket client (e.g. websocat)".into(),
        ));
    };
    if h.get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(Error::BadRequest(
            "only WebSocket version 13 is supported".into(),
        ));
    }
    let permit = streams.permits.clone().try_acquire_owned().map_err(|_| {
        let limit = streams.max_clients;
        // One line per 10 s however many are refused: a reconnect storm must not flood the
        // log (the answer itself is a 503 that is not logged, with Retry-After).
        static LAST_WARNED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let now = crate::clock::now_ms();
        let last = LAST_WARNED.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 10_000
            && LAST_WARNED
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                "event stream clients refused: all {limit} slots are taken ([events] maxClients)"
            );
        }
        Error::Overloaded {
            message: format!("too many event stream clients (limit {limit}); retry later"),
            retry_after: 1,
        }
    })?;
    // Subscribe now, before the 101, so an event committed right after the handshake is seen.
    let rx = streams.bus.subscribe();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let streams = streams.clone();
    tokio::spawn(async move {
        match upgrade(on_upgrade).await {
            Ok(ws) => {
                let mut s = Session {
                    streams,
                    ws,
                    filter,
                    last: None,
                    admin,
                    last_heard: Instant::now(),
                };
                if let Err(e) = s.run(rx, since).await {
                    tracing::debug!("event stream closed: {e}");
                }
            }
            Err(e) => tracing::debug!("event stream upgrade failed: {e}"),
        }
        drop(permit);
    });
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).map_err(|e| Error::Internal(e.to_string()))?,
    );
    Ok(r)
}

/// The connection under a session: the plain TCP socket when it can be recovered.
trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

type Ws = WebSocketStream<Box<dyn Conn>>;

async fn upgrade(on: OnUpgrade) -> Result<Ws, hyper::Error> {
    let upgraded = on.await?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_CLIENT_FRAME))
        .max_frame_size(Some(MAX_CLIENT_FRAME));
    match upgraded.downcast::<TokioIo<Guarded<tokio::net::TcpStream>>>() {
        Ok(parts) => {
            let (tcp, unread) = parts.io.into_inner().into_parts();
            let mut read = parts.read_buf.to_vec();
            read.extend_from_slice(&unread);
            // Cap the kernel's send buffer: a client that stops reading then holds little
            // memory and falls behind quickly, and its events come from the log instead.
            let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER);
            let conn: Box<dyn Conn> = Box::new(tcp);
            Ok(WebSocketStream::from_partially_read(conn, read, Role::Server, Some(config)).await)
        }
        Err(upgraded) => {
            let conn: Box<dyn Conn> = Box::new(TokioIo::new(upgraded));
            Ok(WebSocketStream::from_raw_socket(conn, Role::Server, Some(config)).await)
        }
    }
}

struct Session {
    streams: Arc<Streams>,
    ws: Ws,
    filter: Filter,
    /// The last seq handled (sent or filtered out); `None` until the first event.
    last: Option<u64>,
    /// Whether the token is an admin's: others are not shown private run errors.
    admin: bool,
    last_heard: Instant,
}

/// A frame, serialized without building a JSON tree for message summaries.
#[derive(Serialize)]
struct Frame<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    at: String,
    data: FrameData<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum FrameData<'a> {
    Message(&'a MessageSummary),
    Execution(&'a ExecutionSummary),
    Json(&'a Value),
    Lagged(Lagged),
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the client stopped reading for {0:?}")]
    Stuck(Duration),
    #[error("the client went silent")]
    Dead,
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl Session {
    async fn run(
        &mut self,
        mut rx: broadcast::Receiver<Arc<BusEvent>>,
        since: Option<u64>,
    ) -> Result<(), SessionError> {
        if let Some(since) = since {
            self.start_from(since).await?;
            self.catch_up(&mut rx).await?;
        }
        let shutdown = self.streams.shutdown.clone();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if self.last.is_some_and(|last| ev.seq > last + 1) {
                            // Something between `last` and this event never reached us.
                            self.catch_up(&mut rx).await?;
                        }
                        self.deliver(&ev).await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let reason = "the client read too slowly; catching up from the event log";
                        self.send_lagged(0, reason).await?;
                        self.catch_up(&mut rx).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return self.close(CloseCode::Away, "hookd is stopping").await,
                },
                msg = self.ws.next() => match msg {
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => self.last_heard = Instant::now(),
                    Some(Err(e)) => return Err(e.into()),
                },
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > DEAD_AFTER {
                        return Err(SessionError::Dead);
                    }
                    self.send(Message::Ping(Default::default())).await?;
                }
                () = shutdown.cancelled() => return self.close(CloseCode::Away, "hookd is stopping").await,
            }
        }
    }

    /// Positions the session at `since`, telling the client when the log no longer reaches back
    /// that far (or when `since` is ahead of the log, e.g. after the database was replaced).
    async fn start_from(&mut self, since: u64) -> Result<(), SessionError> {
        let bounds = self.streams.store.event_bounds().await?;
        self.last = Some(since);
        match bounds {
            Some((lo, _)) if since + 1 < lo => {
                self.last = Some(lo - 1);
                let missed = lo - 1 - since;
                self.send_lagged(missed, "the event log was pruned past since")
                    .await?;
            }
            Some((_, hi)) if since > hi => {
                self.last = Some(hi);
                self.send_lagged(
                    0,
                    "since is ahead of the event log; continuing from its end",
                )
                .await?;
            }
            None if since > 0 => {
                self.last = Some(0);
                self.send_lagged(0, "the event log is empty; continuing live")
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends every logged event after `last`. Resubscribes first, so events committed while
    /// reading the log arrive on the fresh receiver (duplicates are skipped by seq).
    async fn catch_up(
        &mut self,
        rx: &mut broadcast::Receiver<Arc<BusEvent>>,
    ) -> Result<(), SessionError> {
        *rx = self.streams.bus.subscribe();
        let Some(mut from) = self.last else {
            return Ok(());
        };
        loop {
            let page = self.streams.store.events_after(from, PAGE).await?;
            for ev in &page {
                self.deliver(ev).await?;
            }
            match page.last() {
                Some(ev) if page.len() == PAGE as usize => from = ev.seq,
                _ => return Ok(()),
            }
        }
    }

    async fn deliver(&mut self, ev: &BusEvent) -> Result<(), SessionError> {
        if self.last.is_some_and(|last| ev.seq <= last) {
            return Ok(());
        }
        self.last = Some(ev.seq);
        if !self.filter.matches(ev) {
            return Ok(());
        }
        let masked = match &ev.data {
            EventData::Execution(e) if !self.admin => e.for_non_admin(),
            _ => None,
        };
        let data = match (&ev.data, &masked) {
            (_, Some(e)) => FrameData::Execution(e),
            (EventData::Message(m), _) => FrameData::Message(m),
            (EventData::Execution(e), _) => FrameData::Execution(e),
            (EventData::Json(v), _) => FrameData::Json(v),
        };
        let frame = Frame {
            seq: ev.seq,
            kind: ev.kind.as_str(),
            at: crate::clock::rfc3339(ev.at),
            data,
        };
        self.send_frame(&frame).await
    }

    async fn send_lagged(&mut self, missed: u64, reason: &str) -> Result<(), SessionError> {
        let frame = Frame {
            seq: self.last.unwrap_or(0),
            kind: EventType::StreamLagged.as_str(),
            at: crate::clock::rfc3339(crate::clock::now_ms()),
            data: FrameData::Lagged(Lagged {
                missed,
                reason: reason.into(),
            }),
        };
        self.send_frame(&frame).await
    }

    async fn send_frame(&mut self, frame: &Frame<'_>) -> Result<(), SessionError> {
        let text = serde_json::to_string(frame).unwrap_or_default();
        self.send(Message::Text(text.into())).await
    }

    async fn send(&mut self, msg: Message) -> Result<(), SessionError> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.ws.send(msg)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(SessionError::Stuck(WRITE_TIMEOUT)),
        }
    }

    async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SessionError> {
        let frame = CloseFrame {
            code,
            reason: reason.to_string().into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(Some(frame))).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventType, key: &str) -> BusEvent {
        BusEvent {
            seq: 1,
            kind,
            at: 0,
            data: EventData::Json(serde_json::json!({ "eventKey": key })),
        }
    }

    #[test]
    fn filters_match_types_and_event_keys() {
        let f = Filter {
            types: vec!["message.*".into()],
            event_key: Some("webhook.github.#".into()),
        };
        assert!(f.matches(&ev(EventType::MessageReceived, "webhook.github.push")));
        assert!(!f.matches(&ev(EventType::MessageReceived, "webhook.stripe.charge")));
        assert!(!f.matches(&ev(EventType::WebhookCreated, "webhook.github.push")));
        assert!(Filter::default().matches(&ev(EventType::WebhookDeleted, "x")));
    }
}
