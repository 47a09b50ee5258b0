//! A webhook's `verify` settings: which signature scheme its requests must pass and with which
//! secrets. The checking itself (over the raw body bytes) is the daemon's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// Secrets are shown as this.
pub const MASK: &str = "••••";
/// Seconds a signed timestamp may be off when `tolerance` is not set.
pub const DEFAULT_TOLERANCE: u64 = 300;

/// The signature scheme.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Github,
    Stripe,
    Standard,
    Hmac,
    Token,
    Basic,
}

/// The digest of the generic `hmac` scheme.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Sha256,
    Sha1,
    Sha512,
}

/// How the generic `hmac` scheme writes the signature.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// A webhook's `verify` object, as given to webhook.put and stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyConfig {
    pub scheme: Scheme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Several secrets accepted at once, for rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Seconds a signed timestamp may be off (stripe, standard; default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<u64>,
    /// The header carrying the signature (hmac) or the token (token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The query parameter carrying the token (token), instead of a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// Text before the signature in the header, e.g. `sha256=` (hmac).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl VerifyConfig {
    /// Parses and checks a `verify` parameter.
    pub fn parse(v: &serde_json::Value) -> Result<VerifyConfig, String> {
        let c: VerifyConfig = serde_json::from_value(v.clone()).map_err(|e| {
            format!("verify: {e}; e.g. {{\"scheme\":\"github\",\"secret\":\"…\"}} (schemes: github, stripe, standard, hmac, token, basic)")
        })?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), String> {
        let secrets = self.all_secrets();
        match self.scheme {
            Scheme::Basic
                if self.username.as_deref().is_none_or(str::is_empty)
                    || self.password.as_deref().is_none_or(str::is_empty) =>
            {
                return Err("verify: scheme basic needs username and password".into());
            }
            Scheme::Basic => {}
            _ if secrets.is_empty() => {
                return Err(format!(
                    "verify: scheme {} needs a secret (or secrets for rotation)",
                    self.scheme_name()
                ));
            }
            Scheme::Standard => {
                for s in &secrets {
                    standard_key(s).map_err(|e| format!("verify: {e}"))?;
                }
            }
            Scheme::Hmac if self.header.as_deref().is_none_or(str::is_empty) => {
                return Err("verify: scheme hmac needs header, e.g. \"X-Signature\"".into());
            }
            _ => {}
        }
        if secrets.iter().any(|s| s.is_empty() || s == MASK) {
            return Err(
                "verify: a secret is empty (or still the mask ••••; send the real secret)".into(),
            );
        }
        Ok(())
    }

    fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Standard => "standard",
            Scheme::Hmac => "hmac",
            Scheme::Token => "token",
            Scheme::Basic => "basic",
        }
    }

    /// `secret` and `secrets`, in that order.
    pub fn all_secrets(&self) -> Vec<String> {
        self.secret
            .iter()
            .chain(self.secrets.iter())
            .cloned()
            .collect()
    }

    /// The config as `webhook.get` shows it: secrets and passwords masked.
    pub fn masked(&self) -> serde_json::Value {
        let mut c = self.clone();
        c.secret = c.secret.map(|_| MASK.into());
        c.secrets = c.secrets.iter().map(|_| MASK.into()).collect();
        c.password = c.password.map(|_| MASK.into());
        serde_json::to_value(c).unwrap_or_default()
    }
}

/// The key of a Standard Webhooks secret (`whsec_` and base64).
pub fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(b64)
        .map_err(|_| "a standard secret is whsec_ followed by base64".to_string())
}
