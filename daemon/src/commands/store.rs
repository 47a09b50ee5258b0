//! `store.stats`, `store.prune`: what the store holds, and retention on demand.

use std::time::Duration;

use hookd_shared::{PruneReport, RetentionStats, Role};

use super::Ctx;
use super::{Call, Command, Kind, Output, Param, RawData, RawOutput, json};
use crate::error::Error;
use crate::retention::Limits;
use crate::store::retention::GRACE_MS;

pub(super) fn commands() -> Vec<Command> {
    vec![
        Command {
            name: "store.stats",
            description: "Rows and bytes per kind (messages, executions, deliveries, events, body files), the database and data dir size, and the retention in force",
            role: Some(Role::Viewer),
            params: &[],
            handler: |ctx, call| Box::pin(stats(ctx, call)),
        },
        Command {
            name: "store.prune",
            description: "Prune by the retention limits now (as the background pass does every [retention] interval) and say what went",
            role: Some(Role::Admin),
            params: &[Param {
                name: "graceSeconds",
                kind: Kind::Integer,
                required: false,
                description: "free the bytes of bodies pruned at least this long ago (default 60: a reader may still be streaming one); 0 frees them at once",
            }],
            handler: |ctx, call| Box::pin(prune(ctx, call)),
        },
        Command {
            name: "store.backup",
            description: "A consistent backup of the database and every stored body, taken while hookd runs, as a tar archive (hookd backup FILE writes it; hookd restore FILE restores it into an empty data dir)",
            role: Some(Role::Admin),
            params: &[],
            handler: |ctx, call| Box::pin(backup(ctx, call)),
        },
    ]
}

async fn stats(ctx: Ctx, _call: Call) -> Result<Output, Error> {
    let mut stats = ctx.store.stats().await?;
    let r = ctx.store.retention();
    let events = Limits {
        max_age: Some(ctx.config.events.max_age),
        max_count: Some(ctx.config.events.max_count),
        max_bytes: None,
    };
    stats.retention = RetentionStats {
        messages: r.messages.view(),
        executions: r.executions.view(),
        deliveries: r.deliveries.view(),
        events: events.view(),
    };
    json(&stats)
}

async fn prune(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let grace = match call.params.int("graceSeconds") {
        None => Duration::from_millis(GRACE_MS as u64),
        Some(s) if s >= 0 => Duration::from_secs(s as u64),
        Some(s) => {
            return Err(Error::InvalidParam(format!(
                "graceSeconds must be 0 or more, got {s}"
            )));
        }
    };
    let events = crate::prune::events_now(&ctx.store, &ctx.config.events).await?;
    let p = crate::prune::paced(&ctx.store, &ctx.burst, grace).await?;
    json(&PruneReport {
        messages: p.messages,
        message_bytes: p.message_bytes,
        executions: p.executions,
        deliveries: p.deliveries,
        events,
        files_deleted: p.files_deleted,
        segment_bytes_freed: p.segment_bytes_freed,
    })
}

/// Chunks written by a blocking task, handed to a response body through a bounded channel (so a
/// slow client slows the backup instead of filling memory).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

async fn backup(ctx: Ctx, _call: Call) -> Result<Output, Error> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        match store.backup(&mut out) {
            Ok(m) => tracing::info!(messages = m.messages, bytes = m.bytes, "backup written"),
            Err(e) => {
                tracing::error!("backup failed: {e}");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let name = format!(
        "hookd-backup-{}.tar",
        crate::clock::rfc3339(crate::clock::now_ms()).replace(':', "")
    );
    Ok(Output::Raw(RawOutput {
        content_type: "application/x-tar".into(),
        filename: Some(name),
        data: RawData::Stream(rx),
    }))
}
