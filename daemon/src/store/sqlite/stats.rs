//! `store.stats`: what the store holds and the disk it takes, read without scanning messages.

use std::path::Path;

use hookd_shared::{DatabaseStats, KindStats, StoreStats};
use rusqlite::Connection;

use super::StoreError;
use super::files::Dirs;

/// Rows and bytes per kind. Message counts come from the webhooks' counters; executions and
/// deliveries are pruned only as a prefix, so their count is the span of their seqs.
pub fn collect(conn: &Connection, dirs: &Dirs) -> Result<StoreStats, StoreError> {
    let (count, bytes): (i64, i64) = conn.query_row(
        "SELECT coalesce(sum(c), 0), coalesce(sum(b), 0) FROM ( \
         SELECT stored_count c, stored_bytes b FROM webhooks \
         UNION ALL SELECT stored_count, stored_bytes FROM retired_webhooks)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let dense = |table: &str| -> Result<u64, StoreError> {
        let n: Option<i64> = conn.query_row(
            &format!("SELECT max(seq) - min(seq) + 1 FROM {table}"),
            [],
            |r| r.get(0),
        )?;
        Ok(n.unwrap_or(0).max(0) as u64)
    };
    let attempts: i64 =
        conn.query_row("SELECT count(*) FROM delivery_attempts", [], |r| r.get(0))?;
    let awaiting: i64 = conn.query_row("SELECT count(*) FROM freed_bodies", [], |r| r.get(0))?;
    let events = super::events::bounds(conn)?.map_or(0, |(lo, hi)| hi - lo + 1);
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let free_pages: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let (files, file_bytes) = dir_usage(&dirs.files)?;
    let (_, segment_bytes) = dir_usage(&dirs.segments)?;
    let db = file_len(&dirs.db());
    let wal = file_len(&dirs.root.join("hookd.db-wal"));
    let (_, incoming) = dir_usage(&dirs.incoming)?;
    Ok(StoreStats {
        messages: KindStats {
            count: count.max(0) as u64,
            bytes: Some(bytes.max(0) as u64),
        },
        executions: KindStats {
            count: dense("executions")?,
            bytes: None,
        },
        deliveries: KindStats {
            count: dense("deliveries")?,
            bytes: None,
        },
        delivery_attempts: attempts.max(0) as u64,
        events: KindStats {
            count: events,
            bytes: None,
        },
        body_files: KindStats {
            count: files,
            bytes: Some(file_bytes),
        },
        segment_bytes,
        bodies_awaiting_free: awaiting.max(0) as u64,
        database: DatabaseStats {
            bytes: db,
            free_bytes: (free_pages * page_size).max(0) as u64,
            wal_bytes: wal,
        },
        total_bytes: db + wal + file_bytes + segment_bytes + incoming,
        retention: Default::default(),
    })
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Files in `dir` and the bytes they take on disk (allocated blocks: a punched segment counts
/// only what is left of it).
fn dir_usage(dir: &Path) -> Result<(u64, u64), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let (mut n, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let Ok(meta) = entry?.metadata() else {
            continue;
        };
        if meta.is_file() {
            n += 1;
            bytes += meta.blocks() * 512;
        }
    }
    Ok((n, bytes))
}
