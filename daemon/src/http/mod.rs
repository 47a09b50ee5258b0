//! Routing: which handler a request goes to. Errors become responses only in `error`.

pub mod body;
pub mod error;
mod params;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use crate::app::App;
use crate::auth;
use crate::commands::{Output, RawData};
use crate::error::Error;
use body::{Body, full, json_response};

/// Largest parameter body a management command accepts.
const MAX_COMMAND_BODY: usize = 1024 * 1024;
const COMMAND_PREFIX: &str = "/api/v3/command/";

/// Answers one request.
pub async fn handle<B>(app: Arc<App>, req: Request<B>, remote: SocketAddr) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    let result = match path.as_str() {
        "/healthz" => health(&app).await,
        "/api/v3/events" => crate::stream::handle(&app, req),
        crate::store::webhooks::RECEIVE_PATH | "/api/v3/webhook.receive" => {
            let (parts, body) = req.into_parts();
            match crate::receive::receive(&app, parts, body, remote).await {
                Ok(r) => Ok(json_response(StatusCode::OK, &r)),
                // The body may be half-read: close, so the client cannot reuse the connection
                // with the rest of that body still in flight (a 503 may come from a full disk
                // mid-body).
                Err(
                    e @ (Error::PayloadTooLarge(_)
                    | Error::BadRequest(_)
                    | Error::Timeout(_)
                    | Error::Unavailable(_)
                    | Error::Internal(_)),
                ) => {
                    let mut r = error::response(&e);
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    Ok(r)
                }
                Err(e) => Err(e),
            }
        }
        p if p.starts_with(COMMAND_PREFIX) => command(app.clone(), req).await,
        _ => Err(Error::NotFound(format!(
            "nothing at {path}; commands are at {COMMAND_PREFIX}<name> (command.list lists them)"
        ))),
    };
    result.unwrap_or_else(|e| error::response(&e))
}

async fn health(app: &App) -> Result<Response<Body>, Error> {
    app.store.health().await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"status": "ok"}),
    ))
}

async fn command<B>(app: Arc<App>, req: Request<B>) -> Result<Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let name = parts.uri.path()[COMMAND_PREFIX.len()..].to_string();
    if parts.method != Method::GET && parts.method != Method::POST {
        return Err(Error::MethodNotAllowed(format!(
            "commands are called with GET or POST, not {}",
            parts.method
        )));
    }
    let caller = auth::authenticate(&app.store, &parts.headers)?;
    let body = Limited::new(body, MAX_COMMAND_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Error::PayloadTooLarge(format!(
                    "command parameters are limited to {MAX_COMMAND_BODY} bytes"
                ))
            } else {
                Error::BadRequest(format!("the request body could not be read: {e}"))
            }
        })?
        .to_bytes();
    let raw = params::parse(&parts, &body)?;
    let output = app
        .registry
        .dispatch(app.clone(), &name, raw, caller)
        .await?;
    match output {
        Output::Json(v) => Ok(json_response(StatusCode::OK, &v)),
        Output::None => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        Output::Raw(raw) => {
            let (body, len) = match raw.data {
                RawData::Bytes(b) => {
                    let len = b.len() as u64;
                    (full(b), Some(len))
                }
                RawData::File { path, offset, len } => {
                    (body::file(&path, offset, len).await?, Some(len))
                }
                RawData::Stream(rx) => (body::stream(rx), None),
            };
            let mut r = Response::new(body);
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&raw.content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            if let Some(len) = len {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            if let Some(name) = raw.filename {
                let safe: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
            }
            Ok(r)
        }
    }
}
