//! `command.list`: the registry describing itself.

use hookd_shared::Role;

use super::{Command, json};

pub(super) fn commands() -> Vec<Command> {
    vec![Command {
        name: "command.list",
        description: "Describe every command: name, parameters, required role",
        role: Some(Role::Viewer),
        params: &[],
        handler: |ctx, _| Box::pin(async move { json(&ctx.registry.describe()) }),
    }]
}
