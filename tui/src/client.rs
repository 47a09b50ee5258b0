//! Talking to the daemon: command calls over HTTP, and the event stream over WebSocket, which
//! reconnects with backoff and resumes with `since=` so nothing is missed. Results come back to
//! the app as actions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hookd_shared::{ErrorResponse, Event};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::app::{Action, LoadKind, Loaded, OnOk};

/// A daemon connection.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Client {
    /// For the daemon at `url`.
    pub fn new(url: &str, token: Option<String>) -> Client {
        Client {
            // hookd closes idle keep-alive connections after its header timeout (10 s by
            // default); dropping ours sooner avoids reusing one it just closed.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
            url: url.trim_end_matches('/').to_string(),
            token,
        }
    }

    fn request(&self, name: &str, params: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(format!("{}/api/v3/command/{name}", self.url))
            .timeout(Duration::from_secs(30))
            .json(params);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    /// Calls a command; the JSON answer, or the daemon's error message.
    pub async fn call(&self, name: &str, params: &Value) -> Result<Value, String> {
        let (_, bytes) = self.raw(name, params).await?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{name}: unexpected answer ({e})"))
    }

    /// Calls a command that answers with bytes; (content type, bytes).
    pub async fn raw(
        &self,
        name: &str,
        params: &Value,
    ) -> Result<(Option<String>, Vec<u8>), String> {
        let resp = self
            .request(name, params)
            .send()
            .await
            .map_err(|e| format!("{name}: cannot reach hookd ({e})"))?;
        let status = resp.status();
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("{name}: {e}"))?
            .to_vec();
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorResponse>(&bytes)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(format!("{name}: {msg}"));
        }
        Ok((ct, bytes))
    }

    /// POSTs raw bytes (to a webhook URL); the status code.
    pub async fn post(&self, url: &str, content_type: &str, body: Vec<u8>) -> Result<u16, String> {
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        Ok(resp.status().as_u16())
    }

    /// Runs a call and turns its answer into the action `on_ok` asks for.
    pub async fn call_to_action(&self, name: &str, params: Value, on_ok: OnOk) -> Action {
        match self.call(name, &params).await {
            Ok(v) => match on_ok {
                OnOk::Toast(text) => Action::Toast { text, error: false },
                OnOk::Load(kind) => match loaded(kind, v) {
                    Ok(l) => Action::Loaded(l),
                    Err(e) => Action::Toast {
                        text: format!("{name}: {e}"),
                        error: true,
                    },
                },
            },
            Err(text) => Action::Toast { text, error: true },
        }
    }

    /// Follows the event stream for ever: connects, forwards events, and on any failure reports
    /// it and reconnects with backoff, resuming after the last event seen.
    pub async fn stream(self, tx: UnboundedSender<Action>) {
        let last = Arc::new(AtomicU64::new(0));
        let mut backoff = 1u64;
        loop {
            let since = last.load(Ordering::SeqCst);
            match self.stream_once(since, &last, &tx).await {
                Ok(()) => backoff = 1,
                Err(e) => {
                    if tx
                        .send(Action::Disconnected {
                            error: e,
                            retry_in: backoff,
                        })
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(backoff)).await;
                    backoff = (backoff * 2).min(30);
                }
            }
        }
    }

    async fn stream_once(
        &self,
        since: u64,
        last: &AtomicU64,
        tx: &UnboundedSender<Action>,
    ) -> Result<(), String> {
        let ws = self.url.replacen("http", "ws", 1);
        let mut url = format!("{ws}/api/v3/events");
        if since > 0 {
            url.push_str(&format!("?since={since}"));
        }
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(t) = &self.token {
            // In a header, not the URL, so it is not logged by proxies.
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}")) {
                req.headers_mut().insert("authorization", v);
            }
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401 => {
                    "the token was refused (401); pass --token or set HOOKD_TOKEN".to_string()
                }
                e => short_error(&e.to_string()),
            })?;
        tx.send(Action::Connected)
            .map_err(|_| "closing".to_string())?;
        while let Some(msg) = ws.next().await {
            let msg = msg.map_err(|e| short_error(&e.to_string()))?;
            if let Ok(text) = msg.to_text()
                && let Ok(ev) = serde_json::from_str::<Event>(text)
            {
                last.fetch_max(ev.seq, Ordering::SeqCst);
                tx.send(Action::Event(Box::new(ev)))
                    .map_err(|_| "closing".to_string())?;
            }
        }
        Err("the stream closed".into())
    }
}

/// "Connection refused (os error 111)" rather than the whole chain.
fn short_error(e: &str) -> String {
    e.rsplit(": ")
        .next()
        .unwrap_or(e)
        .chars()
        .take(60)
        .collect()
}

fn loaded(kind: LoadKind, v: Value) -> Result<Loaded, serde_json::Error> {
    use serde_json::from_value as from;
    Ok(match kind {
        LoadKind::Webhooks => Loaded::Webhooks(from(v)?),
        LoadKind::Pipelines => Loaded::Pipelines(from(v)?),
        LoadKind::Messages { append } => Loaded::Messages {
            items: from(v)?,
            append,
        },
        LoadKind::Executions { append } => Loaded::Executions {
            items: from(v)?,
            append,
        },
        LoadKind::Deliveries { append } => Loaded::Deliveries {
            items: from(v)?,
            append,
        },
        LoadKind::Message => Loaded::Message(Box::new(from(v)?)),
        LoadKind::Execution => Loaded::Execution(Box::new(from(v)?)),
        LoadKind::Delivery => Loaded::Delivery(Box::new(from(v)?)),
    })
}
