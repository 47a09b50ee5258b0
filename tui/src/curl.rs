//! "Copy as curl": a command that reproduces a captured request, byte for byte.

use hookd_shared::{BodyEncoding, Message};

/// Headers curl sets itself, or that describe the old connection.
const SKIP: [&str; 5] = [
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "accept-encoding",
];

/// A shell command that sends the same method, headers and body to `url`.
pub fn command(m: &Message, url: &str) -> String {
    let mut args = vec![format!("curl -X {} {}", m.summary.method, quote(url))];
    for (k, v) in &m.headers {
        if !SKIP.contains(&k.to_ascii_lowercase().as_str()) {
            args.push(format!("-H {}", quote(&format!("{k}: {v}"))));
        }
    }
    let has_body = m.summary.size > 0;
    match (&m.encoding, has_body, m.body_truncated) {
        (_, false, _) => args.join(" \\\n  "),
        (BodyEncoding::Utf8, true, false) => {
            args.push(format!("--data-binary {}", quote(&m.body)));
            args.join(" \\\n  ")
        }
        // Binary bodies pass through base64 so the exact bytes survive the shell.
        (BodyEncoding::Base64, true, false) => {
            args.push("--data-binary @-".into());
            format!(
                "printf %s {} | base64 -d | {}",
                quote(&m.body),
                args.join(" \\\n  ")
            )
        }
        // Too big to inline: fetch the exact body from hookd first.
        (_, true, true) => {
            args.push("--data-binary @body.bin".into());
            format!(
                "hookd command message.body id={} > body.bin && {}",
                m.summary.id,
                args.join(" \\\n  ")
            )
        }
    }
}

/// Single-quoted for POSIX shells.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn text_bodies_are_inlined_and_quotes_escaped() {
        let mut m = fixtures::detail("m-1");
        m.body = "it's {\"a\":1}".into();
        let c = command(&m, "http://h/api?uuid=w-1");
        assert!(c.starts_with("curl -X POST 'http://h/api?uuid=w-1'"), "{c}");
        assert!(c.contains("-H 'x-github-event: push'"));
        assert!(c.contains("--data-binary 'it'\\''s {\"a\":1}'"), "{c}");
        assert!(!c.to_lowercase().contains("host:"));
    }

    #[test]
    fn binary_bodies_go_through_base64() {
        let m = fixtures::binary_detail("m-2");
        let c = command(&m, "http://h/x");
        assert!(c.starts_with("printf %s 'AAEC"), "{c}");
        assert!(c.contains("| base64 -d | curl -X POST") && c.contains("--data-binary @-"));
    }
}
