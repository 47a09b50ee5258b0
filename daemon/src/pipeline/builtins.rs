//! Commands that only make sense inside a pipeline run. They are declared in the registry like
//! every other command (so `command.list` describes them and `pipeline.put` checks their
//! parameters); the runner (`run.rs`) implements them. Called over HTTP they say so.

use hookd_shared::Role;

use crate::error::Error;
use crate::registry::{Call, Command, HandlerFuture, Kind, Param};

/// Builtins that steer a run and give it no result: what a caller may see of a run never
/// depends on whether they ran (`event.listen` is admin-only to store, not to watch).
pub const NO_RESULT: &[&str] = &["event.listen", "iam.run.as"];

fn only_in_pipelines<C>(_: C, _: Call) -> HandlerFuture {
    Box::pin(async {
        Err(Error::BadRequest(
            "this command runs only inside a pipeline; try it with pipeline.run".into(),
        ))
    })
}

/// The declarations. Those a run may use as anonymous still need a token over HTTP (any
/// role): there the answer is "use pipeline.run", and it comes after authentication, as every
/// command's does.
pub fn commands<C>() -> Vec<Command<C>> {
    let c = |name, description, role, params| Command {
        name,
        description,
        role,
        params,
        handler: only_in_pipelines::<C>,
    };
    vec![
        c(
            "event.listen",
            "First command of a listener pipeline: run it on every event whose key matches",
            Some(Role::Admin),
            &[
                Param {
                    name: "eventKey",
                    kind: Kind::String,
                    required: true,
                    description: "pattern: * is one segment, # any number, e.g. webhook.github.#",
                },
                Param {
                    name: "filter",
                    kind: Kind::String,
                    required: false,
                    description: "expression; when false the run is recorded as skipped",
                },
            ],
        ),
        c(
            "log",
            "Write a line to the execution's log and the daemon log",
            Some(Role::Viewer),
            &[
                Param {
                    name: "message",
                    kind: Kind::Json,
                    required: false,
                    description: "what to log (default: the body)",
                },
                Param {
                    name: "level",
                    kind: Kind::String,
                    required: false,
                    description: "debug, info (default), warn or error",
                },
            ],
        ),
        c(
            "set",
            "Set a value at a path (vars.x, body.x, headers.x)",
            Some(Role::Viewer),
            &[
                Param {
                    name: "key",
                    kind: Kind::String,
                    required: true,
                    description: "the path, e.g. vars.total",
                },
                Param {
                    name: "value",
                    kind: Kind::Json,
                    required: false,
                    description: "the value (default null)",
                },
            ],
        ),
        c(
            "var.set",
            "Set a variable",
            Some(Role::Viewer),
            &[
                Param {
                    name: "key",
                    kind: Kind::String,
                    required: true,
                    description: "the variable name (or a path inside one: a.b)",
                },
                Param {
                    name: "value",
                    kind: Kind::Json,
                    required: false,
                    description: "the value (default null)",
                },
            ],
        ),
        c(
            "body.set",
            "Replace the body, or set a value inside it",
            Some(Role::Viewer),
            &[
                Param {
                    name: "key",
                    kind: Kind::String,
                    required: false,
                    description: "a path inside the body; none replaces the body",
                },
                Param {
                    name: "value",
                    kind: Kind::Json,
                    required: false,
                    description: "the value (default null)",
                },
            ],
        ),
        c("exit", "End the run successfully", None, &[]),
        c(
            "event.send",
            "Fire an internal event: listeners of its key run (chains are depth-limited)",
            Some(Role::Viewer),
            &[
                Param {
                    name: "eventKey",
                    kind: Kind::String,
                    required: true,
                    description: "the event key, e.g. lead.qualified",
                },
                Param {
                    name: "payload",
                    kind: Kind::Json,
                    required: false,
                    description: "what listeners get as body.payload (default: the body)",
                },
            ],
        ),
        c(
            "iam.run.as",
            "Run the rest of the pipeline as this user (honoured when an admin stored the pipeline)",
            Some(Role::Viewer),
            &[Param {
                name: "username",
                kind: Kind::String,
                required: true,
                description: "a token name (token.list) or admin",
            }],
        ),
        c(
            "exec",
            "Run a program (no shell), with the body as JSON on stdin; killed at its timeout",
            Some(Role::Admin),
            &[
                Param {
                    name: "command",
                    kind: Kind::String,
                    required: true,
                    description: "the program, e.g. /usr/local/bin/deploy.sh",
                },
                Param {
                    name: "args",
                    kind: Kind::Json,
                    required: false,
                    description: "list of arguments",
                },
                Param {
                    name: "env",
                    kind: Kind::Json,
                    required: false,
                    description: "extra environment variables (object)",
                },
                Param {
                    name: "timeout",
                    kind: Kind::Integer,
                    required: false,
                    description: "seconds (default 30)",
                },
                Param {
                    name: "stdin",
                    kind: Kind::String,
                    required: false,
                    description: "text for stdin (default: the body as JSON)",
                },
            ],
        ),
    ]
}
