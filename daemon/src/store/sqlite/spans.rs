//! Where each webhook's messages are: spans of consecutive messages of one webhook.
//!
//! `message.list uuid=` needs one webhook's messages, newest first. An index on
//! `(webhook_uuid, seq)` costs the writer an index insert per message; a span is one row per
//! stretch of one webhook's messages in seq order, so a burst to one webhook updates one row per
//! commit. Webhooks whose messages interleave get a span per stretch, one per message at worst
//! (what the index cost). Every message lies in exactly one span, of its own webhook, and no
//! message of another webhook lies inside a span.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::page::Page;

/// The webhook of the newest span: a batch that starts with its messages continues that span.
pub(super) fn newest_webhook(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(newest(conn)?.map(|(_, uuid)| uuid))
}

fn newest(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT first_seq, webhook_uuid FROM webhook_spans ORDER BY first_seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Records the spans of a batch's messages, given as `(seq, webhook uuid)` in insertion order
/// (seq ascending, above every stored message).
pub(super) fn extend<'a>(
    conn: &Connection,
    stored: impl IntoIterator<Item = (i64, &'a str)>,
) -> Result<(), StoreError> {
    let mut spans: Vec<(i64, i64, &str)> = Vec::new();
    for (seq, uuid) in stored {
        match spans.last_mut() {
            Some((_, last, u)) if *u == uuid => *last = seq,
            _ => spans.push((seq, seq, uuid)),
        }
    }
    let Some(&(_, last, uuid)) = spans.first() else {
        return Ok(());
    };
    let mut new = &spans[..];
    if let Some((first, _)) = newest(conn)?.filter(|(_, u)| u == uuid) {
        conn.prepare_cached("UPDATE webhook_spans SET last_seq = ?2 WHERE first_seq = ?1")?
            .execute(params![first, last])?;
        new = &spans[1..];
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO webhook_spans (first_seq, last_seq, webhook_uuid) VALUES (?1, ?2, ?3)",
    )?;
    for (first, last, uuid) in new {
        insert.execute(params![first, last, uuid])?;
    }
    Ok(())
}

/// A page of the messages of webhook `uuid` older than `before` (a seq), walked span by span,
/// newest first; `columns` name them through the alias `m`.
pub(super) fn page(columns: &str, uuid: &str, before: Option<i64>) -> Page {
    // The ORDER BY matches the walk (spans newest first, rows newest first within each), so rows
    // stream out and the LIMIT stops the walk early. CROSS JOIN and NOT INDEXED pin that plan:
    // SQLite 3.40's planner, given a filter on `messages`, built an automatic index on it and
    // sorted instead (12 s instead of 5 ms on 200,000 rows); the bundled SQLite picks the walk
    // on its own, but the plan should not depend on the planner's version.
    let mut page = Page::of(
        columns,
        "webhook_spans s CROSS JOIN messages m NOT INDEXED \
         ON m.seq BETWEEN s.first_seq AND s.last_seq",
    );
    page.order_by("s.first_seq DESC, m.seq DESC");
    page.raw("s.webhook_uuid = ?", vec![Box::new(uuid.to_string())]);
    if let Some(b) = before {
        page.raw("s.first_seq < ?", vec![Box::new(b)]);
    }
    page
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::super::messages::{self, ListFilter, tests::capture_for, tests::scratch};
    use super::super::schema;
    use super::super::segments::Segments;

    /// Stores `batches` of messages (each a list of webhook names), with each commit's
    /// bookkeeping when `account`, else as a hookd before spans did; returns each message's
    /// (seq, webhook, id).
    fn store(
        conn: &Connection,
        segs: &mut Segments,
        batches: &[&[&str]],
        account: bool,
    ) -> Vec<(i64, String, String)> {
        let mut all = Vec::new();
        for batch in batches {
            let mut stored = Vec::new();
            for uuid in *batch {
                if !account {
                    let seq = messages::tests::insert_before_10(conn, uuid, 7);
                    all.push((
                        seq,
                        uuid.to_string(),
                        messages::message_id(7, seq).to_string(),
                    ));
                    continue;
                }
                let a = messages::tests::insert_one(conn, capture_for(uuid), segs);
                let s = a.stored.expect("a stored message");
                let id = messages::message_id(s.received_at, s.seq).to_string();
                all.push((s.seq, s.uuid.clone(), id));
                stored.push(s);
            }
            if account {
                messages::account(conn, &stored).expect("account");
            }
        }
        all
    }

    /// Asserts the stored spans, oldest first, as (first seq, last seq, webhook).
    fn assert_spans(conn: &Connection, want: &[(i64, i64, &str)]) {
        let mut st = conn
            .prepare("SELECT first_seq, last_seq, webhook_uuid FROM webhook_spans ORDER BY 1")
            .expect("prepare");
        let got: Vec<(i64, i64, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let want: Vec<(i64, i64, String)> = want
            .iter()
            .map(|&(f, l, u)| (f, l, u.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    /// Every message of `uuid`, newest first, in pages of `limit` through `before`.
    fn list_all(conn: &Connection, uuid: &str, limit: u32) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            let f = ListFilter {
                uuid: Some(uuid.into()),
                before: ids.last().map(|id: &String| id.parse().expect("uuid")),
                limit,
                ..Default::default()
            };
            let page = messages::list(conn, &f).expect("list");
            assert!(
                page.iter().all(|m| m.uuid == uuid),
                "only {uuid}'s messages"
            );
            let n = page.len();
            ids.extend(page.into_iter().map(|m| m.id));
            if n < limit as usize {
                return ids;
            }
        }
    }

    fn expected(all: &[(i64, String, String)], uuid: &str) -> Vec<String> {
        let mut ids: Vec<String> = all
            .iter()
            .filter(|(_, u, _)| u == uuid)
            .map(|(_, _, id)| id.clone())
            .collect();
        ids.reverse();
        ids
    }

    #[test]
    fn a_webhooks_messages_are_found_through_spans_that_grow_across_commits() {
        let (conn, mut segs, _dir) = scratch(usize::MAX);
        let all = store(
            &conn,
            &mut segs,
            &[
                &["a", "a", "b"],
                &["b", "b"],
                &["a"],
                &[],
                &["c", "a", "a"],
                &["a"],
                &["a", "a"],
            ],
            true,
        );
        // A commit continues the newest span when it starts with that span's webhook.
        let want = [
            (1, 2, "a"),
            (3, 5, "b"),
            (6, 6, "a"),
            (7, 7, "c"),
            (8, 12, "a"),
        ];
        assert_spans(&conn, &want);
        for uuid in ["a", "b", "c", "d"] {
            for limit in [1, 2, 3, 50] {
                assert_eq!(
                    list_all(&conn, uuid, limit),
                    expected(&all, uuid),
                    "{uuid} by {limit}"
                );
            }
        }
        // Every other filter applies within the walk.
        let f = ListFilter {
            uuid: Some("a".into()),
            event_key_prefix: Some("a.".into()),
            status: Some("accepted".into()),
            search: Some("a.b".into()),
            before: all.last().map(|(_, _, id)| id.parse().expect("uuid")),
            limit: 3,
        };
        let got: Vec<String> = messages::list(&conn, &f)
            .expect("list")
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(got, expected(&all, "a")[1..4]);
        // Spans in order, rows in order within each: no sort of all of a webhook's messages
        // before the LIMIT, and no index built on the fly for a filter. The planner is given
        // the statistics of a large database (`ANALYZE` of 200,000 messages, a third in 44,000
        // spans of one webhook), where SQLite 3.40 picked such a plan.
        conn.execute_batch(
            "ANALYZE; DELETE FROM sqlite_stat1;
             INSERT INTO sqlite_stat1 VALUES
                 ('webhook_spans', 'webhook_spans_by_webhook', '133068 44356 1'),
                 ('messages', 'messages_by_status', '2061 2061 1'),
                 ('messages', NULL, '200000');
             ANALYZE sqlite_schema;",
        )
        .expect("statistics");
        let (page, before) = messages::list_page(&f).expect("page");
        let plan = page.plan(&conn, before, f.limit);
        assert!(
            plan.contains("SEARCH s USING INDEX webhook_spans_by_webhook"),
            "{plan}"
        );
        assert!(
            plan.contains("SEARCH m USING INTEGER PRIMARY KEY"),
            "{plan}"
        );
        assert!(
            !plan.contains("TEMP B-TREE") && !plan.contains("AUTOMATIC"),
            "{plan}"
        );
    }

    #[test]
    fn the_upgrade_builds_the_spans_of_messages_stored_before_them() {
        let (mut conn, mut segs, _dir) = scratch(8);
        // Schema 8 has no spans: the messages of an older hookd.
        let order = ["a", "a", "b", "a", "b", "b", "b", "c", "a", "a"];
        let mut all = store(&conn, &mut segs, &[&order], false);
        schema::migrate(&mut conn).expect("upgrade");
        let mut want = vec![
            (1, 2, "a"),
            (3, 3, "b"),
            (4, 4, "a"),
            (5, 7, "b"),
            (8, 8, "c"),
            (9, 10, "a"),
        ];
        assert_spans(&conn, &want);
        let index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'messages_by_webhook'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(index, 0, "the per-message index is gone");
        // New messages continue the newest span.
        all.extend(store(&conn, &mut segs, &[&["a", "b"]], true));
        want[5] = (9, 11, "a");
        want.push((12, 12, "b"));
        assert_spans(&conn, &want);
        for uuid in ["a", "b", "c"] {
            assert_eq!(list_all(&conn, uuid, 2), expected(&all, uuid), "{uuid}");
        }
    }
}
