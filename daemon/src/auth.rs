//! API tokens: generation, the bootstrap admin token, and authenticating a request.
//!
//! Tokens are 256 random bits, so a single SHA-256 is a sound way to store them (no password
//! stretching needed). A presented token is hashed and looked up by its hash: timing can at most
//! reveal something about the hash, never about the token.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use hookd_shared::Role;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::store::{Store, StoreError, TokenAuth, TokenRow};

pub use crate::store::ADMIN_TOKEN_FILE;

/// A fresh random token: `hkd_` and 43 base64url characters.
pub fn generate_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness available: {e}")))?;
    Ok(format!(
        "hkd_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// What is stored and compared instead of the token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Sets up the bootstrap admin token. With `HOOKD_ADMIN_TOKEN` that token is accepted (and never
/// stored); otherwise, when no admin token exists, one is generated into `<data-dir>/admin.token`
/// (mode 0600). Returns the token file's path when there is one.
pub async fn bootstrap(
    store: &Store,
    data_dir: &std::path::Path,
    env_token: Option<&str>,
) -> Result<Option<PathBuf>, Error> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if let Some(token) = env_token {
        store.accept_unstored_token(
            hash_token(token),
            TokenAuth {
                id: "env".into(),
                name: "HOOKD_ADMIN_TOKEN".into(),
                role: Role::Admin,
            },
        );
        return Ok(None);
    }
    let admins = store.admin_count().await?;
    if admins > 0 {
        return Ok(path.exists().then_some(path));
    }
    let token = generate_token()?;
    write_secret_file(&path, &token)?;
    store
        .create_token(TokenRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: "bootstrap admin".into(),
            role: Role::Admin,
            hash: hash_token(&token),
            created_at: crate::clock::now_ms(),
        })
        .await?;
    tracing::info!("generated an admin token into {}", path.display());
    Ok(Some(path))
}

/// Writes `secret` to `path` with mode 0600, replacing it atomically.
fn write_secret_file(path: &std::path::Path, secret: &str) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The identity behind a request's `Authorization: Bearer` header: `None` without the header,
/// an error for a malformed or unknown token.
pub fn authenticate(store: &Store, headers: &http::HeaderMap) -> Result<Option<TokenAuth>, Error> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            Error::Unauthorized("the Authorization header must be 'Bearer <token>'".into())
        })?;
    store
        .token(&hash_token(token))
        .map(Some)
        .ok_or_else(|| Error::Unauthorized("invalid token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_token().expect("token");
        let b = generate_token().expect("token");
        assert_ne!(a, b);
        assert!(a.starts_with("hkd_") && a.len() == 47, "{a}");
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
