//! Incoming verification and abuse protection: every signature scheme over raw bytes, visible
//! rejections, deduplication, rate limits, source allow-lists, slow clients.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use hookd_e2e::{Daemon, Options, error_message, noise, sha256};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn webhook_with(d: &Daemon, key: &str, extra: Value) -> String {
    let mut params = json!({"eventKey": key});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let w = d.ok("webhook.put", params).await;
    w["webhookUrl"].as_str().expect("url").to_string()
}

async fn post(d: &Daemon, url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut req = d.http().post(url).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The newest rejected message of a webhook url.
async fn last_rejection(d: &Daemon) -> Value {
    let list = d
        .ok("message.list", json!({"status": "rejected", "limit": 1}))
        .await;
    list[0].clone()
}

#[tokio::test]
async fn github_signatures_verify_over_raw_bytes_and_failures_are_recorded_with_their_reason() {
    let d = Daemon::start().await;
    let url = webhook_with(
        &d,
        "webhook.github.push",
        json!({"verify": {"scheme": "github", "secret": "It's a Secret to Everybody"}}),
    )
    .await;
    let w = d.ok("webhook.get", json!({})).await;
    assert_eq!(
        w[0]["verify"],
        json!({"scheme": "github", "secret": "••••"}),
        "secrets are never shown"
    );
    (d.ok("pipeline.put", json!({"name": "gh", "pipeline": "pipeline:\n  - event.listen:\n      eventKey: webhook.github.push\n  - log\n"})).await);
    let mut ev = d.events("types=message.*,execution.*").await;
    let mut seen_run = false;

    let body = br#"{"ref":"refs/heads/main"}"#;
    let sig = format!(
        "sha256={}",
        hex::encode(hmac256(b"It's a Secret to Everybody", &[body]))
    );
    let (status, v) = post(&d, &url, &[("X-Hub-Signature-256", sig.clone())], body).await;
    assert_eq!(status, 200, "{v}");
    let f = ev.next().await;
    assert_eq!(
        (f["type"].as_str(), f["data"]["verification"].as_str()),
        (Some("message.received"), Some("passed"))
    );

    for (headers, body, reason) in [
        (
            vec![("X-Hub-Signature-256", sig.clone())],
            &br#"{"ref":"refs/heads/evil"}"#[..],
            "signature mismatch",
        ),
        (
            vec![(
                "X-Hub-Signature-256",
                format!("sha256={}", hex::encode(hmac256(b"wrong", &[body]))),
            )],
            &body[..],
            "signature mismatch",
        ),
        (vec![], &body[..], "missing X-Hub-Signature-256 header"),
    ] {
        let (status, v) = post(&d, &url, &headers, body).await;
        assert_eq!(status, 401);
        let msg = error_message(&v);
        assert!(
            !msg.contains("mismatch") && !msg.contains("missing"),
            "no detail for the sender: {msg}"
        );
        let r = last_rejection(&d).await;
        assert_eq!(
            (r["status"].as_str(), r["reason"].as_str()),
            (Some("rejected"), Some(reason))
        );
        let m = d.ok("message.get", json!({"id": r["id"]})).await;
        assert_eq!(m["sha256"], sha256(body));
        assert_eq!(m["body"].as_str().map(str::as_bytes), Some(body));
        // The accepted message's execution events may come first.
        let f = ev.until(|f| f["type"] == "message.rejected").await;
        seen_run |= f.iter().any(|f| f["type"] == "execution.finished");
        assert_eq!(
            f.last().map(|f| f["data"]["reason"].clone()),
            Some(json!(reason))
        );
    }
    // Exactly one execution: the verified request's; rejected ones fire nothing.
    if !seen_run {
        ev.until(|f| f["type"] == "execution.finished").await;
    }
    let runs = d.ok("execution.list", json!({})).await;
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
}

#[tokio::test]
async fn a_multipart_body_with_binary_files_verifies_and_large_rejections_keep_64_kib() {
    let d = Daemon::start().await;
    let url = webhook_with(
        &d,
        "webhook.upload",
        json!({"verify": {"scheme": "github", "secret": "s"}}),
    )
    .await;
    let file = noise(300_000, 3);
    let mut body =
        b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\r\n".to_vec();
    body.extend(&file);
    body.extend(b"\r\n--B--\r\n");
    let sig = format!("sha256={}", hex::encode(hmac256(b"s", &[&body])));
    let ct = (
        "content-type",
        "multipart/form-data; boundary=B".to_string(),
    );
    let (status, v) = post(
        &d,
        &url,
        &[("X-Hub-Signature-256", sig.clone()), ct.clone()],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let m = d.ok("message.get", json!({"id": v["messageId"]})).await;
    assert_eq!(m["files"][0]["sha256"], sha256(&file));
    assert_eq!(m["verification"], "passed");

    let mut tampered = body.clone();
    tampered[200_000] ^= 1;
    let (status, _) = post(&d, &url, &[("X-Hub-Signature-256", sig), ct], &tampered).await;
    assert_eq!(status, 401);
    let r = last_rejection(&d).await;
    let m = d.ok("message.get", json!({"id": r["id"]})).await;
    assert_eq!(m["size"], tampered.len());
    assert_eq!(
        m["sha256"],
        sha256(&tampered),
        "the hash covers the whole body"
    );
    let kept = d.raw("message.body", json!({"id": r["id"]})).await.1;
    assert!(
        kept == tampered[..64 * 1024],
        "the first 64 KiB are kept (got {} bytes)",
        kept.len()
    );
    let leftover = d.files_in("files");
    assert_eq!(leftover, 1, "only the accepted body's file is kept");
}

#[tokio::test]
async fn stripe_hmac_token_and_basic_schemes() {
    let d = Daemon::start().await;
    let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;

    let stripe = webhook_with(
        &d,
        "webhook.stripe",
        json!({"verify": {"scheme": "stripe", "secret": "whsec_stripe", "tolerance": 300}}),
    )
    .await;
    let t = now();
    let sig = |ts: i64| {
        hex::encode(hmac256(
            b"whsec_stripe",
            &[format!("{ts}.").as_bytes(), body],
        ))
    };
    let header = format!("t={t},v1={},v1={}", "00".repeat(32), sig(t));
    assert_eq!(
        post(&d, &stripe, &[("Stripe-Signature", header)], body)
            .await
            .0,
        200
    );
    let old = t - 412;
    let (status, _) = post(
        &d,
        &stripe,
        &[("Stripe-Signature", format!("t={old},v1={}", sig(old)))],
        body,
    )
    .await;
    assert_eq!(status, 401);
    let reason = last_rejection(&d).await["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with("timestamp outside tolerance (41"),
        "{reason}"
    );

    let generic = webhook_with(
        &d,
        "webhook.generic",
        json!({"verify": {"scheme": "hmac", "secret": "k", "header": "X-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": "sha512="}}),
    )
    .await;
    let mut m = Hmac::<sha2::Sha512>::new_from_slice(b"k").expect("key");
    m.update(body);
    let good = format!("sha512={}", STANDARD.encode(m.finalize().into_bytes()));
    assert_eq!(
        post(&d, &generic, &[("X-Signature", good)], body).await.0,
        200
    );
    assert_eq!(
        post(&d, &generic, &[("X-Signature", "sha512=AAAA".into())], body)
            .await
            .0,
        401
    );

    let token = webhook_with(
        &d,
        "webhook.token",
        json!({"verify": {"scheme": "token", "secrets": ["t1", "t2"], "header": "X-Token"}}),
    )
    .await;
    assert_eq!(
        post(&d, &token, &[("X-Token", "t2".into())], body).await.0,
        200
    );
    assert_eq!(
        post(&d, &token, &[("X-Token", "t3".into())], body).await.0,
        401
    );
    assert_eq!(last_rejection(&d).await["reason"], "token mismatch");
    let query = webhook_with(
        &d,
        "webhook.query",
        json!({"verify": {"scheme": "token", "secret": "qq", "query": "key"}}),
    )
    .await;
    assert_eq!(post(&d, &format!("{query}&key=qq"), &[], body).await.0, 200);

    let basic = webhook_with(
        &d,
        "webhook.basic",
        json!({"verify": {"scheme": "basic", "username": "u", "password": "p"}}),
    )
    .await;
    let ok = format!("Basic {}", STANDARD.encode("u:p"));
    assert_eq!(
        post(&d, &basic, &[("Authorization", ok)], body).await.0,
        200
    );
    assert_eq!(
        post(
            &d,
            &basic,
            &[("Authorization", format!("Basic {}", STANDARD.encode("u:x")))],
            body
        )
        .await
        .0,
        401
    );
}

#[tokio::test]
async fn standard_webhooks_signed_by_the_official_library_verify_with_rotation() {
    let d = Daemon::start().await;
    let old = d.ok("secret.generate", json!({})).await["secret"]
        .as_str()
        .expect("s")
        .to_string();
    let new = d.ok("secret.generate", json!({})).await["secret"]
        .as_str()
        .expect("s")
        .to_string();
    let other = d.ok("secret.generate", json!({})).await["secret"]
        .as_str()
        .expect("s")
        .to_string();
    let url = webhook_with(
        &d,
        "webhook.std",
        json!({"verify": {"scheme": "standard", "secrets": [old, new]}}),
    )
    .await;
    let body = br#"{"type":"invoice.paid","amount":1200}"#;
    let ts = now();
    for (i, (secret, expect)) in [(&old, 200), (&new, 200), (&other, 401)]
        .into_iter()
        .enumerate()
    {
        let id = format!("msg_{i}");
        let sig = standardwebhooks::Webhook::new(secret)
            .expect("official library")
            .sign(&id, ts, body)
            .expect("sign");
        let headers = [
            ("webhook-id", id),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ];
        assert_eq!(
            post(&d, &url, &headers, body).await.0,
            expect,
            "secret #{i}"
        );
    }
    // Two signatures (a sender mid-rotation), one valid.
    let sig = standardwebhooks::Webhook::new(&new)
        .expect("lib")
        .sign("msg_9", ts, body)
        .expect("sign");
    let both = format!("v1,AAAA {sig}");
    let headers = [
        ("webhook-id", "msg_9".to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", both),
    ];
    assert_eq!(post(&d, &url, &headers, body).await.0, 200);
}

#[tokio::test]
async fn the_same_webhook_id_ten_times_concurrently_is_one_message_and_one_execution() {
    let d = Daemon::start().await;
    let url = webhook_with(&d, "webhook.dedupe", json!({})).await;
    d.ok("pipeline.put", json!({"name": "once", "pipeline": "pipeline:\n  - event.listen:\n      eventKey: webhook.dedupe\n  - log\n"})).await;
    let mut ev = d.events("types=execution.finished").await;
    let same = [("webhook-id", "msg_same".to_string())];
    let sends = (0..10).map(|_| post(&d, &url, &same, b"{\"n\":1}"));
    let answers = futures_util::future::join_all(sends).await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .filter_map(|(_, v)| v["messageId"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the original message");
    assert_eq!(
        answers
            .iter()
            .filter(|(_, v)| v["duplicate"] == true)
            .count(),
        9
    );
    ev.next().await;
    assert_eq!(
        d.ok("message.list", json!({}))
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        d.ok("execution.list", json!({}))
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Another key is another message; dedupe=none turns it off.
    assert_eq!(
        post(&d, &url, &[("X-GitHub-Delivery", "g-1".to_string())], b"x")
            .await
            .1["duplicate"],
        Value::Null
    );
    let off = webhook_with(&d, "webhook.nodedupe", json!({"dedupe": "none"})).await;
    for _ in 0..2 {
        assert_eq!(
            post(&d, &off, &[("webhook-id", "msg_same".to_string())], b"x")
                .await
                .1["duplicate"],
            Value::Null
        );
    }
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_allow_lists_403() {
    let d = Daemon::start_with(Options::config(
        "[server]\nperIpRate = 1000\nperIpBurst = 1000\n",
    ))
    .await;
    let url = webhook_with(
        &d,
        "webhook.limited",
        json!({"rateLimit": {"perSecond": 0.5, "burst": 2}}),
    )
    .await;
    assert_eq!(post(&d, &url, &[], b"1").await.0, 200);
    assert_eq!(post(&d, &url, &[], b"2").await.0, 200);
    let r = d.http().post(&url).body("3").send().await.expect("post");
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=2).contains(&retry), "{retry}");

    let closed = webhook_with(&d, "webhook.closed", json!({"allowCidrs": ["10.0.0.0/8"]})).await;
    assert_eq!(post(&d, &closed, &[], b"x").await.0, 403);
    let open = webhook_with(&d, "webhook.open", json!({"allowCidrs": ["127.0.0.0/8"]})).await;
    assert_eq!(post(&d, &open, &[], b"x").await.0, 200);

    // The per-IP limit, and X-Forwarded-For believed only from trusted proxies.
    let d = Daemon::start_with(Options::config(
        "[server]\nperIpRate = 0.1\nperIpBurst = 1\ntrustedProxies = [\"127.0.0.1/32\"]\n",
    ))
    .await;
    let url = webhook_with(&d, "webhook.ip", json!({})).await;
    let from = |ip: &str| vec![("X-Forwarded-For", ip.to_string())];
    assert_eq!(post(&d, &url, &from("203.0.113.1"), b"x").await.0, 200);
    assert_eq!(post(&d, &url, &from("203.0.113.1"), b"x").await.0, 429);
    assert_eq!(
        post(&d, &url, &from("203.0.113.2"), b"x").await.0,
        200,
        "another client has its own bucket"
    );
    // IPv6 clients are limited per /64: rotating through it gets nowhere (issue 28).
    assert_eq!(post(&d, &url, &from("2001:db8:7:1::1"), b"x").await.0, 200);
    assert_eq!(post(&d, &url, &from("2001:db8:7:1::2"), b"x").await.0, 429);
    assert_eq!(
        post(&d, &url, &from("2001:db8:7:1:ffff::9"), b"x").await.0,
        429
    );
    assert_eq!(post(&d, &url, &from("2001:db8:7:2::1"), b"x").await.0, 200);
}

/// A deleted webhook's rate-limit bucket goes with it: created again under its uuid, it starts
/// with a full burst (issue 28).
#[tokio::test]
async fn a_webhook_created_again_starts_with_a_full_bucket() {
    let d = Daemon::start().await;
    let limit = json!({"perSecond": 0.001, "burst": 1});
    let w = d
        .ok(
            "webhook.put",
            json!({"eventKey": "webhook.again", "rateLimit": limit}),
        )
        .await;
    let (uuid, url) = (
        w["uuid"].clone(),
        w["webhookUrl"].as_str().expect("url").to_string(),
    );
    assert_eq!(post(&d, &url, &[], b"1").await.0, 200);
    assert_eq!(post(&d, &url, &[], b"2").await.0, 429);
    d.ok("webhook.delete", json!({"uuid": uuid})).await;
    d.ok(
        "webhook.put",
        json!({"uuid": uuid, "eventKey": "webhook.again", "rateLimit": limit}),
    )
    .await;
    assert_eq!(post(&d, &url, &[], b"3").await.0, 200);
}

#[tokio::test]
async fn slow_loris_and_trickling_bodies_are_cut_off_while_others_are_served() {
    let d = Daemon::start_with(Options::config("[server]\nheaderReadTimeout = \"1s\"\n")).await;
    let url = webhook_with(&d, "webhook.slow", json!({})).await;
    let addr = d.url.trim_start_matches("http://").to_string();
    let path = url
        .split_once(&addr)
        .map(|(_, p)| p.to_string())
        .expect("path");

    // Headers one byte every 300 ms: the daemon hangs up long before they are complete.
    let loris = {
        let (addr, path) = (addr.clone(), path.clone());
        tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Padding: {}\r\n\r\n",
                "a".repeat(40)
            );
            for b in head.bytes() {
                if s.write_all(&[b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            false
        })
    };
    // A body trickled at one byte every 300 ms: 408 and nothing stored.
    let trickle = {
        let (addr, path) = (addr.clone(), path.clone());
        tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
            s.write_all(head.as_bytes()).await.expect("head");
            for _ in 0..1000 {
                if s.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut buf = [0u8; 512];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
                {
                    return String::from_utf8_lossy(&buf[..n]).into_owned();
                }
            }
            String::new()
        })
    };
    // Meanwhile, normal clients are served.
    for i in 0..20 {
        assert_eq!(post(&d, &url, &[], format!("{i}").as_bytes()).await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        loris.await.expect("loris"),
        "the slow-loris connection was closed"
    );
    let answer = trickle.await.expect("trickle");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        d.ok("message.list", json!({"limit": 100}))
            .await
            .as_array()
            .map(Vec::len),
        Some(20)
    );
}

/// Issue 29: what a sender authenticated with is masked in what `message.get` and a run's
/// rebuilt event show (the token scheme's query parameter and header, Authorization, Cookie,
/// Proxy-Authorization); an admin gets the capture as it came with `raw=true`, a viewer cannot.
#[tokio::test]
async fn captured_credentials_are_masked_unless_an_admin_asks_for_the_raw_capture() {
    let d = Daemon::start().await;
    let url = webhook_with(
        &d,
        "webhook.masked",
        json!({"verify": {"scheme": "token", "secret": "s3cr3t-query", "query": "key"}}),
    )
    .await;
    let (status, v) = d
        .call(
            "pipeline.put",
            json!({"name": "seen", "pipeline": "pipeline:\n  - event.listen:\n      eventKey: webhook.masked\n  - log\n"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut ev = d.events("types=execution.finished").await;
    let headers = [
        ("Authorization", "Bearer s3cr3t-bearer".to_string()),
        ("Cookie", "session=s3cr3t-cookie".to_string()),
        ("X-Plain", "visible".to_string()),
    ];
    let (status, r) = post(
        &d,
        &format!("{url}&key=s3cr3t-query&tag=a b"),
        &headers,
        b"{}",
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let id = r["messageId"].as_str().expect("id").to_string();
    let viewer = d.viewer_token("v").await;

    let (status, m) = d.call_as(&viewer, "message.get", json!({"id": id})).await;
    assert_eq!(status, 200);
    let text = m.to_string();
    assert!(
        !text.contains("s3cr3t"),
        "a viewer sees a credential: {text}"
    );
    assert!(text.contains("visible") && text.contains("tag"), "{text}");
    let (status, _) = d
        .call_as(&viewer, "message.get", json!({"id": id, "raw": true}))
        .await;
    assert_eq!(status, 403);
    let raw = d.ok("message.get", json!({"id": id, "raw": true})).await;
    let raw = raw.to_string();
    for secret in ["s3cr3t-query", "s3cr3t-bearer", "s3cr3t-cookie"] {
        assert!(raw.contains(secret), "raw=true keeps {secret}");
    }

    let run = ev.next().await;
    let (status, e) = d
        .call_as(&viewer, "execution.get", json!({"id": run["data"]["id"]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(e["body"]["payload"]["headers"]["x-plain"], "visible", "{e}");
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}
