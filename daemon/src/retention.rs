//! Retention: how long, how many and how much of what hookd stores it keeps.
//!
//! The daemon's `[retention]` settings are the limits every webhook's messages get; a webhook's
//! own `retention` overrides them field by field (a field set to `null` there means "no limit",
//! an absent one keeps the daemon's). Executions, deliveries and the event log have daemon-wide
//! limits of their own. Pruning itself lives in the store (`store/retention.rs`).

use std::time::Duration;

use hookd_shared::RetentionView;
use serde_json::{Map, Value};

use hookd_shared::units::parse_size;

/// Limits on one kind of record; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_age: Option<Duration>,
    pub max_count: Option<u64>,
    /// Total body bytes (messages only).
    pub max_bytes: Option<u64>,
}

impl Limits {
    /// Whether anything is limited at all.
    pub fn any(&self) -> bool {
        self.max_age.is_some() || self.max_count.is_some() || self.max_bytes.is_some()
    }

    /// The API view.
    pub fn view(&self) -> RetentionView {
        RetentionView {
            max_age: self.max_age.map(format_age),
            max_count: self.max_count,
            max_bytes: self.max_bytes.map(format_size),
        }
    }
}

/// One field of a webhook's override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Field<T> {
    /// Absent: the daemon's value applies.
    #[default]
    Inherit,
    /// `null`: no limit, whatever the daemon says.
    Unlimited,
    Value(T),
}

impl<T: Copy> Field<T> {
    fn over(self, daemon: Option<T>) -> Option<T> {
        match self {
            Field::Inherit => daemon,
            Field::Unlimited => None,
            Field::Value(v) => Some(v),
        }
    }
}

/// A webhook's `retention`: any subset of the daemon's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Override {
    pub max_age: Field<Duration>,
    pub max_count: Field<u64>,
    pub max_bytes: Field<u64>,
}

impl Override {
    /// The limits in force: these fields over the daemon's.
    pub fn over(&self, daemon: &Limits) -> Limits {
        Limits {
            max_age: self.max_age.over(daemon.max_age),
            max_count: self.max_count.over(daemon.max_count),
            max_bytes: self.max_bytes.over(daemon.max_bytes),
        }
    }

    /// Parses `webhook.put retention=…`: an object with any of `maxAge` ("7d", or seconds),
    /// `maxCount` (at least 1) and `maxBytes` ("1GiB", or bytes), each possibly `null`.
    pub fn parse(v: &Value) -> Result<Override, String> {
        let Value::Object(map) = v else {
            return Err(format!(
                "retention must be an object such as {{\"maxAge\":\"7d\",\"maxCount\":10000,\"maxBytes\":\"1GiB\"}} (or null to remove it), got {v}"
            ));
        };
        if let Some(k) = map
            .keys()
            .find(|k| !["maxAge", "maxCount", "maxBytes"].contains(&k.as_str()))
        {
            return Err(format!(
                "retention: unknown key '{k}'; the keys are maxAge, maxCount and maxBytes"
            ));
        }
        Ok(Override {
            max_age: field(map, "maxAge", |v| {
                parse_age(v).map_err(|e| format!("retention.maxAge: {e}"))
            })?,
            max_count: field(map, "maxCount", |v| {
                parse_count(v).map_err(|e| format!("retention.maxCount: {e}"))
            })?,
            max_bytes: field(map, "maxBytes", |v| {
                parse_bytes(v).map_err(|e| format!("retention.maxBytes: {e}"))
            })?,
        })
    }

    /// As stored: the canonical JSON, with ages in seconds and sizes in bytes.
    pub fn to_json(self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, f: Field<u64>| match f {
            Field::Inherit => {}
            Field::Unlimited => {
                m.insert(k.into(), Value::Null);
            }
            Field::Value(v) => {
                m.insert(k.into(), v.into());
            }
        };
        put("maxAge", map_field(self.max_age, |d| d.as_secs()));
        put("maxCount", self.max_count);
        put("maxBytes", self.max_bytes);
        Value::Object(m)
    }

    /// The API view: what was set, in the units a person reads (absent fields left out).
    pub fn view(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        let shown = |f: Field<Value>| match f {
            Field::Inherit => None,
            Field::Unlimited => Some(Value::Null),
            Field::Value(v) => Some(v),
        };
        put(
            "maxAge",
            shown(map_field(self.max_age, |d| format_age(d).into())),
        );
        put("maxCount", shown(map_field(self.max_count, Value::from)));
        put(
            "maxBytes",
            shown(map_field(self.max_bytes, |b| format_size(b).into())),
        );
        Value::Object(m)
    }
}

fn map_field<T, U>(f: Field<T>, map: impl FnOnce(T) -> U) -> Field<U> {
    match f {
        Field::Inherit => Field::Inherit,
        Field::Unlimited => Field::Unlimited,
        Field::Value(v) => Field::Value(map(v)),
    }
}

fn field<T>(
    map: &Map<String, Value>,
    key: &str,
    parse: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<Field<T>, String> {
    match map.get(key) {
        None => Ok(Field::Inherit),
        Some(Value::Null) => Ok(Field::Unlimited),
        Some(v) => parse(v).map(Field::Value),
    }
}

/// An age: a duration string ("7d", "12h", "30days") or whole seconds.
pub fn parse_age(v: &Value) -> Result<Duration, String> {
    let d = match v {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{n} is not a whole number of seconds"))?,
        Value::String(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("'{s}' is not a duration such as 7d or 12h ({e})"))?,
        other => return Err(format!("{other} is not a duration such as \"7d\"")),
    };
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

/// A count of at least 1 (keeping nothing is not retention; delete the webhook instead).
pub fn parse_count(v: &Value) -> Result<u64, String> {
    match v.as_u64() {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be a whole number of at least 1, got {v}")),
    }
}

/// A size: "1GiB", "500MB" or bytes; at least 1.
pub fn parse_bytes(v: &Value) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not a whole number of bytes"))?,
        Value::String(s) => parse_size(s)?,
        other => return Err(format!("{other} is not a size such as \"1GiB\"")),
    };
    if n == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(n)
}

/// Reads a stored override (see [`Override::to_json`]); unreadable parts are ignored.
pub fn from_stored(text: &str) -> Option<Override> {
    let v: Value = serde_json::from_str(text).ok()?;
    Override::parse(&v).ok()
}

/// "7d", "12h", "90s": the largest unit that divides the age.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// "1GiB", "512KiB", "1000B": the largest binary unit that divides the size.
pub fn format_size(b: u64) -> String {
    for (unit, n) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if b > 0 && b.is_multiple_of(n) {
            return format!("{}{unit}", b / n);
        }
    }
    format!("{b}B")
}

/// The daemon's limits, per kind.
#[derive(Debug, Clone, Default)]
pub struct RetentionConfig {
    /// Every webhook's messages (and their files), unless the webhook overrides them.
    pub messages: Limits,
    pub executions: Limits,
    pub deliveries: Limits,
    /// How often pruning runs in the background.
    pub interval: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_override_applies_field_by_field_and_null_lifts_a_limit() {
        let daemon = Limits {
            max_age: Some(Duration::from_secs(30 * 86_400)),
            max_count: Some(1000),
            max_bytes: None,
        };
        let o = Override::parse(&json!({"maxAge": "7d", "maxCount": null, "maxBytes": "1GiB"}))
            .expect("parse");
        let l = o.over(&daemon);
        assert_eq!(l.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(l.max_count, None);
        assert_eq!(l.max_bytes, Some(1 << 30));
        assert_eq!(
            Override::parse(&json!({})).expect("empty").over(&daemon),
            daemon
        );
        // Stored and read back, it is the same override; shown, in a person's units.
        let stored = o.to_json().to_string();
        assert_eq!(from_stored(&stored), Some(o));
        assert_eq!(
            o.view(),
            json!({"maxAge": "7d", "maxCount": null, "maxBytes": "1GiB"})
        );
        assert_eq!(
            l.view(),
            RetentionView {
                max_age: Some("7d".into()),
                max_count: None,
                max_bytes: Some("1GiB".into())
            }
        );
    }

    #[test]
    fn bad_overrides_say_what_is_wrong() {
        let err = |v: Value| Override::parse(&v).expect_err("refused");
        assert!(err(json!({"maxCount": 0})).contains("maxCount"));
        assert!(err(json!({"maxAge": "soon"})).contains("'soon' is not a duration"));
        assert!(err(json!({"maxBytes": "1 parsec"})).contains("maxBytes"));
        assert!(err(json!({"maxAges": "1d"})).contains("unknown key 'maxAges'"));
        assert!(err(json!("7d")).contains("must be an object"));
        assert_eq!(
            Override::parse(&json!({"maxAge": 90}))
                .expect("seconds")
                .max_age,
            Field::Value(Duration::from_secs(90))
        );
    }
}
