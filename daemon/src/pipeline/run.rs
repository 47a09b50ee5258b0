//! Running a pipeline: steps in order, each with its `if`, permission check, parameters
//! (expressions evaluated against body, vars and headers), `output` and `onError`; the whole run
//! under a time limit. Builtins (log, set, exit, event.send, iam.run.as, exec) are implemented
//! here; every other command goes through the registry, exactly as over HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookd_shared::{Role, StepLog};
use serde_json::{Map, Value};

use super::Env;
use super::expr::Context;
use super::parse::{OnError, ParamValue, Pipeline, Step};
use super::process;
use crate::registry::Output;
use crate::store::TokenAuth;

/// How deep `event.send` chains may go before a run is stopped as a probable loop.
pub const MAX_DEPTH: u32 = 8;
/// The final body is stored up to this size.
pub const MAX_STORED_BODY: usize = 64 * 1024;

/// Who a run acts as.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// Listeners start here: only `[pipeline] anonymousCommands`.
    Anonymous,
    /// A user (a token's name) with its role.
    User { name: String, role: Role },
}

impl Identity {
    /// The name recorded on the execution.
    pub fn name(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".into(),
            Identity::User { name, .. } => name.clone(),
        }
    }
}

/// One run to do.
pub struct Run {
    pub pipeline: Arc<Pipeline>,
    pub name: String,
    /// Whether an admin stored this pipeline (iam.run.as is honoured only then).
    pub stored_by_admin: bool,
    pub stored_by: String,
    pub identity: Identity,
    pub body: Value,
    pub depth: u32,
    pub trace_id: String,
}

/// How a run ended.
pub struct Outcome {
    /// `succeeded` or `failed`.
    pub status: &'static str,
    pub body: Value,
    pub steps: Vec<StepLog>,
    pub error: Option<String>,
    pub error_step: Option<u32>,
    pub run_as: String,
    /// The final body is the one the run was given.
    pub body_unchanged: bool,
    /// Values that commands shown once returned (token.create, secret.generate): the caller may
    /// see them in `body`, but the record of the run never holds them, wherever they were copied.
    pub secrets: Vec<String>,
    /// The error arose at or after a step that ran an admin-only command (it may quote what
    /// that returned): recorded so that only admins are shown it.
    pub error_private: bool,
}

impl Outcome {
    /// A run that ended before its first step, with `error`.
    pub fn failed(error: String) -> Outcome {
        Outcome {
            status: "failed",
            body: Value::Null,
            steps: Vec::new(),
            error: Some(error),
            error_step: None,
            run_as: "anonymous".into(),
            body_unchanged: false,
            secrets: Vec::new(),
            error_private: false,
        }
    }

    /// The body as stored: JSON up to 64 KiB, else its first 64 KiB as text.
    pub fn stored_body(&self) -> (Option<String>, bool) {
        let json = redact(
            serde_json::to_string(&self.body).unwrap_or_default(),
            &self.secrets,
        );
        if json.len() <= MAX_STORED_BODY {
            return (Some(json), false);
        }
        let mut cut = MAX_STORED_BODY;
        while !json.is_char_boundary(cut) {
            cut -= 1;
        }
        (serde_json::to_string(&json[..cut]).ok(), true)
    }

    /// The step log as stored, secrets masked.
    pub fn stored_steps(&self) -> String {
        redact(
            serde_json::to_string(&self.steps).unwrap_or_else(|_| "[]".into()),
            &self.secrets,
        )
    }
}

struct State {
    body: Value,
    vars: Map<String, Value>,
    headers: Map<String, Value>,
    identity: Identity,
    steps: Vec<StepLog>,
    /// The step in progress, for the record if the time limit cuts it off.
    current: Option<(StepLog, Instant)>,
    error: Option<(String, u32)>,
    /// What secret-showing commands returned (see `Outcome::secrets`).
    secrets: Vec<String>,
    /// When `[pipeline] timeout` ends the run.
    deadline: Instant,
}

/// A run stopped at its deadline.
struct PastDeadline;

/// Secrets shorter than this are not looked for (a role name, say, is not one).
const MIN_SECRET: usize = 8;

/// The string values in a secret-showing command's output.
fn collect_secrets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= MIN_SECRET => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| collect_secrets(v, out)),
        Value::Object(m) => m.values().for_each(|v| collect_secrets(v, out)),
        _ => {}
    }
}

/// `text` with every occurrence of a secret masked, as it is and as it is inside a JSON string
/// (where a quote or backslash in it is escaped).
fn redact(mut text: String, secrets: &[String]) -> String {
    for s in secrets {
        let escaped = serde_json::to_string(s).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        for form in [s.as_str(), escaped] {
            if !form.is_empty() && text.contains(form) {
                text = text.replace(form, hookd_shared::verify::MASK);
            }
        }
    }
    text
}

enum Flow {
    Next(Option<Value>),
    Exit,
}

/// The error of a run cut off by `[pipeline] timeout`.
pub(super) fn over_time_limit(limit: Duration) -> String {
    format!(
        "the run exceeded its time limit of {}",
        humantime::format_duration(limit)
    )
}

/// Runs `r` to its end, its first unhandled error, or the configured time limit.
pub async fn run(env: &Env, r: Run) -> Outcome {
    let mut st = State {
        body: if r.body.is_null() {
            r.pipeline.body.clone().unwrap_or(Value::Null)
        } else {
            r.body.clone()
        },
        vars: r.pipeline.vars.clone(),
        headers: r.pipeline.headers.clone(),
        identity: r.identity.clone(),
        steps: Vec::new(),
        current: None,
        error: None,
        secrets: Vec::new(),
        deadline: Instant::now() + env.runtime.config.timeout,
    };
    // A message event's credentials are the run's to use, never to record.
    let verify = st.body["webhookUuid"]
        .as_str()
        .and_then(|u| env.runtime.store.webhook(u))
        .and_then(|w| w.verify.clone());
    // Shorter ones are masked where they stand (the event's fields), not as text anywhere:
    // masking every "ab" in a record would garble it.
    st.secrets.extend(
        super::event::Credentials::of(verify.as_ref())
            .values(&st.body)
            .into_iter()
            .filter(|c| c.len() >= MIN_SECRET),
    );
    // The timeout stops a step waiting (an HTTP call, a program); the deadline in `steps` one
    // computing (expressions never yield).
    let limit = env.runtime.config.timeout;
    if !matches!(
        tokio::time::timeout(limit, steps(env, &r, &mut st)).await,
        Ok(Ok(()))
    ) {
        let msg = over_time_limit(limit);
        if let Some((mut rec, started)) = st.current.take() {
            rec.status = "failed".into();
            rec.error = Some(msg.clone());
            rec.duration_ms = started.elapsed().as_millis() as u64;
            st.error = Some((
                format!(
                    "step {} ({}, line {}): {msg}",
                    rec.index, rec.command, rec.line
                ),
                rec.index,
            ));
            st.steps.push(rec);
        } else {
            st.error = Some((msg, st.steps.len() as u32));
        }
    }
    let (error, error_step) = match st.error {
        Some((e, i)) => (Some(e), Some(i)),
        None => (None, None),
    };
    let error_private = error_step.is_some_and(|at| {
        st.steps
            .iter()
            .take(at as usize + 1)
            .any(|s| s.status != "skipped" && admin_only(env, &s.command))
    });
    Outcome {
        error_private,
        body_unchanged: st.body == r.body,
        status: if error.is_some() {
            "failed"
        } else {
            "succeeded"
        },
        body: st.body,
        steps: st.steps,
        error,
        error_step,
        run_as: st.identity.name(),
        secrets: st.secrets,
    }
}

async fn steps(env: &Env, r: &Run, st: &mut State) -> Result<(), PastDeadline> {
    for (i, step) in r.pipeline.steps.iter().enumerate() {
        // Steps that only compute never wait: yielding lets the thread's other tasks (and the
        // timeout) run between them.
        tokio::task::yield_now().await;
        if Instant::now() >= st.deadline {
            return Err(PastDeadline);
        }
        let rec = StepLog {
            index: i as u32,
            command: step.command.clone(),
            line: step.line as u32,
            id: step.id.clone(),
            status: "ok".into(),
            duration_ms: 0,
            log: Vec::new(),
            error: None,
        };
        st.current = Some((rec, Instant::now()));
        let result = step_once(env, r, st, step).await;
        if result.is_err() && Instant::now() >= st.deadline {
            // Stopped by the deadline mid-step (or failed as it passed): the time limit is the
            // reason, whatever `onError` says; `run` records the step.
            return Err(PastDeadline);
        }
        let Some((mut rec, started)) = st.current.take() else {
            return Ok(());
        };
        rec.duration_ms = started.elapsed().as_millis() as u64;
        let flow = match result {
            Ok(Some(flow)) => flow,
            Ok(None) => {
                rec.status = "skipped".into();
                Flow::Next(None)
            }
            Err(e) => match step.on_error {
                OnError::Throw => {
                    rec.status = "failed".into();
                    rec.error = Some(e.clone());
                    st.error = Some((
                        format!("step {i} ({}, line {}): {e}", step.command, step.line),
                        i as u32,
                    ));
                    st.steps.push(rec);
                    return Ok(());
                }
                OnError::Continue | OnError::Log => {
                    if step.on_error == OnError::Log {
                        tracing::warn!(pipeline = %r.name, step = i, "{}: {e}", step.command);
                        rec.log.push(format!("error: {e}"));
                    }
                    rec.status = "continued".into();
                    rec.error = Some(e);
                    Flow::Next(None)
                }
            },
        };
        st.steps.push(rec);
        match flow {
            Flow::Exit => return Ok(()),
            Flow::Next(Some(v)) => {
                if let Some(path) = &step.output {
                    set_path(st, path, v);
                } else {
                    st.body = v;
                }
            }
            Flow::Next(None) => {}
        }
    }
    Ok(())
}

/// One step: `Ok(None)` when its `if` is false.
async fn step_once(
    env: &Env,
    r: &Run,
    st: &mut State,
    step: &Step,
) -> Result<Option<Flow>, String> {
    if step.command == "event.listen" {
        return Ok(Some(Flow::Next(None)));
    }
    if let Some(when) = &step.when {
        let v = eval(env, when, st)?;
        if !truthy(&v) {
            return Ok(None);
        }
    }
    permit(env, &st.identity, &step.command)?;
    let mut params = Map::new();
    for (name, v) in &step.params {
        params.insert(name.clone(), eval(env, v, st)?);
    }
    let flow = match step.command.as_str() {
        "log" => {
            let text = match params.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => st.body.to_string(),
            };
            // The daemon's log is a record too.
            let text = redact(text, &st.secrets);
            match params
                .get("level")
                .and_then(Value::as_str)
                .unwrap_or("info")
            {
                "debug" => tracing::debug!(pipeline = %r.name, "{text}"),
                "warn" => tracing::warn!(pipeline = %r.name, "{text}"),
                "error" => tracing::error!(pipeline = %r.name, "{text}"),
                _ => tracing::info!(pipeline = %r.name, "{text}"),
            }
            log_line(st, text);
            Flow::Next(None)
        }
        // Without a key, body.set outputs its value: it replaces the body, or goes to `output`.
        "body.set" if !params.contains_key("key") => {
            Flow::Next(Some(params.get("value").cloned().unwrap_or(Value::Null)))
        }
        "set" | "var.set" | "body.set" => {
            let value = params.get("value").cloned().unwrap_or(Value::Null);
            let key = params.get("key").and_then(Value::as_str);
            let path = match (step.command.as_str(), key) {
                ("set", Some(k)) => k.to_string(),
                ("var.set", Some(k)) => format!("vars.{k}"),
                ("body.set", Some(k)) => format!("body.{k}"),
                ("body.set", None) => "body".into(),
                _ => return Err("key is required".into()),
            };
            super::parse::check_path(&path)?;
            set_path(st, &path, value);
            Flow::Next(None)
        }
        "exit" => Flow::Exit,
        "event.send" => {
            let key = params
                .get("eventKey")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            hookd_shared::key::validate_event_key(&key).map_err(|e| format!("eventKey {e}"))?;
            if r.depth + 1 > MAX_DEPTH {
                return Err(format!(
                    "event chain deeper than {MAX_DEPTH} events (trace {}); is a listener sending the event it listens to?",
                    r.trace_id
                ));
            }
            let payload = params
                .get("payload")
                .cloned()
                .unwrap_or_else(|| st.body.clone());
            let n = super::dispatch::fire(env, &key, payload, r.depth + 1, &r.trace_id).await?;
            log_line(st, format!("event {key} sent to {n} listener(s)"));
            Flow::Next(None)
        }
        "iam.run.as" => {
            let name = params
                .get("username")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !r.stored_by_admin {
                return Err(format!(
                    "iam.run.as is honoured only in pipelines stored by an admin; '{}' stored this one",
                    r.stored_by
                ));
            }
            let role = user_role(env, name).ok_or_else(|| {
                format!("no user '{name}': users are token names (token.list) or 'admin'")
            })?;
            st.identity = Identity::User {
                name: name.into(),
                role,
            };
            log_line(st, format!("running as {name} ({})", role.as_str()));
            Flow::Next(None)
        }
        "exec" => {
            // Waiting for a permit counts against the run's time limit like any other step.
            let _program = env
                .runtime
                .programs
                .acquire()
                .await
                .map_err(|_| "hookd is stopping".to_string())?;
            let (out, lines) = process::exec(
                &params,
                &st.body,
                env.runtime.config.timeout,
                &env.runtime.groups,
            )
            .await?;
            for l in lines {
                log_line(st, l);
            }
            Flow::Next(Some(out))
        }
        name => {
            let caller = match &st.identity {
                Identity::Anonymous => None,
                Identity::User { name, role } => Some(TokenAuth {
                    id: "pipeline".into(),
                    name: name.clone(),
                    role: *role,
                }),
            };
            let out = env
                .commands
                .invoke(name, params, caller, Some(st.body.clone()))
                .await
                .map_err(|e| e.to_string())?;
            match out {
                Output::Json(v) => {
                    if crate::registry::SECRET_OUTPUTS.contains(&name) {
                        collect_secrets(&v, &mut st.secrets);
                    }
                    Flow::Next(Some(v))
                }
                Output::None => Flow::Next(None),
                Output::Raw(_) => {
                    return Err(format!(
                        "{name} answers with raw bytes, which a pipeline cannot use"
                    ));
                }
            }
        }
    };
    Ok(Some(flow))
}

fn log_line(st: &mut State, line: String) {
    if let Some((rec, _)) = st.current.as_mut() {
        rec.log.push(line);
    }
}

/// Whether `identity` may run `command`.
fn permit(env: &Env, identity: &Identity, command: &str) -> Result<(), String> {
    if command == "iam.run.as" {
        return Ok(());
    }
    let needed = env.commands.spec(command).and_then(|c| c.role);
    match identity {
        Identity::Anonymous => {
            if env
                .runtime
                .config
                .anonymous_commands
                .iter()
                .any(|c| c == command)
            {
                Ok(())
            } else {
                Err(format!(
                    "permission denied: {command} needs role {}; add iam.run.as before it",
                    needed.unwrap_or(Role::Admin).as_str()
                ))
            }
        }
        Identity::User { name, role } => match needed {
            Some(n) if *role < n => Err(format!(
                "permission denied: {command} needs role {}; {name} has role {}",
                n.as_str(),
                role.as_str()
            )),
            _ => Ok(()),
        },
    }
}

/// Whether what `command` returns is an admin's alone (builtins that only steer a run return
/// nothing to hide).
fn admin_only(env: &Env, command: &str) -> bool {
    !super::builtins::NO_RESULT.contains(&command)
        && env.commands.spec(command).and_then(|c| c.role) == Some(Role::Admin)
}

/// The role of a user: `admin`, or the role of the token with that name.
fn user_role(env: &Env, name: &str) -> Option<Role> {
    if name == "admin" {
        return Some(Role::Admin);
    }
    env.runtime.store.token_by_name(name).map(|t| t.role)
}

fn eval(env: &Env, v: &ParamValue, st: &State) -> Result<Value, String> {
    let ctx = Context {
        body: &st.body,
        vars: &st.vars,
        headers: &st.headers,
    };
    super::expr::until(st.deadline, || eval_in(env, v, &ctx))
}

fn eval_in(env: &Env, v: &ParamValue, ctx: &Context<'_>) -> Result<Value, String> {
    Ok(match v {
        ParamValue::Literal(v) => v.clone(),
        ParamValue::Template(t) => env.runtime.engine.eval(t, ctx)?,
        ParamValue::Object(parts) => Value::Object(
            parts
                .iter()
                .map(|(k, v)| Ok((k.clone(), eval_in(env, v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        ParamValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| eval_in(env, v, ctx))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Conditions: `true`, non-zero numbers, non-empty strings other than "false", any object/array.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::String(s) => !(s.is_empty() || s == "false"),
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

/// Sets `vars.a.b`, `body`, `body.x`, `headers.h`, creating objects on the way.
fn set_path(st: &mut State, path: &str, value: Value) {
    let mut segs = path.split('.');
    let root = match segs.next() {
        Some("vars") => {
            let mut wrapped = Value::Object(std::mem::take(&mut st.vars));
            set_in(&mut wrapped, segs, value);
            st.vars = match wrapped {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            return;
        }
        Some("headers") => {
            let mut wrapped = Value::Object(std::mem::take(&mut st.headers));
            set_in(&mut wrapped, segs, value);
            st.headers = match wrapped {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            return;
        }
        _ => &mut st.body,
    };
    set_in(root, segs, value);
}

fn set_in<'a>(at: &mut Value, mut segs: impl Iterator<Item = &'a str>, value: Value) {
    let Some(seg) = segs.next() else {
        *at = value;
        return;
    };
    if let (Value::Array(a), Ok(i)) = (&mut *at, seg.parse::<usize>())
        && i < a.len()
    {
        return set_in(&mut a[i], segs, value);
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    if let Value::Object(m) = at {
        set_in(m.entry(seg.to_string()).or_insert(Value::Null), segs, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> State {
        State {
            body: json!({"a": [1, 2]}),
            vars: Map::new(),
            headers: Map::new(),
            identity: Identity::Anonymous,
            steps: Vec::new(),
            current: None,
            error: None,
            secrets: Vec::new(),
            deadline: Instant::now(),
        }
    }

    #[test]
    fn paths_are_set_creating_objects() {
        let mut st = state();
        set_path(&mut st, "vars.x.y", json!(1));
        set_path(&mut st, "body.a.1", json!("two"));
        set_path(&mut st, "body.b", json!(true));
        set_path(&mut st, "headers.h", json!("v"));
        assert_eq!(
            st.vars,
            json!({"x": {"y": 1}})
                .as_object()
                .cloned()
                .unwrap_or_default()
        );
        assert_eq!(st.body, json!({"a": [1, "two"], "b": true}));
        assert_eq!(st.headers["h"], "v");
        set_path(&mut st, "body", json!("replaced"));
        assert_eq!(st.body, json!("replaced"));
    }

    #[test]
    fn big_bodies_are_stored_truncated() {
        let o = Outcome {
            status: "succeeded",
            body: json!("x".repeat(MAX_STORED_BODY * 2)),
            steps: vec![],
            error: None,
            error_step: None,
            run_as: "anonymous".into(),
            body_unchanged: false,
            secrets: vec![],
            error_private: false,
        };
        let (body, truncated) = o.stored_body();
        assert!(truncated);
        assert!(body.is_some_and(|b| b.len() <= MAX_STORED_BODY + 16));
    }

    /// A secret a command showed once is masked in the stored body and steps, wherever the run
    /// copied it, and only there: the outcome's body (the caller's answer) keeps it.
    #[test]
    fn shown_once_secrets_are_masked_in_the_record() {
        let mut secrets = Vec::new();
        collect_secrets(
            &json!({"token": "hkd_s3cr3tvalue", "info": {"role": "admin"}}),
            &mut secrets,
        );
        assert_eq!(secrets, vec!["hkd_s3cr3tvalue".to_string()]);
        let o = Outcome {
            status: "succeeded",
            body: json!({"copied": "Bearer hkd_s3cr3tvalue", "role": "admin"}),
            steps: vec![StepLog {
                index: 0,
                command: "log".into(),
                line: 3,
                id: None,
                status: "ok".into(),
                duration_ms: 0,
                log: vec!["made hkd_s3cr3tvalue".into()],
                error: None,
            }],
            error: None,
            error_step: None,
            run_as: "ops".into(),
            body_unchanged: false,
            secrets,
            error_private: false,
        };
        let (body, _) = o.stored_body();
        let body = body.expect("stored");
        assert!(
            !body.contains("hkd_s3cr3tvalue") && body.contains("admin"),
            "{body}"
        );
        assert!(!o.stored_steps().contains("hkd_s3cr3tvalue"));
        assert_eq!(o.body["copied"], "Bearer hkd_s3cr3tvalue");
    }
}
