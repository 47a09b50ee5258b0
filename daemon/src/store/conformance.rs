//! The storage port's conformance suite: what every adapter must do, written once against
//! [`Storage`] and run against each adapter (SQLite below; PostgreSQL will call the same
//! functions with its own [`Backend`]). Each check opens stores through the backend, so "what
//! survives a reopen" is part of the contract too.

use std::sync::Arc;

use bytes::Bytes;
use hookd_shared::{EventType, Role};
use uuid::Uuid;

use super::deliveries::Next;
use super::{
    AttemptRecord, Capture, Captured, CapturedBody, Finish, NewDelivery, NewExecution, PipelineRow,
    Store, TokenRow, WebhookPut, messages, pipelines,
};
use crate::events::{Bus, BusEvent};

/// Opens stores of one adapter: the same place each time, so a reopen sees what was committed.
pub trait Backend {
    /// Opens the store (creating it the first time), publishing on `bus`.
    fn open(&self, bus: Bus) -> Store;
}

/// A webhook to capture for.
async fn webhook(store: &Store, event_key: &str) -> String {
    let (w, created) = store
        .put_webhook(WebhookPut {
            event_key: Some(event_key.into()),
            default_max_payload_length: 1 << 20,
            ..Default::default()
        })
        .await
        .expect("put webhook");
    assert!(created);
    w.uuid
}

/// A capture of `body` (inline) for `uuid`.
pub(crate) fn capture(uuid: &str, body: &[u8], at: i64) -> Capture {
    Capture {
        webhook_uuid: uuid.into(),
        event_key: "conformance.test".into(),
        received_at: at,
        method: "POST".into(),
        path: hookd_shared::RECEIVE_PATH.into(),
        query: format!("uuid={uuid}&x=1"),
        headers_json: r#"[["content-type","application/octet-stream"],["x-a","1"]]"#.into(),
        remote_addr: "127.0.0.1:9".into(),
        content_type: Some("application/octet-stream".into()),
        size: body.len() as u64,
        sha256: None,
        parts: Vec::new(),
        body: CapturedBody::Inline(Bytes::copy_from_slice(body)),
        verification: "none",
        rejected: None,
        dedupe: None,
    }
}

fn stored_id(c: Captured) -> String {
    match c {
        Captured::Stored(s) => s.id.clone(),
        Captured::Duplicate(id) => panic!("unexpected duplicate of {id}"),
    }
}

/// Message summaries come newest first, and paging with `before` visits each exactly once.
pub async fn messages_list_newest_first_and_page_without_gaps(b: &impl Backend) {
    let store = b.open(Bus::default());
    let uuid = webhook(&store, "conformance.test").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let c = store
            .capture(capture(
                &uuid,
                format!("body {i}").as_bytes(),
                1_700_000_000_000 + i,
            ))
            .await
            .expect("capture");
        ids.push(stored_id(c));
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .messages(messages::ListFilter {
                uuid: Some(uuid.clone()),
                before,
                limit: 3,
                ..Default::default()
            })
            .await
            .expect("list");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        before = Some(page.last().expect("row").id.parse().expect("uuid"));
        seen.extend(page.into_iter().map(|m| m.id));
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    store.shutdown().await;
}

/// Bodies read back byte for byte, inline or spooled, binary or not, with the request's head.
pub async fn bodies_read_back_exactly(b: &impl Backend) {
    let store = b.open(Bus::default());
    let uuid = webhook(&store, "conformance.test").await;
    // Not UTF-8, and with every byte value.
    let small: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let id = stored_id(
        store
            .capture(capture(&uuid, &small, 1_700_000_000_000))
            .await
            .expect("capture"),
    );
    // A large body goes through the spool: receive writes it, the store takes it over.
    let large: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let spooled = Uuid::now_v7().simple().to_string();
    std::fs::write(store.incoming_dir().join(&spooled), &large).expect("spool");
    let mut c = capture(&uuid, b"", 1_700_000_000_001);
    c.size = large.len() as u64;
    c.body = CapturedBody::File(spooled);
    let large_id = stored_id(store.capture(c).await.expect("capture"));

    for (id, want) in [(id, &small), (large_id, &large)] {
        let uuid_id: Uuid = id.parse().expect("uuid");
        let rec = store.message(uuid_id).await.expect("get").expect("stored");
        assert_eq!(rec.summary.size, want.len() as u64);
        assert_eq!(rec.query, format!("uuid={uuid}&x=1"));
        assert_eq!(
            rec.headers,
            vec![
                (
                    "content-type".to_string(),
                    "application/octet-stream".to_string()
                ),
                ("x-a".to_string(), "1".to_string())
            ]
        );
        let (_, body) = store
            .message_with_body(rec.seq)
            .await
            .expect("read")
            .expect("stored");
        assert!(body == *want, "body of {id} differs");
        let (_, preview) = store
            .message_preview(uuid_id, 100)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(preview, want[..100]);
        let part = match store.body_source(&rec, 10, 50).expect("source") {
            super::BodySource::Bytes(b) => b.to_vec(),
            super::BodySource::File { path, offset, len } => {
                let all = std::fs::read(path).expect("read body file");
                all[offset as usize..(offset + len) as usize].to_vec()
            }
        };
        assert_eq!(part, want[10..60]);
    }
    assert!(
        store.message(Uuid::now_v7()).await.expect("get").is_none(),
        "an unknown id is None, not an error"
    );
    store.shutdown().await;
}

/// Concurrent captures with one idempotency key: exactly one is stored, every other one is
/// told the stored message's id.
pub async fn concurrent_repeats_of_one_key_store_one_message(b: &impl Backend) {
    let store = b.open(Bus::default());
    let uuid = webhook(&store, "conformance.test").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let mut c = capture(&uuid, b"same", 1_700_000_000_000 + i);
            c.dedupe = Some(("delivery-1".into(), i64::MAX / 4));
            tokio::spawn(async move { store.capture(c).await.expect("capture") })
        })
        .collect();
    let mut stored = Vec::new();
    let mut duplicates = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Captured::Stored(s) => stored.push(s.id.clone()),
            Captured::Duplicate(id) => duplicates.push(id),
        }
    }
    assert_eq!(stored.len(), 1, "one capture stored");
    assert_eq!(duplicates.len(), 15);
    assert!(duplicates.iter().all(|d| *d == stored[0]), "{duplicates:?}");
    let listed = store
        .messages(messages::ListFilter {
            uuid: Some(uuid),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    store.shutdown().await;
}

/// The event log replays after any cursor with no gap and no duplicate, in the order the bus
/// published, and across a reopen.
pub async fn events_replay_after_a_cursor_without_gap_or_duplicate(b: &impl Backend) {
    let bus = Bus::default();
    let mut live = bus.subscribe();
    let store = b.open(bus);
    let uuid = webhook(&store, "conformance.test").await;
    for i in 0..9 {
        store
            .capture(capture(&uuid, b"e", 1_700_000_000_000 + i))
            .await
            .expect("capture");
    }
    let mut published: Vec<Arc<BusEvent>> = Vec::new();
    while let Ok(e) = live.try_recv() {
        published.push(e);
    }
    assert_eq!(published.len(), 10, "webhook.created and nine messages");
    assert_eq!(published[0].kind, EventType::WebhookCreated);
    let seqs: Vec<u64> = published.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    store.shutdown().await;
    drop(store);

    let store = b.open(Bus::default());
    let all = store.events_after(0, 1000).await.expect("log");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    // From every cursor, pages of 4 stitch back into exactly the rest.
    for start in std::iter::once(0).chain(seqs.iter().copied()) {
        let mut got = Vec::new();
        let mut cursor = start;
        loop {
            let page = store.events_after(cursor, 4).await.expect("page");
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            got.extend(page.iter().map(|e| e.seq));
        }
        let want: Vec<u64> = seqs.iter().copied().filter(|s| *s > start).collect();
        assert_eq!(got, want, "after {start}");
    }
    let (lo, hi) = store.event_bounds().await.expect("bounds").expect("events");
    assert!(lo <= seqs[0] && hi == *seqs.last().expect("seq"));
    store.shutdown().await;
}

/// Webhooks, tokens, pipelines and messages committed before a stop are there after it, in the
/// in-memory lookups as well as in reads.
pub async fn what_was_committed_survives_a_reopen(b: &impl Backend) {
    let store = b.open(Bus::default());
    let uuid = webhook(&store, "conformance.keep").await;
    let id = stored_id(
        store
            .capture(capture(&uuid, b"kept", 1_700_000_000_000))
            .await
            .expect("capture"),
    );
    store
        .create_token(TokenRow {
            id: "t1".into(),
            name: "ops".into(),
            role: Role::Admin,
            hash: [7; 32],
            created_at: 1,
        })
        .await
        .expect("token");
    store
        .put_pipeline(PipelineRow {
            name: "global/p".into(),
            source: "pipeline: []".into(),
            listen: Some("conformance.#".into()),
            stored_by: "ops".into(),
            stored_by_role: Role::Admin,
            created_at: 1,
            updated_at: 1,
            last_run_at: None,
        })
        .await
        .expect("pipeline");
    store.shutdown().await;
    drop(store);

    let store = b.open(Bus::default());
    let w = store.webhook(&uuid).expect("webhook cached after reopen");
    assert_eq!(w.event_key, "conformance.keep");
    assert_eq!(
        store
            .webhook_stored(uuid.clone())
            .await
            .expect("read")
            .expect("stored")
            .message_count,
        1
    );
    assert_eq!(store.token(&[7; 32]).map(|t| t.name), Some("ops".into()));
    assert_eq!(store.admin_count().await.expect("count"), 1);
    let p = store.pipeline("global/p".into()).await.expect("read");
    assert_eq!(p.and_then(|p| p.listen), Some("conformance.#".into()));
    let (_, body) = store
        .message_preview(id.parse().expect("uuid"), 100)
        .await
        .expect("read")
        .expect("message");
    assert_eq!(body, b"kept");
    store.shutdown().await;
}

/// A delivery is due once created, leaves the due list when an attempt succeeds, and keeps
/// its attempts.
pub async fn deliveries_are_due_until_an_attempt_settles_them(b: &impl Backend) {
    let store = b.open(Bus::default());
    let now = crate::clock::now_ms();
    let d = store
        .create_delivery(NewDelivery {
            msg_id: "msg_1".into(),
            url: "https://example.com/hook".into(),
            method: "POST".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(b"{}".to_vec()),
            message_seq: None,
            message_id: None,
            secret: None,
            timeout_ms: 1000,
            schedule: vec![0, 1000],
            max_attempts: 2,
            source: "conformance".into(),
            local: false,
        })
        .await
        .expect("create");
    assert_eq!(d.status, "pending");
    let due = store.due_deliveries(now + 1, 10).await.expect("due");
    assert_eq!(due.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![d.seq]);
    assert!(store.next_delivery_due().await.expect("next").is_some());
    assert_eq!(store.pending_deliveries().await.expect("pending"), 1);
    let after = store
        .record_attempt(AttemptRecord {
            seq: d.seq,
            at: now + 2,
            duration_ms: 3,
            status: Some(200),
            response_headers: Vec::new(),
            response_body: b"ok".to_vec(),
            error: None,
            next: Next::Succeeded,
        })
        .await
        .expect("attempt");
    assert_eq!((after.status.as_str(), after.attempts), ("succeeded", 1));
    assert!(
        store
            .due_deliveries(now + 10_000, 10)
            .await
            .expect("due")
            .is_empty()
    );
    let detail = store
        .delivery(d.seq)
        .await
        .expect("read")
        .expect("delivery");
    assert_eq!(detail.attempts_log.len(), 1);
    assert_eq!(store.pending_deliveries().await.expect("pending"), 0);
    store.shutdown().await;
}

/// Queued executions are listed until started, and a finished one reads back as recorded.
pub async fn executions_move_from_queued_to_finished(b: &impl Backend) {
    let store = b.open(Bus::default());
    let queued = store
        .queue_executions(
            vec![NewExecution {
                pipeline: "global/p".into(),
                trigger: "manual",
                event_key: None,
                message_seq: None,
                message_id: None,
                replay_of: None,
                input: Some("{}".into()),
                trace_id: "t".into(),
                depth: 0,
            }],
            None,
        )
        .await
        .expect("queue");
    let (seq, id) = queued[0].clone();
    assert_eq!(store.queued_executions().await.expect("queued"), vec![seq]);
    let started = store.start_execution(seq).await.expect("start");
    assert_eq!(started.status, "running");
    assert!(store.queued_executions().await.expect("queued").is_empty());
    store
        .finish_execution(Finish {
            seq,
            status: "succeeded",
            run_as: None,
            steps: "[]".into(),
            body: Some("{\"ok\":true}".into()),
            body_truncated: false,
            error: None,
            error_step: None,
            body_from: None,
            error_private: false,
        })
        .await
        .expect("finish");
    let row = store
        .execution(id.parse().expect("uuid"))
        .await
        .expect("read")
        .expect("execution");
    assert_eq!(row.status, "succeeded");
    assert_eq!(row.body.as_deref(), Some("{\"ok\":true}"));
    let listed = store
        .executions(pipelines::ExecutionFilter {
            pipeline: Some("global/p".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    store.shutdown().await;
}

/// A stored pipeline row with `listen` as its `event.listen` pattern.
fn pipeline_row(name: &str, listen: Option<&str>) -> PipelineRow {
    PipelineRow {
        name: name.into(),
        source: "pipeline: []".into(),
        listen: listen.map(String::from),
        stored_by: "admin".into(),
        stored_by_role: Role::Admin,
        created_at: 0,
        updated_at: 0,
        last_run_at: None,
    }
}

/// The listener index follows pipelines as they are stored, edited and deleted, survives a
/// reopen, and a capture queues, in its own transaction, a run of each listener matching its
/// event key at that moment (none for a rejected one).
pub async fn listeners_follow_stored_pipelines_and_captures_queue_their_runs(b: &impl Backend) {
    let store = b.open(Bus::default());
    let uuid = webhook(&store, "conformance.test").await;
    for (name, listen) in [
        ("global/b", Some("conformance.#")),
        ("global/a", Some("conformance.test")),
        ("global/other", Some("other.#")),
        ("global/plain", None),
    ] {
        store
            .put_pipeline(pipeline_row(name, listen))
            .await
            .expect("put pipeline");
    }
    assert_eq!(
        store.listeners_of("conformance.test"),
        vec!["global/a", "global/b"],
        "matching listeners, by name"
    );
    assert!(store.listeners_of("nothing.here").is_empty());
    assert!(store.listeners_for("nothing.here").is_none());

    let first = stored_id(
        store
            .capture(capture(&uuid, b"one", 1))
            .await
            .expect("capture"),
    );
    let queued = store.queued_executions().await.expect("queued");
    assert_eq!(queued.len(), 2, "one run per listener");
    for seq in &queued {
        let row = store.start_execution(*seq).await.expect("start");
        assert_eq!(row.message_id.as_deref(), Some(first.as_str()));
        assert_eq!(row.trigger, "event");
    }

    // An edit that stops listening, and a delete, take effect at their commit.
    store
        .put_pipeline(pipeline_row("global/b", None))
        .await
        .expect("edit");
    store
        .delete_pipeline("global/other".into())
        .await
        .expect("delete");
    assert_eq!(store.listeners_of("conformance.test"), vec!["global/a"]);
    assert!(store.listeners_of("other.x").is_empty());
    let mut rejected = capture(&uuid, b"bad", 2);
    rejected.rejected = Some("bad signature".into());
    store.capture(rejected).await.expect("rejected capture");
    assert!(
        store.queued_executions().await.expect("queued").is_empty(),
        "a rejected request runs nothing"
    );
    store.shutdown().await;
    drop(store);

    let store = b.open(Bus::default());
    assert_eq!(store.listeners_of("conformance.test"), vec!["global/a"]);
    stored_id(
        store
            .capture(capture(&uuid, b"two", 3))
            .await
            .expect("capture"),
    );
    assert_eq!(store.queued_executions().await.expect("queued").len(), 1);
    store.shutdown().await;
}

/// Runs every check against the SQLite adapter.
mod sqlite {
    use super::*;
    use crate::config::{StorageUrl, Synchronous};
    use crate::retention::RetentionConfig;
    use crate::store::StoreConfig;

    struct Sqlite(tempfile::TempDir);

    impl Backend for Sqlite {
        fn open(&self, bus: Bus) -> Store {
            crate::store::open(StoreConfig {
                url: StorageUrl::Sqlite(self.0.path().to_path_buf()),
                synchronous: Synchronous::Normal,
                public_url: "http://h".into(),
                bus,
                retention: RetentionConfig::default(),
            })
            .expect("open")
        }
    }

    fn backend() -> Sqlite {
        Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    #[tokio::test]
    async fn messages_list_newest_first_and_page_without_gaps() {
        super::messages_list_newest_first_and_page_without_gaps(&backend()).await;
    }

    #[tokio::test]
    async fn bodies_read_back_exactly() {
        super::bodies_read_back_exactly(&backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_repeats_of_one_key_store_one_message() {
        super::concurrent_repeats_of_one_key_store_one_message(&backend()).await;
    }

    #[tokio::test]
    async fn events_replay_after_a_cursor_without_gap_or_duplicate() {
        super::events_replay_after_a_cursor_without_gap_or_duplicate(&backend()).await;
    }

    #[tokio::test]
    async fn what_was_committed_survives_a_reopen() {
        super::what_was_committed_survives_a_reopen(&backend()).await;
    }

    #[tokio::test]
    async fn deliveries_are_due_until_an_attempt_settles_them() {
        super::deliveries_are_due_until_an_attempt_settles_them(&backend()).await;
    }

    #[tokio::test]
    async fn executions_move_from_queued_to_finished() {
        super::executions_move_from_queued_to_finished(&backend()).await;
    }

    #[tokio::test]
    async fn listeners_follow_stored_pipelines_and_captures_queue_their_runs() {
        super::listeners_follow_stored_pipelines_and_captures_queue_their_runs(&backend()).await;
    }
}
