//! API token rows. Only the SHA-256 of a token is stored.

use hookd_shared::Role;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use super::op::{Applied, Effect, Outcome};
pub use crate::store::model::tokens::*;

fn from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    let role: String = r.get(2)?;
    let hash: Vec<u8> = r.get(3)?;
    Ok(TokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        // An unknown role can only come from a newer hookd; grant the least.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        hash: hash.try_into().unwrap_or([0; 32]),
        created_at: r.get(4)?,
    })
}

/// Every token, oldest first.
pub fn load_all(conn: &Connection) -> Result<Vec<TokenRow>, StoreError> {
    let mut st = conn
        .prepare("SELECT id, name, role, hash, created_at FROM tokens ORDER BY created_at, id")?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn insert(conn: &Connection, t: TokenRow) -> Result<Applied, StoreError> {
    conn.execute(
        "INSERT INTO tokens (id, name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![t.id, t.name, t.role.as_str(), &t.hash[..], t.created_at],
    )?;
    let mut applied = Applied::new(Outcome::Token(t.clone()));
    applied.effects.push(Effect::CacheToken(t));
    Ok(applied)
}

pub(super) fn delete(conn: &Connection, id: &str) -> Result<Applied, StoreError> {
    let row = conn
        .query_row(
            "SELECT id, name, role, hash, created_at FROM tokens WHERE id = ?1",
            [id],
            from_row,
        )
        .optional()?
        .ok_or_else(|| {
            StoreError::NotFound(format!("no token with id {id}; token.list shows them"))
        })?;
    conn.execute("DELETE FROM tokens WHERE id = ?1", [id])?;
    let mut applied = Applied::new(Outcome::Token(row.clone()));
    applied.effects.push(Effect::UncacheToken(row.hash));
    Ok(applied)
}

/// Admin tokens stored.
pub fn admin_count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM tokens WHERE role = 'admin'",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}
