//! Prometheus metrics. Components record through the `metrics` facade where things happen (a
//! no-op until a recorder is installed, as in unit tests); `/metrics` renders them with
//! metrics-exporter-prometheus, after setting the gauges that are read rather than counted.
//!
//! Labels are bounded: routes are templates (a command's name from the registry, never a raw
//! path), statuses are the codes hookd sends, and a webhook is named by its event key and the
//! first 8 characters of its uuid (the uuid is the secret part of its URL, so it is never shown
//! whole; 8 of its 32 hex digits leave the rest unguessable).

use std::time::Duration;

use std::collections::HashMap;
use std::sync::RwLock;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The route label of webhook URLs.
pub const RECEIVE_ROUTE: &str = "/api/v3/command/webhook.receive";

/// Requests answered, by `route` and `status`.
pub const REQUESTS: &str = "hookd_http_requests_total";
/// Time from a webhook request's arrival to its answer, in seconds.
pub const RECEIVE_SECONDS: &str = "hookd_receive_duration_seconds";
/// Body bytes of stored captures.
pub const RECEIVED_BYTES: &str = "hookd_received_bytes_total";
/// Captures stored, by `webhook` and `event_key`.
pub const MESSAGES: &str = "hookd_messages_total";
/// Requests to a webhook refused, by `webhook`, `event_key` and `reason`.
pub const REJECTIONS: &str = "hookd_rejections_total";
/// Pipeline runs finished, by `status`; and their duration.
pub const EXECUTIONS: &str = "hookd_executions_total";
pub const EXECUTION_SECONDS: &str = "hookd_execution_duration_seconds";
/// Delivery attempts, by `outcome` (success, retry, failed); and their latency.
pub const DELIVERY_ATTEMPTS: &str = "hookd_delivery_attempts_total";
pub const DELIVERY_ATTEMPT_SECONDS: &str = "hookd_delivery_attempt_duration_seconds";
/// Deliveries waiting for an attempt (read at scrape time).
pub const DELIVERIES_PENDING: &str = "hookd_deliveries_pending";
/// Event stream clients connected now.
pub const STREAM_CLIENTS: &str = "hookd_stream_clients";
/// Operations per writer transaction, and each commit's duration (including the segment sync).
pub const WRITER_BATCH: &str = "hookd_writer_batch_size";
pub const WRITER_COMMIT_SECONDS: &str = "hookd_writer_commit_duration_seconds";
/// `hookd.db` and `hookd.db-wal` on disk (read at scrape time).
pub const DATABASE_BYTES: &str = "hookd_database_bytes";
pub const WAL_BYTES: &str = "hookd_wal_bytes";
/// Rows pruned by retention, by `kind`.
pub const PRUNED: &str = "hookd_pruned_total";

/// Latency buckets, in seconds: from half a millisecond (a receive on loopback) to a minute (a
/// run's default time limit).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Operations per batch: powers of two up to the writer's largest batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The installed recorder's handle, and the receive path's series registered once: a lookup
/// by name and labels hashes them every time, which cost ~5 % of receive throughput (docs/
/// BENCHMARKS.md), where a registered handle is one atomic add.
pub struct Metrics {
    handle: PrometheusHandle,
    /// `hookd_http_requests_total` of webhook URLs answered 200.
    pub receive_ok: Counter,
    pub receive_seconds: Histogram,
    pub received_bytes: Counter,
    /// `hookd_messages_total` per webhook uuid, with the event key it was registered under.
    messages: RwLock<HashMap<String, (String, Counter)>>,
}

impl Metrics {
    /// Installs the process's recorder; `None` if one is installed already (a second daemon in
    /// one process records into the first one's).
    pub fn install() -> Option<Metrics> {
        let builder = PrometheusBuilder::new()
            .set_buckets(SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(WRITER_BATCH.into()), BATCH_BUCKETS)
            })
            .ok()?;
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).ok()?;
        describe();
        let upkeep = handle.clone();
        // Histogram samples are buffered until upkeep folds them in; without scrapes they
        // would pile up.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Some(Metrics {
            handle,
            receive_ok: metrics::counter!(
                REQUESTS,
                "route" => RECEIVE_ROUTE,
                "command" => "webhook.receive",
                "status" => "200",
            ),
            receive_seconds: metrics::histogram!(RECEIVE_SECONDS),
            received_bytes: metrics::counter!(RECEIVED_BYTES),
            messages: RwLock::default(),
        })
    }

    /// Counts a stored capture of webhook `uuid` (firing `event_key`).
    pub fn message(&self, uuid: &str, event_key: &str) {
        if let Some((key, c)) = crate::locks::read(&self.messages).get(uuid)
            && key == event_key
        {
            c.increment(1);
            return;
        }
        let c = metrics::counter!(
            MESSAGES,
            "webhook" => webhook_label(uuid),
            "event_key" => event_key.to_string(),
        );
        c.increment(1);
        crate::locks::write(&self.messages).insert(uuid.to_string(), (event_key.to_string(), c));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route template and status"
    );
    describe_histogram!(
        RECEIVE_SECONDS,
        metrics::Unit::Seconds,
        "time from a webhook request's arrival to its answer"
    );
    describe_counter!(
        RECEIVED_BYTES,
        metrics::Unit::Bytes,
        "body bytes of stored captures"
    );
    describe_counter!(MESSAGES, "captures stored, by webhook");
    describe_counter!(
        REJECTIONS,
        "webhook requests refused, by webhook and reason"
    );
    describe_counter!(EXECUTIONS, "pipeline runs finished, by status");
    describe_histogram!(
        EXECUTION_SECONDS,
        metrics::Unit::Seconds,
        "pipeline run durations"
    );
    describe_counter!(DELIVERY_ATTEMPTS, "outgoing delivery attempts, by outcome");
    describe_histogram!(
        DELIVERY_ATTEMPT_SECONDS,
        metrics::Unit::Seconds,
        "outgoing delivery attempt latency"
    );
    describe_gauge!(DELIVERIES_PENDING, "deliveries waiting for an attempt");
    describe_gauge!(STREAM_CLIENTS, "event stream (WebSocket) clients connected");
    describe_histogram!(WRITER_BATCH, "operations per writer transaction");
    describe_histogram!(
        WRITER_COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "writer transaction commit time, including the segment sync"
    );
    describe_gauge!(DATABASE_BYTES, metrics::Unit::Bytes, "size of hookd.db");
    describe_gauge!(WAL_BYTES, metrics::Unit::Bytes, "size of hookd.db-wal");
    describe_counter!(PRUNED, "rows pruned by retention, by kind");
}

/// A status code as a label, without allocating for the codes hookd sends.
pub fn status_label(code: u16) -> &'static str {
    match code {
        101 => "101",
        200 => "200",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        429 => "429",
        431 => "431",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// The `webhook` label: the first 8 characters of its uuid.
pub fn webhook_label(uuid: &str) -> String {
    uuid.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_never_the_whole_uuid() {
        assert_eq!(
            webhook_label("9b2c4f0e-1111-4222-8333-444455556666"),
            "9b2c4f0e"
        );
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(299), "other");
    }
}
