//! Harness for end-to-end tests: builds the real `hookd` binary, starts it on `127.0.0.1:0` with a
//! temporary data dir, waits for its ready line, and talks to it over HTTP and through its CLI.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub mod listen;
pub mod sink;
pub mod smtp;
pub mod tls;

/// Variables that would leak the developer's own settings into a test daemon.
const HOOKD_VARS: &[&str] = &[
    "HOOKD_CONFIG",
    "HOOKD_LISTEN",
    "HOOKD_PUBLIC_URL",
    "HOOKD_DATA_DIR",
    "HOOKD_MAX_BODY",
    "HOOKD_MAX_CONNECTIONS",
    "HOOKD_ADMIN_TOKEN",
    "HOOKD_URL",
    "HOOKD_TOKEN",
];

/// The `hookd` binary of this build profile, built once per test process.
pub fn hookd_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("hookd", "hookd"))
}

/// Builds `bin` of `package` into the target dir this test binary runs from.
pub fn build_bin(package: &str, bin: &str) -> PathBuf {
    // Test binaries live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        package,
        "--bin",
        bin,
        "--target-dir",
    ])
    .arg(&target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    profile_dir.join(bin)
}

/// How to start a daemon.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra arguments after `serve --listen 127.0.0.1:0 --data-dir <dir>`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// A TOML config file's contents (written beside the data dir and passed with --config).
    pub config: Option<String>,
    /// A limit on the size of any file the daemon writes (`RLIMIT_FSIZE`): a disk that fills up.
    pub max_file_size: Option<u64>,
}

impl Options {
    /// Options with this TOML config.
    pub fn config(toml: &str) -> Options {
        Options {
            config: Some(toml.to_string()),
            ..Options::default()
        }
    }
}

/// A running `hookd` with its own data dir.
pub struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The data dir (inside `tmp`).
    pub dir: PathBuf,
    /// The admin token.
    pub token: String,
    options: Options,
    /// Where a restart listens (`127.0.0.1:0` unless it must keep its address).
    listen: String,
    log: PathBuf,
    tmp: tempfile::TempDir,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts a daemon with defaults and a fresh data dir.
    pub async fn start() -> Daemon {
        Daemon::start_with(Options::default()).await
    }

    /// Starts a daemon with `options` and a fresh data dir.
    pub async fn start_with(options: Options) -> Daemon {
        Daemon::start_prepared(options, |_| {}).await
    }

    /// Runs `hookd restore <archive>` into a fresh data dir (asserting it succeeds) and starts a
    /// daemon on it.
    pub async fn start_restored(archive: &Path, options: Options) -> Daemon {
        Daemon::start_prepared(options, |dir| {
            let out = std::process::Command::new(hookd_bin())
                .arg("restore")
                .arg(archive)
                .arg("--data-dir")
                .arg(dir)
                .output()
                .expect("run hookd restore");
            assert!(
                out.status.success(),
                "hookd restore failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .await
    }

    /// Starts a daemon after `prepare` has had the (not yet created) data dir's path.
    async fn start_prepared(options: Options, prepare: impl FnOnce(&Path)) -> Daemon {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let log = tmp.path().join("hookd.log");
        prepare(&dir);
        let mut d = Daemon {
            child: None,
            url: String::new(),
            dir,
            token: String::new(),
            options,
            listen: "127.0.0.1:0".into(),
            log,
            tmp,
            // The daemon closes idle keep-alive connections after its header timeout (10 s);
            // forget them sooner, so a reused one is never already closed.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(3))
                .build()
                .expect("http client"),
        };
        d.spawn().await;
        d
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let mut cmd = Command::new(hookd_bin());
        cmd.args(["serve", "--listen", &self.listen, "--data-dir"])
            .arg(&self.dir)
            .args(&self.options.args);
        if let Some(toml) = &self.options.config {
            let path = self.tmp.path().join("hookd.toml");
            std::fs::write(&path, toml).expect("write config");
            cmd.arg("--config").arg(path);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        for v in HOOKD_VARS {
            cmd.env_remove(v);
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        if let Some(max) = self.options.max_file_size {
            // SAFETY: runs in the forked child before exec and only calls setrlimit, which is
            // async-signal-safe; nothing is allocated.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: max,
                        rlim_max: max,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn hookd");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("hookd not ready within 60 s; log:\n{}", self.log_text()))
            .expect("read stdout");
        let line =
            ready.unwrap_or_else(|| panic!("hookd exited at start; log:\n{}", self.log_text()));
        self.url = line
            .strip_prefix("hookd listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        // Keep draining stdout so the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        self.token = self
            .options
            .env
            .iter()
            .find(|(k, _)| k == "HOOKD_ADMIN_TOKEN")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                std::fs::read_to_string(self.dir.join("admin.token"))
                    .expect("admin.token written")
                    .trim()
                    .to_string()
            });
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the daemon with SIGTERM and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .expect("hookd stops within 30 s after SIGTERM")
                .expect("wait");
            assert!(
                status.success(),
                "hookd exited with {status}; log:\n{}",
                self.log_text()
            );
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill -9");
        }
    }

    /// Starts the daemon again on the same data dir (after `stop` or `kill9`).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop or kill the daemon first");
        self.spawn().await;
    }

    /// Starts the daemon again on the same data dir and the same address, so clients that
    /// reconnect by themselves find it.
    pub async fn start_again_at_same_address(&mut self) {
        self.listen = self.url.trim_start_matches("http://").to_string();
        self.start_again().await;
    }

    /// An HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Posts `body` to a webhook URL; returns status and JSON answer.
    pub async fn post(&self, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self.http.post(url).body(body).send().await.expect("post");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Calls a command as admin; returns status and JSON body.
    pub async fn call(&self, name: &str, params: Value) -> (u16, Value) {
        self.call_as(&self.token.clone(), name, params).await
    }

    /// Calls a command with `token` (empty: no Authorization header).
    pub async fn call_as(&self, token: &str, name: &str, params: Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/api/v3/command/{name}", self.url))
            .json(&params);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("command request");
        let status = resp.status().as_u16();
        let body = resp.bytes().await.expect("body");
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, v)
    }

    /// A new viewer token called `name`.
    pub async fn viewer_token(&self, name: &str) -> String {
        self.ok("token.create", json!({"role": "viewer", "name": name}))
            .await["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Calls a command as admin and expects 200.
    pub async fn ok(&self, name: &str, params: Value) -> Value {
        let (status, v) = self.call(name, params.clone()).await;
        assert_eq!(status, 200, "{name} {params}: {v}");
        v
    }

    /// The raw bytes of a command's answer (message.body, message.file), expecting 200.
    pub async fn raw(&self, name: &str, params: Value) -> (String, Vec<u8>) {
        let resp = self
            .http
            .post(format!("{}/api/v3/command/{name}", self.url))
            .bearer_auth(&self.token)
            .json(&params)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200, "{name} {params}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (ct, resp.bytes().await.expect("body").to_vec())
    }

    /// Creates a webhook and returns its `webhookUrl` and uuid.
    pub async fn webhook(&self, event_key: &str) -> (String, String) {
        let w = self
            .ok("webhook.put", json!({ "eventKey": event_key }))
            .await;
        (
            w["webhookUrl"].as_str().expect("webhookUrl").to_string(),
            w["uuid"].as_str().expect("uuid").to_string(),
        )
    }

    /// Runs `hookd <args>` (any subcommand) with this daemon's URL and token in the environment.
    pub fn hookd(&self, args: &[&std::ffi::OsStr]) -> std::process::Output {
        let mut cmd = std::process::Command::new(hookd_bin());
        for v in HOOKD_VARS {
            cmd.env_remove(v);
        }
        cmd.args(args)
            .env("HOOKD_URL", &self.url)
            .env("HOOKD_TOKEN", &self.token)
            .output()
            .expect("run hookd")
    }

    /// Runs `hookd command <args>` against this daemon.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = std::process::Command::new(hookd_bin());
        for v in HOOKD_VARS {
            cmd.env_remove(v);
        }
        cmd.arg("command")
            .args(args)
            .env("HOOKD_URL", &self.url)
            .env("HOOKD_TOKEN", &self.token)
            .output()
            .expect("run hookd command")
    }

    /// How many entries the data dir's `sub` folder holds (`files`, `incoming`, `segments`).
    pub fn files_in(&self, sub: &str) -> usize {
        std::fs::read_dir(self.dir.join(sub))
            .unwrap_or_else(|e| panic!("{sub}/: {e}"))
            .count()
    }

    /// The temporary directory holding the data dir (for extra files such as configs).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }
}

/// The `message` of a command's JSON error answer ("" when there is none).
pub fn error_message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A WebSocket client of `/api/v3/events`.
pub struct Events {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

/// A handshake refused with an HTTP status (e.g. 401).
#[derive(Debug)]
pub struct Refused(pub u16);

impl Daemon {
    /// Connects to the event stream with the admin token and `query` (e.g. `since=3&types=message.*`).
    pub async fn events(&self, query: &str) -> Events {
        self.events_with(&format!("token={}&{query}", self.token), None)
            .await
            .expect("event stream handshake")
    }

    /// Connects with exactly `query`; `recv_buffer` shrinks the client's socket receive buffer so
    /// a client that stops reading stalls quickly.
    pub async fn events_with(
        &self,
        query: &str,
        recv_buffer: Option<u32>,
    ) -> Result<Events, Refused> {
        use tokio_tungstenite::tungstenite::Error;
        let addr: std::net::SocketAddr = self
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("daemon address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(n) = recv_buffer {
            socket.set_recv_buffer_size(n).expect("SO_RCVBUF");
        }
        let tcp = socket.connect(addr).await.expect("connect");
        let url = format!("ws://{addr}/api/v3/events?{query}");
        match tokio_tungstenite::client_async(url, tcp).await {
            Ok((ws, _)) => Ok(Events { ws }),
            Err(Error::Http(resp)) => Err(Refused(resp.status().as_u16())),
            Err(e) => panic!("event stream handshake: {e}"),
        }
    }
}

impl Events {
    /// The next event frame (pings skipped); panics after 30 s of silence.
    pub async fn next(&mut self) -> Value {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        // One deadline for the next event: pings (every 20 s) must not extend it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("an event within 30 s")
                .expect("stream open")
                .expect("frame");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("JSON frame"),
                Message::Close(c) => {
                    return json!({"type": "close", "code": c.map(|c| u16::from(c.code))});
                }
                _ => continue,
            }
        }
    }

    /// Frames until (and including) the first for which `done` is true.
    pub async fn until(&mut self, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let f = self.next().await;
            let stop = done(&f);
            out.push(f);
            if stop {
                return out;
            }
        }
    }

    /// The next `n` frames.
    pub async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }
}
