//! The listener's feed: `message.received` events from the server's stream, in commit order,
//! reconnecting (with backoff) from the last event it passed on, so a dropped connection or a
//! server restart loses nothing and repeats nothing.

use std::time::Duration;

use futures_util::StreamExt;
use hookd_shared::{Event, EventType, Lagged, MessageSummary, key};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Backoff;
use super::report::Reporter;

/// The server pings every 20 s: this long without a frame means the connection is dead.
const SILENT_FOR: Duration = Duration::from_secs(65);

/// Where the first connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After this event seq.
    After(u64),
    /// At the end of the log (nothing already logged is sent).
    Now,
}

/// What the feed passes on, in the server's commit order.
#[derive(Debug)]
pub enum Item {
    /// A message the filters select.
    Message { seq: u64, summary: MessageSummary },
    /// An event the filters leave out (it still moves the cursor).
    Skip { seq: u64 },
    /// The stream's position when the listener started at `now`.
    Position { seq: u64 },
    /// The server could not send everything after the cursor (e.g. the log was pruned).
    Lagged { seq: u64, lagged: Lagged },
    /// The server refused the listener (token, filters): nothing more will come.
    Refused(String),
}

/// Which messages to pass on.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Webhook uuids (empty: every webhook).
    pub webhooks: Vec<String>,
    /// Event key patterns (empty: every key).
    pub event_keys: Vec<String>,
}

impl Filters {
    fn matches(&self, m: &MessageSummary) -> bool {
        (self.webhooks.is_empty() || self.webhooks.iter().any(|w| w == &m.uuid))
            && (self.event_keys.is_empty()
                || self
                    .event_keys
                    .iter()
                    .any(|p| key::matches(p, &m.event_key)))
    }
}

/// The stream endpoint of a server base URL (`http` → `ws`, `https` → `wss`).
fn stream_url(base: &str, since: u64, filters: &Filters) -> String {
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("types", EventType::MessageReceived.as_str());
    q.append_pair("since", &since.to_string());
    // One pattern the server can filter by; several are checked here only.
    if let [one] = filters.event_keys.as_slice() {
        q.append_pair("eventKey", one);
    }
    format!("{ws}/api/v3/events?{}", q.finish())
}

/// Reads the stream until the receiver goes away or the server refuses the listener.
pub async fn run(
    base: String,
    token: Option<String>,
    start: Start,
    filters: Filters,
    tx: mpsc::Sender<Item>,
    report: Reporter,
) {
    // The last seq passed on; `None` while starting at `now` and the position is not known yet.
    let mut last = match start {
        Start::After(s) => Some(s),
        Start::Now => None,
    };
    let mut backoff = Backoff::new();
    loop {
        // A `since` beyond the log makes the server answer with its end (a `stream.lagged` frame
        // whose seq is the position): that is how `now` learns where it starts.
        let since = last.unwrap_or(i64::MAX as u64);
        let url = stream_url(&base, since, &filters);
        let mut req = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx
                    .send(Item::Refused(format!("bad server URL {base}: {e}")))
                    .await;
                return;
            }
        };
        if let Some(t) = &token {
            match format!("Bearer {t}").parse() {
                Ok(v) => {
                    req.headers_mut().insert(http::header::AUTHORIZATION, v);
                }
                Err(_) => {
                    let _ = tx
                        .send(Item::Refused(
                            "the token holds characters a header cannot".into(),
                        ))
                        .await;
                    return;
                }
            }
        }
        let ws = match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => ws,
            Err(WsError::Http(resp)) if matches!(resp.status().as_u16(), 400..=499) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<hookd_shared::ErrorResponse>(b).ok())
                    .map(|e| e.error.message)
                    .unwrap_or_default();
                let _ = tx
                    .send(Item::Refused(format!(
                        "the server refused the event stream: {body} [HTTP {status}]"
                    )))
                    .await;
                return;
            }
            Err(e) => {
                let wait = backoff.next();
                report.note(&format!(
                    "server {base} unreachable ({e}); retrying in {}",
                    super::report::secs(wait)
                ));
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        match last {
            Some(s) => report.note(&format!("connected to {base}, after event {s}")),
            None => report.note(&format!("connected to {base}")),
        }
        backoff = Backoff::new();
        let (_, mut read) = ws.split();
        let why = loop {
            let frame = match tokio::time::timeout(SILENT_FOR, read.next()).await {
                Err(_) => break "the server went silent".to_string(),
                Ok(None) => break "the server closed the stream".to_string(),
                Ok(Some(Err(e))) => break format!("the stream broke ({e})"),
                Ok(Some(Ok(Message::Close(c)))) => {
                    break c
                        .map(|c| c.reason.to_string())
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "the server closed the stream".into());
                }
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
            };
            let Ok(ev) = serde_json::from_str::<Event>(&frame) else {
                break "the server sent a frame this listener does not understand".to_string();
            };
            let item = match ev.kind {
                EventType::StreamLagged => {
                    let lagged = serde_json::from_value::<Lagged>(ev.data).unwrap_or(Lagged {
                        missed: 0,
                        reason: String::new(),
                    });
                    if last.is_none() {
                        Item::Position { seq: ev.seq }
                    } else {
                        Item::Lagged {
                            seq: ev.seq,
                            lagged,
                        }
                    }
                }
                EventType::MessageReceived => {
                    match serde_json::from_value::<MessageSummary>(ev.data) {
                        Ok(summary) if filters.matches(&summary) => Item::Message {
                            seq: ev.seq,
                            summary,
                        },
                        _ => Item::Skip { seq: ev.seq },
                    }
                }
                _ => Item::Skip { seq: ev.seq },
            };
            if last.is_none() && !matches!(item, Item::Position { .. }) {
                // A live event before the position: cannot happen (the server sends the
                // position first); start over rather than guess.
                break "the stream did not start where asked".to_string();
            }
            last = Some(ev.seq);
            if tx.send(item).await.is_err() {
                return;
            }
        };
        report.note(&format!("{why}; reconnecting"));
        tokio::time::sleep(backoff.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_url_asks_for_messages_after_the_cursor() {
        let f = Filters {
            webhooks: vec![],
            event_keys: vec!["webhook.github.#".into()],
        };
        assert_eq!(
            stream_url("https://hooks.example.com", 42, &f),
            "wss://hooks.example.com/api/v3/events?types=message.received&since=42&eventKey=webhook.github.%23"
        );
        let two = Filters {
            webhooks: vec![],
            event_keys: vec!["a.*".into(), "b.*".into()],
        };
        assert_eq!(
            stream_url("http://127.0.0.1:8080", 0, &two),
            "ws://127.0.0.1:8080/api/v3/events?types=message.received&since=0"
        );
    }
}
