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
