//! `webhook.send`, `delivery.list/get/retry/cancel`, `message.forward`, `secret.generate`.

use std::time::Duration;

use hookd_shared::{EventType, Role};
use serde_json::{Value, json};

use super::Ctx;
use super::{Call, Command, Kind, Output, Param, json, parse_uuid};
use crate::deliver::sign::Secret;
use crate::deliver::{DEFAULT_SCHEDULE, guard};
use crate::error::Error;
use crate::events::EventData;
use crate::store::deliveries::{DeliveryRow, ListFilter, NewDelivery};
use crate::store::ids::decode_public_id;
use crate::store::messages;

const MAX_TIMEOUT_SECS: i64 = 300;
const MAX_ATTEMPTS: i64 = 20;
/// Headers a forward must not copy: they describe the old hop, not the request.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

pub(super) fn commands() -> Vec<Command> {
    vec![
        Command {
            name: "webhook.send",
            description: "Send a webhook to an external URL: committed first, retried on failure (persisted), optionally signed (Standard Webhooks)",
            role: Some(Role::Admin),
            params: &[
                Param {
                    name: "url",
                    kind: Kind::String,
                    required: true,
                    description: "the destination, http:// or https://",
                },
                Param {
                    name: "message",
                    kind: Kind::Json,
                    required: false,
                    description: "the body: JSON is sent as JSON, text as text (default: the pipeline body)",
                },
                Param {
                    name: "method",
                    kind: Kind::String,
                    required: false,
                    description: "POST (default), PUT, PATCH, DELETE or GET",
                },
                Param {
                    name: "headers",
                    kind: Kind::Json,
                    required: false,
                    description: "extra headers, an object",
                },
                Param {
                    name: "contentType",
                    kind: Kind::String,
                    required: false,
                    description: "default application/json for JSON values, text/plain for text",
                },
                Param {
                    name: "timeout",
                    kind: Kind::Integer,
                    required: false,
                    description: "seconds per attempt (default 15, at most 300)",
                },
                Param {
                    name: "secret",
                    kind: Kind::String,
                    required: false,
                    description: "a whsec_ secret: sign every attempt (webhook-id, webhook-timestamp, webhook-signature)",
                },
                Param {
                    name: "maxAttempts",
                    kind: Kind::Integer,
                    required: false,
                    description: "attempts in all (default: one per schedule entry, 8)",
                },
                Param {
                    name: "schedule",
                    kind: Kind::Json,
                    required: false,
                    description: "delays before each attempt, e.g. [0, \"5s\", \"5m\"] (default 0, 5s, 5m, 30m, 2h, 5h, 10h, 10h, with jitter)",
                },
                Param {
                    name: "wait",
                    kind: Kind::Boolean,
                    required: false,
                    description: "wait for the first attempt and answer with its outcome",
                },
            ],
            handler: |ctx, call| Box::pin(send(ctx, call)),
        },
        Command {
            name: "message.forward",
            description: "Re-send a captured request to another URL: same method, headers (minus hop-by-hop and Host) and exact body; recorded as a delivery",
            role: Some(Role::Admin),
            params: &[
                Param {
                    name: "id",
                    kind: Kind::String,
                    required: true,
                    description: "the message id",
                },
                Param {
                    name: "url",
                    kind: Kind::String,
                    required: true,
                    description: "where to, e.g. http://localhost:3000/hook",
                },
                Param {
                    name: "wait",
                    kind: Kind::Boolean,
                    required: false,
                    description: "wait for the attempt and answer with its outcome",
                },
            ],
            handler: |ctx, call| Box::pin(forward(ctx, call)),
        },
        Command {
            name: "delivery.list",
            description: "Outgoing deliveries, newest first",
            role: Some(Role::Viewer),
            params: &[
                Param {
                    name: "status",
                    kind: Kind::String,
                    required: false,
                    description: "pending, succeeded, failed or cancelled",
                },
                Param {
                    name: "url",
                    kind: Kind::String,
                    required: false,
                    description: "only URLs starting with this",
                },
                Param::LIMIT,
                Param {
                    name: "before",
                    kind: Kind::String,
                    required: false,
                    description: "cursor: only deliveries older than this id",
                },
            ],
            handler: |ctx, call| Box::pin(list(ctx, call)),
        },
        Command {
            name: "delivery.get",
            description: "One delivery with every attempt (status, latency, response headers and body, or the error)",
            role: Some(Role::Viewer),
            params: &[Param {
                name: "id",
                kind: Kind::String,
                required: true,
                description: "the delivery id",
            }],
            handler: |ctx, call| Box::pin(get(ctx, call)),
        },
        Command {
            name: "delivery.retry",
            description: "Make a new attempt now (also for failed deliveries)",
            role: Some(Role::Admin),
            params: &[Param {
                name: "id",
                kind: Kind::String,
                required: true,
                description: "the delivery id",
            }],
            handler: |ctx, call| Box::pin(retry(ctx, call)),
        },
        Command {
            name: "delivery.cancel",
            description: "Stop retrying a pending delivery",
            role: Some(Role::Admin),
            params: &[Param {
                name: "id",
                kind: Kind::String,
                required: true,
                description: "the delivery id",
            }],
            handler: |ctx, call| Box::pin(cancel(ctx, call)),
        },
        Command {
            name: "secret.generate",
            description: "A fresh Standard Webhooks signing secret (whsec_...)",
            role: Some(Role::Admin),
            params: &[],
            handler: |_, _| {
                Box::pin(async {
                    Ok(Output::Json(
                        json!({"secret": Secret::generate().map_err(Error::Internal)?}),
                    ))
                })
            },
        },
    ]
}

/// A delay: a number of seconds, or text such as "5s", "5m", "2h".
fn delay_ms(v: &Value) -> Result<i64, Error> {
    let bad = || {
        Error::InvalidParam(format!(
            "schedule entries are seconds or durations such as \"5s\" or \"2h\", got {v}"
        ))
    };
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| *s >= 0.0)
            .map(|s| (s * 1000.0) as i64)
            .ok_or_else(bad),
        Value::String(s) => {
            if let Ok(n) = s.trim().parse::<f64>() {
                return Ok((n.max(0.0) * 1000.0) as i64);
            }
            humantime::parse_duration(s.trim())
                .map(|d| d.as_millis() as i64)
                .map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Checks a destination URL now: scheme, host, and (SSRF) the addresses it resolves to.
async fn check_url(raw: &str, policy: &guard::Policy) -> Result<reqwest::Url, Error> {
    let url = reqwest::Url::parse(raw)
        .map_err(|e| Error::InvalidParam(format!("url '{raw}' is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidParam(format!(
            "url must be http:// or https://, got {}://",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::InvalidParam(format!("url '{raw}' has no host")));
    }
    guard::precheck(policy, &url)
        .await
        .map_err(Error::InvalidParam)?;
    Ok(url)
}

async fn send(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let p = &call.params;
    let url = check_url(p.required_str("url")?, &ctx.deliverer.policy).await?;
    let method = p.str("method").unwrap_or("POST").to_ascii_uppercase();
    if !matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE" | "GET") {
        return Err(Error::InvalidParam(format!(
            "method must be POST, PUT, PATCH, DELETE or GET, got {method}"
        )));
    }
    let message = p.json("message").or(call.input.as_ref()).cloned();
    let (body, default_type) = match &message {
        None | Some(Value::Null) => (Vec::new(), None),
        Some(Value::String(s)) => (s.clone().into_bytes(), Some("text/plain; charset=utf-8")),
        Some(v) => (
            serde_json::to_vec(v).unwrap_or_default(),
            Some("application/json"),
        ),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    match p.json("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(&v).is_err()
                {
                    return Err(Error::InvalidParam(format!(
                        "header '{k}: {v}' is not a valid HTTP header"
                    )));
                }
                headers.push((k.to_ascii_lowercase(), v));
            }
        }
        Some(other) => {
            return Err(Error::InvalidParam(format!(
                "headers must be an object, got {other}"
            )));
        }
    }
    if let Some(ct) = p.str("contentType").or(default_type)
        && !headers.iter().any(|(k, _)| k == "content-type")
    {
        headers.push(("content-type".into(), ct.to_string()));
    }
    let timeout = p.int("timeout").unwrap_or(15);
    if !(1..=MAX_TIMEOUT_SECS).contains(&timeout) {
        return Err(Error::InvalidParam(format!(
            "timeout must be 1 to {MAX_TIMEOUT_SECS} seconds, got {timeout}"
        )));
    }
    let secret = p.str("secret").map(str::to_string);
    if let Some(s) = &secret {
        Secret::parse(s).map_err(Error::InvalidParam)?;
    }
    let schedule: Vec<i64> = match p.json("schedule") {
        None | Some(Value::Null) => DEFAULT_SCHEDULE.to_vec(),
        Some(Value::Array(a)) if !a.is_empty() => {
            a.iter().map(delay_ms).collect::<Result<_, _>>()?
        }
        Some(other) => {
            return Err(Error::InvalidParam(format!(
                "schedule must be a non-empty list of delays, got {other}"
            )));
        }
    };
    let max_attempts = p.int("maxAttempts").unwrap_or(schedule.len() as i64);
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(Error::InvalidParam(format!(
            "maxAttempts must be 1 to {MAX_ATTEMPTS}, got {max_attempts}"
        )));
    }
    let new = NewDelivery {
        msg_id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        url: url.to_string(),
        method,
        headers,
        body: Some(body),
        message_seq: None,
        message_id: None,
        secret,
        timeout_ms: timeout * 1000,
        schedule,
        max_attempts: max_attempts as u32,
        source: if call.input.is_some() {
            "pipeline".into()
        } else {
            "api".into()
        },
        local: false,
    };
    create(
        &ctx,
        new,
        p.bool("wait").unwrap_or(false),
        Duration::from_secs(timeout as u64),
    )
    .await
}

/// Commits the delivery, wakes the scheduler, and (with `wait`) waits for the first attempt.
async fn create(
    ctx: &Ctx,
    new: NewDelivery,
    wait: bool,
    timeout: Duration,
) -> Result<Output, Error> {
    // Subscribe before the commit, so the attempt's event cannot slip past.
    let mut rx = wait.then(|| ctx.bus.subscribe());
    let row = ctx.store.create_delivery(new).await?;
    ctx.deliverer.wake();
    let id = row.id();
    let Some(rx) = rx.as_mut() else {
        return Ok(Output::Json(
            json!({"deliveryId": id, "status": row.status}),
        ));
    };
    // Host queues and the request itself: allow a little more than the request timeout.
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "no attempt of delivery {id} finished in time; delivery.get shows its state"
                ))
            })?;
        let Ok(ev) = ev else { continue };
        if ev.kind != EventType::DeliveryAttempted {
            continue;
        }
        if let EventData::Json(v) = &ev.data
            && v["id"] == id.as_str()
        {
            let mut out = v.clone();
            if let Some(m) = out.as_object_mut() {
                m.insert("deliveryId".into(), id.clone().into());
            }
            return Ok(Output::Json(out));
        }
    }
}

async fn forward(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let p = &call.params;
    let id = p.required_str("id")?.to_string();
    let url = check_url(p.required_str("url")?, &ctx.deliverer.local_policy).await?;
    let uuid = parse_uuid("id", &id)?;
    let rec = ctx
        .store
        .message(uuid)
        .await?
        .ok_or_else(|| Error::NotFound(messages::no_such_message(&id)))?;
    let headers = rec
        .headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    let method = if matches!(
        rec.summary.method.as_str(),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
    ) {
        rec.summary.method.clone()
    } else {
        "POST".into()
    };
    let new = NewDelivery {
        msg_id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        url: url.to_string(),
        method,
        headers,
        body: None,
        message_seq: Some(rec.seq),
        message_id: Some(rec.summary.id.clone()),
        secret: None,
        timeout_ms: 15_000,
        schedule: vec![0],
        max_attempts: 1,
        source: "forward".into(),
        local: true,
    };
    create(
        &ctx,
        new,
        p.bool("wait").unwrap_or(false),
        Duration::from_secs(15),
    )
    .await
}

fn delivery_seq(name: &str, id: &str) -> Result<i64, Error> {
    let uuid = parse_uuid(name, id)?;
    decode_public_id(uuid).map(|(_, seq)| seq).ok_or_else(|| {
        Error::NotFound(format!(
            "no delivery with id {id}; delivery.list shows them"
        ))
    })
}

async fn list(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let p = &call.params;
    let limit = p.limit()?;
    if let Some(s) = p.str("status")
        && !matches!(s, "pending" | "succeeded" | "failed" | "cancelled")
    {
        return Err(Error::InvalidParam(format!(
            "status must be pending, succeeded, failed or cancelled, got '{s}'"
        )));
    }
    let filter = ListFilter {
        status: p.str("status").map(str::to_string),
        url_prefix: p.str("url").map(str::to_string),
        before: p
            .str("before")
            .map(|b| delivery_seq("before", b))
            .transpose()?,
        limit,
    };
    let rows = ctx.store.deliveries(filter).await?;
    json(&rows.iter().map(DeliveryRow::summary).collect::<Vec<_>>())
}

async fn get(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let id = call.params.required_str("id")?.to_string();
    let seq = delivery_seq("id", &id)?;
    let d = ctx
        .store
        .delivery(seq)
        .await?
        .filter(|d| d.summary.id == id)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no delivery with id {id}; delivery.list shows them"
            ))
        })?;
    let mut d = d;
    if call.caller.as_ref().is_none_or(|c| c.role != Role::Admin) {
        mask_for_viewers(&mut d);
    }
    json(&d)
}

/// Request headers a viewer sees the values of: what describes the request, not who sent it.
const SHOWN_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "accept",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// A delivery as a viewer sees it: the values of custom request headers (`Authorization`,
/// `X-Api-Key`, ...) and of cookies the receiver set are masked; admins see them all.
fn mask_for_viewers(d: &mut hookd_shared::Delivery) {
    let mask = hookd_shared::verify::MASK;
    for (name, value) in &mut d.headers {
        if !SHOWN_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            *value = mask.into();
        }
    }
    for a in &mut d.attempts_log {
        for (name, value) in &mut a.response_headers {
            if name.eq_ignore_ascii_case("set-cookie") {
                *value = mask.into();
            }
        }
    }
}

async fn retry(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let seq = delivery_seq("id", call.params.required_str("id")?)?;
    let row = ctx.store.retry_delivery(seq).await?;
    ctx.deliverer.wake();
    json(&row.summary())
}

async fn cancel(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let seq = delivery_seq("id", call.params.required_str("id")?)?;
    let row = ctx.store.cancel_delivery(seq).await?;
    json(&row.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_take_seconds_and_durations() {
        assert_eq!(delay_ms(&json!(0)).ok(), Some(0));
        assert_eq!(delay_ms(&json!(1.5)).ok(), Some(1500));
        assert_eq!(delay_ms(&json!("5m")).ok(), Some(300_000));
        assert_eq!(delay_ms(&json!("2")).ok(), Some(2000));
        assert!(delay_ms(&json!("soon")).is_err());
        assert!(delay_ms(&json!(-1)).is_err());
    }

    mod against_the_store {
        use hookd_shared::Role;
        use serde_json::json;

        use crate::commands::testing::Harness;
        use crate::error::Error;

        /// A public address: the deliverer's loop does not run here, so it is never connected to.
        const PUBLIC: &str = "http://93.184.215.14/hooks";

        #[tokio::test]
        async fn a_send_is_committed_pending_and_can_be_cancelled() {
            let h = Harness::new().await;
            let sent = h
                .ok(
                    "webhook.send",
                    json!({
                        "url": PUBLIC,
                        "message": {"order": 7},
                        "headers": {"Authorization": "Bearer s3cr3t-token", "X-Trace": "t1"},
                        "schedule": ["1s", "1m"],
                    }),
                    Role::Admin,
                )
                .await;
            let id = sent["deliveryId"].as_str().expect("deliveryId").to_string();
            assert_eq!(sent["status"], "pending");

            let listed = h
                .ok("delivery.list", json!({"status": "pending"}), Role::Viewer)
                .await;
            assert_eq!(listed[0]["id"], id.as_str());
            assert_eq!(
                listed[0]["maxAttempts"], 2,
                "one attempt per schedule entry"
            );

            let admin = h.ok("delivery.get", json!({"id": id}), Role::Admin).await;
            let header = |d: &serde_json::Value, name: &str| {
                d["headers"]
                    .as_array()
                    .and_then(|hs| hs.iter().find(|h| h[0] == name))
                    .map(|h| h[1].clone())
            };
            assert_eq!(
                header(&admin, "authorization"),
                Some(json!("Bearer s3cr3t-token"))
            );
            assert_eq!(
                header(&admin, "content-type"),
                Some(json!("application/json"))
            );
            let viewer = h.ok("delivery.get", json!({"id": id}), Role::Viewer).await;
            assert_eq!(
                header(&viewer, "authorization"),
                Some(json!(hookd_shared::verify::MASK))
            );
            assert_eq!(
                header(&viewer, "x-trace"),
                Some(json!(hookd_shared::verify::MASK))
            );
            assert_eq!(
                header(&viewer, "content-type"),
                Some(json!("application/json"))
            );

            let cancelled = h
                .ok("delivery.cancel", json!({"id": id}), Role::Admin)
                .await;
            assert_eq!(cancelled["status"], "cancelled");
            assert_eq!(h.store.pending_deliveries().await.expect("count"), 0);
        }

        #[tokio::test]
        async fn private_destinations_and_bad_settings_are_refused_before_anything_is_stored() {
            let h = Harness::new().await;
            for (params, says) in [
                (json!({"url": "http://127.0.0.1:9/x"}), "127.0.0.1"),
                (
                    json!({"url": "http://[2002:7f00:1::1]/x"}),
                    "2002:7f00:1::1",
                ),
                (json!({"url": "ftp://example.com/x"}), "http:// or https://"),
                (json!({"url": PUBLIC, "method": "TRACE"}), "method must be"),
                (json!({"url": PUBLIC, "timeout": 0}), "timeout must be"),
                (json!({"url": PUBLIC, "schedule": []}), "schedule must be"),
                (
                    json!({"url": PUBLIC, "headers": {"bad name": "v"}}),
                    "not a valid HTTP header",
                ),
            ] {
                let e = h.refused("webhook.send", params.clone(), Role::Admin).await;
                assert!(matches!(e, Error::InvalidParam(_)), "{params}: {e:?}");
                assert!(e.to_string().contains(says), "{params}: {e}");
            }
            let viewer = h
                .call("webhook.send", json!({"url": PUBLIC}), Some(Role::Viewer))
                .await;
            assert!(matches!(viewer, Err(Error::Forbidden(_))));
            assert_eq!(h.store.pending_deliveries().await.expect("count"), 0);
        }
    }
}
