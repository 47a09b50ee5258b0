//! The body a listener pipeline starts with: the event, and the captured request as `payload`.
//!
//! ```text
//! { eventKey, traceId, messageId, webhookUuid, receivedAt,
//!   payload: { origin, contentType, method, headers, query, json, form, files } }
//! ```

use base64::Engine;
use hookd_shared::PayloadType;
use serde_json::{Map, Value, json};

use hookd_shared::verify::{MASK, Scheme, VerifyConfig};

use crate::store::messages::MessageRecord;

/// Headers that carry credentials whatever the webhook verifies.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Which parts of a captured request are what its sender authenticated with: the credential
/// headers, and the header or query parameter of the webhook's own `token` verification.
pub struct Credentials<'a> {
    header: Option<&'a str>,
    param: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// For a webhook verifying with `verify`.
    pub fn of(verify: Option<&'a VerifyConfig>) -> Credentials<'a> {
        let token = verify.filter(|v| v.scheme == Scheme::Token);
        Credentials {
            header: token.and_then(|v| v.header.as_deref()),
            param: token.and_then(|v| v.query.as_deref()),
        }
    }

    /// Whether the header `name` carries a credential.
    pub fn is_header(&self, name: &str) -> bool {
        CREDENTIAL_HEADERS
            .iter()
            .copied()
            .chain(self.header)
            .any(|h| name.eq_ignore_ascii_case(h))
    }

    /// The query parameter that carries one, if any.
    pub fn param(&self) -> Option<&'a str> {
        self.param
    }

    /// The credential values a message event's request carried. A run masks them wherever it
    /// records them; the event itself keeps them for the pipeline.
    pub fn values(&self, event: &Value) -> Vec<String> {
        let payload = &event["payload"];
        let mut out: Vec<String> = payload["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(name, _)| self.is_header(name))
            .filter_map(|(_, v)| v.as_str().map(String::from))
            .collect();
        if let Some(param) = self.param {
            match &payload["query"][param] {
                Value::String(v) => out.push(v.clone()),
                Value::Array(vs) => {
                    out.extend(vs.iter().filter_map(|v| v.as_str().map(String::from)))
                }
                _ => {}
            }
        }
        out
    }

    /// Masks them in a message event, where `execution.get` shows one.
    pub fn mask_event(&self, event: &mut Value) {
        let payload = &mut event["payload"];
        if let Some(h) = payload["headers"].as_object_mut() {
            for (name, value) in h.iter_mut() {
                if self.is_header(name) {
                    *value = MASK.into();
                }
            }
        }
        if let Some(param) = self.param
            && let Some(v) = payload["query"]
                .as_object_mut()
                .and_then(|q| q.get_mut(param))
        {
            *v = MASK.into();
        }
    }
}

/// The event body for a captured message. `body` is the message's full body.
pub fn for_message(
    rec: &MessageRecord,
    body: &[u8],
    payload_type: PayloadType,
    trace_id: &str,
) -> Value {
    let s = &rec.summary;
    let content_type = s.content_type.clone().unwrap_or_default();
    let mut payload = Map::new();
    let text = std::str::from_utf8(body).ok();
    match payload_type {
        PayloadType::Ignore => {}
        PayloadType::Raw if text.is_some() => {
            payload.insert("origin".into(), text.unwrap_or_default().into());
        }
        PayloadType::Raw | PayloadType::Base64 => {
            payload.insert(
                "origin".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(body)
                    .into(),
            );
            payload.insert("originEncoding".into(), "base64".into());
        }
    }
    payload.insert("contentType".into(), content_type.clone().into());
    payload.insert("method".into(), s.method.clone().into());
    payload.insert("headers".into(), Value::Object(headers(&rec.headers)));
    payload.insert(
        "query".into(),
        Value::Object(multi(
            form_urlencoded::parse(rec.query.as_bytes()).into_owned(),
        )),
    );
    if let Some(j) = text.and_then(|t| as_json(&content_type, t)) {
        payload.insert("json".into(), j);
    }
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/x-www-form-urlencoded" {
        payload.insert(
            "form".into(),
            Value::Object(multi(form_urlencoded::parse(body).into_owned())),
        );
    } else if !rec.parts.is_empty() {
        let fields = rec
            .parts
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.value.clone()?)));
        payload.insert("form".into(), Value::Object(multi(fields)));
    }
    let files: Vec<Value> = rec
        .parts
        .iter()
        .filter(|p| p.is_file())
        .map(|p| {
            json!({"name": p.name, "filename": p.filename, "contentType": p.content_type,
                   "size": p.size, "sha256": p.sha256_hex(Some(body))})
        })
        .collect();
    payload.insert("files".into(), Value::Array(files));
    json!({
        "eventKey": s.event_key,
        "traceId": trace_id,
        "messageId": s.id,
        "webhookUuid": s.uuid,
        "receivedAt": s.received_at,
        "payload": payload,
    })
}

/// The event body for an internal event fired by `event.send`.
pub fn for_internal(event_key: &str, payload: Value, trace_id: &str) -> Value {
    json!({ "eventKey": event_key, "traceId": trace_id, "payload": payload })
}

/// The body parsed as JSON when its type says JSON, or when it looks like a JSON document.
fn as_json(content_type: &str, text: &str) -> Option<Value> {
    let says_json = content_type.to_ascii_lowercase().contains("json");
    let looks_json = matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
    (says_json || looks_json)
        .then(|| serde_json::from_str(text).ok())
        .flatten()
}

/// Header pairs as an object; repeated names joined with ", " (RFC 9110).
fn headers(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        match out.get_mut(k) {
            Some(Value::String(s)) => {
                s.push_str(", ");
                s.push_str(v);
            }
            _ => {
                out.insert(k.clone(), v.clone().into());
            }
        }
    }
    out
}

/// Pairs as an object; a repeated key becomes an array of its values.
fn multi(pairs: impl IntoIterator<Item = (String, String)>) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        match out.get_mut(&k) {
            Some(Value::Array(a)) => a.push(v.into()),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v.into()]);
            }
            None => {
                out.insert(k, v.into());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::messages::{PartRecord, StoredBody};
    use hookd_shared::MessageSummary;

    fn record(content_type: &str, parts: Vec<PartRecord>) -> MessageRecord {
        MessageRecord {
            seq: 1,
            received_at: 0,
            summary: MessageSummary {
                id: "m1".into(),
                uuid: "w1".into(),
                event_key: "webhook.x".into(),
                received_at: "2026-11-29T00:00:00.000Z".into(),
                method: "POST".into(),
                content_type: Some(content_type.into()),
                size: 0,
                file_count: 0,
                status: "accepted".into(),
                verification: "none".into(),
                reason: None,
            },
            path: "/".into(),
            query: "uuid=w1&tag=a&tag=b".into(),
            headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
            remote_addr: "127.0.0.1:1".into(),
            sha256: None,
            parts,
            body: StoredBody::Inline(Vec::new()),
        }
    }

    #[test]
    fn json_bodies_are_parsed_and_requests_described() {
        let body = br#"{"lead":{"name":"Ada"}}"#;
        let v = for_message(
            &record("application/json", vec![]),
            body,
            PayloadType::Raw,
            "t1",
        );
        assert_eq!(v["payload"]["json"]["lead"]["name"], "Ada");
        assert_eq!(v["payload"]["origin"], r#"{"lead":{"name":"Ada"}}"#);
        assert_eq!(v["payload"]["headers"]["x-a"], "1, 2");
        assert_eq!(v["payload"]["query"]["tag"], json!(["a", "b"]));
        assert_eq!(
            (
                v["eventKey"].as_str(),
                v["messageId"].as_str(),
                v["traceId"].as_str()
            ),
            (Some("webhook.x"), Some("m1"), Some("t1"))
        );
    }

    #[test]
    fn payload_types_and_binary_bodies() {
        let bin = [0u8, 255, 1];
        let v = for_message(
            &record("application/octet-stream", vec![]),
            &bin,
            PayloadType::Raw,
            "t",
        );
        assert_eq!(v["payload"]["origin"], "AP8B");
        assert_eq!(v["payload"]["originEncoding"], "base64");
        let v = for_message(
            &record("text/plain", vec![]),
            b"hi",
            PayloadType::Base64,
            "t",
        );
        assert_eq!(v["payload"]["origin"], "aGk=");
        let v = for_message(
            &record("text/plain", vec![]),
            b"hi",
            PayloadType::Ignore,
            "t",
        );
        assert!(v["payload"].get("origin").is_none());
        let v = for_message(
            &record("application/x-www-form-urlencoded", vec![]),
            b"a=1&b=2",
            PayloadType::Raw,
            "t",
        );
        assert_eq!(v["payload"]["form"], json!({"a": "1", "b": "2"}));
        let parts = vec![
            PartRecord {
                name: "note".into(),
                filename: None,
                content_type: None,
                offset: 0,
                size: 5,
                value: Some("hello".into()),
                sha256: None,
            },
            PartRecord {
                name: "file".into(),
                filename: Some("a.pdf".into()),
                content_type: Some("application/pdf".into()),
                offset: 9,
                size: 3,
                value: None,
                sha256: Some("ab".into()),
            },
        ];
        let v = for_message(
            &record("multipart/form-data; boundary=x", parts.clone()),
            b"...",
            PayloadType::Raw,
            "t",
        );
        assert_eq!(v["payload"]["form"], json!({"note": "hello"}));
        assert_eq!(v["payload"]["files"][0]["filename"], "a.pdf");
        assert_eq!(
            v["payload"]["files"][0]["sha256"], "ab",
            "a stored hash is used"
        );
        // An inline body's part hashes are not stored: computed from the part's bytes.
        let mut parts = parts;
        parts[1].sha256 = None;
        let body = b"hello....pdf";
        let v = for_message(
            &record("multipart/form-data; boundary=x", parts),
            body,
            PayloadType::Raw,
            "t",
        );
        assert_eq!(
            v["payload"]["files"][0]["sha256"],
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"pdf"))
        );
    }
}
