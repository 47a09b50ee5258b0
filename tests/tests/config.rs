//! Configuration: flags over `HOOKD_*` variables over the TOML file; unknown keys named; the
//! bootstrap admin token.

use hookd_e2e::{Daemon, Options, hookd_bin};
use serde_json::json;

#[tokio::test]
async fn file_then_environment_then_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("hookd.toml");
    std::fs::write(
        &cfg,
        "[server]\npublicUrl = \"https://from-file.example\"\nmaxBody = 1000\n",
    )
    .expect("write config");
    let config = cfg.to_string_lossy().to_string();

    // The file alone.
    let d = Daemon::start_with(Options {
        args: vec!["--config".into(), config.clone()],
        ..Options::default()
    })
    .await;
    let w = d
        .ok("webhook.put", json!({"eventKey": "webhook.cfg"}))
        .await;
    assert!(
        w["webhookUrl"]
            .as_str()
            .unwrap_or_default()
            .starts_with("https://from-file.example/api/v3/")
    );
    assert_eq!(w["maxPayloadLength"], 1000);

    // A variable beats the file; a flag beats the variable.
    let d = Daemon::start_with(Options {
        args: vec![
            "--config".into(),
            config.clone(),
            "--max-body".into(),
            "3000".into(),
        ],
        env: vec![
            (
                "HOOKD_PUBLIC_URL".into(),
                "https://from-env.example/".into(),
            ),
            ("HOOKD_MAX_BODY".into(), "2000".into()),
        ],
        ..Options::default()
    })
    .await;
    let w = d
        .ok("webhook.put", json!({"eventKey": "webhook.cfg"}))
        .await;
    assert!(
        w["webhookUrl"]
            .as_str()
            .unwrap_or_default()
            .starts_with("https://from-env.example/api/v3/")
    );
    assert_eq!(w["maxPayloadLength"], 3000);
}

/// Runs `hookd serve --config <cfg>` with a data dir beside it, expecting it to refuse to start;
/// returns its stderr.
fn refused_config(cfg: &std::path::Path) -> String {
    let data = cfg.with_file_name("data");
    let out = std::process::Command::new(hookd_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "hookd started with {}",
        cfg.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_config_keys_are_an_error_that_names_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("hookd.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\npublicURL = \"x\"\n",
    )
    .expect("write");
    let err = refused_config(&cfg);
    assert!(
        err.contains("publicURL") && err.contains("hookd.toml"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_named_once_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = refused_config(&tmp.path().join("missing.toml"));
    assert!(
        err.contains("cannot read config file") && err.contains("missing.toml"),
        "{err}"
    );
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[tokio::test]
async fn the_generated_admin_token_is_private_and_the_env_token_is_not_written() {
    let d = Daemon::start().await;
    let path = d.dir.join("admin.token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("admin.token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let log = d.log_text();
    assert!(log.contains("admin.token"), "its path is logged");
    // Logs to a file or journald carry no terminal colour codes.
    assert!(
        !log.contains('\x1b'),
        "escape codes in a log that is no terminal: {log:?}"
    );

    let d = Daemon::start_with(Options {
        env: vec![("HOOKD_ADMIN_TOKEN".into(), "s3cret-from-env".into())],
        ..Options::default()
    })
    .await;
    assert_eq!(d.token, "s3cret-from-env");
    d.ok("webhook.get", json!({})).await;
    assert!(!d.dir.join("admin.token").exists());
    let rows = d.ok("token.list", json!({})).await;
    assert_eq!(rows, json!([]), "the env token is never stored");
}

/// Scripts often wait for the port rather than the ready line: by the time hookd accepts a
/// connection, the admin token the CLI reads must be there, so `hookd command` works at once.
#[tokio::test]
async fn the_port_opens_only_once_the_cli_can_use_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(hookd_bin())
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .env_remove("HOOKD_ADMIN_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start hookd");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // A refused connect returns at once, so this polls the moment the port opens.
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "hookd never listened");
        tokio::task::yield_now().await;
    }
    assert!(
        data.join("admin.token").exists(),
        "the port accepted a connection before the admin token existed"
    );
    let out = std::process::Command::new(hookd_bin())
        .args(["command", "--url", &format!("http://{addr}"), "--data-dir"])
        .arg(&data)
        .args(["webhook.put", "eventKey=webhook.ready"])
        .env_remove("HOOKD_ADMIN_TOKEN")
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    child.kill().await.expect("stop hookd");
}

/// Runs `hookd <args>` with no HOOKD_* variables of the developer's.
fn hookd(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(hookd_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("HOOKD_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run hookd")
}

/// `hookd config check` validates without starting: a good file passes, an unknown key or a bad
/// value fails naming it, with a non-zero exit.
#[test]
fn config_check_names_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, toml: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, toml).expect("write");
        p.to_string_lossy().into_owned()
    };
    let good = write(
        "good.toml",
        "[retention]\nmaxAge = \"7d\"\n[metrics]\ntoken = false\n",
    );
    let out = hookd(&["config", "check", "--config", &good], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"maxAge\":\"7d\""));
    for (toml, named) in [
        ("[retention]\nmaxAgee = \"7d\"\n", "maxAgee"),
        ("[pipeline]\nnice = 40\n", "nice = 40"),
        ("[metrics]\nlisten = \"nowhere\"\n", "'nowhere'"),
    ] {
        let bad = write("bad.toml", toml);
        let out = hookd(&["config", "check", "--config", &bad], &[]);
        assert!(!out.status.success(), "{toml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{toml}: {err}");
    }
}

/// `--version` and shell completions for the three shells.
#[test]
fn version_and_completions() {
    let out = hookd(&["--version"], &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hookd {}", env!("CARGO_PKG_VERSION"))
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef hookd"),
        ("fish", "complete -c hookd"),
    ] {
        let out = hookd(&["completions", shell], &[]);
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}");
        assert!(script.contains("backup"), "{shell} completes subcommands");
    }
}

/// Every setting has a variable, so a container or a unit file needs no file: variables set
/// retention and open /metrics; a bad value names its variable.
#[tokio::test]
async fn every_setting_can_come_from_a_variable() {
    let d = Daemon::start_with(Options {
        env: vec![
            ("HOOKD_RETENTION_MAX_COUNT".into(), "3".into()),
            ("HOOKD_METRICS_TOKEN".into(), "false".into()),
            ("HOOKD_PIPELINE_WORKERS".into(), "2".into()),
        ],
        ..Options::default()
    })
    .await;
    let w = d
        .ok("webhook.put", json!({"eventKey": "webhook.env"}))
        .await;
    assert_eq!(w["retention"]["maxCount"], 3);
    let r = d
        .http()
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status().as_u16(), 200);

    let out = hookd(&["config", "check"], &[("HOOKD_PIPELINE_WORKERS", "many")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("variable HOOKD_PIPELINE_WORKERS"), "{err}");
}
