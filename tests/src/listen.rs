//! A `hookd listen` process for end-to-end tests: its stdout lines (`--json`) and stderr notes
//! arrive on channels, so tests await them instead of sleeping.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::{Daemon, HOOKD_VARS, hookd_bin};

/// A running `hookd listen`.
pub struct Listener {
    child: Child,
    out: mpsc::UnboundedReceiver<String>,
    err: mpsc::UnboundedReceiver<String>,
    /// Every stderr line so far, for failure messages.
    notes: Vec<String>,
}

impl Daemon {
    /// Starts `hookd listen --url <daemon> <args>` with the admin token (unless `args` give
    /// `--token`).
    pub fn listen(&self, args: &[&str]) -> Listener {
        self.listen_via(&self.url, args, &[])
    }

    /// Starts `hookd listen --url <url> <args>` (`url` leading to this daemon, e.g. through a
    /// TLS proxy) with extra environment variables.
    pub fn listen_via(&self, url: &str, args: &[&str], env: &[(&str, &str)]) -> Listener {
        let mut cmd = Command::new(hookd_bin());
        for v in HOOKD_VARS {
            cmd.env_remove(v);
        }
        cmd.envs(env.iter().copied());
        cmd.arg("listen")
            .arg("--url")
            .arg(url)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if !args.contains(&"--token") {
            cmd.env("HOOKD_TOKEN", &self.token);
        }
        let mut child = cmd.spawn().expect("spawn hookd listen");
        let lines = |r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().expect("stdout")));
        let err = lines(Box::new(child.stderr.take().expect("stderr")));
        Listener {
            child,
            out,
            err,
            notes: Vec::new(),
        }
    }
}

impl Listener {
    /// The next stdout line as JSON (`--json`); panics after 30 s.
    pub async fn next_json(&mut self) -> Value {
        let line = match tokio::time::timeout(Duration::from_secs(30), self.out.recv()).await {
            Ok(Some(l)) => l,
            Ok(None) => panic!("hookd listen exited; stderr:\n{}", self.stderr().await),
            Err(_) => panic!("no line within 30 s; stderr:\n{}", self.stderr().await),
        };
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Waits for a stderr line containing `text`; panics after 30 s.
    pub async fn note(&mut self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.err.recv()).await {
                Ok(Some(l)) => {
                    self.notes.push(l.clone());
                    if l.contains(text) {
                        return l;
                    }
                }
                _ => panic!(
                    "no note with '{text}' within 30 s; stderr:\n{}",
                    self.notes.join("\n")
                ),
            }
        }
    }

    /// What it wrote on stderr so far.
    pub async fn stderr(&mut self) -> String {
        while let Ok(l) = self.err.try_recv() {
            self.notes.push(l);
        }
        self.notes.join("\n")
    }

    /// Kills it with SIGKILL, as a crash (or a closed laptop lid that never reopens) would.
    pub async fn kill9(&mut self) {
        self.child.kill().await.expect("kill -9");
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
    }

    /// Waits for it to exit (30 s at most); returns its exit code.
    pub async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("hookd listen exits within 30 s")
            .expect("wait");
        status.code().unwrap_or(-1)
    }
}
