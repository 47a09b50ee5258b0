//! `store.stats`, `store.prune`: what the store holds, and retention on demand.

use std::sync::Arc;
use std::time::Duration;

use hookd_shared::{PruneReport, RetentionStats, Role};

use super::{Call, Command, Kind, Output, Param, json};
use crate::app::App;
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
            handler: |app, call| Box::pin(stats(app, call)),
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
            handler: |app, call| Box::pin(prune(app, call)),
        },
    ]
}

async fn stats(app: Arc<App>, _call: Call) -> Result<Output, Error> {
    let dirs = app.store.dirs().clone();
    let mut stats = app
        .store
        .read(move |c| crate::store::stats::collect(c, &dirs))
        .await?;
    let r = app.store.retention();
    let events = Limits {
        max_age: Some(app.config.events.max_age),
        max_count: Some(app.config.events.max_count),
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

async fn prune(app: Arc<App>, call: Call) -> Result<Output, Error> {
    let grace = match call.params.int("graceSeconds") {
        None => Duration::from_millis(GRACE_MS as u64),
        Some(s) if s >= 0 => Duration::from_secs(s as u64),
        Some(s) => {
            return Err(Error::InvalidParam(format!(
                "graceSeconds must be 0 or more, got {s}"
            )));
        }
    };
    let events = crate::app::prune_events_now(&app).await?;
    let p = app.store.prune_all(grace).await?;
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
