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

mod listen;

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
    /// Target 2: waits until every message of a running daemon's data dir has an execution,
    /// then prints both counts (run while bench/receive.sh LISTENER=1 holds the daemon).
    Counts {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Target 3: one multipart upload of `mib` MiB, streamed; the daemon's peak RSS growth and
    /// the throughput.
    MultipartBig {
        #[arg(long, default_value_t = 100)]
        mib: u64,
    },
    /// Target 5: persisted deliveries per second to a sink (e.g. limit-server null).
    Deliveries {
        /// The sink, e.g. http://127.0.0.1:18081/
        #[arg(long)]
        sink: String,
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        conns: usize,
    },
    /// Target 6: fills a daemon with `messages` 1 KiB messages, restarts it, and measures start-up
    /// to /healthz, message.list p99, idle RSS and the database size.
    Store {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        /// Keep (and reuse) the filled data dir here.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Target 7: frame render time of the dashboard at 160x48 with a full message window.
    TuiRender {
        #[arg(long, default_value_t = 2000)]
        frames: usize,
    },
    /// Target 7: start hookd-tui (in tmux) against a daemon holding `messages` messages; time to
    /// the first screen with messages, and the dashboard's RSS.
    TuiStart {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value = "target/release/hookd-tui")]
        tui: PathBuf,
    },
    /// Retention under load: fills a webhook with `messages` messages, then prunes it down to
    /// `keep` while a receive load runs on another webhook; receive rate during the prune
    /// against the same load before it, the prune rate, and whether the database file grows
    /// during the steady load after it (it should reuse the freed pages).
    Prune {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 1000)]
        keep: usize,
        /// Seconds of each load phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Keep (and reuse) the filled data dir here (a copy is pruned each run).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// `hookd listen` to a local null app: request-to-app latency at `rate`/s for `seconds`,
    /// then the drain rate of `backlog` messages that arrived while it was stopped.
    Listen {
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        #[arg(long, default_value_t = 20_000)]
        backlog: usize,
        /// The size of the one large message relayed last.
        #[arg(long, default_value_t = 100)]
        big_mib: usize,
    },
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
        Cmd::Listen {
            rate,
            seconds,
            backlog,
            big_mib,
        } => listen::listen(&cli.hookd, rate, seconds, backlog, big_mib).await,
        Cmd::StreamLatency { rate, seconds } => stream_latency(&cli.hookd, rate, seconds).await,
        Cmd::Counts { data_dir, timeout } => counts(&data_dir, timeout).await,
        Cmd::MultipartBig { mib } => multipart_big(&cli.hookd, mib).await,
        Cmd::Deliveries { sink, count, conns } => deliveries(&cli.hookd, &sink, count, conns).await,
        Cmd::Store { messages, data_dir } => store(&cli.hookd, messages, data_dir).await,
        Cmd::Prune {
            messages,
            keep,
            seconds,
            data_dir,
        } => prune(&cli.hookd, messages, keep, seconds, data_dir).await,
        Cmd::TuiRender { frames } => tui_render(frames),
        Cmd::TuiStart { messages, tui } => tui_start(&cli.hookd, &tui, messages).await,
    }
}

/// A hookd started for one scenario; killed on drop.
struct Daemon {
    child: tokio::process::Child,
    url: String,
    token: String,
    http: reqwest::Client,
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// The event stream's WebSocket URL with `query` (and the admin token).
    fn events_url(&self, query: &str) -> String {
        format!(
            "{}/api/v3/events?{query}&token={}",
            self.url.replace("http://", "ws://"),
            self.token
        )
    }

    async fn start(bin: &Path, extra: &[&str]) -> Result<Daemon> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut d = Daemon::start_in(bin, &dir, extra).await?;
        d._tmp = Some(tmp);
        Ok(d)
    }

    async fn start_in(bin: &Path, dir: &Path, extra: &[&str]) -> Result<Daemon> {
        let mut child = tokio::process::Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
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
        let token = std::fs::read_to_string(dir.join("admin.token"))?
            .trim()
            .to_string();
        Ok(Daemon {
            child,
            url,
            token,
            http: reqwest::Client::new(),
            _tmp: None,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Stops with SIGTERM and waits.
    async fn stop(mut self) -> Result<()> {
        let _ = std::process::Command::new("kill")
            .arg(self.pid().to_string())
            .status();
        self.child.wait().await?;
        Ok(())
    }

    async fn webhook(&self, key: &str) -> Result<String> {
        let w = self.call("webhook.put", json!({"eventKey": key})).await?;
        Ok(w["webhookUrl"].as_str().context("webhookUrl")?.to_string())
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
    let ws_url = d.events_url("types=message.*");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;

    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let reader = {
        let arrived = arrived.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let now = Instant::now();
                if let Ok(text) = msg.to_text()
                    && let Ok(v) = serde_json::from_str::<Value>(text)
                    && let Some(id) = v["data"]["id"].as_str()
                {
                    arrived.lock().await.insert(id.to_string(), now);
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

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn counts(data_dir: &Path, timeout: u64) -> Result<()> {
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join("hookd.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let count = |sql: &str| -> Result<i64> { Ok(db.query_row(sql, [], |r| r.get(0))?) };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let started = Instant::now();
    loop {
        let m = count("SELECT count(*) FROM messages WHERE status = 'accepted'")?;
        let e = count(
            "SELECT count(*) FROM executions WHERE status IN ('succeeded', 'failed', 'skipped')",
        )?;
        if e >= m || Instant::now() > deadline {
            println!(
                "counts messages={m} executions_finished={e} caught_up_after={:.1}s equal={}",
                started.elapsed().as_secs_f64(),
                e == m
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn multipart_big(bin: &Path, mib: u64) -> Result<()> {
    let limit = format!("{}MiB", mib * 2 + 1);
    let d = Daemon::start(bin, &["--max-body", &limit]).await?;
    let url = d.webhook("webhook.bench.upload").await?;
    // Warm up, so the baseline includes what any request allocates.
    d.http.post(&url).body("warm").send().await?;
    let (base, _) = rss(d.pid());
    let boundary = "benchboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let chunk = bytes::Bytes::from(vec![0xabu8; 1 << 20]);
    let total = head.len() as u64 + mib * (1 << 20) + tail.len() as u64;
    let parts = std::iter::once(bytes::Bytes::from(head))
        .chain(std::iter::repeat_n(chunk, mib as usize))
        .chain(std::iter::once(bytes::Bytes::from(tail)))
        .map(Ok::<_, std::io::Error>);
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let started = Instant::now();
    let r = d
        .http
        .post(&url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("content-length", total)
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let secs = started.elapsed().as_secs_f64();
    let (_, peak) = rss(d.pid());
    let id = r.json::<Value>().await?["messageId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The file's hash is computed by the first message.get, not during the upload; the second
    // finds it stored (the write is not awaited by the first answer, hence the settle time).
    let timed_get = || async {
        let t = Instant::now();
        let m = d.call("message.get", json!({"id": id})).await?;
        anyhow::ensure!(
            m["files"][0]["sha256"]
                .as_str()
                .is_some_and(|h| h.len() == 64),
            "message.get returned no file hash: {m}"
        );
        Ok::<_, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0)
    };
    let first_get = timed_get().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later_get = timed_get().await?;
    println!(
        "multipart-big size={mib}MiB status={} time={secs:.2}s throughput={:.0}MB/s rss_before={:.1}MiB peak={:.1}MiB growth={:.1}MiB first_get={first_get:.0}ms later_get={later_get:.1}ms",
        status.as_u16(),
        total as f64 / secs / 1e6,
        base as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(base) as f64 / 1024.0
    );
    Ok(())
}

async fn deliveries(bin: &Path, sink: &str, count: usize, conns: usize) -> Result<()> {
    let cfg = tempfile::NamedTempFile::new()?;
    std::fs::write(
        cfg.path(),
        "[send]\nallowCidrs = [\"127.0.0.1/32\"]\nmaxConcurrency = 64\nmaxPerHost = 64\n",
    )?;
    let cfg_path = cfg.path().to_string_lossy().to_string();
    let d = Daemon::start(bin, &["--config", &cfg_path]).await?;
    let ws_url = d.events_url("types=delivery.succeeded,delivery.failed");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..conns {
        let (http, url, token, next, sink) = (
            d.http.clone(),
            d.url.clone(),
            d.token.clone(),
            next.clone(),
            sink.to_string(),
        );
        senders.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < count {
                let _ = http
                    .post(format!("{url}/api/v3/command/webhook.send"))
                    .bearer_auth(&token)
                    .json(&json!({"url": sink, "message": {"n": 1, "pad": "x".repeat(900)}}))
                    .send()
                    .await;
            }
        }));
    }
    for s in senders {
        let _ = s.await;
    }
    let committed = started.elapsed().as_secs_f64();
    let (mut ok, mut failed) = (0, 0);
    while ok + failed < count {
        let Some(Ok(msg)) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await? else {
            bail!("the stream ended");
        };
        if let Ok(t) = msg.to_text() {
            if t.contains("delivery.succeeded") {
                ok += 1;
            } else if t.contains("delivery.failed") {
                failed += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "deliveries count={count} succeeded={ok} failed={failed} all_committed_after={committed:.2}s all_delivered_after={secs:.2}s rate={:.0}/s",
        count as f64 / secs
    );
    Ok(())
}

/// Posts `n` 1 KiB JSON messages to `url` from 64 concurrent clients.
async fn fill(d: &Daemon, url: &str, n: usize) -> Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = bytes::Bytes::from(format!(
        "{{\"event\":\"push\",\"pad\":\"{}\"}}",
        "x".repeat(1024 - 27)
    ));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (http, url, next, body) = (d.http.clone(), url.to_string(), next.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                let _ = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Fills `dir` with `messages` to a webhook of `event_key`, unless a kept fill is already there.
async fn fill_once(bin: &Path, dir: &Path, event_key: &str, messages: usize) -> Result<()> {
    if dir.join("hookd.db").exists() {
        return Ok(());
    }
    let d = Daemon::start_in(bin, dir, &[]).await?;
    let url = d.webhook(event_key).await?;
    let t = Instant::now();
    fill(&d, &url, messages).await?;
    eprintln!(
        "filled {messages} messages in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    d.stop().await
}

async fn store(bin: &Path, messages: usize, data_dir: Option<PathBuf>) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = data_dir.unwrap_or_else(|| tmp.path().join("data"));
    fill_once(bin, &dir, "webhook.bench.store", messages).await?;
    let db_bytes: u64 = ["hookd.db", "hookd.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    // Start-up: from spawning the process to /healthz answering 200.
    let started = Instant::now();
    let d = Daemon::start_in(bin, &dir, &[]).await?;
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{}/healthz", d.url)).send().await
            && r.status().is_success()
        {
            break;
        }
    }
    let startup = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, _) = rss(d.pid());
    let first = d.call("message.list", json!({"limit": 50})).await?;
    let cursor = first[49]["id"].as_str().unwrap_or_default().to_string();
    let uuid = first[0]["uuid"].as_str().unwrap_or_default().to_string();
    let mut lat = Vec::new();
    for i in 0..1000 {
        let params = match i % 3 {
            0 => json!({"limit": 50}),
            1 => json!({"limit": 50, "uuid": uuid}),
            _ => json!({"limit": 50, "before": cursor}),
        };
        let t = Instant::now();
        d.call("message.list", params).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let stored: i64 = rusqlite::Connection::open_with_flags(
        dir.join("hookd.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?
    .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    let payload = stored as f64 * 1024.0;
    let (replayed, replay_time) = replay(&d, (stored as usize).min(200_000)).await?;
    println!(
        "store messages={stored} startup_to_healthz={:.0}ms idle_rss={:.1}MiB list_p50={:.2}ms list_p99={:.2}ms db={:.0}MiB payload={:.0}MiB ratio={:.2} replay={replayed}_events_in={:.2}s",
        startup.as_secs_f64() * 1e3,
        idle_rss as f64 / 1024.0,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        db_bytes as f64 / 1048576.0,
        payload / 1048576.0,
        db_bytes as f64 / payload,
        replay_time.as_secs_f64()
    );
    d.stop().await?;
    Ok(())
}

/// Posts 1 KiB JSON messages to `url` from 64 concurrent clients until `stop` is set; returns
/// how many were answered 2xx.
async fn load_until(
    d: &Daemon,
    url: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<usize> {
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = bytes::Bytes::from(format!(
        "{{\"event\":\"push\",\"pad\":\"{}\"}}",
        "x".repeat(1024 - 27)
    ));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (http, url, stop, ok, body) = (
            d.http.clone(),
            url.to_string(),
            stop.clone(),
            ok.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(ok.load(std::sync::atomic::Ordering::SeqCst))
}

/// Receives per second on `url` over `seconds`.
async fn load_for(d: &Daemon, url: &str, seconds: u64) -> Result<f64> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = Instant::now();
    let load = load_until(d, url, stop.clone());
    let timer = async {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (n, ()) = tokio::join!(load, timer);
    Ok(n? as f64 / t.elapsed().as_secs_f64())
}

/// The database's size in bytes as SQLite sees it (WAL included, so before the checkpoint
/// writes it to the file) and its free pages.
fn db_pages(dir: &Path) -> Result<(u64, i64)> {
    let c = rusqlite::Connection::open_with_flags(
        dir.join("hookd.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(((pages * size).max(0) as u64, free))
}

async fn prune(
    bin: &Path,
    messages: usize,
    keep: usize,
    seconds: u64,
    data_dir: Option<PathBuf>,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let filled = data_dir.unwrap_or_else(|| tmp.path().join("filled"));
    fill_once(bin, &filled, "webhook.bench.pruned", messages).await?;
    // Prune a copy, so a kept fill serves the next run too.
    let dir = tmp.path().join("run");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&filled)
        .arg(&dir)
        .status()?;
    if !copied.success() {
        bail!("cannot copy {}", filled.display());
    }
    let d = Daemon::start_in(bin, &dir, &[]).await?;
    let hooks = d.call("webhook.get", json!({})).await?;
    let pruned = hooks[0]["uuid"]
        .as_str()
        .context("the filled webhook")?
        .to_string();
    let stored = hooks[0]["storedCount"].as_u64().unwrap_or(0);
    // The load goes to a webhook that keeps as many messages as it takes in one phase, so that
    // after the prune it runs at a steady size.
    let w = d
        .call("webhook.put", json!({"eventKey": "webhook.bench.load"}))
        .await?;
    let load_url = w["webhookUrl"].as_str().context("webhookUrl")?.to_string();
    let load_uuid = w["uuid"].as_str().context("uuid")?.to_string();

    let before = load_for(&d, &load_url, seconds).await?;
    d.call(
        "webhook.put",
        json!({"uuid": pruned, "retention": {"maxCount": keep}}),
    )
    .await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = Instant::now();
    let load = load_until(&d, &load_url, stop.clone());
    let pruning = async {
        let r = d.call("store.prune", json!({"graceSeconds": 0})).await;
        let took = t.elapsed();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (r, took)
    };
    let (during, (report, took)) = tokio::join!(load, pruning);
    let report = report?;
    let during = during? as f64 / t.elapsed().as_secs_f64();
    let removed = report["messages"].as_u64().unwrap_or(0);
    d.call(
        "webhook.put",
        json!({"uuid": load_uuid, "retention": {"maxCount": (before * seconds as f64) as u64}}),
    )
    .await?;
    d.call("store.prune", json!({"graceSeconds": 0})).await?;
    let (len_after_prune, free_after_prune) = db_pages(&dir)?;
    let steady = load_for(&d, &load_url, seconds).await?;
    let (len_after_load, free_after_load) = db_pages(&dir)?;
    println!(
        "prune messages={stored} kept={keep} removed={removed} prune_s={:.2} prune_rate={:.0}/s receive_before={before:.0}/s receive_during={during:.0}/s ratio={:.2} steady_after={steady:.0}/s db_after_prune={:.0}MiB free_pages={free_after_prune} db_after_load={:.0}MiB free_pages={free_after_load} grew={}",
        took.as_secs_f64(),
        removed as f64 / took.as_secs_f64(),
        during / before,
        len_after_prune as f64 / 1048576.0,
        len_after_load as f64 / 1048576.0,
        len_after_load > len_after_prune
    );
    d.stop().await?;
    Ok(())
}

/// How long a client resuming from the start of the log (`since=0`, as the TUI after a long
/// disconnect) takes to receive the oldest `n` events; at most a minute.
async fn replay(d: &Daemon, n: usize) -> Result<(usize, Duration)> {
    let ws_url = d.events_url("since=0");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let started = Instant::now();
    let mut got = 0;
    let read = async {
        while got < n {
            let Some(Ok(msg)) = ws.next().await else {
                break;
            };
            if let Ok(text) = msg.to_text()
                && serde_json::from_str::<Value>(text)
                    .is_ok_and(|f| f["type"].as_str().is_some_and(|t| t != "stream.lagged"))
            {
                got += 1;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), read).await;
    Ok((got, started.elapsed()))
}

fn tui_render(frames: usize) -> Result<()> {
    use hookd_tui::app::{Action, App, Loaded, WINDOW};
    use hookd_tui::fixtures;
    let mut app = App::new("http://127.0.0.1:8080");
    app.update(Action::Connected);
    app.update(Action::Loaded(Loaded::Webhooks(fixtures::webhooks())));
    app.update(Action::Loaded(Loaded::Messages {
        items: fixtures::messages(WINDOW),
        append: false,
    }));
    app.update(Action::Loaded(Loaded::Message(Box::new(fixtures::detail(
        "m-0",
    )))));
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 48))?;
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        // Move around so frames draw different windows.
        app.messages.selected = (i * 7) % WINDOW;
        let t = Instant::now();
        term.draw(|f| hookd_tui::ui::render(&app, f))?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "tui-render frames={frames} size=160x48 window={WINDOW} p50={:.3}ms p99={:.3}ms max={:.3}ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    Ok(())
}

async fn tui_start(bin: &Path, tui: &Path, messages: usize) -> Result<()> {
    let d = Daemon::start(bin, &[]).await?;
    let url = d.webhook("webhook.bench.tui").await?;
    fill(&d, &url, messages).await?;
    let socket = format!("hookd-bench-{}", std::process::id());
    let started = Instant::now();
    let ok = std::process::Command::new("tmux")
        .args(["-L", &socket, "new-session", "-d", "-x", "160", "-y", "48"])
        .arg(tui)
        .args([
            "--url",
            &d.url,
            "--token",
            &d.token,
            "--config",
            "/nonexistent",
        ])
        .status()?;
    if !ok.success() {
        bail!("tmux failed (apt-get install -y tmux)");
    }
    let first_screen = loop {
        let out = std::process::Command::new("tmux")
            .args(["-L", &socket, "capture-pane", "-p"])
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains("webhook.bench.tui") {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("no first screen within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = std::process::Command::new("tmux")
        .args(["-L", &socket, "list-panes", "-F", "#{pane_pid}"])
        .output()?;
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let (now, peak) = rss(pid);
    let _ = std::process::Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .status();
    println!(
        "tui-start messages={messages} first_screen={:.0}ms rss={:.1}MiB peak={:.1}MiB",
        first_screen.as_secs_f64() * 1e3,
        now as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    Ok(())
}
