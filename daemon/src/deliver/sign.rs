//! Standard Webhooks 1.0 signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`, computed over the exact body bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A `whsec_…` signing secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(••••)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>` (the key must be 24 to 64 bytes).
    pub fn parse(s: &str) -> Result<Secret, String> {
        let b64 = s
            .strip_prefix("whsec_")
            .ok_or("secret must start with whsec_ (secret.generate makes one)")?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "secret after whsec_ must be base64".to_string())?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "secret must hold 24 to 64 bytes, this one has {}",
                key.len()
            ));
        }
        Ok(Secret(key))
    }

    /// A fresh random secret, as text.
    pub fn generate() -> Result<String, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness available: {e}"))?;
        Ok(format!("whsec_{}", STANDARD.encode(key)))
    }

    /// The `webhook-signature` value for this message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_specification_example() {
        // The example from the Standard Webhooks specification.
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn bad_secrets_are_explained() {
        assert!(Secret::parse("abc").unwrap_err().contains("whsec_"));
        assert!(Secret::parse("whsec_!!!").unwrap_err().contains("base64"));
        assert!(
            Secret::parse("whsec_YWJj")
                .unwrap_err()
                .contains("24 to 64")
        );
        let g = Secret::generate().expect("generate");
        assert!(Secret::parse(&g).is_ok());
        assert!(!format!("{:?}", Secret::parse(&g).expect("ok")).contains("whsec"));
    }
}
