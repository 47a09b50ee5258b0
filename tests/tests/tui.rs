//! hookd-tui end to end: the real daemon and the real dashboard in a tmux pseudo-terminal,
//! driven by keys the way an operator would. Needs tmux (`.ci/run` installs it).

use std::process::Command;
use std::time::{Duration, Instant};

use hookd_e2e::{Daemon, build_bin};
use serde_json::{Value, json};

/// A tmux session on its own server socket, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str, w: u16, h: u16) -> Tmux {
        let socket = format!("hookd-e2e-{}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                &w.to_string(),
                "-y",
                &h.to_string(),
                cmd,
            ])
            .status()
            .map(|s| s.success());
        assert!(
            matches!(ok, Ok(true)),
            "tmux is needed for this test (apt-get install -y tmux): {ok:?}"
        );
        Tmux { socket }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let status = Command::new("tmux")
                .args(["-L", &self.socket, "send-keys", "-t", "0", k])
                .status()
                .expect("tmux send-keys");
            assert!(status.success());
        }
    }

    fn text(&self, t: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", "-l", t])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok` (the terminal is the only thing to observe).
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[tokio::test]
async fn create_a_webhook_see_its_message_replay_it_and_see_the_runs() {
    let d = Daemon::start().await;
    let (status, v) = d
        .call(
            "pipeline.put",
            json!({"name": "tui/echo", "pipeline": "pipeline:\n  - event.listen:\n      eventKey: webhook.tui.#\n  - log:\n      message: ${body.payload.json.hello}\n"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let tui = build_bin("hookd-tui", "hookd-tui");
    let cmd = format!(
        "HOOKD_TUI_CONFIG=/nonexistent {} --url {} --token {}",
        tui.display(),
        d.url,
        d.token
    );
    let t = Tmux::start(&cmd, 160, 48);
    t.wait_for("the dashboard to connect", |s| s.contains("● connected"));

    // Create a webhook with keys: Webhooks, n, type the event key, Enter.
    t.keys(&["1", "n"]);
    t.wait_for("the new-webhook form", |s| s.contains("New webhook"));
    t.text("webhook.tui.demo");
    t.keys(&["Enter"]);
    t.wait_for("the webhook in the list", |s| {
        s.contains("webhook.tui.demo") && !s.contains("New webhook")
    });
    let hooks = d.ok("webhook.get", json!({})).await;
    let url = hooks[0]["webhookUrl"].as_str().expect("url").to_string();

    // A request arrives: it shows up live on Messages.
    t.keys(&["2"]);
    let r = d
        .http()
        .post(&url)
        .json(&json!({"hello": "from e2e"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    let id = r.json::<Value>().await.expect("json")["messageId"]
        .as_str()
        .expect("id")
        .to_string();
    t.wait_for("the message and its detail", |s| {
        s.contains("webhook.tui.demo") && s.contains(&id)
    });

    // Replay it: a second run appears on Executions, tagged as a replay.
    t.keys(&["r"]);
    t.wait_for("the replay confirmation", |s| {
        s.contains("replayed webhook.tui.demo")
    });
    t.keys(&["3"]);
    let screen = t.wait_for("two runs, one a replay", |s| {
        s.matches("tui/echo").count() >= 2 && s.contains("replay")
    });
    assert!(screen.contains("succeeded"), "{screen}");
    let runs = d.ok("execution.list", json!({"messageId": id})).await;
    assert_eq!(runs.as_array().map(Vec::len), Some(2));
    assert!(
        runs.as_array()
            .expect("runs")
            .iter()
            .any(|r| r["replayOf"] == id.as_str())
    );

    // q quits and gives the terminal back.
    t.keys(&["q"]);
}
