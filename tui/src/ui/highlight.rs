//! Colouring of JSON and YAML, and hex dumps of binary bodies.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

/// Most lines a body shows; the rest is one `message.body` away.
pub const MAX_LINES: usize = 5000;

const KEY: Style = Style::new().fg(Color::Cyan);
const STRING: Style = Style::new().fg(Color::Green);
const NUMBER: Style = Style::new().fg(Color::Magenta);
const LITERAL: Style = Style::new().fg(Color::Yellow);
const DIM: Style = Style::new().fg(Color::DarkGray);
const EXPR: Style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);

/// Pretty-printed, coloured JSON when `text` is JSON; `None` otherwise.
pub fn json(text: &str) -> Option<Vec<Line<'static>>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let pretty = serde_json::to_string_pretty(&v).ok()?;
    Some(pretty.lines().take(MAX_LINES).map(json_line).collect())
}

/// One line of pretty JSON, coloured token by token.
fn json_line(line: &str) -> Line<'static> {
    let mut spans = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut plain = String::new();
    let flush = |plain: &mut String, spans: &mut Vec<Span<'static>>| {
        if !plain.is_empty() {
            spans.push(Span::raw(std::mem::take(plain)));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            flush(&mut plain, &mut spans);
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
            let s: String = chars[start..i].iter().collect();
            // A string followed by ':' is a key.
            let is_key = chars[i..].iter().find(|c| !c.is_whitespace()) == Some(&':');
            spans.push(Span::styled(s, if is_key { KEY } else { STRING }));
        } else if c == '-' || c.is_ascii_digit() {
            flush(&mut plain, &mut spans);
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '-' | '+'))
            {
                i += 1;
            }
            spans.push(Span::styled(
                chars[start..i].iter().collect::<String>(),
                NUMBER,
            ));
        } else if c.is_ascii_alphabetic() {
            flush(&mut plain, &mut spans);
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            spans.push(Span::styled(
                chars[start..i].iter().collect::<String>(),
                LITERAL,
            ));
        } else {
            plain.push(c);
            i += 1;
        }
    }
    flush(&mut plain, &mut spans);
    Line::from(spans)
}

/// Coloured YAML: comments dim, keys cyan, `${…}` expressions bold magenta.
pub fn yaml(text: &str) -> Vec<Line<'static>> {
    text.lines().take(MAX_LINES).map(yaml_line).collect()
}

fn yaml_line(line: &str) -> Line<'static> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') {
        return Line::from(Span::styled(line.to_string(), DIM));
    }
    let mut spans = Vec::new();
    let mut rest = line;
    // `  - key: value` or `key: value`: colour the key.
    let indent_len = line.len() - trimmed.len();
    let (indent, body) = line.split_at(indent_len);
    let (dash, body) = match body.strip_prefix("- ") {
        Some(b) => ("- ", b),
        None => ("", body),
    };
    if let Some((key, value)) = body.split_once(':')
        && !key.contains(' ')
        && !key.contains("${")
        && !key.starts_with('"')
    {
        spans.push(Span::raw(format!("{indent}{dash}")));
        spans.push(Span::styled(key.to_string(), KEY));
        spans.push(Span::raw(":"));
        rest = value;
    }
    // Expressions inside the rest.
    let mut s = rest;
    while let Some(start) = s.find("${").or_else(|| s.find("#{")) {
        let end = s[start..].find('}').map_or(s.len(), |e| start + e + 1);
        if start > 0 {
            spans.push(Span::raw(s[..start].to_string()));
        }
        spans.push(Span::styled(s[start..end].to_string(), EXPR));
        s = &s[end..];
    }
    if !s.is_empty() {
        spans.push(Span::raw(s.to_string()));
    }
    Line::from(spans)
}

/// `000000 00 01 02 … |..ab|`, 16 bytes a line.
pub fn hex(bytes: &[u8]) -> Vec<Line<'static>> {
    bytes
        .chunks(16)
        .take(MAX_LINES)
        .enumerate()
        .map(|(i, chunk)| {
            let mut hex = String::with_capacity(48);
            for b in chunk {
                hex.push_str(&format!("{b:02x} "));
            }
            let ascii: String = chunk
                .iter()
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            // 73 columns: fits a half-screen pane at 160 columns.
            Line::from(vec![
                Span::styled(format!("{:06x} ", i * 16), DIM),
                Span::raw(format!("{hex:<48}")),
                Span::styled(format!("|{ascii}|"), STRING),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(l: &Line<'_>) -> String {
        l.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn json_is_pretty_and_coloured() {
        let lines = json(r#"{"a":{"b":[1,true,null,"x:y"]}}"#).expect("json");
        assert_eq!(text(&lines[1]), r#"  "a": {"#);
        assert_eq!(lines[1].spans[1].style, KEY);
        assert!(lines.iter().any(|l| {
            l.spans
                .iter()
                .any(|s| s.content == "\"x:y\"" && s.style == STRING)
        }));
        assert!(json("not json").is_none());
    }

    #[test]
    fn hex_dumps_show_offsets_and_ascii() {
        let lines = hex(b"Hello, world!\x00\x01\x02hi");
        assert_eq!(lines.len(), 2);
        assert!(text(&lines[0]).starts_with("000000 48 65 6c 6c 6f 2c 20 77 6f"));
        assert!(text(&lines[0]).ends_with("|Hello, world!...|"));
    }

    #[test]
    fn yaml_keys_and_expressions() {
        let l = yaml_line("      message: \"New lead: ${body.x}\"");
        assert_eq!(l.spans[1].content, "message");
        assert!(
            l.spans
                .iter()
                .any(|s| s.content == "${body.x}" && s.style == EXPR)
        );
        assert_eq!(yaml_line("# c").spans[0].style, DIM);
    }
}
