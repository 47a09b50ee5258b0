//! Per-webhook verification of incoming requests: GitHub, Stripe, Standard Webhooks, generic
//! HMAC, shared token, HTTP Basic. Always over the raw body bytes, fed chunk by chunk as the
//! body streams in (so any size and any content type verifies, multipart included), with one
//! MAC per secret so secrets can be rotated, and constant-time comparisons.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

pub use hookd_shared::verify::{
    Algorithm, DEFAULT_TOLERANCE, Encoding, Scheme, VerifyConfig, standard_key,
};

/// Starts verifying a request from its head: feed the body, then `finish`.
pub trait Start {
    fn start(&self, headers: &http::HeaderMap, query: &str, now_secs: i64) -> Verifier;
}

impl Start for VerifyConfig {
    fn start(&self, headers: &http::HeaderMap, query: &str, now_secs: i64) -> Verifier {
        Verifier {
            state: start(self, headers, query, now_secs).unwrap_or_else(State::Fail),
        }
    }
}

enum AnyMac {
    Sha256(Hmac<sha2::Sha256>),
    Sha1(Hmac<sha1::Sha1>),
    Sha512(Hmac<sha2::Sha512>),
}

impl AnyMac {
    fn new(alg: Algorithm, key: &[u8]) -> AnyMac {
        // HMAC accepts keys of any length.
        match alg {
            Algorithm::Sha256 => AnyMac::Sha256(Hmac::new_from_slice(key).expect("any key length")),
            Algorithm::Sha1 => AnyMac::Sha1(Hmac::new_from_slice(key).expect("any key length")),
            Algorithm::Sha512 => AnyMac::Sha512(Hmac::new_from_slice(key).expect("any key length")),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            AnyMac::Sha256(m) => m.update(data),
            AnyMac::Sha1(m) => m.update(data),
            AnyMac::Sha512(m) => m.update(data),
        }
    }

    /// Constant-time comparison with `expected`.
    fn matches(&self, expected: &[u8]) -> bool {
        match self {
            AnyMac::Sha256(m) => m.clone().verify_slice(expected).is_ok(),
            AnyMac::Sha1(m) => m.clone().verify_slice(expected).is_ok(),
            AnyMac::Sha512(m) => m.clone().verify_slice(expected).is_ok(),
        }
    }
}

enum State {
    Pass,
    Fail(String),
    /// One MAC per secret, and the signatures the request carries.
    Macs {
        macs: Vec<AnyMac>,
        expected: Vec<Vec<u8>>,
    },
}

/// Verification of one request in progress.
pub struct Verifier {
    state: State,
}

impl Verifier {
    /// Feeds the next body chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        if let State::Macs { macs, .. } = &mut self.state {
            for m in macs {
                m.update(chunk);
            }
        }
    }

    /// `Ok` or the reason the request is refused (for the operator, never for the sender).
    pub fn finish(self) -> Result<(), String> {
        match self.state {
            State::Pass => Ok(()),
            State::Fail(why) => Err(why),
            State::Macs { macs, expected } => {
                let any = macs.iter().any(|m| expected.iter().any(|e| m.matches(e)));
                if any {
                    Ok(())
                } else {
                    Err("signature mismatch".into())
                }
            }
        }
    }
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Result<&'a str, String> {
    h.get(name)
        .ok_or_else(|| format!("missing {name} header"))?
        .to_str()
        .map_err(|_| format!("malformed {name} header"))
}

fn within(tolerance: u64, ts: i64, now: i64) -> Result<(), String> {
    let off = (now - ts).unsigned_abs();
    if off > tolerance {
        return Err(format!("timestamp outside tolerance ({off} s)"));
    }
    Ok(())
}

fn start(c: &VerifyConfig, h: &http::HeaderMap, query: &str, now: i64) -> Result<State, String> {
    let secrets = c.all_secrets();
    let tolerance = c.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    Ok(match c.scheme {
        Scheme::Github => {
            let v = header(h, "X-Hub-Signature-256")?;
            let hexsig = v
                .strip_prefix("sha256=")
                .ok_or("malformed X-Hub-Signature-256 header (no sha256=)")?;
            let expected = vec![
                hex::decode(hexsig.trim())
                    .map_err(|_| "malformed X-Hub-Signature-256 header (not hex)")?,
            ];
            let macs = secrets
                .iter()
                .map(|s| AnyMac::new(Algorithm::Sha256, s.as_bytes()))
                .collect();
            State::Macs { macs, expected }
        }
        Scheme::Stripe => {
            let v = header(h, "Stripe-Signature")?;
            let mut t = None;
            let mut expected = Vec::new();
            for part in v.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", ts)) => t = ts.parse::<i64>().ok(),
                    Some(("v1", sig)) => expected.extend(hex::decode(sig).ok()),
                    _ => {}
                }
            }
            let t = t.ok_or("malformed Stripe-Signature header (no t=)")?;
            if expected.is_empty() {
                return Err("malformed Stripe-Signature header (no v1=)".into());
            }
            within(tolerance, t, now)?;
            let macs = secrets
                .iter()
                .map(|s| {
                    let mut m = AnyMac::new(Algorithm::Sha256, s.as_bytes());
                    m.update(format!("{t}.").as_bytes());
                    m
                })
                .collect();
            State::Macs { macs, expected }
        }
        Scheme::Standard => {
            let id = header(h, "webhook-id")?;
            let ts_text = header(h, "webhook-timestamp")?;
            let ts: i64 = ts_text
                .trim()
                .parse()
                .map_err(|_| "malformed webhook-timestamp header")?;
            within(tolerance, ts, now)?;
            let sigs = header(h, "webhook-signature")?;
            let expected: Vec<Vec<u8>> = sigs
                .split_whitespace()
                .filter_map(|s| s.strip_prefix("v1,"))
                .filter_map(|s| STANDARD.decode(s).ok())
                .collect();
            if expected.is_empty() {
                return Err("malformed webhook-signature header (no v1,…)".into());
            }
            let mut macs = Vec::new();
            for s in &secrets {
                let mut m = AnyMac::new(Algorithm::Sha256, &standard_key(s)?);
                m.update(format!("{id}.{ts}.").as_bytes());
                macs.push(m);
            }
            State::Macs { macs, expected }
        }
        Scheme::Hmac => {
            let name = c.header.as_deref().unwrap_or("X-Signature");
            let v = header(h, name)?;
            let v = match c.prefix.as_deref() {
                Some(p) => v
                    .strip_prefix(p)
                    .ok_or_else(|| format!("malformed {name} header (no {p})"))?,
                None => v,
            };
            let sig = match c.encoding.unwrap_or_default() {
                Encoding::Hex => hex::decode(v.trim())
                    .map_err(|_| format!("malformed {name} header (not hex)"))?,
                Encoding::Base64 => STANDARD
                    .decode(v.trim())
                    .map_err(|_| format!("malformed {name} header (not base64)"))?,
            };
            let alg = c.algorithm.unwrap_or_default();
            let macs = secrets
                .iter()
                .map(|s| AnyMac::new(alg, s.as_bytes()))
                .collect();
            State::Macs {
                macs,
                expected: vec![sig],
            }
        }
        Scheme::Token => {
            let given = match &c.query {
                Some(q) => form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == q)
                    .map(|(_, v)| v.into_owned())
                    .ok_or_else(|| format!("missing {q} query parameter"))?,
                None => header(h, c.header.as_deref().unwrap_or("X-Token"))?.to_string(),
            };
            let ok = secrets.iter().fold(false, |acc, s| {
                acc | bool::from(s.as_bytes().ct_eq(given.as_bytes()))
            });
            if ok {
                State::Pass
            } else {
                State::Fail("token mismatch".into())
            }
        }
        Scheme::Basic => {
            let v = header(h, "Authorization")
                .map_err(|_| "missing credentials (Authorization: Basic)".to_string())?;
            let b64 = v
                .strip_prefix("Basic ")
                .ok_or("malformed Authorization header (not Basic)")?;
            let decoded = STANDARD
                .decode(b64.trim())
                .map_err(|_| "malformed Authorization header (not base64)")?;
            let want = format!(
                "{}:{}",
                c.username.as_deref().unwrap_or(""),
                c.password.as_deref().unwrap_or("")
            );
            if bool::from(decoded.ct_eq(want.as_bytes())) {
                State::Pass
            } else {
                State::Fail("wrong credentials".into())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn run(
        c: &VerifyConfig,
        h: &http::HeaderMap,
        query: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), String> {
        let mut v = c.start(h, query, now);
        // Chunked as the body would stream in.
        for chunk in body.chunks(7) {
            v.update(chunk);
        }
        v.finish()
    }

    fn hmac_hex(key: &[u8], data: &[u8]) -> String {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
        m.update(data);
        hex::encode(m.finalize().into_bytes())
    }

    #[test]
    fn github_and_rotation() {
        let c = VerifyConfig::parse(&json!({"scheme": "github", "secrets": ["old", "new"]}))
            .expect("valid");
        let body = b"{\"zen\":\"Keep it logically awesome.\"}";
        let sig = format!("sha256={}", hmac_hex(b"new", body));
        assert_eq!(
            run(&c, &headers(&[("X-Hub-Signature-256", &sig)]), "", body, 0),
            Ok(())
        );
        assert_eq!(
            run(
                &c,
                &headers(&[("X-Hub-Signature-256", &sig)]),
                "",
                b"tampered",
                0
            ),
            Err("signature mismatch".into())
        );
        assert_eq!(
            run(&c, &headers(&[]), "", body, 0),
            Err("missing X-Hub-Signature-256 header".into())
        );
    }

    #[test]
    fn stripe_with_tolerance_and_several_v1() {
        let c = VerifyConfig::parse(
            &json!({"scheme": "stripe", "secret": "whsec_test", "tolerance": 300}),
        )
        .expect("valid");
        let body = b"{\"id\":\"evt_1\"}";
        let t = 1_700_000_000i64;
        let good = hmac_hex(
            b"whsec_test",
            format!("{t}.{}", std::str::from_utf8(body).expect("utf8")).as_bytes(),
        );
        let h = format!("t={t},v1={},v1={good},v0=00", "ab".repeat(32));
        assert_eq!(
            run(&c, &headers(&[("Stripe-Signature", &h)]), "", body, t + 10),
            Ok(())
        );
        assert_eq!(
            run(&c, &headers(&[("Stripe-Signature", &h)]), "", body, t + 412),
            Err("timestamp outside tolerance (412 s)".into())
        );
    }

    #[test]
    fn standard_webhooks_with_the_specification_example() {
        let c = VerifyConfig::parse(&json!({"scheme": "standard", "secrets": ["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}))
            .expect("valid");
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bm9ldmVu v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(
            run(&c, &h, "", br#"{"test": 2432232314}"#, 1614265330),
            Ok(())
        );
        assert!(run(&c, &h, "", br#"{"test": 2432232315}"#, 1614265330).is_err());
        assert!(
            run(&c, &h, "", br#"{"test": 2432232314}"#, 1614265330 + 1000)
                .unwrap_err()
                .contains("tolerance")
        );
    }

    #[test]
    fn generic_hmac_token_and_basic() {
        let c = VerifyConfig::parse(&json!({"scheme": "hmac", "secret": "k", "header": "X-Sig", "algorithm": "sha1", "encoding": "base64", "prefix": "sha1="}))
            .expect("valid");
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(b"k").expect("key");
        m.update(b"\x00binary\xff");
        let sig = format!("sha1={}", STANDARD.encode(m.finalize().into_bytes()));
        assert_eq!(
            run(&c, &headers(&[("X-Sig", &sig)]), "", b"\x00binary\xff", 0),
            Ok(())
        );

        let t = VerifyConfig::parse(&json!({"scheme": "token", "secret": "s3", "query": "key"}))
            .expect("valid");
        assert_eq!(run(&t, &headers(&[]), "uuid=x&key=s3", b"", 0), Ok(()));
        assert_eq!(
            run(&t, &headers(&[]), "key=no", b"", 0),
            Err("token mismatch".into())
        );
        let b = VerifyConfig::parse(&json!({"scheme": "basic", "username": "u", "password": "p"}))
            .expect("valid");
        let auth = format!("Basic {}", STANDARD.encode("u:p"));
        assert_eq!(
            run(&b, &headers(&[("Authorization", &auth)]), "", b"", 0),
            Ok(())
        );
        assert!(run(&b, &headers(&[]), "", b"", 0).is_err());
    }

    #[test]
    fn configs_are_checked_and_masked() {
        assert!(
            VerifyConfig::parse(&json!({"scheme": "github"}))
                .unwrap_err()
                .contains("needs a secret")
        );
        assert!(
            VerifyConfig::parse(&json!({"scheme": "gitlab", "secret": "x"}))
                .unwrap_err()
                .contains("schemes")
        );
        assert!(VerifyConfig::parse(&json!({"scheme": "standard", "secret": "whsec_!!"})).is_err());
        assert!(
            VerifyConfig::parse(&json!({"scheme": "github", "secret": "x", "secrte": "y"}))
                .is_err()
        );
        let c = VerifyConfig::parse(&json!({"scheme": "github", "secrets": ["a", "b"]}))
            .expect("valid");
        assert_eq!(
            c.masked(),
            json!({"scheme": "github", "secrets": ["••••", "••••"]})
        );
    }
}
