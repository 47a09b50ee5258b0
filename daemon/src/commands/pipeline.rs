//! `pipeline.put/get/delete/run`, `execution.list/get`, `message.replay`.

use std::sync::Arc;

use hookd_shared::{MessageSummary, Role};
use serde_json::{Value, json};

use super::{Call, Command, Kind, Output, Param, json, parse_uuid};
use super::{Context, Ctx};
use crate::error::Error;
use crate::pipeline::dispatch::Stored;
use crate::pipeline::run::{Identity, Run};
use crate::store::ids::decode_public_id;
use crate::store::messages;
use crate::store::pipelines::{self, ExecutionFilter, Finish, NewExecution, PipelineRow};

const MAX_SOURCE: usize = 256 * 1024;

pub(super) fn commands() -> Vec<Command> {
    vec![
        Command {
            name: "pipeline.put",
            description: "Store a pipeline (YAML or JSON, as the request body or pipeline=); a first command event.listen makes it a listener at once",
            role: Some(Role::Admin),
            params: &[
                Param {
                    name: "name",
                    kind: Kind::String,
                    required: true,
                    description: "its key, e.g. global/app/myapp/pipeline/on-lead",
                },
                Param {
                    name: "pipeline",
                    kind: Kind::String,
                    required: true,
                    description: "the YAML or JSON (or send it as the body with Content-Type: application/yaml)",
                },
            ],
            handler: |ctx, call| Box::pin(put(ctx, call)),
        },
        Command {
            name: "pipeline.get",
            description: "List stored pipelines, or show one by name",
            role: Some(Role::Viewer),
            params: &[Param {
                name: "name",
                kind: Kind::String,
                required: false,
                description: "only this pipeline",
            }],
            handler: |ctx, call| Box::pin(get(ctx, call)),
        },
        Command {
            name: "pipeline.delete",
            description: "Delete a stored pipeline; a listener stops listening at once",
            role: Some(Role::Admin),
            params: &[Param {
                name: "name",
                kind: Kind::String,
                required: true,
                description: "the pipeline",
            }],
            handler: |ctx, call| Box::pin(delete(ctx, call)),
        },
        Command {
            name: "pipeline.run",
            description: "Run a stored (name=) or inline (pipeline=) pipeline now, as a listener would (anonymous), with the given body; answers with the final body and the step log",
            role: Some(Role::Admin),
            params: &[
                Param {
                    name: "name",
                    kind: Kind::String,
                    required: false,
                    description: "a stored pipeline",
                },
                Param {
                    name: "pipeline",
                    kind: Kind::String,
                    required: false,
                    description: "an inline pipeline (YAML or JSON)",
                },
                Param {
                    name: "body",
                    kind: Kind::Json,
                    required: false,
                    description: "the initial body (default: the pipeline's body section)",
                },
            ],
            handler: |ctx, call| Box::pin(run_now(ctx, call)),
        },
        Command {
            name: "execution.list",
            description: "Pipeline runs, newest first",
            role: Some(Role::Viewer),
            params: &[
                Param {
                    name: "pipeline",
                    kind: Kind::String,
                    required: false,
                    description: "only this pipeline's runs",
                },
                Param {
                    name: "status",
                    kind: Kind::String,
                    required: false,
                    description: "queued, running, succeeded, failed or skipped",
                },
                Param {
                    name: "messageId",
                    kind: Kind::String,
                    required: false,
                    description: "only runs triggered by (or replaying) this message",
                },
                Param::LIMIT,
                Param {
                    name: "before",
                    kind: Kind::String,
                    required: false,
                    description: "cursor: only runs older than this execution id",
                },
            ],
            handler: |ctx, call| Box::pin(list_executions(ctx, call)),
        },
        Command {
            name: "execution.get",
            description: "One run in full: step log, final body, error and the failing step",
            role: Some(Role::Viewer),
            params: &[Param {
                name: "id",
                kind: Kind::String,
                required: true,
                description: "the execution id",
            }],
            handler: |ctx, call| Box::pin(get_execution(ctx, call)),
        },
        Command {
            name: "message.replay",
            description: "Fire stored messages' events again: their listeners run anew, tagged replayOf. One by id, or every message the filters select, oldest first",
            role: Some(Role::Admin),
            params: &[
                Param {
                    name: "id",
                    kind: Kind::String,
                    required: false,
                    description: "the message id (or use the filters below)",
                },
                Param {
                    name: "uuid",
                    kind: Kind::String,
                    required: false,
                    description: "filter: this webhook's messages",
                },
                Param {
                    name: "eventKey",
                    kind: Kind::String,
                    required: false,
                    description: "filter: event key prefix",
                },
                Param {
                    name: "status",
                    kind: Kind::String,
                    required: false,
                    description: "filter: accepted or rejected",
                },
                Param {
                    name: "since",
                    kind: Kind::String,
                    required: false,
                    description: "filter: received at or after this time (RFC 3339)",
                },
                Param {
                    name: "until",
                    kind: Kind::String,
                    required: false,
                    description: "filter: received before this time (RFC 3339)",
                },
                Param {
                    name: "limit",
                    kind: Kind::Integer,
                    required: false,
                    description: "filter: at most this many, the newest (default 1000, at most 10000)",
                },
                Param {
                    name: "rate",
                    kind: Kind::Integer,
                    required: false,
                    description: "messages replayed per second (default 50)",
                },
                Param {
                    name: "dryRun",
                    kind: Kind::Boolean,
                    required: false,
                    description: "only count what the filters select",
                },
                Param {
                    name: "wait",
                    kind: Kind::Boolean,
                    required: false,
                    description: "answer when every selected message is replayed",
                },
            ],
            handler: |ctx, call| Box::pin(replay(ctx, call)),
        },
    ]
}

fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('/')
        && !name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParam(format!(
            "name '{name}' must be 1-200 characters of a-z, A-Z, 0-9, '-', '_', '.' in '/'-separated segments, e.g. global/app/myapp/pipeline/on-lead"
        )))
    }
}

fn compile(ctx: &Context, source: &str) -> Result<crate::pipeline::Pipeline, Error> {
    if source.len() > MAX_SOURCE {
        return Err(Error::InvalidParam(format!(
            "the pipeline is larger than {} KiB",
            MAX_SOURCE / 1024
        )));
    }
    crate::pipeline::parse(source, &*ctx.registry, &ctx.pipelines.engine)
        .map_err(|e| Error::InvalidParam(format!("pipeline {e}")))
}

async fn put(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let name = call.params.required_str("name")?.to_string();
    check_name(&name)?;
    let source = call.params.required_str("pipeline")?.to_string();
    let pipeline = compile(&ctx, &source)?;
    let caller = call
        .caller
        .ok_or_else(|| Error::Unauthorized("pipeline.put needs a token".into()))?;
    let row = PipelineRow {
        listen: pipeline.listen.as_ref().map(|l| l.event_key.clone()),
        name,
        source,
        stored_by: caller.name,
        stored_by_role: caller.role,
        created_at: 0,
        updated_at: 0,
        last_run_at: None,
    };
    let (row, _) = ctx.store.put_pipeline(row).await?;
    ctx.pipelines.put(Stored {
        pipeline: Arc::new(pipeline),
        row: row.clone(),
    });
    json(&row.to_api())
}

async fn get(ctx: Ctx, call: Call) -> Result<Output, Error> {
    match call.params.str("name").map(str::to_string) {
        Some(name) => {
            let row = ctx
                .store
                .pipeline(name.clone())
                .await?
                .ok_or_else(|| Error::NotFound(pipelines::no_such_pipeline(&name)))?;
            json(&row.to_api())
        }
        None => {
            let rows = ctx.store.pipelines().await?;
            json(&rows.iter().map(PipelineRow::to_api).collect::<Vec<_>>())
        }
    }
}

async fn delete(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let name = call.params.required_str("name")?.to_string();
    let row = ctx.store.delete_pipeline(name.clone()).await?;
    ctx.pipelines.remove(&name);
    json(&row.to_api())
}

async fn run_now(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let p = &call.params;
    let caller = call
        .caller
        .clone()
        .ok_or_else(|| Error::Unauthorized("pipeline.run needs a token".into()))?;
    let (name, pipeline, stored_by, stored_by_admin) = match (p.str("name"), p.str("pipeline")) {
        (Some(name), None) => {
            let s = ctx
                .pipelines
                .get(name)
                .ok_or_else(|| Error::NotFound(pipelines::no_such_pipeline(name)))?;
            (
                name.to_string(),
                s.pipeline.clone(),
                s.row.stored_by.clone(),
                s.row.stored_by_role == Role::Admin,
            )
        }
        (None, Some(source)) => (
            "(inline)".to_string(),
            Arc::new(compile(&ctx, source)?),
            caller.name.clone(),
            caller.role == Role::Admin,
        ),
        _ => {
            return Err(Error::InvalidParam(
                "give either name= (a stored pipeline) or pipeline= (inline YAML), not both".into(),
            ));
        }
    };
    let body = call.params.json("body").cloned().unwrap_or(Value::Null);
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let seqs = ctx
        .store
        .queue_executions(
            vec![NewExecution {
                pipeline: name.clone(),
                trigger: "manual",
                event_key: None,
                message_seq: None,
                message_id: None,
                replay_of: None,
                input: Some(body.to_string()),
                trace_id: trace_id.clone(),
                depth: 0,
            }],
            None,
        )
        .await?;
    let seq = seqs
        .first()
        .map(|(s, _)| *s)
        .ok_or_else(|| Error::Internal("no execution queued".into()))?;
    ctx.store.start_execution(seq).await?;
    let outcome = crate::pipeline::dispatch::run_apart(
        &super::pipeline_env(&ctx),
        Run {
            pipeline,
            name,
            stored_by_admin,
            stored_by,
            identity: Identity::Anonymous,
            body,
            depth: 0,
            trace_id,
        },
    )
    .await;
    let (stored_body, truncated) = outcome.stored_body();
    let row = ctx
        .store
        .finish_execution(Finish {
            seq,
            status: outcome.status,
            run_as: Some(outcome.run_as.clone()),
            steps: outcome.stored_steps(),
            body: stored_body,
            body_truncated: truncated,
            error: outcome.error.clone(),
            error_step: outcome.error_step,
            body_from: None,
            error_private: outcome.error_private,
        })
        .await?;
    Ok(Output::Json(json!({
        "executionId": row.id(),
        "status": outcome.status,
        "body": outcome.body,
        "steps": outcome.steps,
        "error": outcome.error,
        "errorStep": outcome.error_step,
    })))
}

async fn list_executions(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let p = &call.params;
    let limit = p.limit()?;
    if let Some(s) = p.str("status")
        && !matches!(s, "queued" | "running" | "succeeded" | "failed" | "skipped")
    {
        return Err(Error::InvalidParam(format!(
            "status must be queued, running, succeeded, failed or skipped, got '{s}'"
        )));
    }
    let seq_of = |name: &str| -> Result<Option<i64>, Error> {
        p.str(name)
            .map(|v| {
                let id = parse_uuid(name, v)?;
                decode_public_id(id).map(|(_, seq)| seq).ok_or_else(|| {
                    Error::InvalidParam(format!("{name}={v} is not an id hookd issued"))
                })
            })
            .transpose()
    };
    let filter = ExecutionFilter {
        pipeline: p.str("pipeline").map(str::to_string),
        status: p.str("status").map(str::to_string),
        message_seq: seq_of("messageId")?,
        before: seq_of("before")?,
        limit,
    };
    let rows = ctx.store.executions(filter).await?;
    let admin = call.caller.as_ref().is_some_and(|c| c.role == Role::Admin);
    json(
        &rows
            .iter()
            .map(|r| {
                let s = r.summary();
                match admin {
                    true => s,
                    false => s.for_non_admin().unwrap_or(s),
                }
            })
            .collect::<Vec<_>>(),
    )
}

async fn get_execution(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let id = call.params.required_str("id")?.to_string();
    let uuid = parse_uuid("id", &id)?;
    let row = ctx.store.execution(uuid).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "no execution with id {id}; execution.list shows them"
        ))
    })?;
    let mut detail = row.detail();
    let role = call.caller.as_ref().map(|c| c.role);
    hide_beyond_role(&mut detail, role, |command| {
        if crate::pipeline::builtins::NO_RESULT.contains(&command) {
            return None;
        }
        ctx.registry.get(command).and_then(|c| c.role)
    });
    // A run that left its message event unchanged stored how to rebuild it, not a copy (not
    // rebuilt when this caller may not see it).
    if let (Some(payload_type), Some(seq), None) = (row.body_from, row.message_seq, &detail.hidden)
    {
        let rebuilt = crate::pipeline::dispatch::message_event(
            &ctx.store,
            seq,
            &row.trace_id,
            Some(payload_type),
        )
        .await;
        match rebuilt {
            Ok((mut event, _)) => {
                let verify = event["webhookUuid"]
                    .as_str()
                    .and_then(|u| ctx.store.webhook(u))
                    .and_then(|w| w.verify.clone());
                crate::pipeline::event::Credentials::of(verify.as_ref()).mask_event(&mut event);
                detail.body = Some(event);
            }
            Err(e) => tracing::warn!("the final body of execution {id} cannot be rebuilt: {e}"),
        }
    }
    json(&detail)
}

/// Leaves out what a run got from commands the caller's `role` may not run (an admin-only
/// command's answer is the admin's): from the first such step that ran, the steps' logs and
/// errors (they may quote it), and the final body. `needs` says which role a command needs.
fn hide_beyond_role(
    detail: &mut hookd_shared::Execution,
    role: Option<Role>,
    needs: impl Fn(&str) -> Option<Role>,
) {
    let allowed = |needed: Option<Role>| match needed {
        None => true,
        Some(Role::Viewer) => role.is_some(),
        Some(Role::Admin) => role == Some(Role::Admin),
    };
    let Some(first) = detail
        .steps
        .iter()
        .position(|s| s.status != "skipped" && !allowed(needs(&s.command)))
    else {
        return;
    };
    let command = detail.steps[first].command.clone();
    for step in &mut detail.steps[first..] {
        step.log.clear();
        step.error = step
            .error
            .as_ref()
            .map(|_| hookd_shared::HIDDEN.to_string());
    }
    if detail.error_step.is_some_and(|i| i as usize >= first) {
        detail.summary.error = detail
            .summary
            .error
            .as_ref()
            .map(|_| hookd_shared::HIDDEN.to_string());
    }
    detail.body = None;
    detail.hidden = Some(format!(
        "the run used {command}, which this token may not run: its results, the final body and \
         what later steps logged are shown to tokens that may"
    ));
}

async fn replay(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let Some(id) = call.params.str("id").map(str::to_string) else {
        return replay_selected(ctx, call).await;
    };
    let uuid = parse_uuid("id", &id)?;
    let rec = ctx
        .store
        .message(uuid)
        .await?
        .ok_or_else(|| Error::NotFound(messages::no_such_message(&id)))?;
    let ids = replay_one(&ctx, &rec.summary, rec.seq).await?;
    Ok(Output::Json(json!({
        "messageId": rec.summary.id,
        "eventKey": rec.summary.event_key,
        "executions": ids,
    })))
}

/// Most messages one bulk replay selects.
const MAX_REPLAY: u32 = 10_000;

/// `message.replay` without `id`: every message the filters select, oldest first, at `rate`.
async fn replay_selected(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let p = &call.params;
    let time = |name: &str| -> Result<Option<i64>, Error> {
        p.str(name)
            .map(|t| {
                rfc3339_ms(t).ok_or_else(|| {
                    Error::InvalidParam(format!(
                        "{name} must be a time such as 2026-12-07T10:00:00Z, got '{t}'"
                    ))
                })
            })
            .transpose()
    };
    let (since, until) = (time("since")?, time("until")?);
    let limit = match p.int("limit") {
        None => 1000,
        Some(n) if (1..=i64::from(MAX_REPLAY)).contains(&n) => n as u32,
        Some(n) => {
            return Err(Error::InvalidParam(format!(
                "limit must be between 1 and {MAX_REPLAY}, got {n}"
            )));
        }
    };
    let rate = match p.int("rate") {
        None => 50,
        Some(n) if (1..=10_000).contains(&n) => n as u64,
        Some(n) => {
            return Err(Error::InvalidParam(format!(
                "rate must be between 1 and 10000 messages a second, got {n}"
            )));
        }
    };
    if p.str("uuid").is_none()
        && p.str("eventKey").is_none()
        && p.str("status").is_none()
        && since.is_none()
        && until.is_none()
    {
        return Err(Error::InvalidParam(
            "message.replay needs an id, or at least one filter (uuid, eventKey, status, since, until)".into(),
        ));
    }
    // Newest first, a page at a time, until `limit` or past `since`.
    let mut filter = super::message::list_filter(p, 500)?;
    let mut selected: Vec<MessageSummary> = Vec::new();
    'pages: loop {
        let page = ctx.store.messages(filter.clone()).await?;
        let Some(last) = page.last() else { break };
        filter.before = Some(parse_uuid("id", &last.id)?);
        for m in page {
            let at = rfc3339_ms(&m.received_at).unwrap_or(0);
            if since.is_some_and(|s| at < s) {
                break 'pages;
            }
            if until.is_some_and(|u| at >= u) {
                continue;
            }
            selected.push(m);
            if selected.len() >= limit as usize {
                break 'pages;
            }
        }
    }
    selected.reverse();
    let n = selected.len();
    if p.bool("dryRun").unwrap_or(false) {
        return Ok(Output::Json(json!({"selected": n, "dryRun": true})));
    }
    let wait = p.bool("wait").unwrap_or(false);
    let first = selected.first().map(|m| m.id.clone());
    let last = selected.last().map(|m| m.id.clone());
    let work = {
        let ctx = ctx.clone();
        async move {
            let every = std::time::Duration::from_micros(1_000_000 / rate);
            let mut next = tokio::time::Instant::now();
            let (mut replayed, mut executions) = (0usize, 0usize);
            for m in &selected {
                tokio::time::sleep_until(next).await;
                next += every;
                let Some(seq) = parse_uuid("id", &m.id)
                    .ok()
                    .and_then(crate::store::ids::decode_public_id)
                    .map(|(_, s)| s)
                else {
                    continue;
                };
                match replay_one(&ctx, m, seq).await {
                    Ok(ids) => {
                        replayed += 1;
                        executions += ids.len();
                    }
                    Err(e) => tracing::warn!("replaying message {} failed: {e}", m.id),
                }
            }
            (replayed, executions)
        }
    };
    if wait {
        let (replayed, executions) = work.await;
        return Ok(Output::Json(json!({
            "selected": n, "replayed": replayed, "executions": executions,
            "first": first, "last": last,
        })));
    }
    tokio::spawn(async move {
        let (replayed, executions) = work.await;
        tracing::info!("bulk replay done: {replayed} of {n} messages, {executions} runs queued");
    });
    Ok(Output::Json(
        json!({"selected": n, "first": first, "last": last}),
    ))
}

/// An RFC 3339 time as Unix milliseconds.
fn rfc3339_ms(t: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(t)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

/// Queues a replay of the message `m` (stored at `seq`) for each of its listeners.
async fn replay_one(ctx: &Context, m: &MessageSummary, seq: i64) -> Result<Vec<String>, Error> {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let new: Vec<NewExecution> = ctx
        .store
        .listeners_of(&m.event_key)
        .into_iter()
        .map(|name| NewExecution {
            pipeline: name,
            trigger: "replay",
            event_key: Some(m.event_key.clone()),
            message_seq: Some(seq),
            message_id: Some(m.id.clone()),
            replay_of: Some(m.id.clone()),
            input: None,
            trace_id: trace.clone(),
            depth: 0,
        })
        .collect();
    let queued = if new.is_empty() {
        Vec::new()
    } else {
        ctx.store.queue_executions(new, None).await?
    };
    let ids: Vec<String> = queued.iter().map(|(_, id)| id.clone()).collect();
    ctx.store
        .enqueue_runs(queued.into_iter().map(|(seq, _)| seq).collect());
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: &[(&str, &str)]) -> hookd_shared::Execution {
        let steps: Vec<Value> = steps
            .iter()
            .enumerate()
            .map(|(i, (command, status))| {
                json!({"index": i, "command": command, "line": i + 2, "status": status,
                       "durationMs": 0, "log": [format!("log {i}")], "error": "quoted"})
            })
            .collect();
        serde_json::from_value(json!({
            "id": "x", "pipeline": "p", "status": "failed", "trigger": "manual",
            "eventKey": null, "messageId": null, "replayOf": null, "runAs": "admin",
            "createdAt": "t", "startedAt": null, "finishedAt": null, "durationMs": null,
            "error": "quoted", "traceId": "t", "depth": 0, "steps": steps,
            "body": {"secret": 1}, "bodyTruncated": false, "errorStep": 2
        }))
        .expect("an execution")
    }

    fn needs(command: &str) -> Option<Role> {
        match command {
            "token.list" => Some(Role::Admin),
            "message.list" => Some(Role::Viewer),
            _ => None,
        }
    }

    #[test]
    fn what_an_admin_only_step_returned_is_hidden_from_viewers_only() {
        let steps = [("log", "ok"), ("token.list", "ok"), ("log", "failed")];
        let mut e = run(&steps);
        hide_beyond_role(&mut e, Some(Role::Viewer), needs);
        assert_eq!(e.body, None);
        assert!(
            e.hidden
                .as_deref()
                .is_some_and(|h| h.contains("token.list"))
        );
        assert_eq!(e.steps[0].log, ["log 0"]);
        assert!(e.steps[1].log.is_empty() && e.steps[2].log.is_empty());
        assert_eq!(e.steps[2].error.as_deref(), Some("(hidden)"));
        assert_eq!(e.summary.error.as_deref(), Some("(hidden)"));

        let mut admin = run(&steps);
        hide_beyond_role(&mut admin, Some(Role::Admin), needs);
        assert_eq!(admin, run(&steps));

        // A skipped admin-only step returned nothing; viewer commands are a viewer's to see.
        let quiet = [("token.list", "skipped"), ("message.list", "ok")];
        let mut v = run(&quiet);
        hide_beyond_role(&mut v, Some(Role::Viewer), needs);
        assert_eq!(v, run(&quiet));
    }
}

#[cfg(test)]
mod against_the_store {
    use super::*;
    use crate::commands::testing::Harness;

    /// The error of each run listed, as `role` sees it.
    async fn errors_seen(h: &Harness, role: Role) -> Vec<(Value, Value)> {
        let listed = h.ok("execution.list", json!({}), role).await;
        listed
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| (e["error"].clone(), e["errorPrivate"].clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_run_error_that_may_quote_an_admin_only_answer_is_shown_to_admins_only() {
        let h = Harness::new().await;
        h.ok(
            "token.create",
            json!({"role": "viewer", "name": "listed-by-a-run"}),
            Role::Admin,
        )
        .await;
        // token.list is an admin's command; the step after it fails quoting what it returned.
        let r = h
            .ok(
                "pipeline.run",
                json!({"pipeline": "pipeline:\n  - iam.run.as:\n      username: admin\n  - token.list\n  - webhook.send:\n      url: \"${body[0].name}\"\n"}),
                Role::Admin,
            )
            .await;
        assert_eq!(r["status"], "failed", "{r}");
        let error = r["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains("listed-by-a-run"),
            "the error quotes it: {error}"
        );

        let admin = errors_seen(&h, Role::Admin).await;
        assert_eq!(admin, vec![(json!(error), json!(true))]);
        let viewer = errors_seen(&h, Role::Viewer).await;
        assert_eq!(viewer, vec![(json!(hookd_shared::HIDDEN), json!(true))]);

        // An error before any admin-only step quotes nothing of an admin's: viewers see it.
        let r = h
            .ok(
                "pipeline.run",
                json!({"pipeline": "pipeline:\n  - log:\n      message: \"${no_such_function()}\"\n  - iam.run.as:\n      username: admin\n  - token.list\n"}),
                Role::Admin,
            )
            .await;
        assert_eq!(r["status"], "failed", "{r}");
        let viewer = errors_seen(&h, Role::Viewer).await;
        assert_eq!(
            viewer[0],
            (r["error"].clone(), Value::Null),
            "newest first: {viewer:?}"
        );
        assert_eq!(viewer[1].0, json!(hookd_shared::HIDDEN));
    }
}
