//! Colours and small formatting helpers shared by every screen.

use ratatui::style::{Color, Modifier, Style};

pub const LABEL: Style = Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD);
pub const SECTION: Style = Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD);
pub const GOOD: Style = Style::new().fg(Color::Green);
pub const BAD: Style = Style::new().fg(Color::Red);
pub const WARN: Style = Style::new().fg(Color::Yellow);
pub const DIM: Style = Style::new().fg(Color::DarkGray);
pub const SELECTED: Style = Style::new()
    .bg(Color::DarkGray)
    .add_modifier(Modifier::BOLD);
pub const HEADER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

/// Run and delivery states.
pub fn status(s: &str) -> Style {
    match s {
        "succeeded" | "accepted" => GOOD,
        "failed" | "rejected" => BAD,
        "running" | "pending" => WARN,
        "queued" => Style::new().fg(Color::Blue),
        _ => DIM,
    }
}

/// Verification outcomes.
pub fn verification(v: &str) -> Style {
    match v {
        "passed" => GOOD,
        "failed" => BAD,
        _ => DIM,
    }
}

/// HTTP status codes.
pub fn http(code: u16) -> Style {
    match code {
        200..=299 => GOOD,
        400..=499 => WARN,
        _ => BAD,
    }
}

/// `2026-11-29T11:59:58.120Z` → `11:59:58` (UTC).
pub fn time(rfc3339: &str) -> &str {
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

/// `…T11:59:58.120Z` → `11:59:58.120`.
pub fn time_ms(rfc3339: &str) -> &str {
    rfc3339.get(11..23).unwrap_or(rfc3339)
}

/// 1536 → `1.5 KiB`.
pub fn size(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// The first 8 characters of an id.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `text` in at most `width` columns. A name that does not fit keeps its start and its last
/// segment (after the last `.` or `/`), elided in the middle: `webhook.…pull_request`, because
/// keys that share a prefix differ at the end.
pub fn elide(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len <= width {
        return text.to_string();
    }
    if width <= 1 {
        return "…".chars().take(width).collect();
    }
    let last = text.rfind(['.', '/']).map_or(text, |i| &text[i + 1..]);
    let last_len = last.chars().count();
    if last_len + 1 >= width {
        // Even the last segment does not fit: its end.
        let tail: String = last.chars().skip(last_len + 1 - width).collect();
        return format!("…{tail}");
    }
    let head: String = text.chars().take(width - 1 - last_len).collect();
    format!("{head}…{last}")
}

/// Columns for a name column holding `names`: as wide as the longest, at most `room`.
pub fn fit<'a>(names: impl Iterator<Item = &'a str>, room: usize) -> usize {
    names
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .min(room)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_their_last_segment() {
        assert_eq!(elide("webhook.github.push", 30), "webhook.github.push");
        assert_eq!(
            elide("webhook.github.pull_request", 21),
            "webhook.…pull_request"
        );
        assert_eq!(elide("webhook.github.push", 12), "webhook…push");
        assert_eq!(elide("tui.live.arrival", 14), "tui.li…arrival");
        assert_eq!(elide("global/app/slack/reply", 12), "global…reply");
        assert_eq!(elide("a.very_long_last_segment", 8), "…segment");
        for w in 0..30 {
            assert!(elide("webhook.github.pull_request", w).chars().count() <= w);
        }
    }
}
