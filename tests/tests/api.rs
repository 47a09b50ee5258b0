//! The command API and the CLI: webhook CRUD, tokens and roles, errors a person can act on.

use hookd_e2e::{Daemon, error_message};
use serde_json::{Value, json};

#[tokio::test]
async fn webhook_crud_over_http_keeps_the_uuid() {
    let d = Daemon::start().await;
    let created = d
        .ok(
            "webhook.put",
            json!({"eventKey": "webhook.github.push", "description": "from GitHub"}),
        )
        .await;
    let uuid = created["uuid"].as_str().expect("uuid").to_string();
    assert_eq!(created["eventKey"], "webhook.github.push");
    assert_eq!(created["payloadType"], "raw");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["maxPayloadLength"], 25 * 1024 * 1024);
    assert_eq!(
        created["webhookUrl"],
        format!("{}/api/v3/command/webhook.receive?uuid={uuid}", d.url)
    );

    // Edit: the uuid stays, untouched fields keep their values.
    let edited = d
        .ok(
            "webhook.put",
            json!({"uuid": uuid, "eventKey": "webhook.github.pull", "payloadType": "base64"}),
        )
        .await;
    assert_eq!(edited["uuid"], uuid.as_str());
    assert_eq!(edited["eventKey"], "webhook.github.pull");
    assert_eq!(edited["payloadType"], "base64");
    assert_eq!(edited["description"], "from GitHub");
    assert_eq!(edited["createdAt"], created["createdAt"]);

    // Create with a chosen uuid (as scripts and benchmarks do).
    let fixed = "0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10";
    let w = d
        .ok(
            "webhook.put",
            json!({"uuid": fixed, "eventKey": "webhook.fixed"}),
        )
        .await;
    assert_eq!(w["uuid"], fixed);

    let all = d.ok("webhook.get", json!({})).await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let one = d.ok("webhook.get", json!({"uuid": uuid})).await;
    assert_eq!(one["eventKey"], "webhook.github.pull");

    let deleted = d.ok("webhook.delete", json!({"uuid": uuid})).await;
    assert_eq!(deleted["uuid"], uuid.as_str());
    let (status, err) = d.call("webhook.get", json!({"uuid": uuid})).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "not_found");
    let (status, _) = d.call("webhook.delete", json!({"uuid": uuid})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_parameters_get_a_400_that_says_what_to_do() {
    let d = Daemon::start().await;
    let (status, v) = d
        .call("webhook.put", json!({"eventKey": "Webhook.GitHub"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["status"], 400);
    assert_eq!(v["error"]["code"], "invalid_param");
    let msg = error_message(&v);
    assert!(
        msg.contains("eventKey") && msg.contains("webhook.github.push"),
        "{msg}"
    );

    let (status, v) = d.call("webhook.put", json!({})).await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("eventKey is required"));

    let (status, v) = d
        .call(
            "webhook.put",
            json!({"eventKey": "a.b", "maxPayloadLength": 999_999_999}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(error_message(&v).contains("global limit"));

    let (status, v) = d
        .call("webhook.put", json!({"eventKey": "a.b", "colour": "red"}))
        .await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("unknown parameter 'colour'"));

    let (status, v) = d.call("webhook.explode", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "unknown_command");

    // Nothing was created by any of that.
    assert_eq!(d.ok("webhook.get", json!({})).await, json!([]));
}

#[tokio::test]
async fn auth_401_without_or_with_a_wrong_token_and_403_for_viewers() {
    let d = Daemon::start().await;
    let (status, v) = d.call_as("", "webhook.get", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let (status, _) = d.call_as("hkd_wrong", "webhook.get", json!({})).await;
    assert_eq!(status, 401);

    let created = d
        .ok(
            "token.create",
            json!({"role": "viewer", "name": "dashboard"}),
        )
        .await;
    let viewer = created["token"]
        .as_str()
        .expect("secret shown once")
        .to_string();
    let id = created["id"].as_str().expect("id").to_string();
    let (status, _) = d.call_as(&viewer, "webhook.get", json!({})).await;
    assert_eq!(status, 200);
    let (status, v) = d
        .call_as(&viewer, "webhook.put", json!({"eventKey": "webhook.x"}))
        .await;
    assert_eq!(status, 403);
    assert!(error_message(&v).contains("needs role admin"));

    // token.list never shows secrets.
    let list = d.ok("token.list", json!({})).await;
    let text = list.to_string();
    assert!(!text.contains(&viewer) && !text.contains(&d.token));
    assert!(text.contains("dashboard"));

    d.ok("token.delete", json!({"id": id})).await;
    let (status, _) = d.call_as(&viewer, "webhook.get", json!({})).await;
    assert_eq!(status, 401, "a deleted token stops working at once");

    // webhook.receive stays public.
    let (url, _) = d.webhook("webhook.public").await;
    let r = d.http().post(&url).body("x").send().await.expect("post");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn command_list_describes_every_command() {
    let d = Daemon::start().await;
    let list = d.ok("command.list", json!({})).await;
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for n in [
        "webhook.put",
        "webhook.get",
        "webhook.delete",
        "webhook.receive",
        "message.list",
        "message.get",
        "token.create",
    ] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }
    let put = list
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "webhook.put"))
        .expect("webhook.put");
    assert_eq!(put["role"], "admin");
    assert!(
        put["params"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "eventKey"))
    );
}

#[tokio::test]
async fn cli_round_trip_and_errors_exit_non_zero() {
    let d = Daemon::start().await;
    let out = d.cli(&[
        "webhook.put",
        "eventKey=webhook.cli.test",
        "description=made by the CLI",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let uuid = w["uuid"].as_str().expect("uuid").to_string();

    let out = d.cli(&["webhook.put", &format!("uuid={uuid}"), "enabled=false"]);
    assert!(out.status.success());
    let w: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (w["uuid"].as_str(), w["enabled"].as_bool()),
        (Some(uuid.as_str()), Some(false))
    );

    let out = d.cli(&["webhook.get", &format!("uuid={uuid}")]);
    let w: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(w["description"], "made by the CLI");

    let out = d.cli(&["webhook.put", "eventKey=NOT VALID"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("eventKey") && err.contains("400"), "{err}");

    let out = d.cli(&["webhook.delete", &format!("uuid={uuid}")]);
    assert!(out.status.success());
    let out = d.cli(&["webhook.get", &format!("uuid={uuid}")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no webhook with uuid"));

    // A local daemon's admin.token is found without --token.
    let out = std::process::Command::new(hookd_e2e::hookd_bin())
        .args(["command", "--url", &d.url, "--data-dir"])
        .arg(&d.dir)
        .arg("webhook.get")
        .env_remove("HOOKD_TOKEN")
        .env_remove("HOOKD_ADMIN_TOKEN")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An unreachable daemon is a clear error, not a panic.
    let out = std::process::Command::new(hookd_e2e::hookd_bin())
        .args([
            "command",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "x",
            "webhook.get",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach hookd"));
}

#[tokio::test]
async fn healthz_answers_while_hookd_runs() {
    let d = Daemon::start().await;
    let r = d
        .http()
        .get(format!("{}/healthz", d.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
}

/// Issue 29: pipeline-only commands authenticate first, like every other: no token and a wrong
/// one are both 401; a valid token learns the command runs only in pipelines.
#[tokio::test]
async fn pipeline_only_commands_authenticate_first() {
    let d = Daemon::start().await;
    let url = format!("{}/api/v3/command/log", d.url);
    let anonymous = d.http().post(&url).send().await.expect("post");
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = d
        .http()
        .post(&url)
        .bearer_auth("hkd_wrong")
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status().as_u16(), 401);
    let (status, v) = d.call("log", serde_json::json!({})).await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("pipeline.run"), "{v}");
}
