//! Reading a pipeline (PIPEFORCE's format, YAML or JSON) and checking it against the command
//! registry, so every problem is reported at `pipeline.put` time with its line.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::expr::{Engine, Template};
use crate::registry::{Catalog, Kind};
use hookd_shared::key;

/// Parameters every step accepts, besides its command's own.
pub const GENERIC_PARAMS: [&str; 4] = ["if", "onError", "output", "id"];

/// A pipeline that parsed and validated.
#[derive(Clone)]
pub struct Pipeline {
    pub headers: Map<String, Value>,
    pub vars: Map<String, Value>,
    pub body: Option<Value>,
    pub steps: Vec<Step>,
    /// Present when the first step is `event.listen`.
    pub listen: Option<Listen>,
}

/// What a listener listens for.
#[derive(Clone)]
pub struct Listen {
    /// An event key pattern (`*` one segment, `#` any number).
    pub event_key: String,
    pub filter: Option<Template>,
}

/// One step.
#[derive(Clone)]
pub struct Step {
    pub command: String,
    /// 1-based line in the source.
    pub line: usize,
    pub params: Vec<(String, ParamValue)>,
    pub when: Option<ParamValue>,
    pub on_error: OnError,
    pub output: Option<String>,
    pub id: Option<String>,
}

/// What a failing step does to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Fail the run (default).
    Throw,
    /// Record the error and go on.
    Continue,
    /// Log the error and go on.
    Log,
}

/// A parameter value with its expressions compiled, anywhere inside it.
#[derive(Clone)]
pub enum ParamValue {
    Literal(Value),
    Template(Template),
    Object(Vec<(String, ParamValue)>),
    Array(Vec<ParamValue>),
}

/// A pipeline that cannot be stored: where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PipelineError {
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    vars: Option<Map<String, Value>>,
    #[serde(default)]
    body: Option<Value>,
    pipeline: Vec<serde_saphyr::Spanned<Value>>,
}

/// Parses and validates `source`.
pub fn parse(
    source: &str,
    registry: &dyn Catalog,
    engine: &Engine,
) -> Result<Pipeline, PipelineError> {
    let doc: Doc = serde_saphyr::from_str(source).map_err(|e| PipelineError {
        line: e.location().map_or(1, |l| l.line() as usize),
        message: first_line(&e.to_string()),
    })?;
    if doc.pipeline.is_empty() {
        return Err(PipelineError {
            line: 1,
            message: "'pipeline' has no commands".into(),
        });
    }
    let mut steps = Vec::with_capacity(doc.pipeline.len());
    let mut listen = None;
    for (i, spanned) in doc.pipeline.into_iter().enumerate() {
        let line = spanned.referenced.line() as usize;
        let err = |message: String| PipelineError { line, message };
        let (command, params) = match spanned.value {
            Value::String(c) => (c, Map::new()),
            Value::Object(m) if m.len() == 1 => {
                let Some((c, p)) = m.into_iter().next() else {
                    return Err(err("empty step".into()));
                };
                match p {
                    Value::Object(p) => (c, p),
                    Value::Null => (c, Map::new()),
                    other => {
                        return Err(err(format!(
                            "the parameters of '{c}' must be a map of name: value, not {other}"
                        )));
                    }
                }
            }
            _ => {
                return Err(err(
                    "each step is '- command' or '- command: {param: value}' (one command per item)".into(),
                ));
            }
        };
        let Some(decl) = registry.spec(&command) else {
            return Err(err(format!(
                "unknown command '{command}'; command.list shows them"
            )));
        };
        if command == "event.listen" && i != 0 {
            return Err(err(
                "event.listen must be the first command of a pipeline".into()
            ));
        }
        let mut step = Step {
            command: command.clone(),
            line,
            params: Vec::new(),
            when: None,
            on_error: OnError::Throw,
            output: None,
            id: None,
        };
        for (name, value) in params {
            let compiled =
                compile(&value, engine).map_err(|m| err(format!("{command} {name}: {m}")))?;
            match name.as_str() {
                "if" => step.when = Some(compiled),
                "onError" => {
                    step.on_error = match value.as_str().map(str::to_ascii_uppercase).as_deref() {
                        Some("THROW") => OnError::Throw,
                        Some("CONTINUE") => OnError::Continue,
                        Some("LOG") => OnError::Log,
                        _ => {
                            return Err(err(format!(
                                "onError must be THROW, CONTINUE or LOG, got {value}"
                            )));
                        }
                    }
                }
                "output" => {
                    let path = value
                        .as_str()
                        .ok_or_else(|| err("output must be a path such as vars.result".into()))?;
                    let path = output_path(path).map_err(|m| err(format!("output: {m}")))?;
                    step.output = Some(path);
                }
                "id" => step.id = value.as_str().map(str::to_string),
                _ => {
                    let Some(p) = decl.params.iter().find(|p| p.name == name) else {
                        let mut known: Vec<&str> = decl.params.iter().map(|p| p.name).collect();
                        known.extend(GENERIC_PARAMS);
                        return Err(err(format!(
                            "unknown parameter '{name}' for {command}; it takes: {}",
                            known.join(", ")
                        )));
                    };
                    if let ParamValue::Literal(v) = &compiled {
                        check_literal(p.kind, v)
                            .map_err(|m| err(format!("{command} {name}: {m}")))?;
                    }
                    step.params.push((name, compiled));
                }
            }
        }
        if let Some(p) = decl
            .params
            .iter()
            .find(|p| p.required && !step.params.iter().any(|(n, _)| n == p.name))
        {
            return Err(err(format!(
                "{command} needs the parameter '{}' ({})",
                p.name, p.description
            )));
        }
        if command == "event.listen" {
            listen = Some(listen_of(&step).map_err(err)?);
        }
        steps.push(step);
    }
    Ok(Pipeline {
        headers: doc.headers.unwrap_or_default(),
        vars: doc.vars.unwrap_or_default(),
        body: doc.body,
        steps,
        listen,
    })
}

fn listen_of(step: &Step) -> Result<Listen, String> {
    let mut event_key = None;
    let mut filter = None;
    for (name, v) in &step.params {
        match (name.as_str(), v) {
            ("eventKey", ParamValue::Literal(Value::String(k))) => {
                key::validate_pattern(k).map_err(|e| format!("event.listen eventKey {e}"))?;
                event_key = Some(k.clone());
            }
            ("eventKey", _) => {
                return Err(
                    "event.listen eventKey must be a fixed pattern, not an expression".into(),
                );
            }
            ("filter", ParamValue::Template(t)) => filter = Some(t.clone()),
            ("filter", ParamValue::Literal(_)) => {
                return Err("event.listen filter must be an expression, e.g. ${body.payload.json.amount > 100}".into());
            }
            _ => {}
        }
    }
    Ok(Listen {
        event_key: event_key.ok_or("event.listen needs eventKey")?,
        filter,
    })
}

/// Compiles every string with an expression in `v`.
fn compile(v: &Value, engine: &Engine) -> Result<ParamValue, String> {
    Ok(match v {
        Value::String(s) => match engine.template(s).map_err(|e| e.to_string())? {
            Some(t) => ParamValue::Template(t),
            None => ParamValue::Literal(v.clone()),
        },
        Value::Object(m) => {
            let parts = m
                .iter()
                .map(|(k, v)| Ok((k.clone(), compile(v, engine)?)))
                .collect::<Result<Vec<_>, String>>()?;
            if parts
                .iter()
                .all(|(_, p)| matches!(p, ParamValue::Literal(_)))
            {
                ParamValue::Literal(v.clone())
            } else {
                ParamValue::Object(parts)
            }
        }
        Value::Array(a) => {
            let parts = a
                .iter()
                .map(|v| compile(v, engine))
                .collect::<Result<Vec<_>, String>>()?;
            if parts.iter().all(|p| matches!(p, ParamValue::Literal(_))) {
                ParamValue::Literal(v.clone())
            } else {
                ParamValue::Array(parts)
            }
        }
        _ => ParamValue::Literal(v.clone()),
    })
}

/// A literal that cannot be coerced to the parameter's type is an error now, not at run time.
fn check_literal(kind: Kind, v: &Value) -> Result<(), String> {
    let ok = match kind {
        Kind::String => matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)),
        Kind::Integer => {
            v.as_i64().is_some() || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok())
        }
        Kind::Boolean => v.is_boolean() || matches!(v.as_str(), Some("true" | "false")),
        Kind::Json => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {}, got {v}", kind.describe()))
    }
}

/// `vars.x`, `body`, `body.a.b`, `headers.h`.
pub fn check_path(path: &str) -> Result<(), String> {
    let root = path.split('.').next().unwrap_or("");
    if !matches!(root, "vars" | "body" | "headers") {
        return Err(format!("'{path}' must start with vars., body or headers."));
    }
    if root != "body" && !path.contains('.') {
        return Err(format!(
            "'{path}' needs a name after {root}., e.g. {root}.result"
        ));
    }
    if path.split('.').any(str::is_empty) {
        return Err(format!("'{path}' has an empty segment"));
    }
    Ok(())
}

/// Where `output` writes: a path (`vars.result`), or PIPEFORCE's form of it, a PEL holding
/// just that path (`${vars.result}` or `#{vars.result}`).
pub fn output_path(text: &str) -> Result<String, String> {
    let t = text.trim();
    let inner = ["${", "#{"]
        .iter()
        .find_map(|open| t.strip_prefix(open))
        .map(|rest| {
            rest.strip_suffix('}')
                .map(str::trim)
                .ok_or_else(|| format!("'{text}' opens an expression it does not close"))
        })
        .transpose()?;
    let Some(path) = inner else {
        check_path(t)?;
        return Ok(t.to_string());
    };
    let plain = path.split('.').all(|seg| {
        !seg.is_empty()
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if !plain {
        return Err(format!(
            "'{text}' must hold just a path to write to, e.g. ${{vars.result}} or vars.result"
        ));
    }
    check_path(path)?;
    Ok(path.to_string())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Result<Pipeline, PipelineError> {
        parse(src, &crate::commands::registry(), &Engine::default())
    }

    #[test]
    fn the_pipeforce_format_parses() {
        let pl = p("vars:\n  greeting: hi\npipeline:\n  - event.listen:\n      eventKey: webhook.salesforce.#\n      filter: ${body.payload.json.amount > 10}\n  - log:\n      message: \"lead ${body.payload.json.lead.name}\"\n      if: ${vars.greeting == 'hi'}\n      onError: CONTINUE\n  - exit\n")
            .expect("valid");
        assert_eq!(pl.steps.len(), 3);
        assert_eq!(pl.steps[1].line, 7);
        assert_eq!(pl.steps[1].on_error, OnError::Continue);
        assert!(pl.steps[1].when.is_some());
        assert_eq!(pl.steps[2].command, "exit");
        let l = pl.listen.expect("listener");
        assert_eq!(l.event_key, "webhook.salesforce.#");
        assert!(l.filter.is_some());
        assert_eq!(pl.vars["greeting"], "hi");
        // JSON is YAML too.
        assert!(p(r#"{"pipeline": [{"log": {"message": "x"}}]}"#).is_ok());
    }

    #[test]
    fn problems_are_reported_with_their_line() {
        let e = p("pipeline:\n  - log:\n      message: x\n  - explode\n")
            .err()
            .expect("unknown command");
        assert_eq!(e.line, 4);
        assert!(e.message.contains("unknown command 'explode'"), "{e}");
        let e =
            p("pipeline:\n  - log:\n      message: x\n  - event.listen:\n      eventKey: a.b\n")
                .err()
                .expect("listen not first");
        assert_eq!(e.line, 4);
        assert!(e.message.contains("must be the first"));
        let e = p("pipeline:\n  - log:\n      mesage: x\n")
            .err()
            .expect("bad param");
        assert!(
            e.message.contains("unknown parameter 'mesage'") && e.message.contains("message"),
            "{e}"
        );
        let e = p("pipeline:\n  - log:\n      message: ${body.a +}\n")
            .err()
            .expect("bad expression");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("invalid expression"), "{e}");
        let e = p("pipeline:\n  - event.listen:\n      eventKey: Bad.Key\n")
            .err()
            .expect("bad key");
        assert!(e.message.contains("eventKey"));
        let e = p("pipeline: [a\n").err().expect("bad yaml");
        assert!(e.line >= 1);
        let e = p("pipline:\n  - log\n")
            .err()
            .expect("unknown top-level key");
        assert!(e.message.contains("pipline"), "{e}");
        let e = p("pipeline:\n  - log:\n      message: x\n      output: nowhere\n")
            .err()
            .expect("bad output");
        assert!(e.message.contains("vars."), "{e}");
        let e = p("pipeline:\n  - exec\n").err().expect("missing param");
        assert!(e.message.contains("'command'"), "{e}");
    }

    #[test]
    fn output_takes_a_path_or_pipeforce_expression_forms_of_one() {
        for (given, want) in [
            ("vars.delivery", "vars.delivery"),
            ("${vars.delivery}", "vars.delivery"),
            ("#{vars.delivery}", "vars.delivery"),
            (" ${ body.result.items } ", "body.result.items"),
            ("${body}", "body"),
        ] {
            assert_eq!(output_path(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "${vars.a + 1}",
            "${vars.delivery",
            "${x.y}",
            "#{vars}",
            "${}",
        ] {
            assert!(output_path(bad).is_err(), "{bad}");
        }
        let e = output_path("${vars.a + 1}").expect_err("an expression");
        assert!(e.contains("just a path"), "{e}");
    }
}
