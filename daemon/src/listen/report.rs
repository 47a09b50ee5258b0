//! What the listener prints: one line per attempt on stdout (text for a person, or `--json`, one
//! object per line for scripts), and how the connection is doing on stderr.

use std::io::Write;
use std::time::Duration;

use hookd_shared::MessageSummary;
use serde_json::json;

/// How an attempt went, for the report.
pub enum Outcome<'a> {
    Status(u16),
    Error(&'a str),
}

/// Prints the listener's lines.
#[derive(Clone, Copy)]
pub struct Reporter {
    pub json: bool,
}

impl Reporter {
    /// A line about the listener itself (connection, resume point), on stderr.
    pub fn note(&self, text: &str) {
        eprintln!("{}  {text}", clock(crate::clock::now_ms()));
    }

    /// One attempt at forwarding `m`; `retry_in` when another will follow.
    pub fn attempt(
        &self,
        m: &MessageSummary,
        attempt: u32,
        outcome: Outcome<'_>,
        took: Duration,
        retry_in: Option<Duration>,
    ) {
        let ms = took.as_millis() as u64;
        let line = if self.json {
            let mut v = json!({
                "messageId": m.id,
                "eventKey": m.event_key,
                "method": m.method,
                "durationMs": ms,
                "attempt": attempt,
            });
            match outcome {
                Outcome::Status(s) => v["status"] = s.into(),
                Outcome::Error(e) => v["error"] = e.into(),
            }
            if let Some(r) = retry_in {
                v["retryInMs"] = (r.as_millis() as u64).into();
            }
            v.to_string()
        } else {
            let result = match outcome {
                Outcome::Status(s) => format!("{s}"),
                Outcome::Error(e) => format!("error: {e}"),
            };
            let retry = retry_in
                .map(|r| format!("  (retrying in {})", secs(r)))
                .unwrap_or_default();
            format!(
                "{}  {:<24} {:<6} → {result}  {ms} ms   {}{retry}",
                clock(crate::clock::now_ms()),
                m.event_key,
                m.method,
                m.id
            )
        };
        out(&line);
    }

    /// A message that is gone from the server before it could be relayed.
    pub fn gone(&self, m: &MessageSummary, why: &str) {
        if self.json {
            out(&json!({
                "messageId": m.id,
                "eventKey": m.event_key,
                "method": m.method,
                "error": why,
                "attempt": 0,
                "durationMs": 0,
            })
            .to_string());
        } else {
            out(&format!(
                "{}  {:<24} {:<6} ✗ {why}   {}",
                clock(crate::clock::now_ms()),
                m.event_key,
                m.method,
                m.id
            ));
        }
    }
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    // A closed stdout (a pipe whose reader left) must not stop the forwarding.
    let _ = writeln!(o, "{line}").and_then(|()| o.flush());
}

/// `1 s`, `1.5 s`.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// `HH:MM:SS.mmm` in local time.
fn clock(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which lives for the call.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    let (h, m, s) = if ok {
        (tm.tm_hour as i64, tm.tm_min as i64, tm.tm_sec as i64)
    } else {
        let d = secs.rem_euclid(86_400);
        (d / 3600, d / 60 % 60, d % 60)
    };
    format!("{h:02}:{m:02}:{s:02}.{:03}", ms.rem_euclid(1000))
}
