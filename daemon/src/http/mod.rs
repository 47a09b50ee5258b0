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
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = route_of(&app, &path);
    let result = match path.as_str() {
        "/healthz" => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        "/readyz" => ready(&app).await,
        "/metrics" if app.config.metrics.listen.is_none() => metrics(&app, req.headers()).await,
        "/api/v3/events" => crate::stream::handle(&app.streams, req).map(|r| r.map(|()| full(""))),
        hookd_shared::RECEIVE_PATH | "/api/v3/webhook.receive" => {
            let (parts, body) = req.into_parts();
            match crate::receive::receive(&app.receiver, parts, body, remote).await {
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
    let response = result.unwrap_or_else(|e| error::response(&e));
    let status = response.status().as_u16();
    if let Some(m) = &app.metrics {
        let receive = route.0 == crate::metrics::RECEIVE_ROUTE;
        if receive && status == 200 {
            m.receive_ok.increment(1);
        } else {
            metrics::counter!(
                crate::metrics::REQUESTS,
                "route" => route.0,
                "command" => route.1,
                "status" => crate::metrics::status_label(status),
            )
            .increment(1);
        }
        if receive {
            m.receive_seconds.record(started.elapsed().as_secs_f64());
        }
    }
    // The route, never the path and query: those carry webhook uuids and tokens.
    tracing::debug!(
        target: "hookd::access",
        %method,
        route = route.0,
        command = route.1,
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        remote = %remote.ip(),
    );
    response
}

/// The route template of `path` and, for a command, its name: bounded label values.
fn route_of(app: &App, path: &str) -> (&'static str, &'static str) {
    match path {
        "/healthz" => ("/healthz", ""),
        "/readyz" => ("/readyz", ""),
        "/metrics" => ("/metrics", ""),
        "/api/v3/events" => ("/api/v3/events", ""),
        hookd_shared::RECEIVE_PATH | "/api/v3/webhook.receive" => {
            (crate::metrics::RECEIVE_ROUTE, "webhook.receive")
        }
        p => match p.strip_prefix(COMMAND_PREFIX) {
            Some(name) => (
                "/api/v3/command/:name",
                app.commands
                    .registry
                    .get(name)
                    .map_or("unknown", |c| c.name),
            ),
            None => ("other", ""),
        },
    }
}

/// Readiness: the database is open (so migrated) and takes a write.
async fn ready(app: &App) -> Result<Response<Body>, Error> {
    app.store.health().await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"status": "ok"}),
    ))
}

/// `/metrics` on the main listener: a viewer token unless `[metrics] token = false`.
async fn metrics(app: &App, headers: &http::HeaderMap) -> Result<Response<Body>, Error> {
    if app.config.metrics.token_required && auth::authenticate(&app.store, headers)?.is_none() {
        return Err(Error::Unauthorized(
            "/metrics needs a token: send 'Authorization: Bearer <token>' (a viewer token is \
             enough), serve it on its own address with [metrics] listen, or set [metrics] \
             token = false"
                .into(),
        ));
    }
    metrics_response(app).await
}

/// The exposition text, after reading the gauges that are not counted as they change.
pub async fn metrics_response(app: &App) -> Result<Response<Body>, Error> {
    let Some(m) = &app.metrics else {
        return Err(Error::NotFound(
            "metrics are off ([metrics] enabled = false)".into(),
        ));
    };
    let pending = app.store.pending_deliveries().await?;
    let disk = app.store.disk_usage();
    metrics::gauge!(crate::metrics::DELIVERIES_PENDING).set(pending as f64);
    metrics::gauge!(crate::metrics::DATABASE_BYTES).set(disk.database_bytes as f64);
    metrics::gauge!(crate::metrics::WAL_BYTES).set(disk.log_bytes as f64);
    metrics::gauge!(crate::metrics::STREAM_CLIENTS).set(app.streams.clients() as f64);
    let mut r = Response::new(full(m.render()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
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
        .commands
        .registry
        .dispatch(app.commands.clone(), &name, raw, caller)
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
            if let Some(name) = raw.filename
                && let Ok(v) = HeaderValue::from_str(&content_disposition(&name))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(r)
        }
    }
}
/// `attachment` with the sender's filename reduced to its base name (RFC 6266 §4.3: no path
/// may reach the saving side), as ASCII in `filename` and exactly in `filename*` (RFC 8187).
fn content_disposition(name: &str) -> String {
    let base = name
        .rsplit(['/', '\\'])
        .find(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("file");
    let ascii: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut out = format!("attachment; filename=\"{ascii}\"");
    if !base.is_ascii() || ascii != base {
        out.push_str("; filename*=UTF-8''");
        for b in base.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn a_filename_is_reduced_to_its_base_name_and_kept_exactly_in_filename_star() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\""
        );
        assert_eq!(
            content_disposition("../../etc/passwd"),
            "attachment; filename=\"passwd\""
        );
        assert_eq!(
            content_disposition("C:\\Users\\a\\x.txt"),
            "attachment; filename=\"x.txt\""
        );
        assert_eq!(content_disposition(".."), "attachment; filename=\"file\"");
        assert_eq!(
            content_disposition("naïve \"q\".txt"),
            "attachment; filename=\"na_ve _q_.txt\"; filename*=UTF-8''na%C3%AFve%20%22q%22.txt"
        );
    }
}
