//! The few reads `hookd listen` makes of the server (a viewer token is enough): the stream is in
//! `source.rs`; here `message.get`, `message.body` and the start-up checks.

use std::time::Duration;

use hookd_shared::{ErrorResponse, Message};
use serde_json::{Value, json};

/// How a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Network trouble, or the server answered 5xx/429: worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// The server refused the call (4xx other than 429).
    #[error("{message} [HTTP {status}]")]
    Refused { status: u16, message: String },
}

/// A hookd server the listener reads from.
#[derive(Clone)]
pub struct Server {
    http: reqwest::Client,
    /// Without a trailing slash.
    pub base: String,
    token: Option<String>,
}

impl Server {
    pub fn new(base: String, token: Option<String>) -> Result<Server, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Server { http, base, token })
    }

    /// The token, for the stream's handshake.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn post(&self, name: &str, params: Value) -> Result<reqwest::Response, ApiError> {
        let mut req = self
            .http
            .post(format!("{}/api/v3/command/{name}", self.base))
            .json(&params);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            ApiError::Unavailable(format!(
                "cannot reach {}: {}",
                self.base,
                super::error_chain(&e)
            ))
        })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<ErrorResponse>(&bytes)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        if status >= 500 || status == 429 {
            Err(ApiError::Unavailable(format!(
                "{} answered {status}: {message}",
                self.base
            )))
        } else {
            Err(ApiError::Refused { status, message })
        }
    }

    /// Calls a command that answers JSON.
    pub async fn call(&self, name: &str, params: Value) -> Result<Value, ApiError> {
        let resp = self.post(name, params).await?;
        resp.json()
            .await
            .map_err(|e| ApiError::Unavailable(format!("the answer to {name} was cut off: {e}")))
    }

    /// A message's capture with up to `body_limit` bytes of its body; `raw` asks for the
    /// credentials as captured (admin tokens only).
    pub async fn message(&self, id: &str, raw: bool, body_limit: u64) -> Result<Message, ApiError> {
        let v = self
            .call(
                "message.get",
                json!({"id": id, "raw": raw, "bodyLimit": body_limit}),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| {
            ApiError::Unavailable(format!("message.get answered something unexpected: {e}"))
        })
    }

    /// The whole body of a message, to stream on.
    pub async fn body(&self, id: &str) -> Result<reqwest::Response, ApiError> {
        self.post("message.body", json!({ "id": id })).await
    }
}
