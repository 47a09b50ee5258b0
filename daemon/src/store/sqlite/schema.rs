//! The database schema as numbered migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use super::StoreError;

/// Each entry moves the schema from version `i` to `i + 1`. Append only; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    // 1: webhooks, captured messages, the event log, API tokens, meta.
    r#"
    CREATE TABLE webhooks (
        uuid TEXT PRIMARY KEY,
        event_key TEXT NOT NULL,
        payload_type TEXT NOT NULL,
        max_payload_length INTEGER NOT NULL,
        description TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        message_count INTEGER NOT NULL DEFAULT 0,
        last_received_at INTEGER
    );

    -- One row per captured request. The API's message id is a UUIDv7 made of received_at and
    -- seq (see messages::message_id), so no second index on an id column is needed.
    -- The body lives inline (`body`) when small, else in files/<body_file>.
    -- `parts` is the multipart layout: offsets into the body, never a second copy of the bytes.
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        webhook_uuid TEXT NOT NULL,
        event_key TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        verification TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        query TEXT NOT NULL,
        headers TEXT NOT NULL,
        remote_addr TEXT NOT NULL,
        content_type TEXT,
        size INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        file_count INTEGER NOT NULL,
        parts TEXT,
        body_file TEXT,
        body BLOB
    );
    CREATE INDEX messages_by_webhook ON messages (webhook_uuid, seq);
    CREATE INDEX messages_by_body_file ON messages (body_file) WHERE body_file IS NOT NULL;

    -- Every event, written in the same transaction as what it describes. Message events refer
    -- to their message row instead of copying it.
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        type TEXT NOT NULL,
        event_key TEXT,
        message_seq INTEGER,
        data TEXT
    );

    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );

    -- Small named values; `healthz` writes its probe here.
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2: stored pipelines and their executions.
    r#"
    CREATE TABLE pipelines (
        name TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        listen TEXT,
        stored_by TEXT NOT NULL,
        stored_by_role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_run_at INTEGER
    );

    CREATE TABLE executions (
        seq INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        pipeline TEXT NOT NULL,
        trigger TEXT NOT NULL,
        event_key TEXT,
        message_seq INTEGER,
        message_id TEXT,
        replay_of TEXT,
        input TEXT,
        trace_id TEXT NOT NULL,
        depth INTEGER NOT NULL,
        run_as TEXT,
        status TEXT NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        steps TEXT,
        body TEXT,
        body_truncated INTEGER NOT NULL,
        error TEXT,
        error_step INTEGER
    );
    CREATE INDEX executions_open ON executions (status) WHERE status IN ('queued', 'running');
    CREATE INDEX executions_by_pipeline ON executions (pipeline, seq);
    CREATE INDEX executions_by_message ON executions (message_seq) WHERE message_seq IS NOT NULL;
    "#,
    // 3: outgoing deliveries and their attempts.
    r#"
    CREATE TABLE deliveries (
        seq INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        msg_id TEXT NOT NULL,
        url TEXT NOT NULL,
        method TEXT NOT NULL,
        headers TEXT NOT NULL,
        body BLOB,
        message_seq INTEGER,
        message_id TEXT,
        secret TEXT,
        timeout_ms INTEGER NOT NULL,
        schedule TEXT NOT NULL,
        max_attempts INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        status TEXT NOT NULL,
        next_attempt_at INTEGER,
        last_status INTEGER,
        last_error TEXT,
        source TEXT NOT NULL,
        local INTEGER NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';

    CREATE TABLE delivery_attempts (
        delivery_seq INTEGER NOT NULL,
        n INTEGER NOT NULL,
        at INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        status INTEGER,
        response_headers TEXT,
        response_body BLOB,
        error TEXT,
        PRIMARY KEY (delivery_seq, n)
    ) WITHOUT ROWID;
    "#,
    // 4: incoming verification, rejections, deduplication, rate limits, source allow-lists.
    r#"
    ALTER TABLE webhooks ADD COLUMN verify TEXT;
    ALTER TABLE webhooks ADD COLUMN dedupe TEXT;
    ALTER TABLE webhooks ADD COLUMN dedupe_window INTEGER;
    ALTER TABLE webhooks ADD COLUMN rate_limit TEXT;
    ALTER TABLE webhooks ADD COLUMN allow_cidrs TEXT;
    ALTER TABLE messages ADD COLUMN reason TEXT;
    CREATE INDEX messages_by_status ON messages (status, seq) WHERE status != 'accepted';
    CREATE TABLE dedupe (
        webhook_uuid TEXT NOT NULL,
        key TEXT NOT NULL,
        message_seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (webhook_uuid, key)
    ) WITHOUT ROWID;
    CREATE INDEX dedupe_by_age ON dedupe (at);
    "#,
    // 5: mid-sized bodies in append-only segment files: (segment id, offset); size is `size`.
    r#"
    ALTER TABLE messages ADD COLUMN body_segment INTEGER;
    ALTER TABLE messages ADD COLUMN body_offset INTEGER;
    "#,
    // 6: a run whose final body is the message event it started with stores where to rebuild
    // it from ('message:<payload type>') instead of a copy larger than the message itself.
    r#"
    ALTER TABLE executions ADD COLUMN body_from TEXT;
    "#,
    // 7: execution events point at their execution row, as message events at their message,
    // instead of storing its summary as JSON.
    r#"
    ALTER TABLE events ADD COLUMN execution_seq INTEGER;
    "#,
    // 8: a message's listener runs are queued in the transaction that stores it. Before, a
    // dispatcher queued them from the event log, saving how far it got as 'dispatch_cursor'
    // (absent meant 0); what it had not reached is dispatched once at start, then the cursor
    // is dropped. A new database sets it too, with nothing after it.
    r#"
    INSERT OR IGNORE INTO meta (key, value) VALUES ('dispatch_cursor', '0');
    "#,
    // 9: `message.list uuid=` finds a webhook's messages through spans of consecutive messages
    // of one webhook (see spans.rs) instead of an index entry per message: under a burst to one
    // webhook that is one row updated per commit, not one index insert per request. A span
    // starts at each message whose predecessor belongs to another webhook and ends before the
    // next span starts. Lookups by seq rather than a window function's sort, which with
    // temp_store=MEMORY held ~60 MiB for a million messages (1.4 s against 3.3 s, too).
    r#"
    CREATE TABLE webhook_spans (
        first_seq INTEGER PRIMARY KEY,
        last_seq INTEGER NOT NULL,
        webhook_uuid TEXT NOT NULL
    );
    CREATE INDEX webhook_spans_by_webhook ON webhook_spans (webhook_uuid, first_seq);
    INSERT INTO webhook_spans (first_seq, last_seq, webhook_uuid)
        SELECT seq, seq, webhook_uuid FROM messages m WHERE webhook_uuid IS NOT (
            SELECT p.webhook_uuid FROM messages p WHERE p.seq < m.seq ORDER BY p.seq DESC LIMIT 1
        );
    UPDATE webhook_spans SET last_seq = coalesce(
        (SELECT max(seq) FROM messages WHERE seq < (
            SELECT min(n.first_seq) FROM webhook_spans n WHERE n.first_seq > webhook_spans.first_seq
        )),
        (SELECT max(seq) FROM messages)
    );
    DROP INDEX messages_by_webhook;
    "#,
    // 10: a message's event is its own row: `event_seq` numbers it in the log's sequence (the
    // events table's `sqlite_sequence` entry, advanced by each capture), so a capture no longer
    // writes an event row, whose page cost every commit ~5 % of target 1 in BENCHMARKS.md.
    // Messages stored before keep their event rows and a NULL here. Pruning then moves
    // 'events_horizon' past message events instead of deleting them; it starts below the
    // oldest logged event.
    r#"
    ALTER TABLE messages ADD COLUMN event_seq INTEGER;
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'events', (SELECT coalesce(max(seq), 0) FROM events)
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events');
    INSERT OR REPLACE INTO meta (key, value) VALUES ('events_horizon', coalesce(
        (SELECT min(seq) - 1 FROM events),
        (SELECT seq FROM sqlite_sequence WHERE name = 'events')
    ));
    "#,
    // 11: retention. Each webhook counts the messages it has stored and their bytes (updated
    // once per batch with its other counters), and may override the daemon's limits. A deleted
    // webhook's counters (and override) move to `retired_webhooks`, so its messages stay under
    // retention. Pruned bodies are listed in `freed_bodies` until their file is deleted or their
    // segment range punched out, a grace period later (a reader may still be streaming one).
    // The counters start from the spans (streamed per webhook, no sort of all messages).
    r#"
    ALTER TABLE webhooks ADD COLUMN retention TEXT;
    ALTER TABLE webhooks ADD COLUMN stored_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE webhooks ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE retired_webhooks (
        uuid TEXT PRIMARY KEY,
        retention TEXT,
        stored_count INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL
    );
    CREATE TABLE freed_bodies (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        body_file TEXT,
        segment INTEGER,
        offset INTEGER,
        size INTEGER
    );
    CREATE TEMP TABLE stored_totals AS
        SELECT s.webhook_uuid AS uuid, count(m.seq) AS n, coalesce(sum(m.size), 0) AS bytes
        FROM webhook_spans s INDEXED BY webhook_spans_by_webhook
            CROSS JOIN messages m NOT INDEXED ON m.seq BETWEEN s.first_seq AND s.last_seq
        GROUP BY s.webhook_uuid;
    UPDATE webhooks SET stored_count = t.n, stored_bytes = t.bytes
        FROM stored_totals t WHERE t.uuid = webhooks.uuid;
    INSERT INTO retired_webhooks (uuid, retention, stored_count, stored_bytes)
        SELECT uuid, NULL, n, bytes FROM stored_totals
        WHERE n > 0 AND uuid NOT IN (SELECT uuid FROM webhooks);
    DROP TABLE stored_totals;
    "#,
    // 12: whether a run's error may quote what an admin-only command returned (only admins see
    // it then). Runs recorded before are not known to: their errors stay as they were shown.
    r#"
    ALTER TABLE executions ADD COLUMN error_private INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// Brings the database to the latest schema, each step in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Brings the database to schema version `version`; tests use it to build an older database.
pub(super) fn migrate_to(conn: &mut Connection, version: usize) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = current.max(0) as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Schema(format!(
            "the database has schema version {current}, but this hookd knows only up to {}; \
             upgrade hookd or use another --data-dir",
            MIGRATIONS.len()
        )));
    }
    if current > 0 && current < version {
        // Some steps rebuild what stored rows imply, which can take seconds on a large database.
        tracing::info!(
            from = current,
            to = version,
            "upgrading the database schema"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(version).skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_refuse_newer_schemas() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("first run");
        migrate(&mut conn).expect("second run is a no-op");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v as usize, MIGRATIONS.len());
        conn.pragma_update(None, "user_version", 999).expect("set");
        let err = migrate(&mut conn).expect_err("newer schema refused");
        assert!(err.to_string().contains("999"));
    }
}
