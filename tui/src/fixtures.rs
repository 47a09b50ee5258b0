//! Fixed data for tests, snapshots and the render benchmark: stable ids and times, so screens
//! render identically on every run.

use hookd_shared::{
    Attempt, BodyEncoding, Delivery, DeliverySummary, ExecutionSummary, FileInfo, Message,
    MessageSummary, PayloadType, PipelineInfo, Role, StepLog, Webhook,
};

/// Two webhooks.
pub fn webhooks() -> Vec<Webhook> {
    let w = |uuid: &str, key: &str, n: u64, desc: &str| Webhook {
        uuid: uuid.into(),
        event_key: key.into(),
        webhook_url: format!("http://127.0.0.1:8080/api/v3/command/webhook.receive?uuid={uuid}"),
        payload_type: PayloadType::Raw,
        max_payload_length: 26_214_400,
        description: desc.into(),
        enabled: true,
        created_at: "2026-11-29T09:00:00.000Z".into(),
        updated_at: "2026-11-29T09:00:00.000Z".into(),
        message_count: n,
        last_received_at: (n > 0).then(|| "2026-11-29T11:59:58.120Z".into()),
        verify: None,
        dedupe: None,
        dedupe_window: 86_400,
        rate_limit: None,
        allow_cidrs: Vec::new(),
        retention: Default::default(),
        retention_override: None,
        stored_count: n,
        stored_bytes: n * 1024,
    };
    vec![
        w("w-1", "webhook.github.push", 1204, "pushes to acme/widgets"),
        w("w-2", "webhook.stripe.charge", 0, "charges"),
    ]
}

/// A message summary.
pub fn message(id: &str, key: &str) -> MessageSummary {
    MessageSummary {
        id: id.into(),
        uuid: "w-1".into(),
        event_key: key.into(),
        received_at: "2026-11-29T11:59:58.120Z".into(),
        method: "POST".into(),
        content_type: Some("application/json".into()),
        size: 1024,
        file_count: 0,
        status: "accepted".into(),
        verification: "none".into(),
        reason: None,
    }
}

/// `n` message summaries, newest first (`m-0` is the newest).
pub fn messages(n: usize) -> Vec<MessageSummary> {
    (0..n)
        .map(|i| {
            let mut m = message(
                &format!("m-{i}"),
                if i % 3 == 2 {
                    "webhook.stripe.charge"
                } else {
                    "webhook.github.push"
                },
            );
            m.received_at = format!(
                "2026-11-29T11:59:{:02}.{:03}Z",
                58 - (i % 50),
                (i * 37) % 1000
            );
            m.size = 1024 + (i as u64 * 313) % 9000;
            if i % 4 == 3 {
                m.method = "PUT".into();
                m.content_type = Some("multipart/form-data; boundary=X".into());
                m.file_count = 2;
            }
            if i % 7 == 6 {
                m.status = "rejected".into();
                m.verification = "failed".into();
                m.reason = Some("signature mismatch".into());
            }
            m
        })
        .collect()
}

/// The full capture of a message, with a JSON body and two files.
pub fn detail(id: &str) -> Message {
    let mut summary = message(id, "webhook.github.push");
    summary.file_count = 2;
    Message {
        summary,
        path: "/api/v3/command/webhook.receive".into(),
        query_string: "uuid=w-1&tag=a".into(),
        query: vec![("uuid".into(), "w-1".into()), ("tag".into(), "a".into())],
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-github-event".into(), "push".into()),
            ("user-agent".into(), "GitHub-Hookshot/abc123".into()),
        ],
        remote_addr: "192.0.2.10:51234".into(),
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        body: r#"{"ref":"refs/heads/main","commits":3,"pusher":{"name":"ada","email":null},"forced":false}"#.into(),
        encoding: BodyEncoding::Utf8,
        body_truncated: false,
        form: vec![],
        files: vec![
            FileInfo { index: 0, name: "file".into(), filename: Some("report.pdf".into()), content_type: Some("application/pdf".into()), size: 20480, sha256: "ab".repeat(32) },
            FileInfo { index: 1, name: "file".into(), filename: Some("../../etc/passwd".into()), content_type: None, size: 12, sha256: "cd".repeat(32) },
        ],
    }
}

/// A binary message (rendered as a hex dump).
pub fn binary_detail(id: &str) -> Message {
    let mut m = detail(id);
    m.summary.content_type = Some("application/octet-stream".into());
    m.body = "AAECA/8QIDBAUGBwgJCgsMDQ4PBIZWxsbwo=".into();
    m.encoding = BodyEncoding::Base64;
    m.files.clear();
    m
}

/// Three executions: succeeded, failed, running.
pub fn executions() -> Vec<ExecutionSummary> {
    let e = |id: &str, status: &str, error: Option<&str>, ms: Option<u64>| ExecutionSummary {
        id: id.into(),
        pipeline: "global/app/crm/pipeline/on-lead".into(),
        status: status.into(),
        trigger: "event".into(),
        event_key: Some("webhook.github.push".into()),
        message_id: Some("m-0".into()),
        replay_of: None,
        run_as: Some("anonymous".into()),
        created_at: "2026-11-29T11:59:58.200Z".into(),
        started_at: Some("2026-11-29T11:59:58.201Z".into()),
        finished_at: ms.map(|_| "2026-11-29T11:59:58.243Z".into()),
        duration_ms: ms,
        error: error.map(str::to_string),
        error_private: false,
    };
    vec![
        e("x-0", "succeeded", None, Some(42)),
        e(
            "x-1",
            "failed",
            Some(
                "step 2 (exec, line 6): permission denied: exec needs role admin; add iam.run.as before it",
            ),
            Some(3),
        ),
        e("x-2", "running", None, None),
    ]
}

/// An execution in full.
pub fn execution_detail() -> hookd_shared::Execution {
    let steps = vec![
        StepLog {
            index: 0,
            command: "event.listen".into(),
            line: 2,
            id: None,
            status: "ok".into(),
            duration_ms: 0,
            log: vec![],
            error: None,
        },
        StepLog {
            index: 1,
            command: "log".into(),
            line: 4,
            id: None,
            status: "ok".into(),
            duration_ms: 1,
            log: vec!["New lead: Ada".into()],
            error: None,
        },
        StepLog {
            index: 2,
            command: "exec".into(),
            line: 6,
            id: None,
            status: "failed".into(),
            duration_ms: 0,
            log: vec![],
            error: Some(
                "permission denied: exec needs role admin; add iam.run.as before it".into(),
            ),
        },
    ];
    hookd_shared::Execution {
        summary: executions().remove(1),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        depth: 0,
        steps,
        body: Some(serde_json::json!({"lead": {"name": "Ada"}})),
        body_truncated: false,
        error_step: Some(2),
        hidden: None,
    }
}

/// Two deliveries: one retrying, one delivered.
pub fn deliveries() -> Vec<DeliverySummary> {
    let d = |id: &str, status: &str, attempts: u32, code: Option<u16>, next: Option<&str>| {
        DeliverySummary {
            id: id.into(),
            url: "https://hooks.example.com/orders".into(),
            method: "POST".into(),
            status: status.into(),
            attempts,
            max_attempts: 8,
            next_attempt_at: next.map(str::to_string),
            last_status: code,
            last_error: None,
            created_at: "2026-11-29T11:58:00.000Z".into(),
            webhook_id: format!("msg_{id}"),
            source: "pipeline".into(),
            message_id: None,
        }
    };
    vec![
        d(
            "d-0",
            "pending",
            2,
            Some(503),
            Some("2026-11-29T12:05:00.000Z"),
        ),
        d("d-1", "succeeded", 1, Some(200), None),
    ]
}

/// A delivery with its attempts.
pub fn delivery_detail() -> Delivery {
    let a = |n: u32, status: u16, body: &str| Attempt {
        n,
        at: format!("2026-11-29T11:58:0{n}.000Z"),
        duration_ms: 120 + u64::from(n),
        status: Some(status),
        response_headers: vec![("retry-after".into(), "300".into())],
        response_body: body.into(),
        response_encoding: BodyEncoding::Utf8,
        error: None,
    };
    Delivery {
        summary: deliveries().remove(0),
        headers: vec![("content-type".into(), "application/json".into())],
        attempts_log: vec![a(1, 500, "internal error"), a(2, 503, "try later")],
    }
}

/// One listener pipeline.
pub fn pipelines() -> Vec<PipelineInfo> {
    vec![PipelineInfo {
        name: "global/app/crm/pipeline/on-lead".into(),
        event_key: Some("webhook.salesforce.#".into()),
        source: "# on a new lead\npipeline:\n  - event.listen:\n      eventKey: webhook.salesforce.#\n  - log:\n      message: \"New lead: ${body.payload.json.lead.name}\"\n".into(),
        stored_by: "bootstrap admin".into(),
        stored_by_role: Role::Admin,
        created_at: "2026-11-29T09:00:00.000Z".into(),
        updated_at: "2026-11-29T09:00:00.000Z".into(),
        last_run_at: Some("2026-11-29T11:59:58.243Z".into()),
    }]
}
