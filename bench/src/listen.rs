//! `hookd-bench listen`: `hookd listen` relaying to a local null app. Latency from a sender's
//! request to its arrival at the app at a fixed rate, then the drain rate of a backlog that
//! piled up while the listener was stopped.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::{Daemon, fill, percentile};

/// A null app on 127.0.0.1: answers 200 to everything and reports each request's message id
/// and arrival time.
async fn null_app() -> Result<(String, mpsc::UnboundedReceiver<(String, Instant)>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let (mut len, mut id) = (0usize, String::new());
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            } else if k.eq_ignore_ascii_case("x-hookd-message-id") {
                                id = v.trim().to_string();
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let _ = tx.send((id, Instant::now()));
                    if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok((url, rx))
}

/// Starts `hookd listen` and waits until it knows where it starts.
async fn start_listener(
    bin: &Path,
    d: &Daemon,
    app: &str,
    state: &Path,
) -> Result<tokio::process::Child> {
    let mut child = tokio::process::Command::new(bin)
        .args([
            "listen",
            "--url",
            &d.url,
            "--token",
            &d.token,
            "--forward-to",
            app,
        ])
        .arg("--state")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start hookd listen")?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("hookd listen did not connect within 30 s")??
            .context("hookd listen exited")?;
        if line.contains("starting after event") || line.contains("connected to") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

pub async fn listen(
    bin: &Path,
    rate: u32,
    seconds: u32,
    backlog: usize,
    big_mib: usize,
) -> Result<()> {
    let limit = format!("{}MiB", big_mib + 1);
    let d = Daemon::start(bin, &["--max-body", &limit]).await?;
    let w = d
        .call("webhook.put", json!({"eventKey": "webhook.bench.listen"}))
        .await?;
    let url = w["webhookUrl"].as_str().context("webhookUrl")?.to_string();
    let (app, mut arrivals) = null_app().await?;
    let tmp = tempfile::tempdir()?;
    let state = tmp.path().join("listen.json");

    // Latency at a fixed rate.
    let mut listener = start_listener(bin, &d, &app, &state).await?;
    let total = (rate * seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut posts = Vec::with_capacity(total);
    for _ in 0..total {
        tick.tick().await;
        let (http, url) = (d.http.clone(), url.clone());
        posts.push(tokio::spawn(async move {
            let sent = Instant::now();
            let r = http.post(&url).body(vec![b'x'; 1024]).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            Some((v["messageId"].as_str()?.to_string(), sent))
        }));
    }
    let mut sent = HashMap::new();
    for p in posts {
        if let Ok(Some((id, at))) = p.await {
            sent.insert(id, at);
        }
    }
    let mut lat = Vec::with_capacity(total);
    while lat.len() < sent.len() {
        let (id, at) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .context("a message did not arrive within 30 s")?
            .context("the app stopped")?;
        if let Some(s) = sent.get(&id) {
            lat.push(at.saturating_duration_since(*s));
        }
    }
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "listen-latency rate={rate}/s n={} request->app p50={:.3}ms p99={:.3}ms max={:.3}ms",
        lat.len(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    );

    // A backlog piles up while the listener is stopped, then drains.
    listener.kill().await?;
    fill(&d, &url, backlog).await?;
    let started = Instant::now();
    let listener = start_listener(bin, &d, &app, &state).await?;
    let mut got = 0;
    while got < backlog {
        tokio::time::timeout(Duration::from_secs(60), arrivals.recv())
            .await
            .context("the backlog stopped draining")?
            .context("the app stopped")?;
        got += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "listen-drain backlog={backlog} drained_in={secs:.2}s rate={:.0}/s (from the listener's start)",
        backlog as f64 / secs
    );
    if got != backlog {
        bail!("drained {got} of {backlog}");
    }

    // A large capture streams through: the listener's peak memory barely moves.
    let pid = listener.id().unwrap_or(0);
    let (_, before) = crate::rss(pid);
    let big = vec![0x5au8; big_mib << 20];
    let started = Instant::now();
    let r = d.http.post(&url).body(big).send().await?;
    if !r.status().is_success() {
        bail!("the {big_mib} MiB post got {}", r.status());
    }
    tokio::time::timeout(Duration::from_secs(120), arrivals.recv())
        .await
        .context("the large message did not arrive")?;
    let (_, after) = crate::rss(pid);
    println!(
        "listen-big size={big_mib}MiB post+relay={:.2}s listener_peak_rss before={:.1}MiB after={:.1}MiB",
        started.elapsed().as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    Ok(())
}
