//! Sending a captured request on to the local app: the original method, headers (hop-by-hop ones
//! left out) and query, the body byte for byte.

use std::time::Duration;

use hookd_shared::Message;
use hookd_shared::verify::MASK;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1), and the ones the
/// client recomputes; never copied from the capture.
const HOP_BY_HOP: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "expect",
];

/// Where and how to forward.
pub struct Forwarder {
    http: reqwest::Client,
    target: reqwest::Url,
    /// `--header`s: they replace a captured header of the same name.
    extra: Vec<(HeaderName, HeaderValue)>,
}

/// What one attempt came to.
pub enum Answer {
    /// The app answered with this status.
    Status(u16),
    /// No answer: connection refused, timeout, cut off.
    Failed(String),
}

impl Forwarder {
    pub fn new(
        target: reqwest::Url,
        extra: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
    ) -> Result<Forwarder, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect is the app's answer, not a place to send the webhook again.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Forwarder {
            http,
            target,
            extra,
        })
    }

    /// Sends `m` with `body` (of `m.summary.size` bytes); `masked`: the capture came with
    /// credentials masked (a viewer token), which are left out rather than sent masked.
    pub async fn send(&self, m: &Message, body: reqwest::Body, masked: bool) -> Answer {
        let Ok(method) = reqwest::Method::from_bytes(m.summary.method.as_bytes()) else {
            return Answer::Failed(format!("method '{}' cannot be sent", m.summary.method));
        };
        let mut url = self.target.clone();
        let query = join_query(url.query(), &m.query_string, masked);
        url.set_query(query.as_deref());
        let mut headers = HeaderMap::new();
        for (name, value) in forward_headers(&m.headers, masked) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) && !self.extra.iter().any(|(e, _)| *e == n)
            {
                headers.append(n, v);
            }
        }
        for (n, v) in &self.extra {
            headers.append(n.clone(), v.clone());
        }
        if let Ok(v) = HeaderValue::from_str(&m.summary.id) {
            headers.insert("x-hookd-message-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&m.summary.event_key) {
            headers.insert("x-hookd-event-key", v);
        }
        if m.summary.size > 0 || !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD) {
            // Streamed bodies would otherwise go chunked, which some apps refuse.
            headers.insert(reqwest::header::CONTENT_LENGTH, m.summary.size.into());
        }
        match self
            .http
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Read the answer so the connection can be reused.
                let _ = resp.bytes().await;
                Answer::Status(status)
            }
            Err(e) if e.is_timeout() => Answer::Failed("timed out".into()),
            Err(e) => Answer::Failed(super::error_chain(&e)),
        }
    }
}

/// The captured headers to send on, in their order.
fn forward_headers(headers: &[(String, String)], masked: bool) -> Vec<(&str, &str)> {
    // Headers a `Connection` header names are hop-by-hop too.
    let named: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    headers
        .iter()
        .filter(|(k, v)| {
            let k = k.to_ascii_lowercase();
            let left_out = HOP_BY_HOP.contains(&k.as_str())
                || named.contains(&k)
                || k.starts_with("x-hookd-")
                || (masked && v == MASK);
            !left_out
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The forward-to URL's own query followed by the captured one, without the `uuid` parameter
/// (hookd's routing, not the sender's) and, when `masked`, without masked values.
fn join_query(own: Option<&str>, captured: &str, masked: bool) -> Option<String> {
    let kept: Vec<&str> = captured
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            decoded(k) != "uuid" && !(masked && decoded(v) == MASK)
        })
        .collect();
    let parts: Vec<&str> = own
        .filter(|q| !q.is_empty())
        .into_iter()
        .chain(kept)
        .collect();
    (!parts.is_empty()).then(|| parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_stay_behind_and_the_rest_keep_their_order() {
        let h = pairs(&[
            ("host", "hooks.example.com"),
            ("x-github-event", "push"),
            ("connection", "keep-alive, x-trace"),
            ("x-trace", "1"),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("x-hub-signature-256", "sha256=ab"),
            ("x-hookd-message-id", "forged"),
            ("authorization", MASK),
            ("content-type", "application/json"),
        ]);
        assert_eq!(
            forward_headers(&h, true),
            vec![
                ("x-github-event", "push"),
                ("x-hub-signature-256", "sha256=ab"),
                ("content-type", "application/json"),
            ]
        );
        // An admin's capture is unmasked: a header that happens to read like the mask stays.
        assert!(forward_headers(&h, false).contains(&("authorization", MASK)));
    }

    #[test]
    fn queries_join_without_hookds_routing_parameter() {
        let uuid = "uuid=9b2c0f3e-0000-4000-8000-000000000000";
        assert_eq!(
            join_query(Some("app=1"), &format!("{uuid}&x=%20y&z"), false).as_deref(),
            Some("app=1&x=%20y&z")
        );
        assert_eq!(join_query(None, uuid, false), None);
        assert_eq!(
            join_query(None, &format!("a=1&{uuid}&b=2"), false).as_deref(),
            Some("a=1&b=2")
        );
        let masked = format!("{uuid}&token=%E2%80%A2%E2%80%A2%E2%80%A2%E2%80%A2&k=v");
        assert_eq!(join_query(None, &masked, true).as_deref(), Some("k=v"));
    }
}
