//! hookd-bench: benchmark scenarios that wrk cannot drive. Each run starts its own hookd (a
//! release build) on 127.0.0.1 with a temporary data dir, loads it, prints one result line and
//! stops it. See docs/BENCHMARKS.md for the commands and the recorded results.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(name = "hookd-bench")]
struct Cli {
    /// The hookd binary to measure (build it with `cargo build --release -p hookd`).
    #[arg(long, default_value = "target/release/hookd")]
    hookd: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Latency from a receive's 2xx to the event arriving at a connected WebSocket client, at a
    /// fixed request rate.
    StreamLatency {
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::StreamLatency { rate, seconds } => stream_latency(&cli.hookd, rate, seconds).await,
    }
}

/// A hookd started for one scenario; killed on drop.
struct Daemon {
    _child: tokio::process::Child,
    url: String,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(bin: &Path, extra: &[&str]) -> Result<Daemon> {
        let dir = tempfile::tempdir()?;
        let mut child = tokio::process::Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env_remove("HOOKD_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next_line().await?.context("hookd exited at start")?;
        let url = line
            .strip_prefix("hookd listening on ")
            .context("unexpected first line")?
            .to_string();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let token = std::fs::read_to_string(dir.path().join("admin.token"))?
            .trim()
            .to_string();
        Ok(Daemon {
            _child: child,
            url,
            token,
            http: reqwest::Client::new(),
            _dir: dir,
        })
    }

    async fn call(&self, name: &str, params: Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}/api/v3/command/{name}", self.url))
            .bearer_auth(&self.token)
            .json(&params)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("{name}: HTTP {}", r.status());
        }
        Ok(r.json().await?)
    }
}

struct Acked {
    id: String,
    sent: Instant,
    at: Instant,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn stream_latency(bin: &Path, rate: u32, seconds: u32) -> Result<()> {
    let d = Daemon::start(bin, &[]).await?;
    let w = d
        .call("webhook.put", json!({"eventKey": "webhook.bench.latency"}))
        .await?;
    let url = w["webhookUrl"].as_str().context("webhookUrl")?.to_string();
    let ws_url = format!(
        "{}/api/v3/events?types=message.*&token={}",
        d.url.replace("http://", "ws://"),
        d.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;

    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let reader = {
        let arrived = arrived.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let now = Instant::now();
                if let Ok(text) = msg.to_text() {
                    if let Ok(v) = serde_json::from_str::<Value>(text) {
                        if let Some(id) = v["data"]["id"].as_str() {
                            arrived.lock().await.insert(id.to_string(), now);
                        }
                    }
                }
            }
        })
    };

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let total = rate * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut posts = Vec::with_capacity(total as usize);
    for _ in 0..total {
        tick.tick().await;
        let (http, url, acked) = (d.http.clone(), url.clone(), acked.clone());
        posts.push(tokio::spawn(async move {
            let sent = Instant::now();
            let r = http.post(&url).body(vec![b'x'; 1024]).send().await.ok()?;
            let at = Instant::now();
            let v: Value = r.json().await.ok()?;
            let id = v["messageId"].as_str()?.to_string();
            acked.lock().await.push(Acked { id, sent, at });
            Some(())
        }));
    }
    for p in posts {
        let _ = p.await;
    }
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.abort();

    let arrived = arrived.lock().await;
    let acked = acked.lock().await;
    let mut lat = Vec::with_capacity(acked.len());
    let mut end_to_end = Vec::with_capacity(acked.len());
    let (mut early, mut missing) = (0, 0);
    for a in acked.iter() {
        match arrived.get(&a.id) {
            Some(ev) => {
                // The event is published just before the reply is sent, so it can win the race.
                if *ev < a.at {
                    early += 1;
                }
                lat.push(ev.saturating_duration_since(a.at));
                end_to_end.push(ev.saturating_duration_since(a.sent));
            }
            None => missing += 1,
        }
    }
    lat.sort();
    end_to_end.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "stream-latency rate={rate}/s n={} 2xx->event p50={:.3}ms p99={:.3}ms max={:.3}ms \
         (event first: {early}) | request->event p50={:.3}ms p99={:.3}ms | missing={missing}",
        lat.len(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
        ms(percentile(&end_to_end, 0.50)),
        ms(percentile(&end_to_end, 0.99)),
    );
    if missing > 0 {
        bail!("{missing} acknowledged messages never reached the stream");
    }
    Ok(())
}
