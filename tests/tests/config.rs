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

#[test]
fn unknown_config_keys_are_an_error_that_names_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("hookd.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\npublicURL = \"x\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(hookd_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("publicURL") && err.contains("hookd.toml"),
        "{err}"
    );
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
    assert!(d.log_text().contains("admin.token"), "its path is logged");

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
