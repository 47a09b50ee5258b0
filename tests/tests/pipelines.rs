//! Listener pipelines: PIPEFORCE's example end to end, expressions and step options, event
//! chains, privileges, time limits, at-least-once dispatch across kill -9, replay.

use std::collections::HashMap;
use std::time::Duration;

use hookd_e2e::smtp::SmtpSink;
use hookd_e2e::{Daemon, Events, Options, error_message};
use serde_json::{Value, json};

async fn put_pipeline(d: &Daemon, name: &str, yaml: &str) {
    let (status, v) = d
        .call("pipeline.put", json!({"name": name, "pipeline": yaml}))
        .await;
    assert_eq!(status, 200, "pipeline.put {name}: {v}");
}

async fn post_json(d: &Daemon, url: &str, body: Value) -> String {
    let r = d.http().post(url).json(&body).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().await.expect("json")["messageId"]
        .as_str()
        .expect("messageId")
        .to_string()
}

/// The next `n` execution.finished frames' data.
async fn finished(ev: &mut Events, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = ev.next().await;
        if f["type"] == "execution.finished" {
            out.push(f["data"].clone());
        }
    }
    out
}

fn by_pipeline(runs: &[Value]) -> HashMap<String, Value> {
    runs.iter()
        .map(|r| {
            (
                r["pipeline"].as_str().unwrap_or_default().to_string(),
                r.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_pipeforce_example_sends_the_mail() {
    let mut sink = SmtpSink::start().await;
    let d = Daemon::start_with(Options::config(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nstarttls = \"none\"\nfrom = \"hookd@example.com\"\n",
        sink.port
    )))
    .await;
    let (url, _) = d.webhook("webhook.salesforce.lead.created").await;
    // Sent as the request body with Content-Type: application/yaml, as PIPEFORCE users do.
    let yaml = "pipeline:\n  - event.listen:\n      eventKey: webhook.salesforce.lead.created\n  - mail.send:\n      to: sales@example.com\n      subject: \"New lead: ${body.payload.json.lead.name}\"\n      message: \"Please call ${body.payload.json.lead.name} (${body.payload.json.lead.company}) today.\"\n";
    let r = d
        .http()
        .post(format!(
            "{}/api/v3/command/pipeline.put?name=global/app/crm/pipeline/on-lead",
            d.url
        ))
        .bearer_auth(&d.token)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);

    post_json(
        &d,
        &url,
        json!({"lead": {"name": "Ada Lovelace", "company": "Analytical Engines"}}),
    )
    .await;
    let mail = sink.next().await;
    assert_eq!(mail.from, "hookd@example.com");
    assert_eq!(mail.to, ["sales@example.com"]);
    assert!(
        mail.data.contains("Subject: New lead: Ada Lovelace"),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("Please call Ada Lovelace (Analytical Engines) today."),
        "{}",
        mail.data
    );
}

#[tokio::test]
async fn wildcards_filters_if_on_error_and_output() {
    let d = Daemon::start().await;
    let (github, _) = d.webhook("webhook.github.push").await;
    let (stripe, _) = d.webhook("webhook.stripe.charge").await;
    put_pipeline(
        &d,
        "main-pushes",
        r#"
vars:
  prefix: "pushed to"
pipeline:
  - event.listen:
      eventKey: webhook.github.*
      filter: ${body.payload.json.ref == 'refs/heads/main'}
  - body.set:
      value: ${body.payload.json.commits}
      output: vars.commits
  - log:
      message: never
      if: ${vars.prefix == 'something else'}
  - log:
      message: ${body.nothing.deeper}
      onError: CONTINUE
  - body.set:
      value: "${vars.prefix} main: ${vars.commits} commits"
"#,
    )
    .await;
    put_pipeline(&d, "everything", "pipeline:\n  - event.listen:\n      eventKey: webhook.#\n  - log:\n      message: ${body.eventKey}\n").await;

    let mut ev = d.events("types=execution.finished").await;
    post_json(&d, &github, json!({"ref": "refs/heads/main", "commits": 3})).await;
    let runs = by_pipeline(&finished(&mut ev, 2).await);
    let main = &runs["main-pushes"];
    assert_eq!(main["status"], "succeeded");
    let detail = d.ok("execution.get", json!({"id": main["id"]})).await;
    let statuses: Vec<&str> = detail["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["status"].as_str())
        .collect();
    assert_eq!(statuses, ["ok", "ok", "skipped", "continued", "ok"]);
    assert!(
        detail["steps"][3]["error"]
            .as_str()
            .is_some_and(|e| e.contains("body.nothing.deeper")),
        "{detail}"
    );
    assert_eq!(detail["body"], "pushed to main: 3 commits");
    assert_eq!(runs["everything"]["status"], "succeeded");
    // A run that leaves its event as it was stores how to rebuild it, not a copy; the rebuilt
    // body is the event the run saw.
    let all = d
        .ok("execution.get", json!({"id": runs["everything"]["id"]}))
        .await;
    let body = &all["body"];
    assert_eq!(body["messageId"], runs["everything"]["messageId"], "{all}");
    assert_eq!(body["traceId"], all["traceId"]);
    assert_eq!(body["eventKey"], "webhook.github.push");
    assert_eq!(
        body["payload"]["json"],
        json!({"ref": "refs/heads/main", "commits": 3})
    );
    assert_eq!(body["payload"]["method"], "POST");
    let stored: Vec<(String, bool, Option<String>)> = {
        let db = rusqlite::Connection::open(d.dir.join("hookd.db")).expect("open db");
        let mut st = db
            .prepare("SELECT pipeline, body IS NULL, body_from FROM executions ORDER BY pipeline")
            .expect("query");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read")
    };
    assert_eq!(
        stored,
        [
            (
                "everything".to_string(),
                true,
                Some("message:raw".to_string())
            ),
            ("main-pushes".into(), false, None),
        ]
    );

    // The filter skips other branches (recorded as skipped); webhook.# still runs.
    post_json(&d, &github, json!({"ref": "refs/heads/dev"})).await;
    let runs = by_pipeline(&finished(&mut ev, 2).await);
    assert_eq!(runs["main-pushes"]["status"], "skipped");
    assert_eq!(runs["everything"]["status"], "succeeded");

    // * is one segment: webhook.stripe.charge is not webhook.github.*.
    post_json(&d, &stripe, json!({})).await;
    let runs = finished(&mut ev, 1).await;
    assert_eq!(runs[0]["pipeline"], "everything");
    let skipped = d
        .ok("execution.list", json!({"pipeline": "main-pushes"}))
        .await;
    assert_eq!(skipped.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn event_chains_run_and_the_loop_guard_stops_a_loop() {
    let d = Daemon::start().await;
    let (lead, _) = d.webhook("webhook.crm.lead").await;
    put_pipeline(&d, "qualify", "pipeline:\n  - event.listen:\n      eventKey: webhook.crm.lead\n  - event.send:\n      eventKey: lead.qualified\n      payload:\n        name: ${body.payload.json.name}\n").await;
    put_pipeline(&d, "welcome", "pipeline:\n  - event.listen:\n      eventKey: lead.qualified\n  - body.set:\n      value: \"welcome ${body.payload.name}\"\n").await;
    let mut ev = d.events("types=execution.finished").await;
    post_json(&d, &lead, json!({"name": "Ada"})).await;
    let runs = by_pipeline(&finished(&mut ev, 2).await);
    let welcome = d
        .ok("execution.get", json!({"id": runs["welcome"]["id"]}))
        .await;
    assert_eq!(welcome["body"], "welcome Ada");
    assert_eq!(welcome["trigger"], "chain");
    assert_eq!(welcome["depth"], 1);
    let qualify = d
        .ok("execution.get", json!({"id": runs["qualify"]["id"]}))
        .await;
    assert_eq!(
        qualify["traceId"], welcome["traceId"],
        "a chain shares its trace id"
    );

    // A listener that sends the event it listens to stops at the depth limit.
    let (ping, _) = d.webhook("loop.ping").await;
    put_pipeline(&d, "echo", "pipeline:\n  - event.listen:\n      eventKey: loop.ping\n  - event.send:\n      eventKey: loop.ping\n").await;
    post_json(&d, &ping, json!({})).await;
    let runs = finished(&mut ev, 9).await;
    let failed: Vec<&Value> = runs.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{runs:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("event chain deeper than 8")),
        "{failed:?}"
    );
    assert_eq!(
        runs.iter().filter(|r| r["status"] == "succeeded").count(),
        8
    );
}

#[tokio::test]
async fn exec_is_denied_to_anonymous_and_allowed_after_iam_run_as() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.deploy").await;
    put_pipeline(&d, "anonymous-exec", "pipeline:\n  - event.listen:\n      eventKey: webhook.deploy\n  - exec:\n      command: echo\n      args: [hi]\n").await;
    put_pipeline(&d, "admin-exec", "pipeline:\n  - event.listen:\n      eventKey: webhook.deploy\n  - iam.run.as:\n      username: admin\n  - exec:\n      command: echo\n      args: [\"deploying ${body.payload.json.version}\"]\n").await;
    let mut ev = d.events("types=execution.finished").await;
    post_json(&d, &url, json!({"version": "1.2.3"})).await;
    let runs = by_pipeline(&finished(&mut ev, 2).await);
    assert_eq!(runs["anonymous-exec"]["status"], "failed");
    assert!(
        runs["anonymous-exec"]["error"]
            .as_str()
            .is_some_and(|e| e
                .contains("permission denied: exec needs role admin; add iam.run.as before it")),
        "{:?}",
        runs["anonymous-exec"]
    );
    let ok = d
        .ok("execution.get", json!({"id": runs["admin-exec"]["id"]}))
        .await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(ok["runAs"], "admin");
    assert_eq!(ok["body"]["stdout"], "deploying 1.2.3\n");

    // Storing pipelines is for admins.
    let viewer = d.viewer_token("v").await;
    let (status, _) = d
        .call_as(
            &viewer,
            "pipeline.put",
            json!({"name": "x", "pipeline": "pipeline:\n  - log\n"}),
        )
        .await;
    assert_eq!(status, 403);
}

/// What `nice` prints inside a listener run of a daemon with `config`.
async fn niceness_of_runs(config: &str) -> String {
    let d = Daemon::start_with(Options::config(config)).await;
    let (url, _) = d.webhook("webhook.nice").await;
    put_pipeline(&d, "nice", "pipeline:\n  - event.listen:\n      eventKey: webhook.nice\n  - iam.run.as:\n      username: admin\n  - exec:\n      command: nice\n").await;
    let mut ev = d.events("types=execution.finished").await;
    post_json(&d, &url, json!({})).await;
    let run = finished(&mut ev, 1).await.remove(0);
    let got = d.ok("execution.get", json!({"id": run["id"]})).await;
    assert_eq!(got["status"], "succeeded", "{got}");
    got["body"]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn runs_and_their_programs_yield_the_cpu_to_receiving() {
    // Runs execute on threads the OS schedules after the receive path's; what they exec inherits it.
    assert_eq!(niceness_of_runs("").await, "10\n");
    assert_eq!(niceness_of_runs("[pipeline]\nnice = 3\n").await, "3\n");
}

/// The outcomes of three listener runs started at once, each running a program that fails if
/// another of them is running (a lock directory), on a daemon with `pipeline_config`.
async fn three_overlapping_programs(pipeline_config: &str) -> Vec<String> {
    // nice = 0: no burst gate, so the three runs start together on three workers.
    let d = Daemon::start_with(Options::config(&format!(
        "[pipeline]\nnice = 0\nworkers = 3\n{pipeline_config}\n"
    )))
    .await;
    let lock = d.dir.join("lock");
    let (url, _) = d.webhook("webhook.progs").await;
    put_pipeline(
        &d,
        "progs",
        &format!(
            "pipeline:\n  - event.listen:\n      eventKey: webhook.progs\n  - iam.run.as:\n      username: admin\n  - exec:\n      command: sh\n      args: ['-c', 'mkdir \"$LOCK\" && sleep 0.3 && rmdir \"$LOCK\"']\n      env:\n        LOCK: '{}'\n",
            lock.display()
        ),
    )
    .await;
    let mut ev = d.events("types=execution.finished").await;
    futures_util::future::join_all((0..3).map(|i| post_json(&d, &url, json!({"i": i})))).await;
    let mut outcomes = Vec::new();
    for run in finished(&mut ev, 3).await {
        let got = d.ok("execution.get", json!({"id": run["id"]})).await;
        outcomes.push(match got["status"].as_str() {
            Some("succeeded") => "ok".to_string(),
            _ => got["error"].as_str().unwrap_or_default().to_string(),
        });
    }
    outcomes
}

#[tokio::test]
async fn programs_bounds_how_many_execs_run_at_once_across_runs() {
    // One program at a time: the three runs' programs never overlap, so none finds the lock.
    assert_eq!(
        three_overlapping_programs("programs = 1").await,
        vec!["ok", "ok", "ok"]
    );
    // Three at a time: they overlap, and the lock turns some away (what the bound prevents).
    let outcomes = three_overlapping_programs("programs = 3").await;
    assert!(
        outcomes.iter().any(|o| o.contains("File exists")),
        "{outcomes:?}"
    );
}

/// Holds `n` receives open (body never finished) until dropped; returns once hookd is receiving
/// each of them.
async fn hold_receives(d: &Daemon, url: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = d.url.trim_start_matches("http://");
    let target = url.trim_start_matches(&d.url);
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // hookd counts a receive before it reads the body, and hyper answers `100 Continue`
        // when the body is first read: so after it, this receive is counted. (Writing the head
        // alone left the count behind the test's next requests on a busy machine.)
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(30), s.read(&mut byte)).await;
            assert!(
                matches!(read, Ok(Ok(1))),
                "no 100 Continue: {read:?}, got {got:?}"
            );
            got.push(byte[0]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 100"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        s.write_all(b"{\"partial\":").await.expect("write");
        held.push(s);
    }
    held
}

/// How many runs were going at once at most, over the next `n` runs' started/finished frames.
async fn most_at_once(ev: &mut Events, n: usize) -> usize {
    let (mut going, mut most, mut done) = (0usize, 0, 0);
    while done < n {
        let f = ev.next().await;
        match f["type"].as_str() {
            Some("execution.started") => going += 1,
            Some("execution.finished") => {
                going = going.saturating_sub(1);
                done += 1;
            }
            _ => {}
        }
        most = most.max(going);
    }
    most
}

/// How many of three runs went at once at most while eight receives were held open, and then
/// after they were let go, on a daemon with `pipeline_config`.
async fn runs_at_once_during_and_after_a_burst(pipeline_config: &str) -> (usize, usize) {
    // The held requests must stay in flight for the whole test.
    let d = Daemon::start_with(Options::config(&format!(
        "[server]\nheaderReadTimeout = \"120s\"\nminBodyRate = 0\n[pipeline]\n{pipeline_config}\n"
    )))
    .await;
    let (url, _) = d.webhook("webhook.burst").await;
    put_pipeline(&d, "slow", "pipeline:\n  - event.listen:\n      eventKey: webhook.burst\n  - iam.run.as:\n      username: admin\n  - exec:\n      command: sleep\n      args: [\"0.5\"]\n").await;
    let mut ev = d.events("types=execution.*").await;
    let three =
        || futures_util::future::join_all((0..3).map(|i| post_json(&d, &url, json!({"i": i}))));
    let held = hold_receives(&d, &url, 8).await;
    three().await;
    let during = most_at_once(&mut ev, 3).await;
    drop(held);
    three().await;
    (during, most_at_once(&mut ev, 3).await)
}

#[tokio::test]
async fn during_a_burst_runs_go_one_at_a_time_and_all_at_once_after_it() {
    // Eight requests being received at once are a burst: runs step aside but for one worker,
    // which keeps them going (they are not starved however long the burst lasts).
    assert_eq!(runs_at_once_during_and_after_a_burst("").await, (1, 3));
    // nice = 0: runs compete with receiving, burst or not.
    assert_eq!(
        runs_at_once_during_and_after_a_burst("nice = 0").await,
        (3, 3)
    );
}

#[tokio::test]
async fn a_sleeping_pipeline_does_not_slow_receives_and_the_time_limit_fails_it() {
    let d = Daemon::start_with(Options::config("[pipeline]\ntimeout = \"3s\"\n")).await;
    let (slow, _) = d.webhook("webhook.slow").await;
    let (other, _) = d.webhook("webhook.other").await;
    put_pipeline(&d, "sleepy", "pipeline:\n  - event.listen:\n      eventKey: webhook.slow\n  - iam.run.as:\n      username: admin\n  - exec:\n      command: sleep\n      args: [\"60\"]\n      timeout: 120\n").await;
    let mut ev = d.events("types=execution.*").await;
    post_json(&d, &slow, json!({})).await;
    let started = ev.until(|f| f["type"] == "execution.started").await;
    let run_id = started
        .last()
        .map(|f| f["data"]["id"].clone())
        .expect("started");

    // While it sleeps, receiving goes on: 50 posts all answered, the run still running.
    for i in 0..50 {
        post_json(&d, &other, json!({"i": i})).await;
    }
    let still = d.ok("execution.get", json!({"id": run_id})).await;
    assert_eq!(still["status"], "running");

    let done = finished(&mut ev, 1).await;
    assert_eq!(done[0]["status"], "failed");
    let e = done[0]["error"].as_str().unwrap_or_default();
    assert!(e.contains("time limit of 3s") && e.contains("exec"), "{e}");
}

/// A step whose expression stays inside the operation limit but takes a while; many of them
/// make a run that computes for seconds and never waits.
fn spinning_steps(n: usize) -> String {
    "  - log:\n      message: '${\"ab\".pad(1000000, \"x\")}'\n".repeat(n)
}

#[tokio::test]
async fn runs_that_spin_leave_receive_and_healthz_answering_and_stop_at_their_time_limit() {
    let d = Daemon::start_with(Options::config(
        "[pipeline]\ntimeout = \"2s\"\nworkers = 8\n",
    ))
    .await;
    let (spin, _) = d.webhook("webhook.spin").await;
    let (other, _) = d.webhook("webhook.other").await;
    let listener = format!(
        "pipeline:\n  - event.listen:\n      eventKey: webhook.spin\n{}",
        spinning_steps(3000)
    );
    put_pipeline(&d, "spin", &listener).await;
    let mut started = d.events("types=execution.started").await;
    let mut finished_ev = d.events("types=execution.finished").await;
    for i in 0..50 {
        post_json(&d, &spin, json!({"i": i})).await;
    }
    // pipeline.run answers with the run's end; these four used to compute on the threads that
    // serve connections.
    let inline = format!("pipeline:\n{}", spinning_steps(3000));
    let manual = futures_util::future::join_all(
        (0..4).map(|_| d.call("pipeline.run", json!({"pipeline": inline.clone()}))),
    );
    let probe = async {
        let mut manual_started = 0;
        started
            .until(|f| {
                manual_started += usize::from(f["data"]["trigger"] == "manual");
                manual_started == 4
            })
            .await;
        // Every manual run and eight listener runs are computing now.
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let r = reqwest::get(format!("{}/healthz", d.url))
                .await
                .expect("healthz");
            assert_eq!(r.status(), 200);
            let healthz = t.elapsed();
            let t = std::time::Instant::now();
            post_json(&d, &other, json!({"probe": true})).await;
            let receive = t.elapsed();
            assert!(
                healthz < Duration::from_secs(1) && receive < Duration::from_secs(1),
                "while runs spin: /healthz took {healthz:?}, a receive {receive:?}"
            );
        }
    };
    let (answers, ()) = tokio::join!(manual, probe);
    for (status, v) in answers {
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["status"], "failed", "{v}");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains("time limit of 2s"), "{e}");
    }
    let mut listener_runs = 0;
    while listener_runs < 50 {
        let f = finished_ev.next().await;
        if f["data"]["trigger"] != "event" {
            continue;
        }
        listener_runs += 1;
        assert_eq!(f["data"]["status"], "failed", "{f}");
        let e = f["data"]["error"].as_str().unwrap_or_default();
        assert!(e.contains("time limit of 2s"), "{e}");
    }
}

#[tokio::test]
async fn kill_9_right_after_the_acks_finds_every_run_stored_and_runs_each_once() {
    const N: usize = 200;
    let mut d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.crash").await;
    put_pipeline(&d, "count", "pipeline:\n  - event.listen:\n      eventKey: webhook.crash\n  - log:\n      message: ${body.messageId}\n").await;
    let posts = (0..N).map(|i| post_json(&d, &url, json!({"i": i})));
    let ids: Vec<String> = futures_util::future::join_all(posts).await;
    d.kill9().await;
    {
        // A 200 means the message's runs were committed with it, whatever the workers reached.
        let db = rusqlite::Connection::open(d.dir.join("hookd.db")).expect("open db");
        let mut st = db
            .prepare("SELECT message_id FROM executions WHERE pipeline = 'count'")
            .expect("prepare");
        let mut stored: Vec<String> = st
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        stored.sort();
        let mut acked = ids.clone();
        acked.sort();
        assert_eq!(
            stored, acked,
            "one stored execution per acknowledged message"
        );
    }
    d.start_again().await;

    // Every message gets exactly one finished execution (dispatched before the crash or after).
    let mut ev = d.events("since=0&types=execution.finished").await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    while ids.iter().any(|id| !seen.contains_key(id)) {
        let f = ev.next().await;
        if let Some(m) = f["data"]["messageId"].as_str() {
            *seen.entry(m.to_string()).or_default() += 1;
        }
    }
    let listed = d.ok("execution.list", json!({"limit": 1000})).await;
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for e in listed.as_array().expect("list") {
        *per_message
            .entry(e["messageId"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    for id in &ids {
        assert_eq!(per_message.get(id), Some(&1), "message {id}");
    }
}

#[tokio::test]
async fn replay_gives_new_executions_tagged_replay_of() {
    let d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.replay").await;
    put_pipeline(&d, "echo", "pipeline:\n  - event.listen:\n      eventKey: webhook.replay\n  - body.set:\n      value: ${body.payload.json.n}\n").await;
    let mut ev = d.events("types=execution.finished").await;
    let id = post_json(&d, &url, json!({"n": 7})).await;
    let first = finished(&mut ev, 1).await;
    assert_eq!(first[0]["replayOf"], Value::Null);
    // The finished run is on record for its pipeline too.
    let p = d.ok("pipeline.get", json!({"name": "echo"})).await;
    assert!(p["lastRunAt"].is_string(), "{p}");

    let r = d.ok("message.replay", json!({"id": id})).await;
    assert_eq!(r["executions"].as_array().map(Vec::len), Some(1));
    let again = finished(&mut ev, 1).await;
    assert_eq!(again[0]["replayOf"], id.as_str());
    assert_eq!(again[0]["trigger"], "replay");
    assert_eq!(again[0]["id"], r["executions"][0]);
    let detail = d.ok("execution.get", json!({"id": again[0]["id"]})).await;
    assert_eq!(detail["body"], 7);
    let all = d.ok("execution.list", json!({"messageId": id})).await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn bad_pipelines_are_refused_with_their_line_and_pipeline_run_tests_one() {
    let d = Daemon::start().await;
    let (status, v) = d
        .call("pipeline.put", json!({"name": "bad", "pipeline": "pipeline:\n  - log:\n      message: ok\n  - event.listen:\n      eventKey: a.b\n"}))
        .await;
    assert_eq!(status, 400);
    let msg = error_message(&v);
    assert!(
        msg.contains("line 4") && msg.contains("event.listen must be the first"),
        "{msg}"
    );
    let (status, v) = d
        .call(
            "pipeline.put",
            json!({"name": "bad", "pipeline": "pipeline:\n  - log:\n      message: ${body.x +}\n"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("invalid expression"));
    let (status, _) = d.call("pipeline.get", json!({"name": "bad"})).await;
    assert_eq!(status, 404, "nothing stored");

    let r = d
        .ok(
            "pipeline.run",
            json!({"pipeline": "vars:\n  n: 2\npipeline:\n  - body.set:\n      value: ${body.x * vars.n}\n  - log:\n      message: \"doubled: ${body}\"\n", "body": {"x": 21}}),
        )
        .await;
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["body"], 42);
    assert_eq!(r["steps"][1]["log"][0], "doubled: 42");
    let e = d.ok("execution.get", json!({"id": r["executionId"]})).await;
    assert_eq!(e["trigger"], "manual");
}

#[tokio::test]
async fn messages_an_older_hookd_left_undispatched_are_dispatched_after_the_upgrade() {
    const N: usize = 30;
    let mut d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.later").await;
    put_pipeline(&d, "later", "pipeline:\n  - event.listen:\n      eventKey: webhook.later\n  - log:\n      message: ${body.messageId}\n").await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(post_json(&d, &url, json!({"i": i})).await);
    }
    d.stop().await;
    // Before schema 8 a dispatcher queued runs from the event log after the messages' commit;
    // the state a crash in between left: no executions, its cursor behind the log.
    let last_seq: i64 = {
        let db = rusqlite::Connection::open(d.dir.join("hookd.db")).expect("open db");
        db.execute_batch(
            "DELETE FROM executions; \
             INSERT INTO meta (key, value) VALUES ('dispatch_cursor', '1');",
        )
        .expect("rewind");
        // The log's last seq (a message's event has no row in `events` since schema 10).
        db.query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .expect("last seq")
    };
    d.start_again().await;
    // Resume from the log, so runs that finish before this client connects are not missed.
    let mut ev = d
        .events(&format!("since={last_seq}&types=execution.finished"))
        .await;
    let runs = finished(&mut ev, N).await;
    let mut got: Vec<String> = runs
        .iter()
        .filter_map(|r| r["messageId"].as_str().map(str::to_string))
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each message dispatched exactly once");
    let db = rusqlite::Connection::open(d.dir.join("hookd.db")).expect("open db");
    let cursors: i64 = db
        .query_row(
            "SELECT count(*) FROM meta WHERE key = 'dispatch_cursor'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        cursors, 0,
        "the old cursor is dropped once its backlog is queued"
    );
}

/// Issue 29: a run that creates a token must not leave it where a viewer can read it. The
/// admin who ran it gets the token in the answer; the recorded execution (body and step log,
/// wherever the run copied it) holds a mask, and so what a viewer sees cannot log in.
#[tokio::test]
async fn a_token_a_run_creates_is_never_recorded() {
    let d = Daemon::start().await;
    let r = d
        .ok(
            "pipeline.run",
            json!({"pipeline": "pipeline:\n  - iam.run.as:\n      username: admin\n  - token.create:\n      role: admin\n      name: made-by-a-run\n  - log:\n      message: \"made ${body.token}\"\n"}),
        )
        .await;
    assert_eq!(r["status"], "succeeded", "{r}");
    let token = r["body"]["token"]
        .as_str()
        .expect("the caller sees the token");
    // The record itself holds a mask, even as an admin reads it.
    let e = d.ok("execution.get", json!({"id": r["executionId"]})).await;
    let seen = e.to_string();
    assert!(
        !seen.contains(token),
        "the execution record leaks the token: {seen}"
    );
    assert!(seen.contains("made ••••"), "{seen}");
    let masked = e["body"]["token"].as_str().expect("masked token");
    let (status, _) = d.call_as(masked, "token.list", json!({})).await;
    assert_eq!(status, 401, "what the record shows is not a token");
    // A viewer sees neither the token nor its mask: token.create is an admin's command.
    let viewer = d.viewer_token("v").await;
    let (status, v) = d
        .call_as(&viewer, "execution.get", json!({"id": r["executionId"]}))
        .await;
    assert_eq!(status, 200);
    let seen = v.to_string();
    assert!(!seen.contains(token) && !seen.contains("made"), "{seen}");
    assert_eq!(v["body"], Value::Null);
}

/// Issue 29: what an admin-only command returned in a run is the admin's. A viewer's
/// `execution.get` shows the steps' statuses but not the final body or what was logged from that
/// step on; an admin sees all of it.
#[tokio::test]
async fn a_viewer_does_not_see_what_admin_only_commands_returned_in_a_run() {
    let d = Daemon::start().await;
    d.ok(
        "token.create",
        json!({"role": "viewer", "name": "listed-by-a-run"}),
    )
    .await;
    let r = d
        .ok(
            "pipeline.run",
            json!({"pipeline": "pipeline:\n  - log:\n      message: before\n  - iam.run.as:\n      username: admin\n  - token.list\n  - log:\n      message: \"tokens ${body}\"\n"}),
        )
        .await;
    assert_eq!(r["status"], "succeeded", "{r}");
    let id = &r["executionId"];
    let admin = d.ok("execution.get", json!({"id": id})).await;
    assert!(admin.to_string().contains("listed-by-a-run"), "{admin}");
    assert!(admin.get("hidden").is_none(), "{admin}");
    let viewer = d.viewer_token("v").await;
    let (status, e) = d.call_as(&viewer, "execution.get", json!({"id": id})).await;
    assert_eq!(status, 200);
    assert!(
        !e.to_string().contains("listed-by-a-run"),
        "a viewer sees what token.list returned: {e}"
    );
    assert_eq!(e["body"], Value::Null);
    assert!(
        e["hidden"]
            .as_str()
            .is_some_and(|h| h.contains("token.list")),
        "{e}"
    );
    let steps = e["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[0]["log"], json!(["before"]), "what came before stays");
    assert!(steps.iter().all(|s| s["status"] == "ok"), "{e}");
    assert!(steps[3].get("log").is_none(), "{e}");
}

/// Issue 29: a run's error can quote what an admin-only command returned (here a URL made of a
/// token's name). Viewers are shown `(hidden)` in its place, live on the event stream, after a
/// reconnect (`since=`) and in `execution.list`; admins see the error.
#[tokio::test]
async fn a_run_error_quoting_an_admin_only_answer_reaches_admins_only() {
    let d = Daemon::start().await;
    d.ok(
        "token.create",
        json!({"role": "viewer", "name": "listed-by-a-run"}),
    )
    .await;
    let viewer = d.viewer_token("v").await;
    let mut as_admin = d.events("types=execution.finished").await;
    let mut as_viewer = d
        .events_with(&format!("token={viewer}&types=execution.finished"), None)
        .await
        .expect("viewer stream");
    let r = d
        .ok(
            "pipeline.run",
            json!({"pipeline": "pipeline:\n  - iam.run.as:\n      username: admin\n  - token.list\n  - webhook.send:\n      url: \"${body[1].name}\"\n"}),
        )
        .await;
    assert_eq!(r["status"], "failed", "{r}");
    let error = r["error"].as_str().expect("error").to_string();
    assert!(error.contains("listed-by-a-run"), "{error}");

    let admin = as_admin.next().await;
    assert_eq!(admin["data"]["error"], error.as_str());
    assert_eq!(admin["data"]["errorPrivate"], true);
    let seen = as_viewer.next().await;
    assert_eq!(seen["data"]["id"], r["executionId"]);
    assert_eq!(seen["data"]["error"], "(hidden)", "{seen}");
    assert!(!seen.to_string().contains("listed-by-a-run"), "{seen}");
    // Replayed from the log, as a reconnecting dashboard gets it.
    let mut again = d
        .events_with(
            &format!("token={viewer}&since=0&types=execution.finished"),
            None,
        )
        .await
        .expect("viewer stream");
    let replayed = again.next().await;
    assert_eq!(replayed["data"]["error"], "(hidden)", "{replayed}");
    let (status, listed) = d.call_as(&viewer, "execution.list", json!({})).await;
    assert_eq!(status, 200);
    assert!(!listed.to_string().contains("listed-by-a-run"), "{listed}");
    assert_eq!(listed[0]["error"], "(hidden)");
}

/// Waits (bounded) until process `pid` is gone; false if it is still there after 10 s.
async fn gone(pid: &str) -> bool {
    for _ in 0..1000 {
        // A zombie has given up everything but its entry; it counts as gone.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty() || state.contains(") Z") {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// The pid a program wrote to `file`, once it has.
async fn pid_in(file: &std::path::Path) -> String {
    for _ in 0..1000 {
        if let Ok(pid) = std::fs::read_to_string(file)
            && pid.ends_with('\n')
        {
            return pid.trim().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{} was never written", file.display());
}

/// Issue 29: an `exec` program dies with hookd (`kill -9` included) instead of running on,
/// reparented to init, while its run is marked interrupted; what it started itself is killed
/// with it when its timeout cuts it off, and what it left in the background when hookd was
/// killed is ended by the next start.
#[tokio::test]
async fn exec_programs_die_with_hookd_and_their_children_with_them() {
    let mut d = Daemon::start().await;
    let (url, _) = d.webhook("webhook.long").await;
    let pids = d.tmp().join("pids");
    std::fs::create_dir_all(&pids).expect("dir");
    let grandchild = pids.join("grandchild");
    let program = pids.join("program");
    let left = pids.join("left");
    put_pipeline(&d, "orphan", &format!("pipeline:\n  - event.listen:\n      eventKey: webhook.long\n  - iam.run.as:\n      username: admin\n  - exec:\n      command: sh\n      args: ['-c', 'sleep 60 & echo $! > {}; wait']\n      timeout: 1\n      onError: continue\n  - exec:\n      command: sh\n      args: ['-c', 'sleep 60 & echo $! > {}; echo $$ > {}; wait']\n", grandchild.display(), left.display(), program.display())).await;
    let mut ev = d.events("types=execution.*").await;
    post_json(&d, &url, json!({})).await;
    ev.until(|f| f["type"] == "execution.started").await;
    let background = pid_in(&grandchild).await;
    // The first step's timeout kills its shell and the sleep the shell left in the background.
    let running = pid_in(&program).await;
    assert!(
        gone(&background).await,
        "a program's child outlived its timeout"
    );
    // hookd writes the program's group down right after starting it; a kill in that instant
    // would leave the group unrecorded, so wait for the entry.
    let entry = d.dir.join("programs").join(&running);
    for _ in 0..1000 {
        if entry.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(entry.exists(), "the program's group was never written down");
    let background = pid_in(&left).await;
    d.kill9().await;
    assert!(
        gone(&running).await,
        "an exec program outlived kill -9 of hookd"
    );
    d.start_again().await;
    assert!(
        gone(&background).await,
        "what an interrupted run's program left running outlived the next start"
    );
    let runs = d.ok("execution.list", json!({})).await;
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    assert!(
        runs[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("interrupted")),
        "{runs}"
    );
}

/// Issue 29: depth bounds a chain, not its breadth. A listener that sends two events for every
/// one it gets would queue 2 + 4 + … + 256 runs for one message; the trace's budget stops it, and
/// the run that would pass it fails saying why.
#[tokio::test]
async fn a_fan_out_stops_at_the_traces_run_budget() {
    let d = Daemon::start_with(Options::config("[pipeline]\nmaxRunsPerTrace = 10\n")).await;
    let (url, _) = d.webhook("webhook.fan").await;
    put_pipeline(&d, "start", "pipeline:\n  - event.listen:\n      eventKey: webhook.fan\n  - event.send:\n      eventKey: fan.out\n").await;
    put_pipeline(&d, "twice", "pipeline:\n  - event.listen:\n      eventKey: fan.out\n  - event.send:\n      eventKey: fan.out\n  - event.send:\n      eventKey: fan.out\n").await;
    let mut ev = d.events("types=execution.finished").await;
    post_json(&d, &url, json!({})).await;
    let failed = ev
        .until(|f| {
            f["data"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("maxRunsPerTrace"))
        })
        .await;
    let e = failed.last().expect("a refused run")["data"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(e.contains("10 runs"), "{e}");
    // Every run is finished once the refusals end the chains: count them all.
    let list = loop {
        let l = d.ok("execution.list", json!({"limit": 100})).await;
        let rows = l.as_array().cloned().unwrap_or_default();
        if rows
            .iter()
            .all(|r| r["status"] != "queued" && r["status"] != "running")
        {
            break rows;
        }
        ev.next().await;
    };
    assert!(list.len() <= 11, "one message queued {} runs", list.len());
}

/// Issue 28: PIPEFORCE writes `output` as a PEL naming where the result goes; both of its
/// forms work as the bare path does, and anything else is refused at pipeline.put.
#[tokio::test]
async fn output_accepts_pipeforce_expression_forms() {
    let d = Daemon::start().await;
    let r = d
        .ok(
            "pipeline.run",
            json!({"pipeline": "pipeline:\n  - body.set:\n      value: 7\n      output: \"${vars.seven}\"\n  - body.set:\n      value: 8\n      output: \"#{vars.eight}\"\n  - body.set:\n      value: ${vars.seven * 10 + vars.eight}\n"}),
        )
        .await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["body"], 78);
    let (status, v) = d
        .call(
            "pipeline.put",
            json!({"name": "bad-output", "pipeline": "pipeline:\n  - body.set:\n      value: 1\n      output: \"${vars.a + 1}\"\n"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("just a path"), "{v}");
}

/// Issue 28: bulk replay. The filters of message.list select the set (here: one webhook's
/// messages), `dryRun` only counts it, and a replay fires exactly that set, oldest first.
#[tokio::test]
async fn bulk_replay_fires_exactly_the_filtered_messages_oldest_first() {
    let d = Daemon::start().await;
    let (a, a_uuid) = d.webhook("webhook.bulk.a").await;
    let (b, _) = d.webhook("webhook.bulk.b").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(post_json(&d, &a, json!({"i": i})).await);
        post_json(&d, &b, json!({"i": i})).await;
    }
    put_pipeline(
        &d,
        "bulk",
        "pipeline:\n  - event.listen:\n      eventKey: webhook.bulk.#\n  - log\n",
    )
    .await;
    let dry = d
        .ok("message.replay", json!({"uuid": a_uuid, "dryRun": true}))
        .await;
    assert_eq!(dry["selected"], 4, "{dry}");
    let none = d.ok("execution.list", json!({"limit": 100})).await;
    assert_eq!(
        none.as_array().map(Vec::len),
        Some(0),
        "a dry run queues nothing"
    );

    let r = d
        .ok(
            "message.replay",
            json!({"uuid": a_uuid, "wait": true, "rate": 1000}),
        )
        .await;
    assert_eq!(
        (
            r["selected"].as_u64(),
            r["replayed"].as_u64(),
            r["executions"].as_u64()
        ),
        (Some(4), Some(4), Some(4)),
        "{r}"
    );
    assert_eq!(r["first"], ids[0].as_str());
    assert_eq!(r["last"], ids[3].as_str());
    let runs = d.ok("execution.list", json!({"limit": 100})).await;
    let mut replayed: Vec<&str> = runs
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["replayOf"].as_str())
        .collect();
    // execution.list is newest first: the oldest message was replayed first.
    replayed.reverse();
    assert_eq!(replayed, ids.iter().map(String::as_str).collect::<Vec<_>>());

    let (status, v) = d.call("message.replay", json!({})).await;
    assert_eq!(status, 400);
    assert!(error_message(&v).contains("at least one filter"), "{v}");
}
