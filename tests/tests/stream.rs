//! The WebSocket event stream: commit order, resume without gaps, filters, slow clients, auth.

use std::sync::Arc;

use hookd_e2e::{Daemon, Options, Refused};
use serde_json::{Value, json};

async fn post(d: &Daemon, url: &str, body: String) -> String {
    let r = d.http().post(url).body(body).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().await.expect("json")["messageId"]
        .as_str()
        .expect("messageId")
        .to_string()
}

/// Message ids in commit order (message.list is newest first).
async fn ids_in_commit_order(d: &Daemon, limit: usize) -> Vec<String> {
    let list = d.ok("message.list", json!({"limit": limit})).await;
    let mut ids: Vec<String> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    ids.reverse();
    ids
}

fn ids_of(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "message.received")
        .filter_map(|f| f["data"]["id"].as_str().map(str::to_string))
        .collect()
}

fn assert_consecutive(frames: &[Value]) {
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "seqs must increase by one: {seqs:?}");
    }
}

#[tokio::test]
async fn a_connected_client_sees_each_message_in_commit_order() {
    let d = Daemon::start().await;
    let (url, uuid) = d.webhook("webhook.github.push").await;
    let mut ev = d.events("").await;

    let id = post(&d, &url, "{\"n\":1}".into()).await;
    let f = ev.next().await;
    assert_eq!(f["type"], "message.received");
    assert_eq!(f["data"]["id"], id.as_str());
    assert_eq!(f["data"]["uuid"], uuid.as_str());
    assert_eq!(f["data"]["eventKey"], "webhook.github.push");
    assert!(f["seq"].as_u64().is_some() && f["at"].is_string());

    // Concurrent posts share commits; the stream still follows commit order exactly.
    let posts = (0..20).map(|i| post(&d, &url, format!("{{\"n\":{i}}}")));
    futures_util::future::join_all(posts).await;
    let frames = ev.take(20).await;
    assert_consecutive(&frames);
    assert_eq!(ids_of(&frames), ids_in_commit_order(&d, 20).await);
}

#[tokio::test]
async fn resume_with_since_gets_exactly_the_missed_events_then_live() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.resume").await;
    let mut ev = d.events("").await;
    post(&d, &url, "first".into()).await;
    let seen = ev.next().await["seq"].as_u64().expect("seq");
    drop(ev);

    let posts = (0..100).map(|i| post(&d, &url, format!("missed {i}")));
    futures_util::future::join_all(posts).await;
    let mut ev = d.events(&format!("since={seen}")).await;
    let frames = ev.take(100).await;
    assert_eq!(frames[0]["seq"].as_u64(), Some(seen + 1));
    assert_consecutive(&frames);
    assert_eq!(ids_of(&frames), ids_in_commit_order(&d, 100).await);

    // Then live, with no duplicate at the seam.
    let live = post(&d, &url, "live".into()).await;
    let f = ev.next().await;
    assert_eq!(f["seq"].as_u64(), Some(seen + 101));
    assert_eq!(f["data"]["id"], live.as_str());
}

#[tokio::test]
async fn a_client_that_stops_reading_lags_but_never_slows_receiving() {
    const N: usize = 10_000;
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.flood").await;
    // A tiny receive buffer: once it and the daemon's send buffer fill, this client is stuck.
    let mut slow = d
        .events_with(&format!("token={}", d.token), Some(4096))
        .await
        .expect("connect");

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (http, url, next) = (d.http().clone(), url.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut ok = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < N {
                let r = http
                    .post(&url)
                    .body("x".repeat(200))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status().as_u16(), 200);
                ok += 1;
            }
            ok
        }));
    }
    let mut posted = 0;
    for w in workers {
        posted += w.await.expect("worker");
    }
    assert_eq!(posted, N, "every post succeeded while a client was stuck");

    // The slow client, reading again, is told it lagged and catches up to the last event.
    let last_seq = (N + 1) as u64; // webhook.created + N messages
    let mut lagged = false;
    let mut prev = 0;
    loop {
        let f = slow.next().await;
        let seq = f["seq"].as_u64().expect("seq");
        if f["type"] == "stream.lagged" {
            lagged = true;
            assert_eq!(
                f["data"]["missed"], 0,
                "nothing is lost: it catches up from the log"
            );
            continue;
        }
        assert!(seq > prev, "no duplicates, in order");
        prev = seq;
        if seq == last_seq {
            break;
        }
    }
    assert!(lagged, "the slow client was sent stream.lagged");

    // A fresh client sees everything.
    let mut fresh = d.events("since=0").await;
    let frames = fresh.take(N + 1).await;
    assert_eq!(frames[0]["type"], "webhook.created");
    assert_consecutive(&frames);
    assert_eq!(frames[N]["seq"].as_u64(), Some(last_seq));
}

#[tokio::test]
async fn tokens_are_required_and_filters_deliver_only_matches() {
    let d = Daemon::start().await;
    assert_eq!(d.events_with("", None).await.err().map(|r| r.0), Some(401));
    let Err(Refused(code)) = d.events_with("token=wrong", None).await else {
        panic!("a wrong token must be refused");
    };
    assert_eq!(code, 401);
    let viewer = d.viewer_token("tui").await;

    let mut github = d
        .events_with(
            &format!("token={viewer}&eventKey=webhook.github.%23&types=message.*"),
            None,
        )
        .await
        .expect("a viewer token suffices");
    let mut hooks = d.events("types=webhook.*").await;
    let (gh, _) = d.webhook("webhook.github.push").await;
    let (stripe, _) = d.webhook("webhook.stripe.charge").await;
    post(&d, &stripe, "s".into()).await;
    let want = post(&d, &gh, "g".into()).await;

    let f = github.next().await;
    assert_eq!(
        (f["type"].as_str(), f["data"]["id"].as_str()),
        (Some("message.received"), Some(want.as_str()))
    );
    let f = hooks.take(2).await;
    assert!(f.iter().all(|f| f["type"] == "webhook.created"), "{f:?}");

    let (status, _) = (
        d.http()
            .get(format!("{}/api/v3/events?token={}", d.url, d.token))
            .send()
            .await
            .expect("get")
            .status()
            .as_u16(),
        (),
    );
    assert_eq!(status, 400, "a plain GET is told to use a WebSocket client");
    assert_eq!(
        d.events_with(&format!("token={}&types=bogus.*", d.token), None)
            .await
            .err()
            .map(|r| r.0),
        Some(400),
        "a types pattern that matches no type is refused"
    );
    assert_eq!(
        d.events_with(&format!("token={}&since=abc", d.token), None)
            .await
            .err()
            .map(|r| r.0),
        Some(400)
    );
}

#[tokio::test]
async fn a_since_older_than_the_pruned_log_starts_with_lagged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("hookd.toml");
    std::fs::write(&cfg, "[events]\nmaxCount = 5\n").expect("write");
    let mut d = Daemon::start_with(Options {
        args: vec!["--config".into(), cfg.to_string_lossy().into()],
        ..Options::default()
    })
    .await;
    let (url, _) = d.webhook("webhook.prune").await;
    for i in 0..20 {
        post(&d, &url, format!("{i}")).await;
    }
    // Pruning runs at start-up (and every minute after).
    d.stop().await;
    d.start_again().await;
    let mut ev = d.events("since=0").await;
    let f = ev.next().await;
    assert_eq!(f["type"], "stream.lagged");
    assert_eq!(f["data"]["missed"], 16, "21 events, the last 5 kept");
    let frames = ev.take(5).await;
    assert_eq!(frames[0]["seq"], 17);
    assert_consecutive(&frames);
}

#[tokio::test]
async fn clients_get_a_1001_close_when_hookd_stops() {
    let mut d = Daemon::start().await;
    let mut ev = d.events("").await;
    let stop = async {
        d.stop().await;
    };
    let (_, f) = tokio::join!(stop, ev.next());
    assert_eq!(f["type"], "close");
    assert_eq!(f["code"], 1001);
}

/// RFC 6455 §4.1: only a GET with `Connection: Upgrade` and `Upgrade: websocket` opens the
/// stream; anything else is refused before a session (and its client slot) is taken.
#[tokio::test]
async fn only_a_get_with_connection_upgrade_opens_the_stream() {
    let d = Daemon::start().await;
    let url = format!("{}/api/v3/events?token={}", d.url, d.token);
    let handshake = |m: reqwest::Method, connection: Option<&'static str>| {
        let mut r = d
            .http()
            .request(m, &url)
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Version", "13");
        if let Some(c) = connection {
            r = r.header("Connection", c);
        }
        r.send()
    };
    let post = handshake(reqwest::Method::POST, Some("Upgrade"))
        .await
        .expect("post");
    assert_eq!(post.status().as_u16(), 405);
    let body: Value = post.json().await.expect("json error");
    assert!(hookd_e2e::error_message(&body).contains("GET"), "{body}");
    let no_connection = handshake(reqwest::Method::GET, Some("keep-alive"))
        .await
        .expect("get");
    assert_eq!(no_connection.status().as_u16(), 400);
    // The same handshake with the header opens it (as a list, as browsers may send it).
    let ok = handshake(reqwest::Method::GET, Some("keep-alive, Upgrade"))
        .await
        .expect("get");
    assert_eq!(ok.status().as_u16(), 101);
}

/// Issue 29: clients over `[events] maxClients` get 503 (with Retry-After), and a storm of them
/// leaves one warning in the log, not an error line each.
#[tokio::test]
async fn clients_over_the_cap_are_refused_with_one_log_line() {
    let d = Daemon::start_with(Options::config("[events]\nmaxClients = 1\n")).await;
    let _first = d.events("").await;
    for _ in 0..5 {
        let refused = d.events_with(&format!("token={}", d.token), None).await;
        assert_eq!(refused.err().map(|r| r.0), Some(503));
    }
    let log = d.log_text();
    assert_eq!(
        log.matches("event stream clients refused").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("too many event stream clients"), "{log}");
}
