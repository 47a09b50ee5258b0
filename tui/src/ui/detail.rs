//! The detail pane of each screen.

use base64::Engine;
use hookd_shared::{BodyEncoding, Message};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};

use super::highlight;
use super::style::{self, SECTION};
use crate::app::App;

/// The body of a message, ready to draw: JSON pretty and coloured, text as text, binary as hex.
/// Built once when the message loads, not per frame.
pub fn body_lines(m: &Message) -> Vec<Line<'static>> {
    match m.encoding {
        BodyEncoding::Utf8 => {
            let is_json = m
                .summary
                .content_type
                .as_deref()
                .is_some_and(|c| c.contains("json"))
                || matches!(m.body.trim_start().as_bytes().first(), Some(b'{' | b'['));
            is_json
                .then(|| highlight::json(&m.body))
                .flatten()
                .unwrap_or_else(|| {
                    m.body
                        .lines()
                        .take(highlight::MAX_LINES)
                        .map(|l| Line::raw(l.to_string()))
                        .collect()
                })
        }
        BodyEncoding::Base64 => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&m.body)
                .unwrap_or_default();
            highlight::hex(&bytes)
        }
    }
}

fn field(name: &str, value: impl Into<String>) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{name:>12} "), style::LABEL),
        Span::raw(value.into()),
    ])
}

fn section(title: &str) -> Line<'static> {
    Line::from(Span::styled(format!("── {title} "), SECTION))
}

/// The selected webhook.
pub fn webhook(app: &App) -> Vec<Line<'static>> {
    let Some(w) = app.selected_webhook() else {
        return vec![Line::from("No webhook selected.").dim()];
    };
    let mut out = vec![
        field("URL", w.webhook_url.clone()),
        field("uuid", w.uuid.clone()),
        field("eventKey", w.event_key.clone()),
        field("enabled", w.enabled.to_string()),
        field(
            "payloadType",
            format!("{:?}", w.payload_type).to_lowercase(),
        ),
        field("max body", style::size(w.max_payload_length)),
        field("messages", w.message_count.to_string()),
        field(
            "last",
            w.last_received_at
                .as_deref()
                .map(style::time)
                .unwrap_or("never")
                .to_string(),
        ),
        field("created", w.created_at.clone()),
    ];
    if !w.description.is_empty() {
        out.push(field("description", w.description.clone()));
    }
    out.push(field(
        "verify",
        w.verify.as_ref().map_or("none".into(), |v| {
            v["scheme"].as_str().unwrap_or("?").to_string()
        }),
    ));
    out.push(field(
        "dedupe",
        format!(
            "{} ({} s)",
            w.dedupe.as_deref().unwrap_or("default headers"),
            w.dedupe_window
        ),
    ));
    if let Some(r) = &w.rate_limit {
        out.push(field(
            "rate limit",
            format!("{}/s, burst {}", r["perSecond"], r["burst"]),
        ));
    }
    if !w.allow_cidrs.is_empty() {
        out.push(field("allowed", w.allow_cidrs.join(", ")));
    }
    out.push(Line::raw(""));
    out.push(Line::from("Enter messages · y copy URL · t test · e edit · d delete").dim());
    out
}

/// The selected message's capture (the body lines come from the cache).
pub fn message(app: &App, body: &[Line<'static>]) -> Vec<Line<'static>> {
    let selected = app.selected_message();
    let Some(m) = app
        .message
        .as_ref()
        .filter(|m| Some(&m.summary.id) == selected.map(|s| &s.id))
    else {
        return vec![
            Line::from(if selected.is_some() {
                "Loading…"
            } else {
                "No message selected."
            })
            .dim(),
        ];
    };
    let s = &m.summary;
    let mut out = vec![
        field("id", s.id.clone()),
        field("received", s.received_at.clone()),
        field(
            "request",
            format!(
                "{} {}{}{}",
                s.method,
                m.path,
                if m.query_string.is_empty() { "" } else { "?" },
                m.query_string
            ),
        ),
        field("from", m.remote_addr.clone()),
        field("type", s.content_type.clone().unwrap_or_else(|| "-".into())),
        field(
            "size",
            format!(
                "{} · sha256 {}",
                style::size(s.size),
                &m.sha256[..m.sha256.len().min(16)]
            ),
        ),
    ];
    let verification = match (s.status.as_str(), s.reason.as_deref()) {
        ("rejected", Some(r)) => Span::styled(format!("✗ rejected: {r}"), style::BAD),
        _ => Span::styled(s.verification.clone(), style::verification(&s.verification)),
    };
    out.push(Line::from(vec![
        Span::styled(format!("{:>12} ", "verification"), style::LABEL),
        verification,
    ]));
    out.push(section("Headers"));
    for (k, v) in &m.headers {
        out.push(Line::from(vec![
            Span::styled(format!("{k}: "), style::LABEL),
            Span::raw(v.clone()),
        ]));
    }
    if !m.query.is_empty() {
        out.push(section("Query"));
        for (k, v) in &m.query {
            out.push(Line::from(vec![
                Span::styled(format!("{k} = "), style::LABEL),
                Span::raw(v.clone()),
            ]));
        }
    }
    if !m.form.is_empty() {
        out.push(section("Form"));
        for (k, v) in &m.form {
            out.push(Line::from(vec![
                Span::styled(format!("{k} = "), style::LABEL),
                Span::raw(v.clone()),
            ]));
        }
    }
    if !m.files.is_empty() {
        out.push(section("Files  (s save · [ ] select)"));
        for (i, f) in m.files.iter().enumerate() {
            let line = format!(
                "{} {} ({}, {}) field {}",
                if i == app.file_sel { "▶" } else { " " },
                f.filename.as_deref().unwrap_or("(no name)"),
                f.content_type.as_deref().unwrap_or("?"),
                style::size(f.size),
                f.name
            );
            out.push(if i == app.file_sel {
                Line::from(Span::styled(
                    line,
                    Style::new().add_modifier(Modifier::BOLD),
                ))
            } else {
                Line::raw(line)
            });
        }
    }
    out.push(section(if m.body_truncated {
        "Body (first 1 MiB)"
    } else {
        "Body"
    }));
    out.extend(body.iter().cloned());
    out
}

/// The selected execution: its step log and error.
pub fn execution(app: &App) -> Vec<Line<'static>> {
    let selected = app.selected_execution();
    let Some(e) = app
        .execution
        .as_ref()
        .filter(|e| Some(&e.summary.id) == selected.map(|s| &s.id))
    else {
        return vec![
            Line::from(if selected.is_some() {
                "Loading…"
            } else {
                "No run selected."
            })
            .dim(),
        ];
    };
    let s = &e.summary;
    let mut out = vec![
        field("pipeline", s.pipeline.clone()),
        Line::from(vec![
            Span::styled(format!("{:>12} ", "status"), style::LABEL),
            Span::styled(s.status.clone(), style::status(&s.status)),
        ]),
        field(
            "trigger",
            match (&s.replay_of, &s.message_id) {
                (Some(r), _) => format!("replay of {r}"),
                (None, Some(m)) => format!("{} · message {m}", s.trigger),
                _ => s.trigger.clone(),
            },
        ),
        field("event", s.event_key.clone().unwrap_or_else(|| "-".into())),
        field("run as", s.run_as.clone().unwrap_or_else(|| "-".into())),
        field(
            "duration",
            s.duration_ms.map_or("-".into(), |d| format!("{d} ms")),
        ),
        field("trace", format!("{} (depth {})", e.trace_id, e.depth)),
    ];
    if let Some(err) = &s.error {
        out.push(Line::from(vec![
            Span::styled(format!("{:>12} ", "error"), style::LABEL),
            Span::styled(err.clone(), style::BAD),
        ]));
    }
    out.push(section("Steps"));
    for st in &e.steps {
        let mark = match st.status.as_str() {
            "ok" => Span::styled("✓", style::GOOD),
            "skipped" => Span::styled("-", style::DIM),
            "continued" => Span::styled("!", style::WARN),
            _ => Span::styled("✗", style::BAD),
        };
        out.push(Line::from(vec![
            mark,
            Span::raw(format!(
                " {} {} (line {}) {} ms",
                st.index, st.command, st.line, st.duration_ms
            )),
        ]));
        for l in &st.log {
            out.push(Line::from(Span::styled(format!("    {l}"), style::DIM)));
        }
        if let Some(err) = &st.error {
            out.push(Line::from(Span::styled(format!("    {err}"), style::BAD)));
        }
    }
    if let Some(b) = &e.body {
        out.push(section(if e.body_truncated {
            "Final body (first 64 KiB)"
        } else {
            "Final body"
        }));
        let text = serde_json::to_string(b).unwrap_or_default();
        out.extend(highlight::json(&text).unwrap_or_else(|| vec![Line::raw(text)]));
    }
    if let Some(why) = &e.hidden {
        out.push(section("Final body"));
        out.push(Line::from(Span::styled(
            format!("hidden: {why}"),
            style::DIM,
        )));
    }
    out.push(Line::raw(""));
    out.push(Line::from("Enter its message · r replay its message").dim());
    out
}

/// The selected delivery and its attempts.
pub fn delivery(app: &App) -> Vec<Line<'static>> {
    let selected = app.selected_delivery();
    let Some(d) = app
        .delivery
        .as_ref()
        .filter(|d| Some(&d.summary.id) == selected.map(|s| &s.id))
    else {
        return vec![
            Line::from(if selected.is_some() {
                "Loading…"
            } else {
                "No delivery selected."
            })
            .dim(),
        ];
    };
    let s = &d.summary;
    let mut out = vec![
        field("URL", format!("{} {}", s.method, s.url)),
        Line::from(vec![
            Span::styled(format!("{:>12} ", "status"), style::LABEL),
            Span::styled(s.status.clone(), style::status(&s.status)),
        ]),
        field("attempts", format!("{} of {}", s.attempts, s.max_attempts)),
        field(
            "next retry",
            s.next_attempt_at
                .as_deref()
                .map(style::time)
                .unwrap_or("-")
                .to_string(),
        ),
        field("webhook-id", s.webhook_id.clone()),
        field("source", s.source.clone()),
    ];
    out.push(section("Attempts"));
    for a in &d.attempts_log {
        let result = match (a.status, &a.error) {
            (Some(code), _) => Span::styled(code.to_string(), style::http(code)),
            (None, Some(e)) => Span::styled(e.clone(), style::BAD),
            _ => Span::raw("?"),
        };
        out.push(Line::from(vec![
            Span::raw(format!("#{} {} ", a.n, style::time(&a.at))),
            result,
            Span::raw(format!(" {} ms", a.duration_ms)),
        ]));
        if let Some(first) = a.response_body.lines().next().filter(|l| !l.is_empty()) {
            out.push(Line::from(Span::styled(
                format!("    {}", first.chars().take(120).collect::<String>()),
                style::DIM,
            )));
        }
    }
    out.push(Line::raw(""));
    out.push(Line::from("R retry now · x cancel").dim());
    out
}

/// The selected pipeline's YAML.
pub fn pipeline(app: &App) -> Vec<Line<'static>> {
    let Some(p) = app.selected_pipeline() else {
        return vec![Line::from("No pipeline selected.").dim()];
    };
    let mut out = vec![
        field("name", p.name.clone()),
        field(
            "listens to",
            p.event_key
                .clone()
                .unwrap_or_else(|| "- (not a listener)".into()),
        ),
        field(
            "stored by",
            format!("{} ({})", p.stored_by, p.stored_by_role.as_str()),
        ),
        field(
            "last run",
            p.last_run_at
                .as_deref()
                .map(style::time)
                .unwrap_or("never")
                .to_string(),
        ),
        section("Source"),
    ];
    out.extend(highlight::yaml(&p.source));
    out.push(Line::raw(""));
    out.push(Line::from("Enter its runs").dim());
    out
}
