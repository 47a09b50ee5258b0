//! `exec`: runs a program without a shell, with the body as JSON on stdin (or `stdin`), a clean
//! environment, captured output, and a timeout after which it is killed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Output kept per stream; the rest is read and dropped so the program never blocks on a pipe.
const MAX_OUTPUT: usize = 64 * 1024;
/// Lines of output copied into the step log.
const LOG_LINES: usize = 50;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the program; the output object `{exitCode, stdout, stderr}` and the lines for the log.
/// `limit` caps the timeout (the run's own limit).
pub async fn exec(
    params: &Map<String, Value>,
    body: &Value,
    limit: Duration,
    groups: &Groups,
) -> Result<(Value, Vec<String>), String> {
    let program = params
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if program.is_empty() {
        return Err("command is empty".into());
    }
    let args: Vec<String> = match params.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(other) => return Err(format!("args must be a list, got {other}")),
    };
    let asked = match params.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT,
        Some(v) => Duration::from_secs(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| format!("timeout must be seconds, got {v}"))?,
        ),
    };
    let timeout = asked.min(limit);
    let stdin = match params.get("stdin") {
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(Value::Null) | None => serde_json::to_vec(body).unwrap_or_default(),
        Some(other) => other.to_string().into_bytes(),
    };

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&args)
        // Never hand the daemon's environment (tokens, config) to a program a pipeline runs.
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so what it starts is killed with it.
        .process_group(0);
    die_with_hookd(&mut cmd);
    for k in ["HOME", "LANG", "TZ"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    if let Some(env) = params.get("env") {
        let Value::Object(env) = env else {
            return Err(format!("env must be an object of NAME: value, got {env}"));
        };
        for (k, v) in env {
            cmd.env(
                k,
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            );
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Killed as a group when the run ends, however it ends (timeout, time limit, shutdown).
    let _group = child.id().map(|id| Group {
        id,
        entry: groups.record(id),
    });
    let (mut i, o, e) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let feed = async move {
        if let Some(i) = i.as_mut() {
            // A program that does not read stdin closes it early; that is not an error.
            let _ = i.write_all(&stdin).await;
        }
        drop(i);
    };
    let run = async {
        let ((), out, err, status) = tokio::join!(feed, capture(o), capture(e), child.wait());
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        // Dropping `run` drops the child, which kill_on_drop kills. When the run's own limit was
        // the shorter, this timer and the run's may expire in the same tick: say what cut it.
        Err(_) if asked > limit => return Err(super::run::over_time_limit(limit)),
        Err(_) => {
            return Err(format!(
                "{program} was killed after {} s (its timeout)",
                timeout.as_secs()
            ));
        }
    };
    let status = status.map_err(|e| format!("waiting for {program}: {e}"))?;
    let mut lines: Vec<String> = out
        .lines()
        .chain(err.lines())
        .take(LOG_LINES)
        .map(str::to_string)
        .collect();
    let code = status.code();
    lines.push(format!(
        "{program} exited with {}",
        code.map_or("a signal".into(), |c| format!("status {c}"))
    ));
    if !status.success() {
        let tail: String = err.lines().last().unwrap_or("").chars().take(200).collect();
        return Err(format!(
            "{program} exited with {}{}",
            code.map_or("a signal".into(), |c| format!("status {c}")),
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        ));
    }
    Ok((
        json!({"exitCode": code, "stdout": out, "stderr": err}),
        lines,
    ))
}

/// Reads a stream to its end, keeping the first `MAX_OUTPUT` bytes.
async fn capture(stream: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut s) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// A program's process group, killed when dropped: a program's own children go with it.
struct Group {
    id: u32,
    /// The group's entry in `Groups`, removed with it.
    entry: Option<PathBuf>,
}

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.id);
        if let Some(entry) = &self.entry {
            let _ = std::fs::remove_file(entry);
        }
    }
}

fn kill_group(id: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(id) {
        // SAFETY: killpg only sends a signal; a group that is gone answers ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// The process groups of the programs running, one file each in a directory of the data dir
/// (named by the group, holding the boot it started in). A program dies with hookd, but what
/// it started in the background does not; the next start ends those groups.
pub struct Groups {
    dir: Option<PathBuf>,
    /// Read once: every entry of this daemon holds it.
    boot: Option<String>,
}

impl Groups {
    /// Groups not written down (a test's runtime).
    pub fn unrecorded() -> Groups {
        Groups {
            dir: None,
            boot: None,
        }
    }

    /// Keeps the groups in `dir`, after killing what is left of the ones a previous hookd
    /// recorded there: same boot, and the group's leader (the program) gone, so the id cannot
    /// have been handed to a new group since.
    pub fn open(dir: PathBuf) -> Groups {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(
                "cannot keep exec programs' groups in {}: {e}; what they leave running after a \
                 crash is not ended at the next start",
                dir.display()
            );
            return Groups::unrecorded();
        }
        let boot = boot_id();
        let mut ended = 0;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok());
            let same_boot = std::fs::read_to_string(&path).ok() == boot;
            if let Some(id) = id
                && same_boot
                && boot.is_some()
                && !alive(id)
            {
                kill_group(id);
                ended += 1;
            }
            let _ = std::fs::remove_file(&path);
        }
        if ended > 0 {
            tracing::warn!(
                "ended {ended} process group(s) that exec programs of interrupted runs left running"
            );
        }
        Groups {
            dir: Some(dir),
            boot,
        }
    }

    /// Writes group `id` down; its entry, to be removed when the group is killed.
    fn record(&self, id: u32) -> Option<PathBuf> {
        let path = self.dir.as_ref()?.join(id.to_string());
        std::fs::write(&path, self.boot.as_deref()?).ok()?;
        Some(path)
    }
}

/// Whether process `id` runs: a zombie (a leader killed with hookd, not yet reaped by an init
/// that never reaps) does not, and holds its id so that no new group can take it.
fn alive(id: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{id}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold any byte.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// This boot of the machine: a group id recorded in another one means nothing.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()
}

/// Makes the program get SIGKILL when hookd dies, `kill -9` included: without it a program
/// outlives the daemon (reparented to init) while its run is marked interrupted.
#[cfg(target_os = "linux")]
fn die_with_hookd(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the child between fork and exec and calls only the
    // async-signal-safe prctl, getppid and _exit.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            // The death signal follows the forking thread; hookd's runtime threads live as long
            // as the daemon does.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // hookd died before the prctl: nobody would send the signal.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_hookd(_cmd: &mut tokio::process::Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn runs_without_a_shell_with_the_body_on_stdin() {
        let (out, lines) = exec(
            &params(json!({"command": "cat"})),
            &json!({"a": 1}),
            Duration::from_secs(10),
            &Groups::unrecorded(),
        )
        .await
        .expect("cat runs");
        assert_eq!(out["stdout"], "{\"a\":1}");
        assert_eq!(out["exitCode"], 0);
        assert!(lines.iter().any(|l| l.contains("exited with status 0")));
        // Arguments are not interpreted by a shell.
        let (out, _) = exec(
            &params(json!({"command": "echo", "args": ["$HOME", "a;b"]})),
            &Value::Null,
            Duration::from_secs(10),
            &Groups::unrecorded(),
        )
        .await
        .expect("echo runs");
        assert_eq!(out["stdout"], "$HOME a;b\n");
    }

    #[tokio::test]
    async fn the_daemon_environment_does_not_leak() {
        // The child sees only PATH/HOME/LANG/TZ and what `env` gives.
        let (out, _) = exec(
            &params(json!({"command": "env", "env": {"A": "1"}})),
            &Value::Null,
            Duration::from_secs(10),
            &Groups::unrecorded(),
        )
        .await
        .expect("env runs");
        let names: Vec<&str> = out["stdout"]
            .as_str()
            .unwrap_or("")
            .lines()
            .filter_map(|l| l.split('=').next())
            .collect();
        assert!(names.contains(&"A") && names.contains(&"PATH"));
        assert!(
            names
                .iter()
                .all(|n| ["A", "PATH", "HOME", "LANG", "TZ"].contains(n)),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn failures_and_timeouts_are_clear_errors() {
        let e = exec(
            &params(json!({"command": "false"})),
            &Value::Null,
            Duration::from_secs(10),
            &Groups::unrecorded(),
        )
        .await
        .err();
        assert!(e.is_some_and(|e| e.contains("exited with status 1")));
        let e = exec(
            &params(json!({"command": "/no/such/program"})),
            &Value::Null,
            Duration::from_secs(10),
            &Groups::unrecorded(),
        )
        .await
        .err();
        assert!(e.is_some_and(|e| e.contains("cannot run /no/such/program")));
        let e = exec(
            &params(json!({"command": "sleep", "args": ["30"], "timeout": 1})),
            &Value::Null,
            Duration::from_secs(10),
            &Groups::unrecorded(),
        )
        .await
        .err();
        assert!(e.is_some_and(|e| e.contains("killed after 1 s")));
        // Cut by the run's shorter limit: that is what the error names, whichever timer fires
        // first (both expire in the same tick when the step starts right after the run).
        let e = exec(
            &params(json!({"command": "sleep", "args": ["30"], "timeout": 120})),
            &Value::Null,
            Duration::from_secs(1),
            &Groups::unrecorded(),
        )
        .await
        .err();
        assert_eq!(e.as_deref(), Some("the run exceeded its time limit of 1s"));
    }

    /// A program's background child, left running in its group after its leader died (as
    /// after a `kill -9` of hookd), is ended by the next start; an entry from another boot, or
    /// for a group whose leader lives (its id may be someone else's now), is only dropped.
    #[tokio::test]
    async fn the_next_start_ends_the_groups_programs_left_behind() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let groups = dir.path().join("programs");
        let leader = std::process::Command::new("sh")
            .args(["-c", "sleep 60 >/dev/null 2>&1 & echo $!"])
            .process_group(0)
            .stdout(Stdio::piped())
            .output()
            .expect("sh");
        let left: u32 = String::from_utf8_lossy(&leader.stdout)
            .trim()
            .parse()
            .expect("pid");
        let group = unsafe { libc::getpgid(left as libc::pid_t) };
        assert!(group > 0 && group as u32 != left, "in its leader's group");
        std::fs::create_dir_all(&groups).expect("dir");
        std::fs::write(groups.join(group.to_string()), boot_id().expect("boot id")).expect("write");
        let mut alive = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("sleep");
        std::fs::write(
            groups.join(alive.id().to_string()),
            boot_id().expect("boot id"),
        )
        .expect("write");
        std::fs::write(groups.join("999999"), "another boot").expect("write");

        let opened = Groups::open(groups.clone());
        let mut ended = false;
        for _ in 0..500 {
            let stat = std::fs::read_to_string(format!("/proc/{left}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z") {
                ended = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ended, "the background sleep outlived the next start");
        assert!(
            alive.try_wait().expect("wait").is_none(),
            "a group whose leader lives is left alone"
        );
        let _ = alive.kill();
        let _ = alive.wait();
        assert_eq!(std::fs::read_dir(&groups).expect("dir").count(), 0);

        // A program running is written down until it ends.
        let (out, _) = exec(
            &params(
                json!({"command": "sh", "args": ["-c", "ls \"$0\"", groups.display().to_string()]}),
            ),
            &Value::Null,
            Duration::from_secs(10),
            &opened,
        )
        .await
        .expect("ls runs");
        assert_eq!(
            out["stdout"].as_str().map(|s| s.lines().count()),
            Some(1),
            "{out}"
        );
        assert_eq!(std::fs::read_dir(&groups).expect("dir").count(), 0);
    }
}
