//! `webhook.receive`: every request stored byte for byte, and refused requests store nothing.

use hookd_e2e::{Daemon, Options, error_message, noise, sha256};
use serde_json::{Value, json};

async fn post(d: &Daemon, url: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = d
        .http()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// POSTs `chunks` as a chunked body (no Content-Length).
async fn post_chunked(
    d: &Daemon,
    url: &str,
    chunks: Vec<Vec<u8>>,
) -> reqwest::Result<reqwest::Response> {
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    d.http()
        .post(url)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
}

async fn message_id(d: &Daemon, url: &str, content_type: &str, body: Vec<u8>) -> String {
    let (status, v) = post(d, url, content_type, body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ok");
    v["messageId"].as_str().expect("messageId").to_string()
}

/// Nothing in the database and no body file anywhere.
async fn assert_nothing_stored(d: &Daemon) {
    assert_eq!(d.ok("message.list", json!({})).await, json!([]));
    for sub in ["files", "incoming", "segments"] {
        let n = std::fs::read_dir(d.dir.join(sub))
            .map(|r| r.count())
            .unwrap_or(0);
        assert_eq!(n, 0, "{sub}/ should be empty");
    }
}

#[tokio::test]
async fn binary_json_and_invalid_json_bodies_are_stored_exactly() {
    let d = Daemon::start().await;
    let (url, uuid) = d.webhook("webhook.capture.test").await;

    let mut binary = b"\x00\x00NUL\xff\xfe\xc3\x28 invalid utf-8 \x80\x00".to_vec();
    binary.extend(noise(5000, 7));
    let id = message_id(&d, &url, "application/octet-stream", binary.clone()).await;
    assert_eq!(d.raw("message.body", json!({"id": id})).await.1, binary);
    let m = d.ok("message.get", json!({"id": id})).await;
    assert_eq!(m["sha256"], sha256(&binary));
    assert_eq!(m["size"], binary.len());
    assert_eq!(m["encoding"], "base64");
    assert_eq!(m["uuid"], uuid.as_str());
    assert_eq!(m["eventKey"], "webhook.capture.test");

    // Whitespace, key order and escapes survive: nothing is re-encoded.
    let json_body = b"{ \"b\" : 1,\n  \"a\": [1, 2.50, \"\\u00e9\"] }\n".to_vec();
    let id = message_id(&d, &url, "application/json", json_body.clone()).await;
    let (ct, got) = d.raw("message.body", json!({"id": id})).await;
    assert_eq!(got, json_body);
    assert_eq!(ct, "application/json");
    let m = d.ok("message.get", json!({"id": id})).await;
    assert_eq!(m["encoding"], "utf8");
    assert_eq!(m["body"].as_str().map(str::as_bytes), Some(&json_body[..]));

    let broken = b"{\"not\": json".to_vec();
    let id = message_id(&d, &url, "application/json", broken.clone()).await;
    assert_eq!(d.raw("message.body", json!({"id": id})).await.1, broken);

    let list = d.ok("message.list", json!({"uuid": uuid})).await;
    assert_eq!(list.as_array().map(Vec::len), Some(3));
    assert_eq!(list[0]["id"], id.as_str(), "newest first");
}

#[tokio::test]
async fn form_bodies_keep_bytes_and_show_fields_in_order() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.form").await;
    let body = b"a=1&b=hello+world&a=2&c=%C3%A9".to_vec();
    let id = message_id(&d, &url, "application/x-www-form-urlencoded", body.clone()).await;
    assert_eq!(d.raw("message.body", json!({"id": id})).await.1, body);
    let m = d.ok("message.get", json!({"id": id})).await;
    assert_eq!(
        m["form"],
        json!([["a", "1"], ["b", "hello world"], ["a", "2"], ["c", "é"]])
    );
}

/// One part: name, filename, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart body built by hand, so the test knows every byte.
fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, filename, ctype, data) in parts {
        b.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").bytes(),
        );
        if let Some(f) = filename {
            b.extend(format!("; filename=\"{f}\"").bytes());
        }
        b.extend(b"\r\n");
        if let Some(ct) = ctype {
            b.extend(format!("Content-Type: {ct}\r\n").bytes());
        }
        b.extend(b"\r\n");
        b.extend(*data);
        b.extend(b"\r\n");
    }
    b.extend(format!("--{boundary}--\r\n").bytes());
    b
}

#[tokio::test]
async fn multipart_with_three_files_is_stored_once_and_each_file_is_exact() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.upload").await;
    let pdf = [b"%PDF-1.7\n".to_vec(), noise(20_000, 1)].concat();
    // 5 MiB of binary that contains CRLF and a lookalike of the boundary.
    let mut big = noise(5 * 1024 * 1024, 2);
    big[1000..1016].copy_from_slice(b"\r\n--XBOUNDAR\r\n\r\n");
    let png = [b"\x89PNG\r\n\x1a\n".to_vec(), noise(3000, 3)].concat();
    let boundary = "XBOUNDARY";
    let body = multipart(
        boundary,
        &[
            ("note", None, None, b"hello"),
            ("file", Some("a.pdf"), Some("application/pdf"), &pdf),
            (
                "file",
                Some("big.bin"),
                Some("application/octet-stream"),
                &big,
            ),
            ("attachment", Some("b.png"), Some("image/png"), &png),
        ],
    );
    let id = message_id(
        &d,
        &url,
        &format!("multipart/form-data; boundary={boundary}"),
        body.clone(),
    )
    .await;

    let m = d.ok("message.get", json!({"id": id})).await;
    assert_eq!(m["sha256"], sha256(&body));
    assert_eq!(m["fileCount"], 3);
    assert_eq!(m["form"], json!([["note", "hello"]]));
    let files = m["files"].as_array().expect("files");
    let expected: [(&str, &str, &str, &[u8]); 3] = [
        ("file", "a.pdf", "application/pdf", &pdf),
        ("file", "big.bin", "application/octet-stream", &big),
        ("attachment", "b.png", "image/png", &png),
    ];
    for (i, (name, filename, ctype, bytes)) in expected.iter().enumerate() {
        let f = &files[i];
        assert_eq!(f["index"], i);
        assert_eq!(f["name"], *name);
        assert_eq!(f["filename"], *filename);
        assert_eq!(f["contentType"], *ctype);
        assert_eq!(f["size"], bytes.len());
        assert_eq!(f["sha256"], sha256(bytes));
        let (ct, got) = d.raw("message.file", json!({"id": id, "index": i})).await;
        assert_eq!(ct, *ctype);
        assert!(got == *bytes, "file {i} differs");
    }
    // The raw body is kept too, byte for byte, and stored only once.
    assert!(d.raw("message.body", json!({"id": id})).await.1 == body);
    let on_disk: u64 = std::fs::read_dir(d.dir.join("files"))
        .expect("files dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert_eq!(on_disk, body.len() as u64);

    let (status, _) = d.call("message.file", json!({"id": id, "index": 3})).await;
    assert_eq!(status, 404);
    // A negative index is a bad parameter, not a missing file.
    let (status, v) = d.call("message.file", json!({"id": id, "index": -1})).await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("0 or more"), "{v}");
}

/// A mid-sized multipart body is appended to a segment file, not written into its row (where
/// SQLite would write it twice); its files' hashes are computed from it when read instead of
/// during the receive, and must be the same as for a body kept in a file of its own.
#[tokio::test]
async fn files_of_a_small_multipart_body_have_their_hashes_too() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.upload").await;
    let files: Vec<Vec<u8>> = (0..3).map(|i| noise(10 * 1024, 10 + i)).collect();
    let body = multipart(
        "SMALL",
        &[
            ("note", None, None, b"hi"),
            ("a", Some("a.bin"), None, &files[0]),
            ("b", Some("b.bin"), None, &files[1]),
            ("c", Some("c.bin"), None, &files[2]),
        ],
    );
    let id = message_id(
        &d,
        &url,
        "multipart/form-data; boundary=SMALL",
        body.clone(),
    )
    .await;
    let m = d.ok("message.get", json!({"id": id})).await;
    let got: Vec<&Value> = m["files"].as_array().expect("files").iter().collect();
    assert_eq!(got.len(), 3);
    for (i, (f, bytes)) in got.iter().zip(&files).enumerate() {
        assert_eq!(f["size"], bytes.len());
        assert_eq!(f["sha256"], sha256(bytes));
        let got = d.raw("message.file", json!({"id": id, "index": i})).await.1;
        assert!(got == *bytes, "file {i} differs");
    }
    assert!(d.raw("message.body", json!({"id": id})).await.1 == body);
    // A small body after it stays in its row; the segment holds exactly the multipart body,
    // then at most the zeros that fill its last 4 KiB block (written with direct I/O).
    message_id(&d, &url, "text/plain", b"small".to_vec()).await;
    let segments: Vec<Vec<u8>> = std::fs::read_dir(d.dir.join("segments"))
        .expect("dir")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    assert_eq!(segments.len(), 1);
    let (stored, padding) = segments[0].split_at(body.len().min(segments[0].len()));
    assert!(stored == body, "the segment does not start with the body");
    assert!(padding.len() < 4096 && padding.iter().all(|b| *b == 0));
    assert_eq!(d.files_in("files"), 0);
}

/// `message.get`'s `sha256` is that of the exact bytes received, wherever the body went: its
/// row, a segment, or a file of its own (hashed on the way in), including a body that starts in
/// memory and spills to a file partway, and before and after a restart (bodies of at most
/// 64 KiB are hashed when read).
#[tokio::test]
async fn every_body_reports_the_sha256_of_its_exact_bytes() {
    let mut d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.hash").await;
    let mut sent = Vec::new();
    for len in [0, 10, 4096, 20 * 1024, 64 * 1024, 64 * 1024 + 1, 300 * 1024] {
        let body = noise(len, len as u64);
        let id = message_id(&d, &url, "application/octet-stream", body.clone()).await;
        sent.push((id, body));
    }
    // No Content-Length: 30 KiB stays in memory; 200 KiB spills after its first 64 KiB.
    for (n, seed) in [(3, 1000), (20, 2000)] {
        let chunks: Vec<Vec<u8>> = (0..n).map(|i| noise(10_000, seed + i)).collect();
        let r = post_chunked(&d, &url, chunks.clone())
            .await
            .expect("chunked post");
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.expect("json");
        let id = v["messageId"].as_str().expect("messageId").to_string();
        sent.push((id, chunks.concat()));
    }
    for round in ["before a restart", "after a restart"] {
        for (id, body) in &sent {
            let m = d.ok("message.get", json!({"id": id})).await;
            assert_eq!(m["size"], body.len(), "{round}");
            assert_eq!(m["sha256"], sha256(body), "{} bytes, {round}", body.len());
            assert!(
                d.raw("message.body", json!({"id": id})).await.1 == *body,
                "{} bytes, {round}",
                body.len()
            );
        }
        if round.starts_with("before") {
            d.stop().await;
            d.start_again().await;
        }
    }
}

#[tokio::test]
async fn repeated_headers_and_query_keys_and_every_method_are_kept() {
    let d = Daemon::start().await;
    let (url, uuid) = d.webhook("webhook.headers").await;
    let r = d
        .http()
        .put(format!("{url}&tag=a&tag=b&empty=&sp=x%20y"))
        .header("X-Dup", "first")
        .header("X-Other", "o")
        .header("X-Dup", "second")
        .body("x")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);
    let id = r.json::<Value>().await.expect("json")["messageId"]
        .as_str()
        .expect("id")
        .to_string();
    let m = d.ok("message.get", json!({"id": id})).await;
    assert_eq!(m["method"], "PUT");
    assert_eq!(
        m["queryString"],
        format!("uuid={uuid}&tag=a&tag=b&empty=&sp=x%20y")
    );
    assert_eq!(
        m["query"],
        json!([
            ["uuid", uuid],
            ["tag", "a"],
            ["tag", "b"],
            ["empty", ""],
            ["sp", "x y"]
        ])
    );
    let dups: Vec<&str> = m["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0] == "x-dup")
        .filter_map(|h| h[1].as_str())
        .collect();
    assert_eq!(dups, ["first", "second"]);

    for method in [
        reqwest::Method::GET,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ] {
        let r = d
            .http()
            .request(method.clone(), &url)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200, "{method}");
    }
    let r = d
        .http()
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 405);
    let methods: Vec<String> = d
        .ok("message.list", json!({"uuid": uuid}))
        .await
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["method"].as_str().map(str::to_string))
        .collect();
    assert_eq!(methods, ["DELETE", "PATCH", "GET", "PUT"]);
}

#[tokio::test]
async fn the_uuid_may_come_as_token_and_on_the_short_path() {
    let d = Daemon::start().await;
    let (_, uuid) = d.webhook("webhook.alias").await;
    for url in [
        format!("{}/api/v3/webhook.receive?uuid={uuid}", d.url),
        format!("{}/api/v3/command/webhook.receive?token={uuid}", d.url),
    ] {
        let (status, _) = post(&d, &url, "text/plain", b"hi".to_vec()).await;
        assert_eq!(status, 200, "{url}");
    }
    let r = d
        .http()
        .post(format!("{}/api/v3/command/webhook.receive", d.url))
        .header("token", &uuid)
        .body("hi")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        d.ok("message.list", json!({}))
            .await
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn too_large_bodies_get_413_and_store_nothing() {
    let d = Daemon::start_with(Options {
        args: vec!["--max-body".into(), "200KiB".into()],
        ..Options::default()
    })
    .await;
    let w = d
        .ok(
            "webhook.put",
            json!({"eventKey": "webhook.small", "maxPayloadLength": 1000}),
        )
        .await;
    let small = w["webhookUrl"].as_str().expect("url").to_string();
    let (status, v) = post(&d, &small, "text/plain", vec![b'x'; 1001]).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"]["code"], "payload_too_large");
    assert!(error_message(&v).contains("1000 bytes"));

    // Chunked (no Content-Length) and past the spill threshold: caught while streaming.
    let (big, _) = d.webhook("webhook.big").await;
    let chunks = (0..30).map(|i| noise(10_000, i)).collect();
    let r = post_chunked(&d, &big, chunks).await;
    // hyper may answer 413 before reading everything, or close the connection mid-upload.
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    assert_nothing_stored(&d).await;
    // Exactly at the limit is fine.
    let (status, _) = post(&d, &small, "text/plain", vec![b'x'; 1000]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unknown_disabled_and_deleted_webhooks_get_the_same_404() {
    let d = Daemon::start().await;
    let (url, uuid) = d.webhook("webhook.gone").await;
    let unknown = format!(
        "{}/api/v3/command/webhook.receive?uuid=0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10",
        d.url
    );
    let no_uuid = format!("{}/api/v3/command/webhook.receive", d.url);
    let (s1, unknown_body) = post(&d, &unknown, "text/plain", b"x".to_vec()).await;
    let (s2, _) = post(&d, &no_uuid, "text/plain", b"x".to_vec()).await;
    d.ok("webhook.put", json!({"uuid": uuid, "enabled": false}))
        .await;
    let (s3, disabled_body) = post(&d, &url, "text/plain", b"x".to_vec()).await;
    d.ok("webhook.delete", json!({"uuid": uuid})).await;
    let (s4, deleted_body) = post(&d, &url, "text/plain", b"x".to_vec()).await;
    assert_eq!((s1, s2, s3, s4), (404, 404, 404, 404));
    assert_eq!(unknown_body, disabled_body);
    assert_eq!(unknown_body, deleted_body);
    assert_nothing_stored(&d).await;
}

#[tokio::test]
async fn malformed_multipart_gets_400_and_stores_nothing() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.broken").await;
    // Large enough to have spilled to a file before the error shows.
    let mut body = multipart("B", &[("file", Some("x.bin"), None, &noise(300_000, 5))]);
    body.truncate(body.len() - 6); // drop the closing boundary
    let (status, v) = post(&d, &url, "multipart/form-data; boundary=B", body).await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("closing boundary"), "{v}");
    let (status, v) = post(&d, &url, "multipart/form-data", b"--x--".to_vec()).await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("boundary"));
    assert_nothing_stored(&d).await;
}

#[tokio::test]
async fn message_list_filters_and_pages() {
    let d = Daemon::start().await;
    let (a, ua) = d.webhook("webhook.github.push").await;
    let (b, _) = d.webhook("webhook.stripe.charge").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(message_id(&d, &a, "text/plain", format!("a{i}").into_bytes()).await);
        message_id(&d, &b, "text/plain", format!("b{i}").into_bytes()).await;
    }
    let page = d.ok("message.list", json!({"uuid": ua, "limit": 2})).await;
    let got: Vec<&str> = page
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let next = d
        .ok(
            "message.list",
            json!({"uuid": ua, "limit": 10, "before": ids[3]}),
        )
        .await;
    let got: Vec<&str> = next
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    let by_key = d
        .ok("message.list", json!({"eventKey": "webhook.stripe"}))
        .await;
    assert_eq!(by_key.as_array().map(Vec::len), Some(5));
    assert!(
        by_key
            .as_array()
            .expect("list")
            .iter()
            .all(|m| m["eventKey"] == "webhook.stripe.charge")
    );
    let (status, _) = d.call("message.list", json!({"limit": 5000})).await;
    assert_eq!(status, 400);
    let w = d.ok("webhook.get", json!({"uuid": ua})).await;
    assert_eq!(w["messageCount"], 5);
    assert!(w["lastReceivedAt"].is_string());
}

#[tokio::test]
async fn too_many_multipart_parts_get_400_and_silent_clients_are_cut_off() {
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg_dir.path().join("hookd.toml");
    std::fs::write(&cfg, "[server]\nmaxParts = 2\nheaderReadTimeout = \"1s\"\n").expect("write");
    let d = Daemon::start_with(Options {
        args: vec!["--config".into(), cfg.to_string_lossy().into()],
        ..Options::default()
    })
    .await;
    let (url, _) = d.webhook("webhook.parts").await;
    let three = multipart(
        "B",
        &[
            ("a", None, None, b"1"),
            ("b", None, None, b"2"),
            ("c", None, None, b"3"),
        ],
    );
    let (status, v) = post(&d, &url, "multipart/form-data; boundary=B", three).await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("more than 2 parts"), "{v}");
    assert_nothing_stored(&d).await;

    // A client that connects and sends nothing, half a request line, or one request and then
    // nothing on its keep-alive connection, is closed by the daemon (read returns 0) instead of
    // holding a connection forever.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = d.url.trim_start_matches("http://").to_string();
    for partial in [
        &b""[..],
        b"POST /api/v3/command/webhook.receive HTTP/1.1\r\nHost: x\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.write_all(partial).await.expect("write");
        let mut buf = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "connection still open after 10 s (timeout is 1 s)"
        );
        if partial.ends_with(b"\r\n\r\n") {
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
    // Meanwhile the daemon keeps serving.
    let (status, _) = post(&d, &url, "text/plain", b"ok".to_vec()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn http2_clients_are_served_and_their_bodies_stored_exactly() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.h2").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    // Several streams at once on the one connection.
    let bodies: Vec<Vec<u8>> = (0..8u64)
        .map(|i| noise(1000 + 30_000 * i as usize, i))
        .collect();
    let answers = futures_util::future::join_all(bodies.iter().map(|b| {
        h2.post(&url)
            .header("content-type", "application/octet-stream")
            .body(b.clone())
            .send()
    }))
    .await;
    for (body, answer) in bodies.iter().zip(answers) {
        let r = answer.expect("h2 post");
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        let id = v["messageId"].as_str().expect("messageId");
        assert_eq!(&d.raw("message.body", json!({"id": id})).await.1, body);
    }
}

#[tokio::test]
async fn message_get_shows_as_much_of_the_body_as_asked_and_the_whole_bodys_hash() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.limit").await;
    let body = b"0123456789 small body".to_vec();
    let id = message_id(&d, &url, "text/plain", body.clone()).await;
    let m = d.ok("message.get", json!({"id": id, "bodyLimit": 4})).await;
    assert_eq!(m["body"], "0123");
    assert_eq!(m["bodyTruncated"], true);
    // The hash is of the whole body, also when the body shown is cut.
    assert_eq!(m["sha256"], sha256(&body));
    let none = d.ok("message.get", json!({"id": id, "bodyLimit": 0})).await;
    assert_eq!(
        (none["body"].as_str(), &none["bodyTruncated"]),
        (Some(""), &json!(true))
    );
    let all = d.ok("message.get", json!({"id": id})).await;
    assert_eq!(all["body"], "0123456789 small body");
    let (status, v) = d
        .call("message.get", json!({"id": id, "bodyLimit": 2_000_000}))
        .await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("bodyLimit"), "{v}");
}

/// Sends `bytes` on one connection and reads until the daemon closes it.
async fn exchange(d: &Daemon, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = d.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut got))
        .await
        .expect("the daemon closes the connection")
        .expect("read");
    String::from_utf8_lossy(&got).into_owned()
}

/// The JSON bodies of the responses in `answer`, with their statuses.
fn answers(answer: &str) -> Vec<(u16, Value)> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| {
            let status = r[..3].parse().expect("status");
            let body = r.split("\r\n\r\n").nth(1).unwrap_or("");
            (status, serde_json::from_str(body).unwrap_or(Value::Null))
        })
        .collect()
}

#[tokio::test]
async fn malformed_heads_get_json_errors_after_the_requests_before_them_and_store_nothing() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.framing").await;
    let target = url.trim_start_matches(&d.url);
    let good = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfirst"
    );
    // Request smuggling: a front end that reads the length and hookd reading the chunks would
    // disagree about where the next request starts; hookd refuses the pair, whichever order.
    for smuggled in [
        format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST {target} HTTP/1.1\r\nHost: x\r\n\r\n"
        ),
        format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nsmugg\r\n0\r\n\r\n"
        ),
    ] {
        let answer = exchange(&d, format!("{good}{smuggled}").as_bytes()).await;
        let got = answers(&answer);
        assert_eq!(got.len(), 2, "{answer}");
        assert_eq!(got[0].0, 200, "{answer}");
        assert!(got[0].1["messageId"].is_string(), "{answer}");
        assert_eq!(got[1].0, 400, "{answer}");
        assert_eq!(got[1].1["error"]["code"], "bad_request");
        assert!(
            error_message(&got[1].1).contains("both Content-Length and Transfer-Encoding"),
            "{answer}"
        );
    }
    let stored = d.ok("message.list", json!({})).await;
    assert_eq!(
        stored.as_array().map(Vec::len),
        Some(2),
        "only the two good ones: {stored}"
    );

    // Heads hyper alone would answer with an empty body.
    let long = "a".repeat(70 * 1024);
    for (head, status, says) in [
        (
            format!("POST {target} HTTP/1.1\r\nHost: x\r\nX-Long: {long}\r\n\r\n"),
            431,
            "65536 bytes",
        ),
        (
            format!("POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: five\r\n\r\nfive"),
            400,
            "not a number of bytes",
        ),
        (
            format!("POST {target} HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n"),
            400,
            "control character",
        ),
        (
            "GET /caf\u{0}e HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            400,
            "request line",
        ),
    ] {
        let answer = exchange(&d, head.as_bytes()).await;
        let got = answers(&answer);
        assert_eq!(got.len(), 1, "{answer}");
        assert_eq!(got[0].0, status, "{answer}");
        assert!(error_message(&got[0].1).contains(says), "{answer}");
    }
    let stored = d.ok("message.list", json!({})).await;
    assert_eq!(stored.as_array().map(Vec::len), Some(2), "{stored}");

    // A head just under the limit is served.
    let fill = "b".repeat(60 * 1024);
    let answer = exchange(
        &d,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: {fill}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}
