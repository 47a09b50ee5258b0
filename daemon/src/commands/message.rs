//! `message.list`, `message.get`, `message.body`, `message.file`: reading captured requests.

use base64::Engine;
use hookd_shared::{BodyEncoding, FileInfo, Message, Role};

use super::{Call, Command, Kind, Output, Param, Params, RawData, RawOutput, json, parse_uuid};
use super::{Context, Ctx};
use crate::error::Error;
use crate::pipeline::event::Credentials;
use crate::store::messages::{self, ListFilter, MessageRecord};
use crate::store::{BodySource, Store};
use hookd_shared::verify::{MASK, VerifyConfig};

/// `message.get` shows at most this much of a body; `message.body` gives all of it.
const BODY_PREVIEW: u64 = 1024 * 1024;
/// Bodies up to this size are stored without their hash (computed when read).
const SMALL_BODY: u64 = crate::receive::INLINE_MAX as u64;

pub(super) fn commands() -> Vec<Command> {
    vec![
        Command {
            name: "message.list",
            description: "Captured messages, newest first",
            role: Some(Role::Viewer),
            params: &[
                Param {
                    name: "uuid",
                    kind: Kind::String,
                    required: false,
                    description: "only this webhook's messages",
                },
                Param {
                    name: "eventKey",
                    kind: Kind::String,
                    required: false,
                    description: "only event keys starting with this",
                },
                Param {
                    name: "status",
                    kind: Kind::String,
                    required: false,
                    description: "accepted or rejected (failed verification)",
                },
                Param {
                    name: "search",
                    kind: Kind::String,
                    required: false,
                    description: "text in the event key or the body (bodies up to 64 KiB)",
                },
                Param::LIMIT,
                Param {
                    name: "before",
                    kind: Kind::String,
                    required: false,
                    description: "cursor: only messages older than this message id",
                },
            ],
            handler: |ctx, call| Box::pin(list(ctx, call)),
        },
        Command {
            name: "message.get",
            description: "The full capture of one message: headers, query, body, form fields, files",
            role: Some(Role::Viewer),
            params: &[
                Param {
                    name: "id",
                    kind: Kind::String,
                    required: true,
                    description: "the message id",
                },
                Param {
                    name: "raw",
                    kind: Kind::Boolean,
                    required: false,
                    description: "admins: credentials as captured (viewers see them masked)",
                },
                Param {
                    name: "bodyLimit",
                    kind: Kind::Integer,
                    required: false,
                    description: "bytes of the body to include, 0 to 1048576 (default: 1048576)",
                },
            ],
            handler: |ctx, call| Box::pin(get(ctx, call)),
        },
        Command {
            name: "message.body",
            description: "The raw body bytes of a message, with its original content type",
            role: Some(Role::Viewer),
            params: &[Param {
                name: "id",
                kind: Kind::String,
                required: true,
                description: "the message id",
            }],
            handler: |ctx, call| Box::pin(body(ctx, call)),
        },
        Command {
            name: "message.file",
            description: "The bytes of one uploaded file of a multipart message",
            role: Some(Role::Viewer),
            params: &[
                Param {
                    name: "id",
                    kind: Kind::String,
                    required: true,
                    description: "the message id",
                },
                Param {
                    name: "index",
                    kind: Kind::Integer,
                    required: true,
                    description: "the file's index in message.get's files (from 0)",
                },
            ],
            handler: |ctx, call| Box::pin(file(ctx, call)),
        },
    ]
}

async fn list(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let filter = list_filter(&call.params, call.params.limit()?)?;
    let rows = ctx.store.messages(filter).await?;
    json(&rows)
}

/// The selection of `message.list`'s filters (and bulk `message.replay`'s), `limit` a page.
pub(super) fn list_filter(p: &Params, limit: u32) -> Result<ListFilter, Error> {
    Ok(ListFilter {
        uuid: p
            .str("uuid")
            .map(|u| parse_uuid("uuid", u).map(|u| u.to_string()))
            .transpose()?,
        event_key_prefix: p.str("eventKey").map(str::to_string),
        search: p
            .str("search")
            .filter(|q| !q.is_empty())
            .map(str::to_string),
        status: p
            .str("status")
            .map(|s| match s {
                "accepted" | "rejected" => Ok(s.to_string()),
                _ => Err(Error::InvalidParam(format!(
                    "status must be accepted or rejected, got '{s}'"
                ))),
            })
            .transpose()?,
        before: p
            .str("before")
            .map(|b| parse_uuid("before", b))
            .transpose()?,
        limit,
    })
}

async fn record(ctx: &Context, id: &str) -> Result<MessageRecord, Error> {
    let uuid = parse_uuid("id", id)?;
    ctx.store
        .message(uuid)
        .await?
        .ok_or_else(|| Error::NotFound(messages::no_such_message(id)))
}

async fn get(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let id = call.params.required_str("id")?;
    let limit = match call.params.int("bodyLimit") {
        None => BODY_PREVIEW,
        Some(n) if (0..=BODY_PREVIEW as i64).contains(&n) => n as u64,
        Some(n) => {
            return Err(Error::InvalidParam(format!(
                "bodyLimit must be 0 to {BODY_PREVIEW} bytes, got {n}; message.body gives all of a body"
            )));
        }
    };
    let (rec, preview) = ctx
        .store
        // Bodies of at most 64 KiB are stored without their hash: read them whole to hash.
        .message_preview(parse_uuid("id", id)?, limit.max(SMALL_BODY))
        .await?
        .ok_or_else(|| Error::NotFound(messages::no_such_message(id)))?;
    let admin = call.caller.as_ref().is_some_and(|c| c.role == Role::Admin);
    let raw = call.params.bool("raw").unwrap_or(false);
    if raw && !admin {
        return Err(Error::Forbidden(
            "raw=true (credentials as captured) is for admin tokens; viewers see them masked"
                .into(),
        ));
    }
    let mut m = to_message(rec, preview, limit);
    if !raw {
        let verify = ctx
            .store
            .webhook(&m.summary.uuid)
            .and_then(|w| w.verify.clone());
        mask_credentials(&mut m, verify.as_ref());
    }
    json(&m)
}

/// The API view of a message, given the first bytes of its body, of which it shows `limit`.
fn to_message(rec: MessageRecord, mut preview: Vec<u8>, limit: u64) -> Message {
    // Part hashes not stored are computed from the body when all of it is at hand (always, for
    // the bodies of at most 64 KiB stored without them).
    let whole = ((preview.len() as u64) >= rec.summary.size).then_some(&preview[..]);
    let files = rec
        .parts
        .iter()
        .filter(|p| p.is_file())
        .enumerate()
        .map(|(i, p)| FileInfo {
            index: i as u32,
            name: p.name.clone(),
            filename: p.filename.clone(),
            content_type: p.content_type.clone(),
            size: p.size,
            sha256: p.sha256_hex(whole),
        })
        .collect();
    let sha256 = rec.sha256_hex(whole);
    preview.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let truncated = (preview.len() as u64) < rec.summary.size;
    let (body, encoding) = encode_body(preview, truncated);
    let content_type = rec.summary.content_type.as_deref().unwrap_or("");
    let form: Vec<(String, String)> = if !rec.parts.is_empty() {
        rec.parts
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.value.clone()?)))
            .collect()
    } else if is_urlencoded(content_type) && !truncated && encoding == BodyEncoding::Utf8 {
        form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    Message {
        query: form_urlencoded::parse(rec.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        query_string: rec.query,
        path: rec.path,
        headers: rec.headers,
        remote_addr: rec.remote_addr,
        sha256,
        body,
        encoding,
        body_truncated: truncated,
        form,
        files,
        summary: rec.summary,
    }
}

/// Masks what a sender authenticated with (see [`Credentials`]). The stored capture is
/// untouched (`raw=true`, `message.body`, replay and forwarding keep the original bytes).
fn mask_credentials(m: &mut Message, verify: Option<&VerifyConfig>) {
    let creds = Credentials::of(verify);
    for (name, value) in &mut m.headers {
        if creds.is_header(name) {
            *value = MASK.into();
        }
    }
    let Some(param) = creds.param() else { return };
    if !m.query.iter().any(|(k, _)| k == param) {
        return;
    }
    for (k, v) in &mut m.query {
        if k == param {
            *v = MASK.into();
        }
    }
    m.query_string = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(m.query.iter())
        .finish();
}

/// Text when the bytes are UTF-8 (a character cut by truncation is dropped), else base64.
fn encode_body(mut bytes: Vec<u8>, truncated: bool) -> (String, BodyEncoding) {
    match std::str::from_utf8(&bytes) {
        Ok(_) => (
            String::from_utf8(bytes).unwrap_or_default(),
            BodyEncoding::Utf8,
        ),
        Err(e) if truncated && e.error_len().is_none() => {
            bytes.truncate(e.valid_up_to());
            (
                String::from_utf8(bytes).unwrap_or_default(),
                BodyEncoding::Utf8,
            )
        }
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            BodyEncoding::Base64,
        ),
    }
}

fn is_urlencoded(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|t| {
        t.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// Raw output for `len` bytes of a stored body from `offset`, streamed when on disk.
fn raw_range(
    store: &Store,
    rec: &MessageRecord,
    offset: u64,
    len: u64,
    content_type: String,
    filename: Option<String>,
) -> Result<Output, Error> {
    let data = match store.body_source(rec, offset, len)? {
        BodySource::Bytes(b) => RawData::Bytes(b),
        BodySource::File { path, offset, len } => RawData::File { path, offset, len },
    };
    Ok(Output::Raw(RawOutput {
        content_type,
        filename,
        data,
    }))
}

async fn body(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let rec = record(&ctx, call.params.required_str("id")?).await?;
    let content_type = rec
        .summary
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    raw_range(&ctx.store, &rec, 0, rec.summary.size, content_type, None)
}

async fn file(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let id = call.params.required_str("id")?;
    let index = call.params.int("index").unwrap_or(0);
    let index = usize::try_from(index).map_err(|_| {
        Error::InvalidParam(format!(
            "index must be 0 or more (a file's place in message.get's files), got {index}"
        ))
    })?;
    let rec = record(&ctx, id).await?;
    let count = rec.parts.iter().filter(|p| p.is_file()).count();
    let part = rec
        .parts
        .iter()
        .filter(|p| p.is_file())
        .nth(index)
        .cloned()
        .ok_or_else(|| {
            Error::NotFound(match count {
                0 => format!("message {id} has no files"),
                n => format!(
                    "message {id} has {n} file(s); index must be between 0 and {}",
                    n - 1
                ),
            })
        })?;
    let content_type = part
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    raw_range(
        &ctx.store,
        &rec,
        part.offset,
        part.size,
        content_type,
        part.filename.or(Some(part.name)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_text_when_utf8_else_base64() {
        assert_eq!(
            encode_body(b"{\"a\":1}".to_vec(), false),
            ("{\"a\":1}".to_string(), BodyEncoding::Utf8)
        );
        assert_eq!(
            encode_body(vec![0, 0xff, 0xfe], false),
            ("AP/+".to_string(), BodyEncoding::Base64)
        );
        // "é" cut in half by truncation is still text.
        assert_eq!(
            encode_body(vec![b'a', 0xc3], true),
            ("a".to_string(), BodyEncoding::Utf8)
        );
        assert_eq!(encode_body(vec![b'a', 0xc3], false).1, BodyEncoding::Base64);
    }

    mod against_the_store {
        use hookd_shared::Role;
        use serde_json::json;

        use crate::commands::testing::Harness;
        use crate::commands::{Output, RawData};
        use crate::error::Error;

        #[tokio::test]
        async fn list_get_and_body_show_what_was_captured() {
            let h = Harness::new().await;
            let uuid = h.webhook("webhook.test").await;
            let other = h.webhook("webhook.other").await;
            let body = b"\x00\xffbinary \r\n body";
            let first = h.capture(&uuid, body, &[("x-a", "1")]).await;
            h.capture(&other, b"elsewhere", &[]).await;
            let second = h.capture(&uuid, b"{\"n\":2}", &[]).await;

            let list = h
                .ok("message.list", json!({"uuid": uuid}), Role::Viewer)
                .await;
            let ids: Vec<&str> = list
                .as_array()
                .expect("a list")
                .iter()
                .filter_map(|m| m["id"].as_str())
                .collect();
            assert_eq!(
                ids,
                [second.as_str(), first.as_str()],
                "newest first, this webhook's"
            );

            let m = h
                .ok("message.get", json!({"id": first}), Role::Viewer)
                .await;
            assert_eq!(m["encoding"], "base64");
            assert_eq!(m["size"], body.len());
            assert_eq!(m["headers"], json!([["x-a", "1"]]));
            match h
                .call("message.body", json!({"id": first}), Some(Role::Viewer))
                .await
            {
                Ok(Output::Raw(r)) => match r.data {
                    RawData::Bytes(b) => assert_eq!(&b[..], &body[..]),
                    _ => panic!("a small body is answered from memory"),
                },
                Ok(_) => panic!("message.body answers bytes"),
                Err(e) => panic!("message.body: {e}"),
            }
        }

        #[tokio::test]
        async fn viewers_see_credentials_masked_and_admins_may_ask_for_them() {
            let h = Harness::new().await;
            let uuid = h.webhook("webhook.test").await;
            let id = h
                .capture(
                    &uuid,
                    b"{}",
                    &[("authorization", "Bearer abcdefgh"), ("x-b", "kept")],
                )
                .await;
            let masked = h.ok("message.get", json!({"id": id}), Role::Viewer).await;
            assert_eq!(
                masked["headers"],
                json!([
                    ["authorization", hookd_shared::verify::MASK],
                    ["x-b", "kept"]
                ])
            );
            let refused = h
                .call(
                    "message.get",
                    json!({"id": id, "raw": true}),
                    Some(Role::Viewer),
                )
                .await;
            assert!(matches!(refused, Err(Error::Forbidden(_))));
            let raw = h
                .ok("message.get", json!({"id": id, "raw": true}), Role::Admin)
                .await;
            assert_eq!(raw["headers"][0][1], "Bearer abcdefgh");
        }

        #[tokio::test]
        async fn unknown_and_malformed_ids_are_told_apart() {
            let h = Harness::new().await;
            let missing = h
                .call(
                    "message.get",
                    json!({"id": uuid::Uuid::now_v7().to_string()}),
                    Some(Role::Viewer),
                )
                .await;
            assert!(
                matches!(missing, Err(Error::NotFound(_))),
                "{:?}",
                missing.err()
            );
            let bad = h
                .call("message.body", json!({"id": "x"}), Some(Role::Viewer))
                .await;
            assert!(
                matches!(bad, Err(Error::InvalidParam(_))),
                "{:?}",
                bad.err()
            );
            let limit = h
                .call("message.list", json!({"limit": 0}), Some(Role::Viewer))
                .await;
            assert!(matches!(limit, Err(Error::InvalidParam(_))));
        }
    }
}
