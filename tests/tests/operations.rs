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
