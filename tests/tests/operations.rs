//! Running hookd for real: retention, store statistics, backups, metrics, health and shutdown.

use hookd_e2e::{Daemon, Options, error_message, noise};
use serde_json::{Value, json};

/// Posts `n` bodies of `size` bytes to `url` (each distinct), expecting 200 for each.
async fn send(d: &Daemon, url: &str, n: usize, size: usize, seed: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, v) = d.post(url, noise(size, seed + i as u64)).await;
        assert_eq!(status, 200, "{v}");
        ids.push(v["messageId"].as_str().expect("messageId").to_string());
    }
    ids
}

async fn listed(d: &Daemon, uuid: &str) -> Vec<String> {
    let v = d
        .ok("message.list", json!({ "uuid": uuid, "limit": 1000 }))
        .await;
    v.as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

/// Retention by count (a webhook's override) and by the daemon's limits: `webhook.get` shows
/// what is in force, pruning deletes the oldest messages with their files while receives go
/// on, `store.stats` and the disk say so, and a restart changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_oldest_messages_and_their_files_while_receiving_goes_on() {
    let mut d = Daemon::start_with(Options::config(
        "[retention]\nmaxAge = \"30d\"\nmaxBytes = \"1GiB\"\n",
    ))
    .await;
    let (url, uuid) = d.webhook("webhook.big").await;
    let w = d
        .ok(
            "webhook.put",
            json!({ "uuid": uuid, "retention": { "maxCount": 5, "maxBytes": null } }),
        )
        .await;
    assert_eq!(
        w["retention"],
        json!({ "maxAge": "30d", "maxCount": 5, "maxBytes": null })
    );
    assert_eq!(
        w["retentionOverride"],
        json!({ "maxCount": 5, "maxBytes": null })
    );
    let (status, v) = d
        .call(
            "webhook.put",
            json!({ "uuid": uuid, "retention": { "maxCount": 0 } }),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("retention.maxCount"), "{v}");

    // 12 bodies of 100 KiB, each a file of its own.
    let ids = send(&d, &url, 12, 100 << 10, 1).await;
    assert_eq!(d.files_in("files"), 12);
    let (small_url, small) = d.webhook("webhook.small").await;
    d.ok(
        "webhook.put",
        json!({ "uuid": small, "retention": { "maxCount": 10 } }),
    )
    .await;
    send(&d, &small_url, 1500, 64, 100).await;

    // Prune while receiving: every receive still answers 200.
    let receiving = {
        let (http, url) = (d.http().clone(), small_url.clone());
        tokio::spawn(async move {
            let mut ok = 0;
            for i in 0..200u64 {
                let r = http.post(&url).body(noise(64, 10_000 + i)).send().await;
                if r.is_ok_and(|r| r.status() == 200) {
                    ok += 1;
                }
            }
            ok
        })
    };
    let pruned = d.ok("store.prune", json!({ "graceSeconds": 0 })).await;
    assert_eq!(receiving.await.expect("receiver"), 200);
    assert_eq!(
        pruned["messages"].as_u64().map(|n| n >= 7 + 1490),
        Some(true),
        "{pruned}"
    );
    // Another pass catches what arrived during the first.
    d.ok("store.prune", json!({ "graceSeconds": 0 })).await;

    let mut newest: Vec<String> = ids[7..].to_vec();
    newest.reverse();
    assert_eq!(listed(&d, &uuid).await, newest);
    assert_eq!(listed(&d, &small).await.len(), 10);
    assert_eq!(d.files_in("files"), 5);
    let (status, v) = d.call("message.get", json!({ "id": ids[0] })).await;
    assert_eq!(status, 404, "{v}");
    let stats = d.ok("store.stats", json!({})).await;
    assert_eq!(stats["messages"]["count"], 15, "{stats}");
    assert_eq!(stats["bodyFiles"]["count"], 5, "{stats}");
    assert_eq!(stats["messages"]["bytes"], 5 * (100 << 10) + 10 * 64);
    assert_eq!(stats["retention"]["messages"]["maxAge"], "30d");
    assert!(stats["database"]["bytes"].as_u64() > Some(0));

    d.stop().await;
    d.start_again().await;
    assert_eq!(listed(&d, &uuid).await, newest);
    let w = d.ok("webhook.get", json!({ "uuid": uuid })).await;
    assert_eq!(
        (w["storedCount"].clone(), w["messageCount"].clone()),
        (json!(5), json!(12))
    );
    // The kept bodies are whole.
    let (_, body) = d.raw("message.body", json!({ "id": ids[11] })).await;
    assert_eq!(body, noise(100 << 10, 12));
    let _: Value = d
        .ok("webhook.put", json!({ "uuid": uuid, "retention": null }))
        .await;
    let w = d.ok("webhook.get", json!({ "uuid": uuid })).await;
    assert_eq!(w["retention"]["maxCount"], Value::Null);
    assert!(w.get("retentionOverride").is_none(), "{w}");
}

/// A config that limits executions by size is refused with the reason.
#[tokio::test]
async fn retention_settings_that_cannot_work_are_refused_at_start() {
    let d = tempfile::tempdir().expect("tempdir");
    let cfg = d.path().join("hookd.toml");
    std::fs::write(&cfg, "[retention.executions]\nmaxBytes = \"1GiB\"\n").expect("write");
    let out = std::process::Command::new(hookd_e2e::hookd_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(d.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[retention.executions] maxBytes: only messages are limited by size"),
        "{err}"
    );
}

/// A body of one of the three stored sizes: inline, a segment's, a file of its own.
fn body(i: u64) -> Vec<u8> {
    let size = match i % 3 {
        0 => 200,
        1 => 20 << 10,
        _ => 90 << 10,
    };
    noise(size, 1000 + i)
}

/// `hookd backup` while messages keep arriving, then `hookd restore` into a new data dir: the
/// restored daemon has every message acknowledged before the backup started, byte for byte.
/// A cut-off archive and a data dir in use are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_everything_acknowledged_before_it() {
    let d = Daemon::start().await;
    let (url, uuid) = d.webhook("webhook.backed.up").await;
    let mut acked: Vec<(String, u64, std::time::Instant)> = Vec::new();
    for i in 0..30 {
        let (status, v) = d.post(&url, body(i)).await;
        assert_eq!(status, 200);
        acked.push((
            v["messageId"].as_str().expect("id").into(),
            i,
            std::time::Instant::now(),
        ));
    }
    // Holes that retention punched into the segments make the trip too: a webhook keeping one
    // message, pruned before the backup.
    let (one_url, one) = d.webhook("webhook.keeps.one").await;
    d.ok(
        "webhook.put",
        json!({ "uuid": one, "retention": { "maxCount": 1 } }),
    )
    .await;
    for i in 0..8 {
        d.post(&one_url, noise(30 << 10, 500 + i)).await;
    }
    d.ok("store.prune", json!({ "graceSeconds": 0 })).await;
    let kept = listed(&d, &one).await;
    assert_eq!(kept.len(), 1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (http, url, stop) = (d.http().clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut done = Vec::new();
            let mut i = 30;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let resp = http.post(&url).body(body(i)).send().await.expect("post");
                assert_eq!(resp.status(), 200);
                let v: Value = resp.json().await.expect("json");
                done.push((
                    v["messageId"].as_str().expect("id").to_string(),
                    i,
                    std::time::Instant::now(),
                ));
                i += 1;
            }
            done
        })
    };
    let archive = d.tmp().join("backup.tar");
    let started = std::time::Instant::now();
    let out = {
        let args: Vec<std::ffi::OsString> = vec!["backup".into(), archive.clone().into()];
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        d.hookd(&refs)
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let during = load.await.expect("load");
    acked.extend(during.iter().cloned());
    let before: Vec<&(String, u64, std::time::Instant)> =
        acked.iter().filter(|(_, _, at)| *at < started).collect();
    assert!(before.len() >= 30);
    // A second backup to the same file is refused: backups are never overwritten.
    let again = d.hookd(&["backup".as_ref(), archive.as_os_str()]);
    assert!(!again.status.success());

    let r = Daemon::start_restored(&archive, Options::default()).await;
    let w = r.ok("webhook.get", json!({ "uuid": uuid })).await;
    assert_eq!(w["eventKey"], "webhook.backed.up");
    for (id, i, _) in before {
        let (_, got) = r.raw("message.body", json!({ "id": id })).await;
        assert!(got == body(*i), "message {id} ({i}) differs after restore");
    }
    let (_, got) = r.raw("message.body", json!({ "id": kept[0] })).await;
    assert!(got == noise(30 << 10, 507));
    // The restored daemon takes new messages.
    let (status, _) = r.post(&url.replace(&d.url, &r.url), body(7)).await;
    assert_eq!(status, 200);

    // A cut-off archive is refused, and nothing is left behind.
    let bytes = std::fs::read(&archive).expect("archive");
    let cut = d.tmp().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let target = d.tmp().join("restored-cut");
    let out = d.hookd(&[
        "restore".as_ref(),
        cut.as_os_str(),
        "--data-dir".as_ref(),
        target.as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut off") || err.contains("not usable"),
        "{err}"
    );
    assert!(!target.exists());
    // A data dir with anything in it is refused.
    let out = d.hookd(&[
        "restore".as_ref(),
        archive.as_os_str(),
        "--data-dir".as_ref(),
        d.dir.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
}

/// The samples of one metric: (labels, value).
fn samples(
    scrape: &prometheus_parse::Scrape,
    name: &str,
) -> Vec<(std::collections::HashMap<String, String>, f64)> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let v = match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            (labels, v)
        })
        .collect()
}

/// The value of `name` with all of `want` among its labels (0 when absent).
fn value(scrape: &prometheus_parse::Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(scrape, name)
        .into_iter()
        .filter(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(d: &Daemon, url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = d.http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("scrape");
    (r.status().as_u16(), r.text().await.expect("text"))
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format")
}

/// `/metrics` needs a token on the main listener, parses as Prometheus text, and its counters
/// move with what happens: captures and refusals per webhook, requests by route, the writer's
/// batches, stream clients. `/healthz` and `/readyz` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happens_and_need_a_token() {
    let d = Daemon::start().await;
    let metrics_url = format!("{}/metrics", d.url);
    let (status, _) = scrape(&d, &metrics_url, None).await;
    assert_eq!(status, 401);
    let viewer = d
        .ok(
            "token.create",
            json!({ "role": "viewer", "name": "prometheus" }),
        )
        .await;
    let viewer = viewer["token"].as_str().expect("token").to_string();
    let (status, before) = scrape(&d, &metrics_url, Some(&viewer)).await;
    assert_eq!(status, 200, "{before}");
    let before = parse(&before);

    let (url, uuid) = d.webhook("webhook.metered").await;
    let label = &uuid[..8];
    for i in 0..3 {
        let (status, _) = d.post(&url, noise(100, i)).await;
        assert_eq!(status, 200);
    }
    d.ok(
        "webhook.put",
        json!({ "uuid": uuid, "verify": { "scheme": "github", "secret": "s3cret" } }),
    )
    .await;
    let (status, _) = d.post(&url, "unsigned").await;
    assert_eq!(status, 401);
    let _events = d.events("").await;

    let (_, text) = scrape(&d, &metrics_url, Some(&viewer)).await;
    assert!(
        !text.contains(&uuid),
        "a whole webhook uuid is never a label"
    );
    let after = parse(&text);
    let webhook = [("webhook", label)];
    assert_eq!(value(&after, "hookd_messages_total", &webhook), 3.0);
    assert_eq!(
        value(
            &after,
            "hookd_rejections_total",
            &[("webhook", label), ("reason", "signature")]
        ),
        1.0
    );
    let receive = [
        ("route", "/api/v3/command/webhook.receive"),
        ("status", "200"),
    ];
    assert_eq!(
        value(&after, "hookd_http_requests_total", &receive)
            - value(&before, "hookd_http_requests_total", &receive),
        3.0
    );
    assert!(value(&after, "hookd_received_bytes_total", &[]) >= 300.0);
    assert!(value(&after, "hookd_receive_duration_seconds_count", &[]) >= 4.0);
    assert!(value(&after, "hookd_writer_batch_size_count", &[]) > 0.0);
    assert_eq!(value(&after, "hookd_stream_clients", &[]), 1.0);
    assert!(value(&after, "hookd_database_bytes", &[]) > 0.0);
    let command = [
        ("route", "/api/v3/command/:name"),
        ("command", "webhook.put"),
    ];
    assert!(
        value(&after, "hookd_http_requests_total", &command) >= 2.0,
        "{text}"
    );

    for path in ["/healthz", "/readyz"] {
        let r = d
            .http()
            .get(format!("{}{path}", d.url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
}

/// `[metrics] listen` serves `/metrics` on an address of its own, without a token; the main
/// listener then has none.
#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let d = Daemon::start_with(Options::config("[metrics]\nlisten = \"127.0.0.1:0\"\n")).await;
    let log = d.log_text();
    let at = log
        .split("metrics on ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .to_string();
    let (status, text) = scrape(&d, &at, None).await;
    assert_eq!(status, 200);
    parse(&text);
    let (status, _) = scrape(&d, &format!("{}/metrics", d.url), Some(&d.token.clone())).await;
    assert_eq!(status, 404);
}

/// SIGTERM while 16 clients send: hookd exits cleanly, event stream clients get 1001, the WAL
/// is folded into the database, and after a restart every message answered 2xx is there, byte
/// for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_every_acknowledged_message() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.stopping").await;
    let acked = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let enough = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for client in 0..16u64 {
        let (http, url, acked, count, enough) = (
            d.http().clone(),
            url.clone(),
            acked.clone(),
            count.clone(),
            enough.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let seed = client << 32 | i;
                let Ok(r) = http.post(&url).body(body(seed)).send().await else {
                    return;
                };
                if r.status().as_u16() != 200 {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                if let Some(id) = v["messageId"].as_str() {
                    acked.lock().await.push((id.to_string(), seed));
                    if count.fetch_add(1, Ordering::SeqCst) + 1 == 300 {
                        enough.notify_one();
                    }
                }
            }
        }));
    }
    let mut events = d.events("").await;
    enough.notified().await;
    let closed = async {
        loop {
            let f = events.next().await;
            if f["type"] == "close" {
                return f;
            }
        }
    };
    let ((), close) = tokio::join!(d.stop(), closed);
    assert_eq!(close["code"], 1001);
    for t in tasks {
        let _ = t.await;
    }
    let wal = std::fs::metadata(d.dir.join("hookd.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "a clean stop folds the WAL into the database");

    d.start_again().await;
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= 300);
    for (id, seed) in &acked {
        let (_, got) = d.raw("message.body", json!({ "id": id })).await;
        assert!(got == body(*seed), "message {id} differs after the stop");
    }
}
