//! `webhook.put`, `webhook.get`, `webhook.delete`: managing incoming webhooks.
//! (`webhook.receive` is listed here too; HTTP routes it to `receive` before the registry.)

use hookd_shared::{PayloadType, Role, key};

use super::Ctx;
use super::{Call, Command, Kind, Output, Param, json, parse_uuid};
use crate::error::Error;
use crate::receive::verify::VerifyConfig;
use crate::retention::Override;
use crate::store::webhooks::RateLimit;
use crate::store::{WebhookPut, webhooks};
use serde_json::Value;

const MAX_DESCRIPTION: usize = 1000;

pub(super) fn commands() -> Vec<Command> {
    vec![
        Command {
            name: "webhook.put",
            description: "Create a webhook (a unique receive URL firing eventKey), or edit one by uuid",
            role: Some(Role::Admin),
            params: &[
                Param {
                    name: "uuid",
                    kind: Kind::String,
                    required: false,
                    description: "edit this webhook, or create one with this uuid",
                },
                Param {
                    name: "eventKey",
                    kind: Kind::String,
                    required: false,
                    description: "event fired per request, e.g. webhook.github.push; required when creating",
                },
                Param {
                    name: "payloadType",
                    kind: Kind::String,
                    required: false,
                    description: "raw (default), base64 or ignore: how the body is handed to pipelines",
                },
                Param {
                    name: "maxPayloadLength",
                    kind: Kind::Integer,
                    required: false,
                    description: "largest accepted body in bytes; default and maximum: the global --max-body",
                },
                Param {
                    name: "description",
                    kind: Kind::String,
                    required: false,
                    description: "free text",
                },
                Param {
                    name: "enabled",
                    kind: Kind::Boolean,
                    required: false,
                    description: "false makes the URL answer 404 (default true)",
                },
                Param {
                    name: "verify",
                    kind: Kind::Json,
                    required: false,
                    description: "signature check, e.g. {\"scheme\":\"github\",\"secret\":\"…\"} (github, stripe, standard, hmac, token, basic; \"secrets\": [...] to rotate); null removes it",
                },
                Param {
                    name: "dedupe",
                    kind: Kind::String,
                    required: false,
                    description: "idempotency header (default: webhook-id, X-GitHub-Delivery, Idempotency-Key, X-Request-Id), or none",
                },
                Param {
                    name: "dedupeWindow",
                    kind: Kind::Integer,
                    required: false,
                    description: "seconds a repeat counts as a duplicate (default 86400)",
                },
                Param {
                    name: "rateLimit",
                    kind: Kind::Json,
                    required: false,
                    description: "{\"perSecond\":10,\"burst\":20}; beyond it 429 with Retry-After; null removes it",
                },
                Param {
                    name: "allowCidrs",
                    kind: Kind::Json,
                    required: false,
                    description: "source networks allowed, e.g. [\"192.30.252.0/22\"] (others get 403); [] allows all",
                },
                Param {
                    name: "retention",
                    kind: Kind::Json,
                    required: false,
                    description: "keep this webhook's messages for {\"maxAge\":\"7d\",\"maxCount\":10000,\"maxBytes\":\"1GiB\"} (any subset, over the daemon's [retention]; a null field: no limit); null removes the override",
                },
            ],
            handler: |ctx, call| Box::pin(put(ctx, call)),
        },
        Command {
            name: "webhook.get",
            description: "List all webhooks, or show one by uuid",
            role: Some(Role::Viewer),
            params: &[Param {
                name: "uuid",
                kind: Kind::String,
                required: false,
                description: "only this webhook",
            }],
            handler: |ctx, call| Box::pin(get(ctx, call)),
        },
        Command {
            name: "webhook.delete",
            description: "Delete a webhook; its captured messages stay readable",
            role: Some(Role::Admin),
            params: &[Param {
                name: "uuid",
                kind: Kind::String,
                required: true,
                description: "the webhook to delete",
            }],
            handler: |ctx, call| Box::pin(delete(ctx, call)),
        },
        Command {
            name: "webhook.receive",
            description: "Public: capture a request to a webhook's URL (any method, any body) and fire its eventKey",
            role: None,
            params: &[Param {
                name: "uuid",
                kind: Kind::String,
                required: true,
                description: "the webhook (also accepted as token= or a token header)",
            }],
            handler: |_, _| {
                Box::pin(async {
                    Err(Error::BadRequest(
                        "webhook.receive captures a raw HTTP request; send it to the webhook's URL (/api/v3/command/webhook.receive?uuid=...)".into(),
                    ))
                })
            },
        },
    ]
}

async fn put(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let p = &call.params;
    let global_max = ctx.config.max_body;
    let uuid = p
        .str("uuid")
        .map(|u| parse_uuid("uuid", u).map(|u| u.to_string()))
        .transpose()?;
    let event_key = p.str("eventKey").map(str::to_string);
    if let Some(k) = &event_key {
        key::validate_event_key(k).map_err(|e| Error::InvalidParam(format!("eventKey {e}")))?;
    }
    let payload_type = p
        .str("payloadType")
        .map(|t| {
            PayloadType::parse(t).ok_or_else(|| {
                Error::InvalidParam(format!(
                    "payloadType must be raw, base64 or ignore, got '{t}'"
                ))
            })
        })
        .transpose()?;
    let max_payload_length = p
        .int("maxPayloadLength")
        .map(|n| {
            if n < 1 || n as u64 > global_max {
                Err(Error::InvalidParam(format!(
                    "maxPayloadLength must be between 1 and the global limit of {global_max} bytes (--max-body), got {n}"
                )))
            } else {
                Ok(n as u64)
            }
        })
        .transpose()?;
    let description = p.str("description").map(str::to_string);
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return Err(Error::InvalidParam(format!(
            "description is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    let verify = p
        .json("verify")
        .map(|v| match v {
            Value::Null => Ok(None),
            v => VerifyConfig::parse(v)
                .map(Some)
                .map_err(Error::InvalidParam),
        })
        .transpose()?;
    let dedupe = p.str("dedupe").map(|d| {
        let d = d.trim().to_ascii_lowercase();
        (d != "default" && !d.is_empty()).then_some(d)
    });
    if let Some(Some(h)) = &dedupe
        && h != "none"
        && http::HeaderName::from_bytes(h.as_bytes()).is_err()
    {
        return Err(Error::InvalidParam(format!(
            "dedupe must be a header name or none, got '{h}'"
        )));
    }
    let dedupe_window = p
        .int("dedupeWindow")
        .map(|w| {
            if (1..=30 * 24 * 3600).contains(&w) {
                Ok(w)
            } else {
                Err(Error::InvalidParam(format!(
                    "dedupeWindow must be 1 to 2592000 seconds (30 days), got {w}"
                )))
            }
        })
        .transpose()?;
    let rate_limit = p
        .json("rateLimit")
        .map(|v| match v {
            Value::Null => Ok(None),
            v => serde_json::from_value::<RateLimit>(v.clone())
                .ok()
                .filter(|r| r.per_second > 0.0 && r.burst >= 1)
                .map(Some)
                .ok_or_else(|| {
                    Error::InvalidParam(format!(
                        "rateLimit must be {{\"perSecond\": >0, \"burst\": >=1}}, got {v}"
                    ))
                }),
        })
        .transpose()?;
    let allow_cidrs = p
        .json("allowCidrs")
        .map(|v| {
            let list = match v {
                Value::Array(a) => a
                    .iter()
                    .map(|c| c.as_str().unwrap_or_default().to_string())
                    .collect(),
                Value::String(s) => s
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect(),
                Value::Null => Vec::new(),
                other => {
                    return Err(Error::InvalidParam(format!(
                        "allowCidrs must be a list of CIDRs, got {other}"
                    )));
                }
            };
            list.iter()
                .map(|c: &String| {
                    c.parse::<ipnet::IpNet>()
                        .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            Error::InvalidParam(format!(
                                "allowCidrs: '{c}' is not a CIDR such as 192.30.252.0/22"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let retention = p
        .json("retention")
        .map(|v| match v {
            Value::Null => Ok(None),
            v => Override::parse(v).map(Some).map_err(Error::InvalidParam),
        })
        .transpose()?;
    let (row, _created) = ctx
        .store
        .put_webhook(WebhookPut {
            uuid,
            event_key,
            payload_type,
            max_payload_length,
            description,
            enabled: p.bool("enabled"),
            verify,
            dedupe,
            dedupe_window,
            rate_limit,
            allow_cidrs,
            retention,
            default_max_payload_length: global_max,
        })
        .await?;
    json(&ctx.store.webhook_view(&row))
}

async fn get(ctx: Ctx, call: Call) -> Result<Output, Error> {
    match call.params.str("uuid") {
        Some(u) => {
            let uuid = parse_uuid("uuid", u)?.to_string();
            let row = ctx
                .store
                .webhook_stored(uuid.clone())
                .await?
                .ok_or_else(|| Error::NotFound(webhooks::no_such_webhook(&uuid)))?;
            json(&ctx.store.webhook_view(&row))
        }
        None => {
            let rows = ctx.store.webhooks().await?;
            json(
                &rows
                    .iter()
                    .map(|w| ctx.store.webhook_view(w))
                    .collect::<Vec<_>>(),
            )
        }
    }
}

async fn delete(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let uuid = parse_uuid("uuid", call.params.required_str("uuid")?)?.to_string();
    let row = ctx.store.delete_webhook(uuid).await?;
    // A webhook created again with this uuid starts with a full bucket.
    ctx.limits.forget_webhook(&row.uuid);
    json(&ctx.store.webhook_view(&row))
}

#[cfg(test)]
mod tests {
    use hookd_shared::Role;
    use serde_json::json;

    use crate::commands::testing::Harness;
    use crate::error::Error;

    #[tokio::test]
    async fn put_creates_then_edits_and_delete_removes_from_every_lookup() {
        let h = Harness::new().await;
        let w = h
            .ok(
                "webhook.put",
                json!({"eventKey": "webhook.github.push", "description": "gh"}),
                Role::Admin,
            )
            .await;
        let uuid = w["uuid"].as_str().expect("uuid").to_string();
        assert_eq!(
            w["webhookUrl"],
            format!("http://hooks.test/api/v3/command/webhook.receive?uuid={uuid}")
        );
        // Receive looks webhooks up in memory: the new one is there at once.
        let cached = h.store.webhook(&uuid).expect("cached");
        assert_eq!(cached.event_key, "webhook.github.push");

        let edited = h
            .ok(
                "webhook.put",
                json!({"uuid": uuid, "enabled": "false", "maxPayloadLength": 2048}),
                Role::Admin,
            )
            .await;
        assert_eq!(edited["eventKey"], "webhook.github.push", "kept");
        assert_eq!(edited["description"], "gh", "kept");
        assert_eq!(edited["enabled"], false);
        assert_eq!(edited["maxPayloadLength"], 2048);
        assert!(!h.store.webhook(&uuid).expect("cached").enabled);
        let listed = h.ok("webhook.get", json!({}), Role::Viewer).await;
        assert_eq!(listed.as_array().map(Vec::len), Some(1));

        h.ok("webhook.delete", json!({"uuid": uuid}), Role::Admin)
            .await;
        assert!(h.store.webhook(&uuid).is_none());
        let gone = h
            .call("webhook.get", json!({"uuid": uuid}), Some(Role::Viewer))
            .await;
        assert!(matches!(gone, Err(Error::NotFound(_))), "{:?}", gone.err());
        let again = h
            .call("webhook.delete", json!({"uuid": uuid}), Some(Role::Admin))
            .await;
        assert!(
            matches!(again, Err(Error::NotFound(_))),
            "{:?}",
            again.err()
        );
    }

    #[tokio::test]
    async fn bad_input_and_the_wrong_role_store_nothing() {
        let h = Harness::new().await;
        for (params, says) in [
            (json!({"eventKey": "a..b"}), "eventKey"),
            (
                json!({"eventKey": "x", "maxPayloadLength": 0}),
                "maxPayloadLength must be between 1",
            ),
            (
                json!({"eventKey": "x", "verify": {"scheme": "github"}}),
                "needs a secret",
            ),
            (
                json!({"eventKey": "x", "allowCidrs": "10.0.0.0/33"}),
                "is not a CIDR",
            ),
            (json!({"uuid": "nope"}), "is not a UUID"),
        ] {
            let e = h.refused("webhook.put", params.clone(), Role::Admin).await;
            assert!(matches!(e, Error::InvalidParam(_)), "{params}: {e:?}");
            assert!(e.to_string().contains(says), "{params}: {e}");
        }
        let viewer = h
            .call("webhook.put", json!({"eventKey": "x"}), Some(Role::Viewer))
            .await;
        assert!(matches!(viewer, Err(Error::Forbidden(_))));
        let anonymous = h.call("webhook.put", json!({"eventKey": "x"}), None).await;
        assert!(matches!(anonymous, Err(Error::Unauthorized(_))));
        assert!(h.store.webhooks().await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn verify_secrets_are_stored_but_never_shown() {
        let h = Harness::new().await;
        let secret = "s3cret-value-for-github";
        let w = h
            .ok(
                "webhook.put",
                json!({"eventKey": "gh", "verify": {"scheme": "github", "secret": secret}}),
                Role::Admin,
            )
            .await;
        let uuid = w["uuid"].as_str().expect("uuid");
        let shown = h
            .ok("webhook.get", json!({"uuid": uuid}), Role::Admin)
            .await;
        assert!(!shown.to_string().contains(secret), "{shown}");
        assert_eq!(shown["verify"]["scheme"], "github");
        let stored = h.store.webhook(uuid).and_then(|w| w.verify.clone());
        assert_eq!(
            stored.and_then(|v| v.secret).as_deref(),
            Some(secret),
            "the receive path still has the secret"
        );
    }
}
