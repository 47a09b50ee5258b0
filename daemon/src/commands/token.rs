//! `token.create`, `token.list`, `token.delete`: API tokens for people and scripts.

use hookd_shared::{Role, TokenCreated};

use super::Ctx;
use super::{Call, Command, Kind, Output, Param, json};
use crate::auth::{generate_token, hash_token};
use crate::error::Error;
use crate::store::TokenRow;

pub(super) fn commands() -> Vec<Command> {
    vec![
        Command {
            name: "token.create",
            description: "Create an API token; its secret is shown only in this answer",
            role: Some(Role::Admin),
            params: &[
                Param {
                    name: "role",
                    kind: Kind::String,
                    required: true,
                    description: "admin (everything) or viewer (read-only commands)",
                },
                Param {
                    name: "name",
                    kind: Kind::String,
                    required: true,
                    description: "who or what uses it, e.g. grafana",
                },
            ],
            handler: |ctx, call| Box::pin(create(ctx, call)),
        },
        Command {
            name: "token.list",
            description: "List API tokens (never their secrets)",
            role: Some(Role::Admin),
            params: &[],
            handler: |ctx, call| Box::pin(list(ctx, call)),
        },
        Command {
            name: "token.delete",
            description: "Delete an API token; it stops working at once",
            role: Some(Role::Admin),
            params: &[Param {
                name: "id",
                kind: Kind::String,
                required: true,
                description: "the token's id (token.list)",
            }],
            handler: |ctx, call| Box::pin(delete(ctx, call)),
        },
    ]
}

async fn create(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let role_name = call.params.required_str("role")?;
    let role = Role::parse(role_name).ok_or_else(|| {
        Error::InvalidParam(format!("role must be admin or viewer, got '{role_name}'"))
    })?;
    let name = call.params.required_str("name")?.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::InvalidParam(
            "name must be 1 to 100 characters".into(),
        ));
    }
    let token = generate_token()?;
    let row = ctx
        .store
        .create_token(TokenRow {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            role,
            hash: hash_token(&token),
            created_at: crate::clock::now_ms(),
        })
        .await?;
    json(&TokenCreated {
        info: row.info(),
        token,
    })
}

async fn list(ctx: Ctx, _call: Call) -> Result<Output, Error> {
    let rows = ctx.store.tokens().await?;
    json(&rows.iter().map(TokenRow::info).collect::<Vec<_>>())
}

async fn delete(ctx: Ctx, call: Call) -> Result<Output, Error> {
    let id = call.params.required_str("id")?.to_string();
    let row = ctx.store.delete_token(id).await?;
    json(&row.info())
}
