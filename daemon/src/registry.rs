//! Declaring and dispatching commands: every operation declares its name, parameters and
//! required role once, and the HTTP API, the CLI (through the HTTP API) and pipelines all run
//! it through `Registry::dispatch`/`invoke`, so validation and authorization happen in one
//! place. The registry is generic over what handlers are given (`commands::Ctx`), so it and
//! pipelines (which see it as [`Commands`]) do not depend on the handlers.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use hookd_shared::{CommandInfo, ParamInfo, Role};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::store::TokenAuth;

/// What a handler returns before it is awaited.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Output, Error>> + Send>>;
/// A command's implementation.
pub type Handler<C> = fn(C, Call) -> HandlerFuture;

/// Commands whose output is a secret shown once: a run records them masked (pipeline/run.rs).
pub const SECRET_OUTPUTS: &[&str] = &["token.create", "secret.generate"];

/// A command's declaration.
pub struct Command<C> {
    pub name: &'static str,
    pub description: &'static str,
    /// The role needed to run it; `None` for public commands.
    pub role: Option<Role>,
    pub params: &'static [Param],
    pub handler: Handler<C>,
}

/// A parameter's declaration.
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub description: &'static str,
}

/// Most items one list answer holds, so it stays small; 50 unless `limit` says otherwise.
const LIST_LIMIT_MAX: i64 = 1000;

impl Param {
    /// The `limit` parameter every list command takes, checked by `Params::limit`.
    pub const LIMIT: Param = Param {
        name: "limit",
        kind: Kind::Integer,
        required: false,
        description: "how many (default 50, at most 1000)",
    };
}

/// The type a parameter is coerced to (query strings and CLI arguments arrive as text).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    String,
    Integer,
    Boolean,
    /// Any JSON value; text that parses as a JSON object or array is parsed.
    Json,
}

impl Kind {
    /// For messages: "a string", "an integer", ...
    pub fn describe(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Integer => "an integer",
            Kind::Boolean => "true or false",
            Kind::Json => "JSON",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
            Kind::Json => "json",
        }
    }
}

/// One invocation: validated parameters, the raw body when the command takes one, and who calls.
pub struct Call {
    pub params: Params,
    pub caller: Option<TokenAuth>,
    /// The pipeline's body when a pipeline calls the command (`None` over HTTP).
    pub input: Option<Value>,
}

/// Validated, typed parameters.
#[derive(Debug, Default, Clone)]
pub struct Params(Map<String, Value>);

impl Params {
    /// A string parameter.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A required string parameter (the registry has already checked presence).
    pub fn required_str(&self, name: &str) -> Result<&str, Error> {
        self.str(name)
            .ok_or_else(|| Error::InvalidParam(format!("missing required parameter '{name}'")))
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(Value::as_i64)
    }

    /// The `limit` of a list command (see `Param::LIMIT`).
    pub fn limit(&self) -> Result<u32, Error> {
        let limit = self.int("limit").unwrap_or(50);
        if !(1..=LIST_LIMIT_MAX).contains(&limit) {
            return Err(Error::InvalidParam(format!(
                "limit must be between 1 and {LIST_LIMIT_MAX}, got {limit}"
            )));
        }
        // In range 1..=1000, so the conversion cannot fail.
        Ok(limit as u32)
    }

    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.0.get(name).and_then(Value::as_bool)
    }

    /// A parameter as JSON.
    pub fn json(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

/// What a command answers with.
pub enum Output {
    Json(Value),
    /// Done, nothing to say: HTTP answers `{"status":"ok"}`, a pipeline keeps its body.
    None,
    /// Bytes as they were captured (`message.body`, `message.file`).
    Raw(RawOutput),
}

/// A raw answer and how to label it.
pub struct RawOutput {
    pub content_type: String,
    pub filename: Option<String>,
    pub data: RawData,
}

/// Where raw answer bytes come from.
pub enum RawData {
    Bytes(Bytes),
    /// `len` bytes of a file, from `offset`, streamed rather than loaded.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// Bytes produced while they are sent (a backup), length unknown; an error ends the
    /// response early, so the client sees it cut off rather than complete.
    Stream(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>),
}

/// Serializes `v` as a JSON answer.
pub fn json<T: serde::Serialize>(v: &T) -> Result<Output, Error> {
    serde_json::to_value(v)
        .map(Output::Json)
        .map_err(|e| Error::Internal(format!("cannot serialize the answer: {e}")))
}

/// Every command, by name.
pub struct Registry<C> {
    commands: BTreeMap<&'static str, Command<C>>,
}

impl<C> Registry<C> {
    /// A registry of `families` of commands.
    pub fn new(families: impl IntoIterator<Item = Vec<Command<C>>>) -> Registry<C> {
        let mut commands = BTreeMap::new();
        for family in families {
            for c in family {
                commands.insert(c.name, c);
            }
        }
        Registry { commands }
    }

    /// The command called `name`.
    pub fn get(&self, name: &str) -> Option<&Command<C>> {
        self.commands.get(name)
    }

    /// Every command as `command.list` shows it.
    pub fn describe(&self) -> Vec<CommandInfo> {
        self.commands
            .values()
            .map(|c| CommandInfo {
                name: c.name.into(),
                description: c.description.into(),
                role: c.role,
                params: c
                    .params
                    .iter()
                    .map(|p| ParamInfo {
                        name: p.name.into(),
                        kind: p.kind.as_str().into(),
                        required: p.required,
                        description: p.description.into(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Checks the caller's role and the parameters, then runs the command.
    pub async fn dispatch(
        &self,
        ctx: C,
        name: &str,
        raw: Map<String, Value>,
        caller: Option<TokenAuth>,
    ) -> Result<Output, Error> {
        let cmd = self
            .get(name)
            .ok_or_else(|| Error::UnknownCommand(name.to_string()))?;
        authorize(cmd, caller.as_ref())?;
        let params = validate(cmd, raw)?;
        (cmd.handler)(
            ctx,
            Call {
                params,
                caller,
                input: None,
            },
        )
        .await
    }

    /// Runs a command whose permission the caller (a pipeline run) has already checked.
    pub async fn invoke(
        &self,
        ctx: C,
        name: &str,
        raw: Map<String, Value>,
        caller: Option<TokenAuth>,
        input: Option<Value>,
    ) -> Result<Output, Error> {
        let cmd = self
            .get(name)
            .ok_or_else(|| Error::UnknownCommand(name.to_string()))?;
        let params = validate(cmd, raw)?;
        (cmd.handler)(
            ctx,
            Call {
                params,
                caller,
                input,
            },
        )
        .await
    }
}

pub(crate) fn authorize<C>(cmd: &Command<C>, caller: Option<&TokenAuth>) -> Result<(), Error> {
    let Some(needed) = cmd.role else {
        return Ok(());
    };
    match caller {
        None => Err(Error::Unauthorized(format!(
            "{} needs a token: send 'Authorization: Bearer <token>'",
            cmd.name
        ))),
        Some(c) if c.role < needed => Err(Error::Forbidden(format!(
            "{} needs role {}; this token ('{}') has role {}",
            cmd.name,
            needed.as_str(),
            c.name,
            c.role.as_str()
        ))),
        Some(_) => Ok(()),
    }
}

pub(crate) fn validate<C>(cmd: &Command<C>, raw: Map<String, Value>) -> Result<Params, Error> {
    let mut out = Map::new();
    for (key, value) in raw {
        let Some(p) = cmd.params.iter().find(|p| p.name == key) else {
            let known: Vec<&str> = cmd.params.iter().map(|p| p.name).collect();
            return Err(Error::InvalidParam(if known.is_empty() {
                format!("{} takes no parameters, but got '{key}'", cmd.name)
            } else {
                format!(
                    "unknown parameter '{key}' for {}; it takes: {}",
                    cmd.name,
                    known.join(", ")
                )
            }));
        };
        out.insert(key, coerce(p, value)?);
    }
    if let Some(p) = cmd
        .params
        .iter()
        .find(|p| p.required && !out.contains_key(p.name))
    {
        return Err(Error::InvalidParam(format!(
            "missing required parameter '{}' for {} ({})",
            p.name, cmd.name, p.description
        )));
    }
    Ok(Params(out))
}

fn coerce(p: &Param, v: Value) -> Result<Value, Error> {
    let bad = |v: &Value| {
        Error::InvalidParam(format!(
            "{} must be {}, got {}",
            p.name,
            p.kind.describe(),
            v
        ))
    };
    match (p.kind, v) {
        (Kind::String, Value::String(s)) => Ok(Value::String(s)),
        (Kind::String, v @ (Value::Number(_) | Value::Bool(_))) => Ok(Value::String(v.to_string())),
        (Kind::Integer, Value::Number(n)) if n.is_i64() => Ok(Value::Number(n)),
        (Kind::Integer, Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad(&Value::String(s))),
        (Kind::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::Boolean, Value::String(s)) => match s.as_str() {
            "true" | "1" | "yes" => Ok(Value::Bool(true)),
            "false" | "0" | "no" => Ok(Value::Bool(false)),
            _ => Err(bad(&Value::String(s))),
        },
        (Kind::Json, Value::String(s)) => {
            let t = s.trim_start();
            if t.starts_with('{') || t.starts_with('[') {
                serde_json::from_str(&s)
                    .map_err(|e| Error::InvalidParam(format!("{} is not valid JSON: {e}", p.name)))
            } else {
                Ok(Value::String(s))
            }
        }
        (Kind::Json, v) => Ok(v),
        (_, v) => Err(bad(&v)),
    }
}

/// Parses a uuid parameter into its canonical lower-case form.
pub fn parse_uuid(name: &str, value: &str) -> Result<uuid::Uuid, Error> {
    uuid::Uuid::parse_str(value.trim()).map_err(|_| {
        Error::InvalidParam(format!(
            "{name} '{value}' is not a UUID (e.g. 0193e7c2-6f1a-7c3e-9b7d-2f4c1a9e8d10)"
        ))
    })
}

/// A command's declaration without its handler: what a pipeline's steps are checked against.
#[derive(Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub role: Option<Role>,
    pub params: &'static [Param],
}

/// The declarations, as `pipeline.put` checks steps against them.
pub trait Catalog: Send + Sync {
    /// The command called `name`.
    fn spec(&self, name: &str) -> Option<Spec>;
}

impl<C: Send + Sync> Catalog for Registry<C> {
    fn spec(&self, name: &str) -> Option<Spec> {
        self.get(name).map(|c| Spec {
            name: c.name,
            role: c.role,
            params: c.params,
        })
    }
}

/// The registry bound to what its handlers are given: how a pipeline run calls commands.
pub trait Commands: Catalog {
    /// Runs `name` for a run that has already checked the caller may (see `Registry::invoke`).
    fn invoke(
        &self,
        name: &str,
        raw: Map<String, Value>,
        caller: Option<TokenAuth>,
        input: Option<Value>,
    ) -> HandlerFuture;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn list_limits_default_and_are_bounded() {
        let limit = |pairs: &[(&str, Value)]| Params(raw(pairs)).limit();
        assert_eq!(limit(&[]).expect("default"), 50);
        assert_eq!(limit(&[("limit", 1000.into())]).expect("max"), 1000);
        for bad in [0, -1, 1001] {
            let err = limit(&[("limit", bad.into())]).expect_err("out of range");
            assert!(
                err.to_string()
                    .contains(&format!("limit must be between 1 and 1000, got {bad}")),
                "{err}"
            );
        }
    }
}
