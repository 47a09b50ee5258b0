//! What survives: a restart keeps everything; `kill -9` under load loses no acknowledged message;
//! a second daemon never shares a data dir with a running one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hookd_e2e::{Daemon, Options, error_message, noise};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify};

#[tokio::test]
async fn a_restart_keeps_webhooks_messages_tokens_and_urls() {
    let mut d = Daemon::start().await;
    let (url, uuid) = d.webhook("webhook.restart").await;
    let body = noise(100_000, 9); // spilled to a file
    let (status, r) = d.post(&url, body.clone()).await;
    assert_eq!(status, 200, "{r}");
    let id = r["messageId"].as_str().expect("id").to_string();
    let viewer = d.viewer_token("v").await;
    let admin = d.token.clone();

    d.stop().await;
    d.start_again().await;

    assert_eq!(d.token, admin, "the generated admin token is kept");
    let w = d.ok("webhook.get", json!({"uuid": uuid})).await;
    assert_eq!(w["eventKey"], "webhook.restart");
    assert_eq!(w["messageCount"], 1);
    assert_eq!(d.raw("message.body", json!({"id": id})).await.1, body);
    let (status, _) = d.call_as(&viewer, "message.list", json!({})).await;
    assert_eq!(status, 200);
    // The same path and uuid still receive (the port is new, the URL path is not).
    let path = url.split_once("/api/").expect("path").1;
    let r = d
        .http()
        .post(format!("{}/api/{path}", d.url))
        .body("again")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
}

/// Message ids that got a 2xx, with the body sent.
type Acked = Vec<(String, Vec<u8>)>;

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    const CLIENTS: usize = 32;
    const KILL_AFTER: usize = 400;
    let mut d = Daemon::start().await;
    let (url, uuid) = d.webhook("webhook.crash").await;

    let acked: Arc<Mutex<Acked>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (http, url, acked, count, enough) = (
            d.http().clone(),
            url.clone(),
            acked.clone(),
            count.clone(),
            enough.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                // Every 8th body is large enough to live in a file beside the database, every
                // 8th from the 4th is appended to a segment file, the rest live in their row.
                let len = match i % 8 {
                    0 => 70_000,
                    4 => 20_000 + (i as usize % 1000),
                    _ => 512 + (i as usize % 700),
                };
                let body = noise(len, (client as u64) << 32 | i);
                let Ok(r) = http.post(&url).body(body.clone()).send().await else {
                    return;
                };
                if r.status().as_u16() != 200 {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                if let Some(id) = v["messageId"].as_str() {
                    acked.lock().await.push((id.to_string(), body));
                    if count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                        enough.notify_one();
                    }
                }
            }
        }));
    }
    enough.notified().await;
    d.kill9().await;
    for t in tasks {
        let _ = t.await;
    }

    d.start_again().await;
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= KILL_AFTER);
    for (id, body) in &acked {
        let (ct, got) = d.raw("message.body", json!({"id": id})).await;
        assert_eq!(ct, "application/octet-stream");
        assert!(got == *body, "message {id}: body differs after kill -9");
    }
    // Start-up settled every body file a crash left half-way.
    let leftover = d.files_in("incoming");
    assert_eq!(leftover, 0);
    let stored = d.files_in("files");
    let listed = d.ok("message.list", json!({"limit": 1000})).await;
    let big = listed
        .as_array()
        .expect("list")
        .iter()
        .filter(|m| m["size"].as_u64() == Some(70_000))
        .count();
    assert_eq!(
        stored, big,
        "every file belongs to a message and every large message has its file"
    );
    // The webhook's own list (through its spans, written in the same commits) has them all.
    let ids = |list: &Value| -> Vec<String> {
        let items = list.as_array().expect("list").iter();
        items
            .filter_map(|m| m["id"].as_str().map(String::from))
            .collect()
    };
    let own = ids(&d
        .ok("message.list", json!({"uuid": uuid, "limit": 1000}))
        .await);
    assert_eq!(own, ids(&listed));
    assert!(acked.iter().all(|(id, _)| own.contains(id)));
    // Appends after the crash go after whatever the killed writer left in the segment.
    let url = format!("{}/api/{}", d.url, url.split_once("/api/").expect("path").1);
    let body = noise(30_000, 77);
    let (status, r) = d.post(&url, body.clone()).await;
    assert_eq!(status, 200, "{r}");
    let got = d.raw("message.body", json!({"id": r["messageId"]})).await.1;
    assert!(got == body, "a body stored after the restart differs");
    let in_segments = acked
        .iter()
        .filter(|(_, b)| (20_000..21_000).contains(&b.len()));
    for (id, body) in in_segments {
        let got = d.raw("message.body", json!({"id": id})).await.1;
        assert!(
            got == *body,
            "message {id}: body differs after a later append"
        );
    }
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused_and_the_first_keeps_its_files() {
    let mut d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.lock").await;
    // A body big enough to be written to `incoming/` and then `files/`.
    let big = noise(200 * 1024, 7);
    let (status, r) = d.post(&url, big.clone()).await;
    assert_eq!(status, 200, "{r}");

    let second = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(hookd_e2e::hookd_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&d.dir)
            .env("HOOKD_ADMIN_TOKEN", "second-token-is-never-used")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the second daemon gives up at once")
    .expect("run hookd");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second daemon started: {err}");
    assert!(
        err.contains("another hookd is already using this data dir") && err.contains("hookd.lock"),
        "{err}"
    );
    assert_eq!(
        err.matches("another hookd").count(),
        1,
        "said once, not once per error layer: {err}"
    );
    assert!(second.stdout.is_empty(), "it must never listen");

    // The first is untouched: it still answers, with the body it stored.
    let list = d.ok("message.list", json!({})).await;
    let id = list[0]["id"].as_str().expect("a message").to_string();
    let (_, body) = d.raw("message.body", json!({"id": id})).await;
    assert_eq!(body, big);

    // A crash releases the lock: the same data dir starts again.
    d.kill9().await;
    d.start_again().await;
    let (_, body) = d.raw("message.body", json!({"id": id})).await;
    assert_eq!(body, big);
}

#[tokio::test]
async fn a_stop_finishes_the_request_in_flight_and_stores_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.stopping").await;
    let body = noise(64 * 1024, 11);
    let (head_part, rest) = body.split_at(1000);

    // A request whose body is half sent when the daemon is told to stop.
    let addr = d.url.trim_start_matches("http://").to_string();
    let target = url.trim_start_matches(&d.url).to_string();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    // The 100 Continue says hookd is reading this body.
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(s.read(&mut byte).await.expect("read"), 1, "closed: {got:?}");
        got.push(byte[0]);
    }
    s.write_all(head_part).await.expect("write");

    let log = d.tmp().join("hookd.log");
    let finish = async {
        // Once hookd is stopping (it says so, then closes its listener), it refuses new
        // connections and still answers this request.
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(20));
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("stopping: finishing open requests")
        {
            poll.tick().await;
        }
        while tokio::net::TcpStream::connect(&addr).await.is_ok() {
            poll.tick().await;
        }
        s.write_all(rest).await.expect("write the rest");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.expect("read the answer");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let ((), answer) = tokio::join!(d.stop(), finish);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let id = answer
        .split("\"messageId\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("a messageId in the answer")
        .to_string();

    d.start_again().await;
    assert_eq!(d.raw("message.body", json!({"id": id})).await.1, body);
}

/// A disk that fills up (here a file size limit on the daemon, `RLIMIT_FSIZE`, whose writes then
/// fail with EFBIG as they would with ENOSPC): every refused request gets a 503 that says nothing
/// was stored, the daemon keeps running, a refused request leaves no file behind (in `incoming/`,
/// or as one more segment file per request), and every body answered 200 reads back exactly.
#[tokio::test]
async fn a_disk_that_fills_up_refuses_with_503_and_keeps_everything_stored() {
    let d = Daemon::start_with(Options {
        max_file_size: Some(4 << 20),
        ..Options::default()
    })
    .await;
    let (url, _) = d.webhook("webhook.full").await;
    let mut stored = Vec::new();
    let mut refused = 0;
    for seed in 0..200 {
        // Mid-sized: appended to a segment file, which hits the limit first.
        let body = noise(60_000, seed);
        let (status, r) = d.post(&url, body.clone()).await;
        match status {
            200 => {
                assert_eq!(refused, 0, "stored again after a refusal: {r}");
                stored.push((r["messageId"].as_str().expect("id").to_string(), body));
            }
            503 => {
                assert_eq!(r["error"]["code"], "unavailable", "{r}");
                assert!(
                    error_message(&r).contains("nothing was stored"),
                    "{}",
                    error_message(&r)
                );
                refused += 1;
                if refused == 10 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {r}"),
        }
    }
    assert_eq!(refused, 10);
    assert!(
        stored.len() >= 40,
        "only {} stored before the limit",
        stored.len()
    );
    let segments = d.files_in("segments");
    assert_eq!(segments, 1, "refused appends started new segment files");

    // A large body streams to a file of its own, which hits the limit too.
    let (status, r) = d.post(&url, noise(5 << 20, 999)).await;
    assert_eq!(status, 503, "{r}");
    assert!(
        error_message(&r).contains("could not be written to disk"),
        "{r}"
    );
    let incoming = d.files_in("incoming");
    assert_eq!(incoming, 0, "a refused body's file was left in incoming/");

    let listed = d.ok("message.list", json!({"limit": 1000})).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(stored.len()));
    for (id, body) in &stored {
        assert_eq!(
            &d.raw("message.body", json!({"id": id})).await.1,
            body,
            "{id}"
        );
    }
}
