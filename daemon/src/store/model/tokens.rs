//! API tokens as stored (only a token's SHA-256 is kept).

use hookd_shared::{Role, TokenInfo};

use crate::clock::rfc3339;

/// A stored token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub hash: [u8; 32],
    pub created_at: i64,
}

/// Who a presented token belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenAuth {
    pub id: String,
    pub name: String,
    pub role: Role,
}

impl TokenRow {
    /// The identity this token authenticates as.
    pub fn auth(&self) -> TokenAuth {
        TokenAuth {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
        }
    }

    /// The API view (no secret, no hash).
    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            created_at: rfc3339(self.created_at),
        }
    }
}
