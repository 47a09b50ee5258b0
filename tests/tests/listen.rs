//! `hookd listen`: a real daemon, a real listener process and a local sink. What the sink gets
//! must be what the sender sent, in commit order, once, whatever happened in between.

use hmac::{Hmac, Mac};
use hookd_e2e::listen::Listener;
use hookd_e2e::sink::{HttpSink, Received, Reply};
use hookd_e2e::tls::TlsFront;
use hookd_e2e::{Daemon, Options, noise};
use serde_json::{Value, json};

/// Posts `body` with `headers` to a webhook URL; returns the message id.
async fn send(d: &Daemon, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> String {
    let mut req = d.http().post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.expect("json");
    v["messageId"].as_str().expect("messageId").to_string()
}

/// Posts a small body; returns the message id.
async fn post(d: &Daemon, url: &str, body: &str) -> String {
    send(d, url, &[("content-type", "text/plain")], body.into()).await
}

fn id_of(r: &Received) -> &str {
    r.header("x-hookd-message-id").unwrap_or_default()
}

/// The next `n` requests' message ids.
async fn ids(sink: &mut HttpSink, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(id_of(&sink.next().await).to_string());
    }
    out
}

/// A listener of every message of `d` to `app`, reporting in JSON, with its state in `state`.
fn listener(d: &Daemon, app: &str, state: &str, extra: &[&str]) -> Listener {
    let mut args = vec!["--forward-to", app, "--json", "--state", state];
    args.extend_from_slice(extra);
    d.listen(&args)
}

fn state_file(d: &Daemon, name: &str) -> String {
    d.tmp().join(name).display().to_string()
}

#[tokio::test]
async fn json_binary_and_multipart_arrive_byte_identical_with_their_headers() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.github.push").await;
    let mut sink = HttpSink::start().await;
    let forward_to = format!("{}/webhooks/github?app=1", sink.url);
    let state = state_file(&d, "state.json");
    let mut l = listener(
        &d,
        &forward_to,
        &state,
        &["--since", "now", "--header", "X-Extra: yes"],
    );
    l.note("starting after event").await;

    // GitHub-signed JSON, with a query of its own.
    let secret = "It's a Secret to Everybody";
    let json_body = br#"{"ref":"refs/heads/main","commits":[{"id":"a1"}]}"#.to_vec();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&json_body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let signed = send(
        &d,
        &format!("{url}&x=2&x=3"),
        &[
            ("content-type", "application/json"),
            ("x-github-event", "push"),
            ("x-hub-signature-256", &signature),
            ("x-github-delivery", "72d3162e"),
        ],
        json_body.clone(),
    )
    .await;
    // Small binary (sent with its capture) and large binary (streamed from the server).
    let mut small = b"\x00\xff\xfe not UTF-8 \xc3\x28 \x00".to_vec();
    small.extend(noise(1000, 7));
    let large = noise(3 * 1024 * 1024 + 17, 8);
    let binary = [("content-type", "application/octet-stream")];
    let small_id = send(&d, &url, &binary, small.clone()).await;
    let large_id = send(&d, &url, &binary, large.clone()).await;
    // Multipart with two files.
    let mut multipart = Vec::new();
    for (name, file, bytes) in [
        ("a", "a.bin", noise(5000, 9)),
        ("b", "b.bin", noise(70_000, 10)),
    ] {
        multipart.extend_from_slice(
            format!(
                "--XB\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        multipart.extend(bytes);
        multipart.extend_from_slice(b"\r\n");
    }
    multipart.extend_from_slice(b"--XB--\r\n");
    let multi_id = send(
        &d,
        &url,
        &[("content-type", "multipart/form-data; boundary=XB")],
        multipart.clone(),
    )
    .await;

    let got = sink.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/webhooks/github?app=1&x=2&x=3");
    assert_eq!(got.body, json_body);
    assert_eq!(id_of(&got), signed);
    assert_eq!(got.header("x-hookd-event-key"), Some("webhook.github.push"));
    assert_eq!(got.header("x-extra"), Some("yes"));
    assert_eq!(
        got.header("content-length"),
        Some(json_body.len().to_string().as_str())
    );
    // The app checks the signature with the same secret, over the bytes it received.
    let mut check = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    check.update(&got.body);
    check
        .verify_slice(
            &hex::decode(&got.header("x-hub-signature-256").expect("signature")["sha256=".len()..])
                .expect("hex"),
        )
        .expect("the signature verifies at the app");
    // The captured headers, in their order, minus the hop-by-hop ones.
    let captured = d
        .ok("message.get", json!({"id": signed, "raw": true}))
        .await;
    let hop = ["host", "content-length", "connection", "transfer-encoding"];
    let want: Vec<(String, String)> = captured["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap_or_default().to_string(),
                h[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(k, _)| !hop.contains(&k.as_str()))
        .collect();
    let sent: Vec<(String, String)> = got
        .headers
        .iter()
        .filter(|(k, _)| !hop.contains(&k.as_str()) && !k.starts_with("x-hookd-") && k != "x-extra")
        .cloned()
        .collect();
    assert_eq!(sent, want);

    for (id, body) in [
        (&small_id, &small),
        (&large_id, &large),
        (&multi_id, &multipart),
    ] {
        let got = sink.next().await;
        assert_eq!(id_of(&got), id.as_str());
        assert!(
            got.body == *body,
            "body of {id} differs ({} bytes)",
            got.body.len()
        );
        assert_eq!(got.path, "/webhooks/github?app=1");
    }
    for id in [&signed, &small_id, &large_id, &multi_id] {
        let line = l.next_json().await;
        assert_eq!(line["messageId"], id.as_str());
        assert_eq!(line["status"], 200);
        assert_eq!(line["attempt"], 1);
        assert_eq!(line["eventKey"], "webhook.github.push");
        assert_eq!(line["method"], "POST");
    }
}

#[tokio::test]
async fn webhook_and_event_key_filters_forward_only_what_they_name() {
    let d = Daemon::start().await;
    let (a_url, a) = d.webhook("shop.order.created").await;
    let (b_url, _) = d.webhook("git.push").await;
    let mut by_webhook = HttpSink::start().await;
    let mut by_key = HttpSink::start().await;
    let s1 = state_file(&d, "a.json");
    let s2 = state_file(&d, "b.json");
    let _l1 = listener(
        &d,
        &by_webhook.url,
        &s1,
        &["--since", "all", "--webhook", &a],
    );
    let _l2 = listener(
        &d,
        &by_key.url,
        &s2,
        &["--since", "all", "--event-key", "git.#"],
    );
    let a1 = post(&d, &a_url, "a1").await;
    let b1 = post(&d, &b_url, "b1").await;
    let a2 = post(&d, &a_url, "a2").await;
    let b2 = post(&d, &b_url, "b2").await;
    // In commit order: had b1 been forwarded by the first listener, it would come before a2.
    assert_eq!(ids(&mut by_webhook, 2).await, [a1, a2]);
    assert_eq!(ids(&mut by_key, 2).await, [b1, b2]);
}

#[tokio::test]
async fn a_killed_listener_resumes_with_exactly_what_it_missed_in_order() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.resume").await;
    let mut sink = HttpSink::start().await;
    let state = state_file(&d, "state.json");
    let mut l = listener(&d, &sink.url, &state, &[]);
    // First run of this listener: `last` means now.
    l.note("starting after event").await;
    let first = post(&d, &url, "first").await;
    assert_eq!(ids(&mut sink, 1).await, vec![first.clone()]);
    assert_eq!(l.next_json().await["messageId"], first.as_str());
    l.kill9().await;

    let mut missed = Vec::new();
    for i in 0..50 {
        missed.push(post(&d, &url, &format!("while away {i}")).await);
    }
    let _l = listener(&d, &sink.url, &state, &[]);
    assert_eq!(ids(&mut sink, 50).await, missed);
    // Nothing twice: the next request is the next message.
    let after = post(&d, &url, "after").await;
    assert_eq!(ids(&mut sink, 1).await, vec![after.clone()]);

    // --since now skips the backlog; --since all starts at the beginning of the log.
    let mut now_sink = HttpSink::start().await;
    let mut l_now = listener(
        &d,
        &now_sink.url,
        &state_file(&d, "now.json"),
        &["--since", "now"],
    );
    l_now.note("starting after event").await;
    let live = post(&d, &url, "live").await;
    assert_eq!(ids(&mut now_sink, 1).await, vec![live.clone()]);
    let mut all_sink = HttpSink::start().await;
    let _l_all = listener(
        &d,
        &all_sink.url,
        &state_file(&d, "all.json"),
        &["--since", "all"],
    );
    let mut everything = vec![first];
    everything.extend(missed);
    everything.push(after);
    everything.push(live);
    assert_eq!(ids(&mut all_sink, everything.len()).await, everything);
    assert_eq!(
        sink.next().await.header("x-hookd-message-id"),
        Some(everything[everything.len() - 1].as_str())
    );
}

#[tokio::test]
async fn a_failing_app_gets_the_message_again_until_it_answers_and_order_holds() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.retry").await;
    // A port nothing listens on yet: the app is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let forward_to = format!("http://127.0.0.1:{port}/hook");
    let state = state_file(&d, "state.json");
    let mut l = listener(&d, &forward_to, &state, &["--since", "all"]);
    let m1 = post(&d, &url, "one").await;
    let m2 = post(&d, &url, "two").await;
    let down = l.next_json().await;
    assert_eq!(down["messageId"], m1.as_str());
    assert_eq!(down["attempt"], 1);
    assert!(
        down["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );
    assert_eq!(down["retryInMs"], 1000);
    // The app comes up and answers 500, 500, then 200.
    let mut sink = HttpSink::start_on(port).await;
    sink.script([Reply::Status(500), Reply::Status(500)]);
    let m3 = post(&d, &url, "three").await;
    let mut attempts = Vec::new();
    loop {
        let line = l.next_json().await;
        assert_eq!(line["messageId"], m1.as_str(), "{line}");
        let done = line["status"] == 200;
        attempts.push(line);
        if done {
            break;
        }
    }
    // Every attempt after the first failure is reported, with the app's status once it answers.
    let statuses: Vec<&Value> = attempts.iter().map(|a| &a["status"]).collect();
    assert_eq!(
        &statuses[statuses.len() - 3..],
        [&json!(500), &json!(500), &json!(200)]
    );
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], i + 2);
    }
    assert_eq!(
        attempts[attempts.len() - 2]["retryInMs"]
            .as_u64()
            .map(|ms| ms >= 2000),
        Some(true)
    );
    assert_eq!(
        ids(&mut sink, 5).await,
        [m1.clone(), m1.clone(), m1, m2, m3]
    );
}

#[tokio::test]
async fn a_4xx_is_reported_and_the_listener_moves_on() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.refused").await;
    let mut sink = HttpSink::start().await;
    sink.script([Reply::Status(422)]);
    let mut l = listener(
        &d,
        &sink.url,
        &state_file(&d, "s.json"),
        &["--since", "all"],
    );
    let m1 = post(&d, &url, "bad").await;
    let m2 = post(&d, &url, "good").await;
    assert_eq!(ids(&mut sink, 2).await, [m1.clone(), m2.clone()]);
    let first = l.next_json().await;
    assert_eq!(
        (
            first["messageId"].as_str(),
            &first["status"],
            &first["attempt"]
        ),
        (Some(m1.as_str()), &json!(422), &json!(1))
    );
    assert_eq!(l.next_json().await["messageId"], m2.as_str());
}

#[tokio::test]
async fn a_server_restart_while_listening_loses_and_repeats_nothing() {
    let mut d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.restart").await;
    let mut sink = HttpSink::start().await;
    let mut l = listener(
        &d,
        &sink.url,
        &state_file(&d, "s.json"),
        &["--since", "all"],
    );
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(post(&d, &url, &format!("before {i}")).await);
    }
    assert_eq!(ids(&mut sink, 5).await, sent);
    d.stop().await;
    l.note("reconnecting").await;
    d.start_again_at_same_address().await;
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(post(&d, &url, &format!("after {i}")).await);
    }
    assert_eq!(ids(&mut sink, 5).await, after);
    let last = post(&d, &url, "last").await;
    assert_eq!(ids(&mut sink, 1).await, vec![last]);
}

#[tokio::test]
async fn a_wrong_token_or_an_unknown_webhook_exits_2_before_forwarding_anything() {
    let d = Daemon::start().await;
    let (url, uuid) = d.webhook("webhook.x").await;
    send(
        &d,
        &url,
        &[
            ("authorization", "Bearer the-senders-secret"),
            ("x-kept", "1"),
        ],
        b"already here".to_vec(),
    )
    .await;
    let mut sink = HttpSink::start().await;
    let state = state_file(&d, "s.json");
    let mut wrong = listener(
        &d,
        &sink.url,
        &state,
        &["--since", "all", "--token", "not-a-token"],
    );
    assert_eq!(wrong.exit_code().await, 2);
    assert!(
        wrong.stderr().await.contains("refused"),
        "{}",
        wrong.stderr().await
    );
    let unknown = "0b0e4a38-4c62-4b55-9f4e-6d8a5b2f3c11";
    let mut missing = listener(
        &d,
        &sink.url,
        &state,
        &["--since", "all", "--webhook", unknown],
    );
    assert_eq!(missing.exit_code().await, 2);
    assert!(missing.stderr().await.contains(unknown));
    // A viewer token is enough.
    let viewer = d.viewer_token("laptop").await;
    let _ok = listener(
        &d,
        &sink.url,
        &state,
        &["--since", "all", "--webhook", &uuid, "--token", &viewer],
    );
    let got = sink.next().await;
    assert_eq!(got.body, b"already here");
    // What hookd masks for viewers is left out, not sent masked; the rest is sent.
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.header("x-kept"), Some("1"));
    assert!(sink.pending().is_empty());
    // An admin's listener forwards the credential as captured.
    let mut admin_sink = HttpSink::start().await;
    let _admin = listener(
        &d,
        &admin_sink.url,
        &state_file(&d, "admin.json"),
        &["--since", "all"],
    );
    assert_eq!(
        admin_sink.next().await.header("authorization"),
        Some("Bearer the-senders-secret")
    );
}

#[tokio::test]
async fn events_pruned_while_away_are_counted_and_the_rest_forwarded() {
    let d = Daemon::start_with(Options::config("[events]\nmaxCount = 5\n")).await;
    let (url, _) = d.webhook("webhook.pruned").await;
    let mut sink = HttpSink::start().await;
    let state = state_file(&d, "s.json");
    let mut l = listener(&d, &sink.url, &state, &[]);
    l.note("starting after event").await;
    let first = post(&d, &url, "first").await;
    assert_eq!(ids(&mut sink, 1).await, vec![first]);
    assert_eq!(l.next_json().await["status"], 200);
    l.interrupt();
    assert_eq!(l.exit_code().await, 0);
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(post(&d, &url, &format!("m{i}")).await);
    }
    d.ok("store.prune", json!({})).await;
    let mut l = listener(&d, &sink.url, &state, &[]);
    let note = l.note("could not be relayed").await;
    assert!(note.contains("15 events"), "{note}");
    assert_eq!(ids(&mut sink, 5).await, sent[15..]);
}

#[tokio::test]
async fn https_servers_are_checked_against_the_system_roots() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.tls").await;
    let front = TlsFront::start(d.tmp(), d.url.trim_start_matches("http://")).await;
    let mut sink = HttpSink::start().await;
    let state = state_file(&d, "s.json");
    let app = sink.url.clone();
    let args = [
        "--forward-to",
        &app,
        "--json",
        "--state",
        &state,
        "--since",
        "all",
    ];
    let ca = front.ca.display().to_string();
    // Trusted (the test CA is the system's roots here): the stream and message.get go over TLS.
    let _l = d.listen_via(&front.url, &args, &[("SSL_CERT_FILE", &ca)]);
    let id = post(&d, &url, "over tls").await;
    assert_eq!(ids(&mut sink, 1).await, vec![id]);
    // Untrusted: refused, and the error says why.
    let mut untrusted = d.listen_via(&front.url, &args, &[("SSL_CERT_FILE", "/nonexistent")]);
    untrusted.note("certificate").await;
}
