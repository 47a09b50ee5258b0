//! Event keys (`webhook.github.push`) and the listener patterns that match them
//! (`webhook.github.*`, `webhook.#`).

/// The longest event key accepted.
pub const MAX_EVENT_KEY_LEN: usize = 255;

/// Checks an event key: lower-case dot-separated segments of `[a-z0-9_-]`, at most 255 chars.
pub fn validate_event_key(key: &str) -> Result<(), String> {
    validate(key, false)
}

/// Checks a listener pattern: an event key whose segments may also be `*` or `#`.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    validate(pattern, true)
}

fn validate(key: &str, wildcards: bool) -> Result<(), String> {
    const HINT: &str =
        "lower-case dot-separated segments of a-z, 0-9, _ and -, e.g. webhook.github.push";
    if key.is_empty() {
        return Err(format!("must not be empty; use {HINT}"));
    }
    if key.len() > MAX_EVENT_KEY_LEN {
        return Err(format!(
            "is {} characters long; the limit is {MAX_EVENT_KEY_LEN}",
            key.len()
        ));
    }
    for segment in key.split('.') {
        if wildcards && (segment == "*" || segment == "#") {
            continue;
        }
        if segment.is_empty() {
            return Err(format!("has an empty segment ('{key}'); use {HINT}"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
        {
            return Err(format!("contains '{c}'; use {HINT}"));
        }
    }
    Ok(())
}

/// Whether `key` matches `pattern`: `*` stands for exactly one segment, `#` for zero or more.
pub fn matches(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    matches_segments(&p, &k)
}

fn matches_segments(p: &[&str], k: &[&str]) -> bool {
    match p.split_first() {
        None => k.is_empty(),
        Some((&"#", rest)) => (0..=k.len()).any(|skip| matches_segments(rest, &k[skip..])),
        Some((&seg, rest)) => match k.split_first() {
            Some((&first, krest)) => (seg == "*" || seg == first) && matches_segments(rest, krest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_validated() {
        assert!(validate_event_key("webhook.github.push").is_ok());
        assert!(validate_event_key("a_b-c.0").is_ok());
        assert!(validate_event_key("Webhook.x").unwrap_err().contains("'W'"));
        assert!(
            validate_event_key("webhook..x")
                .unwrap_err()
                .contains("empty segment")
        );
        assert!(validate_event_key("").is_err());
        assert!(validate_event_key("webhook.*").is_err());
        assert!(
            validate_event_key(&"a".repeat(256))
                .unwrap_err()
                .contains("255")
        );
        assert!(validate_pattern("webhook.*.push").is_ok());
        assert!(validate_pattern("webhook.#").is_ok());
    }

    #[test]
    fn wildcards_match_as_documented() {
        assert!(matches("webhook.github.push", "webhook.github.push"));
        assert!(!matches("webhook.github.push", "webhook.github.pull"));
        assert!(matches("webhook.github.*", "webhook.github.push"));
        assert!(!matches("webhook.github.*", "webhook.github"));
        assert!(!matches("webhook.github.*", "webhook.github.push.x"));
        assert!(matches("webhook.#", "webhook"));
        assert!(matches("webhook.#", "webhook.a.b.c"));
        assert!(matches("#", "anything.at.all"));
        assert!(matches("webhook.#.push", "webhook.push"));
        assert!(matches("webhook.#.push", "webhook.github.org.push"));
        assert!(!matches("webhook.#.push", "webhook.github.pull"));
        assert!(matches("*.github.*", "webhook.github.push"));
        assert!(!matches("webhook", "webhook.github"));
    }
}
