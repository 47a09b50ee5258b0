//! Captured messages: the commit of one capture, and the queries over them.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use hookd_shared::MessageSummary;
use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::StoreError;
use super::event_log::MessageSeqs;
pub use super::ids::{decode_public_id as decode_message_id, public_id as message_id};
use super::op::Stored;
use super::op::{Applied, Effect, Outcome};
use super::page::Page;
use super::pipelines::{self};
use super::segments::{SEGMENT_MIN, Segments};
use crate::clock::rfc3339;
pub use crate::store::model::messages::*;
use crate::store::model::pipelines::Listeners;
use hookd_shared::RECEIVE_PATH;

pub(super) fn insert(
    conn: &Connection,
    c: Capture,
    listeners: Option<Listeners>,
    now: i64,
    segments: &mut Segments,
    seqs: &mut MessageSeqs,
) -> Result<Applied, StoreError> {
    if let Some((key, window)) = &c.dedupe {
        let earlier: Option<(i64, i64)> = conn
            .prepare_cached(
                "SELECT message_seq, at FROM dedupe WHERE webhook_uuid = ?1 AND key = ?2",
            )?
            .query_row(params![c.webhook_uuid, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((seq, at)) = earlier.filter(|(_, at)| now - at < *window) {
            // A repeat: nothing is stored or fired; the sender learns the original id.
            let received_at: i64 = conn
                .prepare_cached("SELECT received_at FROM messages WHERE seq = ?1")?
                .query_row([seq], |r| r.get(0))
                .optional()?
                .unwrap_or(at);
            let mut applied =
                Applied::new(Outcome::Duplicate(message_id(received_at, seq).to_string()));
            if let CapturedBody::File(id) = &c.body {
                applied.effects.push(Effect::DiscardFile(id.clone()));
            }
            return Ok(applied);
        }
    }
    let file_count = c.parts.iter().filter(|p| p.is_file()).count() as u32;
    let parts = (!c.parts.is_empty())
        .then(|| serde_json::to_string(&c.parts).unwrap_or_else(|_| "[]".into()));
    let (body_file, body, segment) = match &c.body {
        // A rejection keeps only the body's head, shorter than `size`, which the segment
        // readers rely on: it stays in the row (rejections are rate-capped, so rare).
        CapturedBody::Inline(b) if b.len() > SEGMENT_MIN && c.rejected.is_none() => {
            (None, None, Some(segments.append(b)?))
        }
        CapturedBody::Inline(b) => (None, Some(&b[..]), None),
        CapturedBody::File(id) => (Some(id.as_str()), None, None),
    };
    let (status, verification) = match &c.rejected {
        Some(_) => ("rejected", "failed"),
        None => ("accepted", c.verification),
    };
    let mut st = conn.prepare_cached(
        "INSERT INTO messages (webhook_uuid, event_key, received_at, status, verification, \
         method, path, query, headers, remote_addr, content_type, size, sha256, file_count, parts, \
         body_file, body, reason, body_segment, body_offset, event_seq) VALUES (?1, ?2, ?3, ?4, \
         ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    )?;
    let event_seq = seqs.next(conn)?;
    st.execute(params![
        c.webhook_uuid,
        c.event_key,
        c.received_at,
        status,
        verification,
        c.method,
        pack_path(&c.path),
        pack_query(&c.query, &c.webhook_uuid),
        c.headers_json,
        c.remote_addr,
        c.content_type,
        c.size as i64,
        // An empty blob: hashed from the body when read (the column is NOT NULL since 1).
        c.sha256.as_ref().map_or(&[][..], |h| &h[..]),
        file_count,
        parts,
        body_file,
        body,
        c.rejected,
        segment.map(|(id, _)| id),
        segment.map(|(_, at)| at as i64),
        event_seq,
    ])?;
    let seq = conn.last_insert_rowid();
    if let Some((key, _)) = &c.dedupe {
        conn.prepare_cached("INSERT OR REPLACE INTO dedupe (webhook_uuid, key, message_seq, at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![c.webhook_uuid, key, seq, now])?;
    }
    let summary = Arc::new(MessageSummary {
        id: message_id(c.received_at, seq).to_string(),
        uuid: c.webhook_uuid,
        event_key: c.event_key,
        received_at: rfc3339(c.received_at),
        method: c.method,
        content_type: c.content_type,
        size: c.size,
        file_count,
        status: status.into(),
        verification: verification.into(),
        reason: c.rejected.clone(),
    });
    let event = super::event_log::message_event(event_seq, c.received_at, summary.clone());
    let rejected = c.rejected.is_some();
    let stored = Stored {
        seq,
        uuid: summary.uuid.clone(),
        received_at: c.received_at,
        accepted: !rejected,
        size: c.size,
    };
    let runs = match listeners.filter(|_| !rejected) {
        Some(l) => pipelines::insert(conn, l.executions(&summary, seq), now)?,
        None => Vec::new(),
    };
    let mut applied = Applied::new(Outcome::Captured(summary));
    applied.events.push(event);
    applied.runs = runs.into_iter().map(|(seq, _)| seq).collect();
    applied.stored = Some(stored);
    if let CapturedBody::File(id) = c.body {
        applied.effects.push(Effect::PromoteFile(id));
    }
    Ok(applied)
}

/// A batch's bookkeeping for the messages it stored (in insertion order): where each webhook's
/// messages are, and the webhooks' counters.
pub(super) fn account(conn: &Connection, stored: &[Stored]) -> Result<(), StoreError> {
    super::spans::extend(conn, stored.iter().map(|s| (s.seq, s.uuid.as_str())))?;
    count(conn, stored)
}

/// A webhook's share of a batch: accepted captures, their newest time, all stored, their bytes.
#[derive(Default)]
struct Counted {
    accepted: i64,
    last_at: i64,
    stored: i64,
    bytes: i64,
}

/// Adds captures to their webhooks' counters: one statement per webhook, not per message.
/// `message_count` and `last_received_at` count accepted captures since the webhook was created;
/// `stored_count` and `stored_bytes` what is stored now (retention takes them down again). A
/// capture whose webhook was deleted while it was being received counts for the retired webhook.
fn count(conn: &Connection, stored: &[Stored]) -> Result<(), StoreError> {
    let mut per_hook: std::collections::HashMap<&str, Counted> = Default::default();
    for s in stored {
        let e = per_hook.entry(&s.uuid).or_default();
        if s.accepted {
            e.accepted += 1;
            e.last_at = e.last_at.max(s.received_at);
        }
        e.stored += 1;
        e.bytes += s.size as i64;
    }
    let mut st = conn.prepare_cached(
        "UPDATE webhooks SET message_count = message_count + ?2, \
         last_received_at = CASE WHEN ?2 > 0 THEN max(coalesce(last_received_at, 0), ?3) \
         ELSE last_received_at END, \
         stored_count = stored_count + ?4, stored_bytes = stored_bytes + ?5 WHERE uuid = ?1",
    )?;
    for (uuid, c) in per_hook {
        let changed = st.execute(params![uuid, c.accepted, c.last_at, c.stored, c.bytes])?;
        if changed == 0 {
            conn.prepare_cached(
                "INSERT INTO retired_webhooks (uuid, stored_count, stored_bytes) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (uuid) DO UPDATE SET \
                 stored_count = stored_count + excluded.stored_count, \
                 stored_bytes = stored_bytes + excluded.stored_bytes",
            )?
            .execute(params![uuid, c.stored, c.bytes])?;
        }
    }
    Ok(())
}

const SUMMARY_COLUMNS: &str = "seq, received_at, webhook_uuid, event_key, method, content_type, \
                               size, file_count, status, verification, reason";
/// How many columns `SUMMARY_COLUMNS` has.
pub(super) const SUMMARY_WIDTH: usize = 11;
/// The same columns from a `messages m` alias, for joins.
pub(super) const SUMMARY_COLUMNS_M: &str = "m.seq, m.received_at, m.webhook_uuid, m.event_key, \
     m.method, m.content_type, m.size, m.file_count, m.status, m.verification, m.reason";

/// A summary from the summary columns starting at column `base`.
pub(super) fn summary_from_row(r: &Row<'_>, base: usize) -> rusqlite::Result<MessageSummary> {
    let (seq, received_at): (i64, i64) = (r.get(base)?, r.get(base + 1)?);
    Ok(MessageSummary {
        id: message_id(received_at, seq).to_string(),
        uuid: r.get(base + 2)?,
        event_key: r.get(base + 3)?,
        received_at: rfc3339(received_at),
        method: r.get(base + 4)?,
        content_type: r.get(base + 5)?,
        size: r.get::<_, i64>(base + 6)? as u64,
        file_count: r.get(base + 7)?,
        status: r.get(base + 8)?,
        verification: r.get(base + 9)?,
        reason: r.get(base + 10)?,
    })
}

/// Newest first, filtered.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<Vec<MessageSummary>, StoreError> {
    let (page, before) = list_page(f)?;
    page.fetch(conn, before, f.limit, |r| summary_from_row(r, 0))
}

/// The query of `list` and the seq its results are older than.
pub(super) fn list_page(f: &ListFilter) -> Result<(Page, Option<i64>), StoreError> {
    let before = f
        .before
        .map(|b| {
            decode_message_id(b)
                .map(|(_, seq)| seq)
                .ok_or_else(|| StoreError::Invalid(format!("before={b} is not a message id")))
        })
        .transpose()?;
    // Rejections are few (rate-capped) and have their own partial index; SQLite uses it only
    // when the query states the index's condition word for word (`status = ?` alone could be
    // 'accepted'). Without it, listing them scanned every message (0.4 s for a million).
    let rejected = f.status.as_deref() == Some("rejected");
    let mut page = match &f.uuid {
        Some(uuid) if !rejected => super::spans::page(SUMMARY_COLUMNS_M, uuid, before),
        uuid => {
            let mut page = Page::of(SUMMARY_COLUMNS, "messages");
            page.eq("webhook_uuid", uuid.as_ref());
            page
        }
    };
    if rejected {
        page.raw("status != 'accepted'", Vec::new());
    }
    if let Some(q) = &f.search {
        page.raw(
            "(instr(event_key, ?) > 0 OR instr(body, CAST(? AS BLOB)) > 0)",
            vec![Box::new(q.clone()), Box::new(q.clone())],
        );
    }
    page.eq("status", f.status.as_ref());
    page.prefix("event_key", f.event_key_prefix.as_ref());
    Ok((page, before))
}

// The path nearly every capture has, RECEIVE_PATH, is stored as '' to save ~30 bytes a row; a
// real path is never empty.
/// Stored for the query nearly every capture has, `uuid=<its webhook's uuid>` (~40 bytes a row).
/// The `http` crate ends a query at '#', so no real query is "#"; rows written before this
/// encoding hold their full query and read back unchanged.
const OWN_UUID_QUERY: &str = "#";

fn pack_path(path: &str) -> &str {
    if path == RECEIVE_PATH { "" } else { path }
}

fn unpack_path(stored: String) -> String {
    if stored.is_empty() {
        RECEIVE_PATH.into()
    } else {
        stored
    }
}

fn pack_query<'a>(query: &'a str, uuid: &str) -> &'a str {
    if query.strip_prefix("uuid=") == Some(uuid) {
        OWN_UUID_QUERY
    } else {
        query
    }
}

fn unpack_query(stored: String, uuid: &str) -> String {
    if stored == OWN_UUID_QUERY {
        format!("uuid={uuid}")
    } else {
        stored
    }
}

/// One message by id.
pub fn get(conn: &Connection, id: Uuid) -> Result<Option<MessageRecord>, StoreError> {
    let Some((received_at, seq)) = decode_message_id(id) else {
        return Ok(None);
    };
    // The id's time must match too: a guessed seq with another time finds nothing.
    Ok(get_by_seq(conn, seq)?.filter(|r| r.received_at == received_at))
}

/// One message by its row seq.
pub fn get_by_seq(conn: &Connection, seq: i64) -> Result<Option<MessageRecord>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS}, path, query, headers, remote_addr, sha256, parts, body_file, body, \
         body_segment, body_offset FROM messages WHERE seq = ?1"
    ))?;
    let rec = st
        .query_row(params![seq], |r| {
            let w = SUMMARY_WIDTH;
            let headers: String = r.get(w + 2)?;
            let sha: Vec<u8> = r.get(w + 4)?;
            let parts: Option<String> = r.get(w + 5)?;
            let body_file: Option<String> = r.get(w + 6)?;
            let segment: Option<(u32, u64)> = r
                .get::<_, Option<u32>>(w + 8)?
                .zip(r.get::<_, Option<i64>>(w + 9)?.map(|o| o.max(0) as u64));
            let body = match (body_file, segment) {
                (Some(f), _) => StoredBody::File(f),
                (None, Some((id, offset))) => StoredBody::Segment { id, offset },
                (None, None) => {
                    StoredBody::Inline(r.get::<_, Option<Vec<u8>>>(w + 7)?.unwrap_or_default())
                }
            };
            let summary = summary_from_row(r, 0)?;
            Ok(MessageRecord {
                seq: r.get(0)?,
                path: unpack_path(r.get(w)?),
                query: unpack_query(r.get(w + 1)?, &summary.uuid),
                summary,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                remote_addr: r.get(w + 3)?,
                sha256: sha.try_into().ok(),
                parts: parts
                    .and_then(|p| serde_json::from_str(&p).ok())
                    .unwrap_or_default(),
                body,
                received_at: r.get(1)?,
            })
        })
        .optional()?;
    Ok(rec)
}

/// Computes the missing hashes of a file-stored body's file parts, reading only those parts.
/// Returns the parts to store again when any was computed, so the next reader finds them (the
/// parts of a body of at most 64 KiB, in its row or a segment, are hashed from the body when
/// read instead, which costs less than storing them).
pub fn hash_file_parts(
    dirs: &super::Dirs,
    rec: &mut MessageRecord,
) -> Result<Option<String>, StoreError> {
    let StoredBody::File(id) = &rec.body else {
        return Ok(None);
    };
    if !rec.parts.iter().any(|p| p.is_file() && p.sha256.is_none()) {
        return Ok(None);
    }
    let mut file = std::fs::File::open(dirs.committed_path(id)?)?;
    let mut buf = vec![0; 256 * 1024];
    for part in rec.parts.iter_mut() {
        if !part.is_file() || part.sha256.is_some() {
            continue;
        }
        file.seek(SeekFrom::Start(part.offset))?;
        let mut hasher = Sha256::new();
        let mut left = part.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(StoreError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("body file {id} ends inside part '{}'", part.name),
                )));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        part.sha256 = Some(hex::encode(hasher.finalize()));
    }
    serde_json::to_string(&rec.parts)
        .map(Some)
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Stores a message's parts again (their hashes filled in); a deleted message is no error.
pub(super) fn set_parts(conn: &Connection, seq: i64, parts: &str) -> Result<Applied, StoreError> {
    conn.prepare_cached("UPDATE messages SET parts = ?2 WHERE seq = ?1")?
        .execute(params![seq, parts])?;
    Ok(Applied::new(Outcome::Done))
}

/// Up to `len` bytes of the file at `path` from `offset`.
fn read_file(path: &std::path::Path, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut out)?;
    Ok(out)
}

/// `len` bytes of a stored body from `offset`.
pub fn read_range(
    dirs: &super::Dirs,
    body: &StoredBody,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StoreError> {
    match body {
        StoredBody::Inline(b) => {
            let start = (offset as usize).min(b.len());
            let end = (start + len as usize).min(b.len());
            Ok(b[start..end].to_vec())
        }
        StoredBody::File(id) => read_file(&dirs.committed_path(id)?, offset, len),
        StoredBody::Segment { id, offset: at } => read_file(
            &super::segments::path(&dirs.segments, *id),
            at + offset,
            len,
        ),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use bytes::Bytes;

    /// A database at schema `version` in memory, with segments in a temporary dir (kept alive
    /// by the returned guard).
    pub(in crate::store) fn scratch(version: usize) -> (Connection, Segments, tempfile::TempDir) {
        let mut conn = Connection::open_in_memory().expect("open");
        super::super::schema::migrate_to(&mut conn, version).expect("migrate");
        let dir = tempfile::tempdir().expect("tempdir");
        let segs = Segments::open(dir.path()).expect("segments");
        (conn, segs, dir)
    }

    /// Stores an empty POST to webhook `uuid` as a hookd before schema 10 did: no `event_seq`,
    /// an event row of its own. Returns its seq.
    pub(in crate::store) fn insert_before_10(conn: &Connection, uuid: &str, at: i64) -> i64 {
        conn.execute(
            "INSERT INTO messages (webhook_uuid, event_key, received_at, status, verification, \
             method, path, query, headers, remote_addr, size, sha256, file_count) \
             VALUES (?1, 'a.b', ?2, 'accepted', 'none', 'POST', '', '', '[]', '127.0.0.1', 0, \
             x'', 0)",
            params![uuid, at],
        )
        .expect("old message");
        let seq = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO events (at, type, message_seq) VALUES (?1, 'message.received', ?2)",
            params![at, seq],
        )
        .expect("old event");
        seq
    }

    /// Stores `c` as a batch of its own would.
    pub(in crate::store) fn insert_one(
        conn: &Connection,
        c: Capture,
        segs: &mut Segments,
    ) -> Applied {
        let mut seqs = MessageSeqs::default();
        let applied = insert(conn, c, None, 0, segs, &mut seqs).expect("insert");
        seqs.flush(conn).expect("flush");
        applied
    }

    /// An empty POST to webhook `uuid`, as the receiver hands it over.
    pub(in crate::store) fn capture_for(uuid: &str) -> Capture {
        Capture {
            webhook_uuid: uuid.into(),
            ..capture(RECEIVE_PATH, "")
        }
    }

    fn capture(path: &str, query: &str) -> Capture {
        Capture {
            webhook_uuid: "0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10".into(),
            event_key: "a.b".into(),
            received_at: 1_700_000_000_000,
            method: "POST".into(),
            path: path.into(),
            query: query.into(),
            headers_json: "[]".into(),
            remote_addr: "127.0.0.1:1".into(),
            content_type: None,
            size: 0,
            sha256: None,
            parts: Vec::new(),
            body: CapturedBody::Inline(Bytes::new()),
            verification: "none",
            rejected: None,
            dedupe: None,
        }
    }

    #[test]
    fn rejections_are_listed_through_their_own_index() {
        let (conn, mut segs, _dir) = scratch(usize::MAX);
        let mut stored = Vec::new();
        for (i, uuid) in ["a", "b", "a", "a", "b", "a"].into_iter().enumerate() {
            let mut c = tests::capture_for(uuid);
            c.rejected = (i % 2 == 1 || i == 5).then(|| "bad signature".to_string());
            let a = insert_one(&conn, c, &mut segs);
            stored.extend(a.stored);
        }
        account(&conn, &stored).expect("account");
        let seqs = |uuid: Option<&str>, status: &str| {
            let f = ListFilter {
                uuid: uuid.map(String::from),
                status: Some(status.into()),
                limit: 10,
                ..Default::default()
            };
            let (page, before) = list_page(&f).expect("page");
            let plan = page.plan(&conn, before, f.limit);
            let got: Vec<i64> = list(&conn, &f)
                .expect("list")
                .iter()
                .map(|m| decode_message_id(m.id.parse().expect("id")).expect("id").1)
                .collect();
            (got, plan)
        };
        // Seqs 1..=6: a, b (rejected), a, a (rejected), b, a (rejected).
        let (got, plan) = seqs(None, "rejected");
        assert_eq!(got, [6, 4, 2]);
        assert!(plan.contains("USING INDEX messages_by_status"), "{plan}");
        let (got, plan) = seqs(Some("a"), "rejected");
        assert_eq!(got, [6, 4]);
        assert!(plan.contains("USING INDEX messages_by_status"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        let (got, _) = seqs(Some("a"), "accepted");
        assert_eq!(got, [3, 1]);
        let (got, _) = seqs(Some("b"), "accepted");
        assert_eq!(got, [5]);
    }

    #[test]
    fn the_receive_url_is_stored_compactly_and_read_back_exactly() {
        let (conn, mut segs, _dir) = scratch(usize::MAX);
        let own = "uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10";
        let cases = [
            (RECEIVE_PATH, own, ("", "#")),
            (RECEIVE_PATH, "", ("", "")),
            (
                "/api/v3/webhook.receive",
                own,
                ("/api/v3/webhook.receive", "#"),
            ),
            (
                RECEIVE_PATH,
                "uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d1",
                ("", "uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d1"),
            ),
            (RECEIVE_PATH, "token=x&uuid=y", ("", "token=x&uuid=y")),
            (
                RECEIVE_PATH,
                &format!("{own}&a=1"),
                ("", &format!("{own}&a=1")),
            ),
        ];
        // An id is found only with its own time, not by its seq alone.
        insert_one(&conn, capture("/", ""), &mut segs);
        let seq = conn.last_insert_rowid();
        let at = 1_700_000_000_000;
        assert!(get(&conn, message_id(at, seq)).expect("get").is_some());
        assert!(get(&conn, message_id(at + 1, seq)).expect("get").is_none());
        for (path, query, stored) in cases {
            insert_one(&conn, capture(path, query), &mut segs);
            let seq = conn.last_insert_rowid();
            let raw: (String, String) = conn
                .query_row(
                    "SELECT path, query FROM messages WHERE seq = ?1",
                    [seq],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("raw");
            assert_eq!((raw.0.as_str(), raw.1.as_str()), stored, "{path}?{query}");
            let rec = get_by_seq(&conn, seq).expect("get").expect("stored");
            assert_eq!((rec.path.as_str(), rec.query.as_str()), (path, query));
        }
        // Rows stored before the encoding hold the full texts and must read back unchanged.
        insert_one(&conn, capture(RECEIVE_PATH, own), &mut segs);
        let seq = conn.last_insert_rowid();
        conn.execute(
            "UPDATE messages SET path = ?1, query = ?2 WHERE seq = ?3",
            params![RECEIVE_PATH, own, seq],
        )
        .expect("old-style row");
        let rec = get_by_seq(&conn, seq).expect("get").expect("stored");
        assert_eq!((rec.path.as_str(), rec.query.as_str()), (RECEIVE_PATH, own));
    }
}
