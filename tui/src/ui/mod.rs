//! Drawing, from state only: tabs, the current screen's list and detail, the status bar, popups.

pub mod detail;
pub mod highlight;
pub mod style;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Tabs, Wrap,
};

use crate::app::{App, Conn, Mode, Tab, WebhookForm};
use style::{DIM, HEADER, SELECTED};

/// Draws the whole screen.
pub fn render(app: &App, f: &mut Frame<'_>) {
    let area = f.area();
    let [tabs, main, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    render_tabs(app, f, tabs);
    render_main(app, f, main);
    render_status(app, f, status);
    render_popup(app, f, area);
}

fn render_tabs(app: &App, f: &mut Frame<'_>, area: Rect) {
    let titles: Vec<Line<'_>> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| Line::from(format!("{} {}", i + 1, t.title())))
        .collect();
    let tabs = Tabs::new(titles)
        .select(app.tab.index())
        .style(DIM)
        .highlight_style(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
        .divider(" ");
    f.render_widget(tabs, area);
}

fn render_main(app: &App, f: &mut Frame<'_>, area: Rect) {
    let wide = area.width >= 120;
    let [list_area, detail_area] = if wide {
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area)
    } else {
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area)
    };
    render_list(app, f, list_area);
    let lines = match app.tab {
        Tab::Webhooks => detail::webhook(app),
        Tab::Messages => detail::message(app, &app.body_lines),
        Tab::Executions => detail::execution(app),
        Tab::Deliveries => detail::delivery(app),
        Tab::Pipelines => detail::pipeline(app),
    };
    let block = Block::new()
        .borders(if wide { Borders::LEFT } else { Borders::TOP })
        .border_style(DIM)
        .padding(ratatui::widgets::Padding::left(1));
    let inner = block.inner(detail_area);
    f.render_widget(block, detail_area);
    // Only the visible slice is handed to the widget: bodies can be thousands of lines.
    let start = (app.detail_scroll as usize).min(lines.len().saturating_sub(1));
    let visible: Vec<Line<'static>> = lines
        .into_iter()
        .skip(start)
        .take(inner.height as usize * 2)
        .collect();
    f.render_widget(Paragraph::new(visible).wrap(Wrap { trim: false }), inner);
}

/// The first row to draw so that `selected` is visible in `height` rows.
fn offset(selected: usize, height: usize) -> usize {
    selected.saturating_sub(height.saturating_sub(1))
}

fn render_list(app: &App, f: &mut Frame<'_>, area: Rect) {
    let title = list_title(app);
    let block = Block::new().title(title).title_style(HEADER);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows_height = inner.height.saturating_sub(1) as usize;
    let (header, widths, rows, selected, empty): (
        Vec<&str>,
        Vec<Constraint>,
        Vec<Row<'_>>,
        usize,
        &str,
    ) = match app.tab {
        Tab::Webhooks => {
            let items = app.visible_webhooks();
            let sel = app.webhooks.selected;
            let off = offset(sel, rows_height);
            // The URL column only when there is room; the detail pane always shows it.
            let with_url = inner.width >= 100;
            // uuid, msgs, last and the spaces between the columns.
            let fixed = 8 + 6 + 8 + 3 + usize::from(with_url);
            let room = (inner.width as usize).saturating_sub(fixed);
            let key_w = style::fit(
                items.iter().map(|w| w.event_key.as_str()),
                if with_url { room / 3 } else { room },
            );
            let rows = items
                .iter()
                .skip(off)
                .take(rows_height)
                .map(|w| {
                    let mut cells = vec![
                        Cell::from(style::elide(&w.event_key, key_w)),
                        Cell::from(style::short(&w.uuid).to_string()).style(DIM),
                        Cell::from(w.message_count.to_string()),
                        Cell::from(
                            w.last_received_at
                                .as_deref()
                                .map(style::time)
                                .unwrap_or("-")
                                .to_string(),
                        ),
                    ];
                    if with_url {
                        cells.push(Cell::from(w.webhook_url.clone()).style(DIM));
                    }
                    Row::new(cells)
                })
                .collect();
            let mut widths = vec![
                Constraint::Length(key_w as u16),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(8),
            ];
            let mut header = vec!["eventKey", "uuid", "msgs", "last"];
            if with_url {
                widths.push(Constraint::Fill(2));
                header.push("URL");
            }
            (
                header,
                widths,
                rows,
                sel - off.min(sel),
                "No webhooks yet. Press n to create one.",
            )
        }
        Tab::Messages => {
            let items = app.visible_messages();
            let sel = app.messages.selected;
            let off = offset(sel, rows_height);
            // time, method, type, size, files, ✓ and the spaces between the columns; where that
            // leaves the key too little room, type and files go (the detail pane has them).
            let full = (inner.width as usize).saturating_sub(12 + 6 + 14 + 9 + 5 + 1 + 6);
            let longest = style::fit(items.iter().map(|m| m.event_key.as_str()), usize::MAX);
            let compact = full < longest.min(MIN_KEY);
            let room = if compact { full + 14 + 5 + 2 } else { full };
            let key_w = longest.min(room).max(1);
            let rows = items
                .iter()
                .skip(off)
                .take(rows_height)
                .map(|m| {
                    let verification = match (m.status.as_str(), m.verification.as_str()) {
                        ("rejected", _) => Span::styled("✗", style::BAD),
                        (_, "passed") => Span::styled("✓", style::GOOD),
                        _ => Span::styled("-", DIM),
                    };
                    let mut cells = vec![
                        Cell::from(style::time_ms(&m.received_at).to_string()),
                        Cell::from(style::elide(&m.event_key, room.max(key_w))),
                        Cell::from(m.method.clone()),
                    ];
                    if !compact {
                        cells.push(
                            Cell::from(
                                m.content_type
                                    .as_deref()
                                    .map(short_type)
                                    .unwrap_or("-")
                                    .to_string(),
                            )
                            .style(DIM),
                        );
                    }
                    cells.push(Cell::from(style::size(m.size)));
                    if !compact {
                        cells.push(Cell::from(if m.file_count > 0 {
                            m.file_count.to_string()
                        } else {
                            String::new()
                        }));
                    }
                    cells.push(Cell::from(verification));
                    Row::new(cells)
                })
                .collect();
            let (header, widths) = if compact {
                (
                    vec!["time", "eventKey", "method", "size", "✓"],
                    vec![
                        Constraint::Length(12),
                        Constraint::Min(key_w as u16),
                        Constraint::Length(6),
                        Constraint::Length(9),
                        Constraint::Length(1),
                    ],
                )
            } else {
                (
                    vec!["time", "eventKey", "method", "type", "size", "files", "✓"],
                    vec![
                        Constraint::Length(12),
                        Constraint::Min(key_w as u16),
                        Constraint::Length(6),
                        Constraint::Length(14),
                        Constraint::Length(9),
                        Constraint::Length(5),
                        Constraint::Length(1),
                    ],
                )
            };
            (
                header,
                widths,
                rows,
                sel - off.min(sel),
                "No messages yet. Send a request to a webhook URL (on Webhooks, y copies it).",
            )
        }
        Tab::Executions => {
            let items = app.visible_executions();
            let sel = app.executions.selected;
            let off = offset(sel, rows_height);
            // status, trigger, duration, at and the spaces between the columns.
            let room = (inner.width as usize).saturating_sub(9 + 7 + 9 + 8 + 4);
            let name_w = style::fit(items.iter().map(|e| e.pipeline.as_str()), room);
            let rows = items
                .iter()
                .skip(off)
                .take(rows_height)
                .map(|e| {
                    Row::new(vec![
                        Cell::from(e.status.clone()).style(style::status(&e.status)),
                        Cell::from(style::elide(&e.pipeline, room.max(name_w))),
                        Cell::from(if e.replay_of.is_some() {
                            "replay".to_string()
                        } else {
                            e.trigger.clone()
                        }),
                        Cell::from(e.duration_ms.map_or("-".into(), |d| format!("{d} ms"))),
                        Cell::from(style::time(&e.created_at).to_string()).style(DIM),
                    ])
                })
                .collect();
            (
                vec!["status", "pipeline", "trigger", "duration", "at"],
                vec![
                    Constraint::Length(9),
                    Constraint::Min(name_w as u16),
                    Constraint::Length(7),
                    Constraint::Length(9),
                    Constraint::Length(8),
                ],
                rows,
                sel - off.min(sel),
                "No pipeline runs yet. Store a listener with pipeline.put.",
            )
        }
        Tab::Deliveries => {
            let items = app.visible_deliveries();
            let sel = app.deliveries.selected;
            let off = offset(sel, rows_height);
            let rows = items
                .iter()
                .skip(off)
                .take(rows_height)
                .map(|d| {
                    Row::new(vec![
                        Cell::from(d.status.clone()).style(style::status(&d.status)),
                        Cell::from(d.url.clone()),
                        Cell::from(format!("{}/{}", d.attempts, d.max_attempts)),
                        Cell::from(d.last_status.map_or("-".into(), |c| c.to_string()))
                            .style(d.last_status.map_or(DIM, style::http)),
                        Cell::from(
                            d.next_attempt_at
                                .as_deref()
                                .map(style::time)
                                .unwrap_or("-")
                                .to_string(),
                        )
                        .style(DIM),
                    ])
                })
                .collect();
            (
                vec!["status", "URL", "tries", "code", "next"],
                vec![
                    Constraint::Length(9),
                    Constraint::Min(16),
                    Constraint::Length(5),
                    Constraint::Length(4),
                    Constraint::Length(8),
                ],
                rows,
                sel - off.min(sel),
                "No outgoing deliveries yet (webhook.send, message.forward).",
            )
        }
        Tab::Pipelines => {
            let items = app.visible_pipelines();
            let sel = app.pipelines.selected;
            let off = offset(sel, rows_height);
            // last run and the spaces between the columns.
            let room = (inner.width as usize).saturating_sub(8 + 2);
            let key_w = style::fit(
                items.iter().map(|p| p.event_key.as_deref().unwrap_or("-")),
                room / 2,
            );
            let name_w = room.saturating_sub(key_w).max(1);
            let rows = items
                .iter()
                .skip(off)
                .take(rows_height)
                .map(|p| {
                    Row::new(vec![
                        Cell::from(style::elide(&p.name, name_w)),
                        Cell::from(style::elide(p.event_key.as_deref().unwrap_or("-"), key_w)),
                        Cell::from(
                            p.last_run_at
                                .as_deref()
                                .map(style::time)
                                .unwrap_or("never")
                                .to_string(),
                        )
                        .style(DIM),
                    ])
                })
                .collect();
            (
                vec!["name", "eventKey", "last run"],
                vec![
                    Constraint::Length(name_w as u16),
                    Constraint::Length(key_w as u16),
                    Constraint::Length(8),
                ],
                rows,
                sel - off.min(sel),
                "No pipelines yet. Store one: hookd command pipeline.put name=… pipeline=@file.yaml",
            )
        }
    };
    if rows.is_empty() {
        f.render_widget(
            Paragraph::new(Line::from(empty).dim()).wrap(Wrap { trim: true }),
            inner,
        );
        return;
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(HEADER))
        .row_highlight_style(SELECTED)
        .column_spacing(1);
    let mut state = TableState::default().with_selected(Some(selected));
    f.render_stateful_widget(table, inner, &mut state);
}

/// Columns an event key should get before the Messages list drops its type and files columns.
const MIN_KEY: usize = 20;

fn list_title(app: &App) -> String {
    let filter = &app.filters[app.tab.index()];
    let mut t = match app.tab {
        Tab::Messages => match &app.webhook_scope {
            Some((_, key)) => format!(" Messages of {key} "),
            None => " Messages ".into(),
        },
        Tab::Executions => match &app.pipeline_scope {
            Some(p) => format!(" Runs of {p} "),
            None => " Executions ".into(),
        },
        t => format!(" {} ", t.title()),
    };
    if !filter.is_empty() {
        t.push_str(&format!("/{filter} "));
    }
    if app.tab == Tab::Messages && app.new_messages > 0 {
        t.push_str(&format!("↑ {} new ", app.new_messages));
    }
    t
}

fn short_type(ct: &str) -> &str {
    let mime = ct.split(';').next().unwrap_or(ct).trim();
    mime.rsplit('/').next().unwrap_or(mime)
}

fn render_status(app: &App, f: &mut Frame<'_>, area: Rect) {
    if let Mode::Filter(input) = &app.mode {
        let text = format!("/{}", input.value());
        f.render_widget(
            Paragraph::new(text.clone()).style(Style::new().fg(Color::Yellow)),
            area,
        );
        f.set_cursor_position((area.x + 1 + input.visual_cursor() as u16, area.y));
        return;
    }
    let spark_width = 20u16.min(area.width / 8);
    let [left, spark, right] = Layout::horizontal([
        Constraint::Min(10),
        Constraint::Length(spark_width),
        Constraint::Length(13),
    ])
    .areas(area);
    let conn = match &app.conn {
        Conn::Connected => Span::styled("● connected", style::GOOD),
        Conn::Connecting => Span::styled("○ connecting", style::WARN),
        Conn::Disconnected { error, retry_in } => Span::styled(
            format!("○ disconnected ({error}), retry in {retry_in} s"),
            style::BAD,
        ),
    };
    let mut spans = vec![conn, Span::styled(format!("  {}  ", app.url), DIM)];
    if let Conn::Disconnected { .. } = app.conn {
        // The whole line for the error; the counts would be stale anyway.
        f.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    match &app.toast {
        Some(t) => spans.push(Span::styled(
            t.text.clone(),
            if t.error { style::BAD } else { style::GOOD },
        )),
        None => {
            let msgs: u64 = app.webhooks.items.iter().map(|w| w.message_count).sum();
            let counts = if area.width >= 120 {
                format!(
                    "{} webhooks · {msgs} msgs · {} runs · {} deliveries",
                    app.webhooks.items.len(),
                    app.executions.items.len(),
                    app.deliveries.items.len()
                )
            } else {
                format!("{} hooks · {msgs} msgs", app.webhooks.items.len())
            };
            spans.push(Span::styled(counts, DIM));
        }
    }
    f.render_widget(Paragraph::new(Line::from(spans)), left);
    let data: Vec<u64> = app
        .rate
        .iter()
        .rev()
        .take(spark_width as usize)
        .rev()
        .copied()
        .collect();
    f.render_widget(
        Sparkline::default()
            .data(&data)
            .style(Style::new().fg(Color::Cyan)),
        spark,
    );
    let now = app.rate.back().copied().unwrap_or(0);
    f.render_widget(
        Paragraph::new(format!("{now:>4}/s ? keys")).style(DIM),
        right,
    );
}

/// A centred rectangle of `w` x `h` inside `r`.
fn centered(r: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(r.width);
    let h = h.min(r.height);
    Rect::new(r.x + (r.width - w) / 2, r.y + (r.height - h) / 2, w, h)
}

fn render_popup(app: &App, f: &mut Frame<'_>, area: Rect) {
    match &app.mode {
        Mode::Normal | Mode::Filter(_) => {}
        Mode::Help => {
            let lines = help(app.tab);
            let r = centered(area, 72, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).block(
                    Block::bordered()
                        .title(format!(" Keys: {} ", app.tab.title()))
                        .title_style(HEADER),
                ),
                r,
            );
        }
        Mode::Form(form) => render_form(f, area, form),
        Mode::ConfirmDelete { event_key, .. } => {
            let r = centered(area, 60, 4);
            f.render_widget(Clear, r);
            let text = vec![
                Line::from(format!("Delete the webhook {event_key}?")),
                Line::from("Its messages stay. y/Enter deletes, any other key cancels.").dim(),
            ];
            f.render_widget(
                Paragraph::new(text)
                    .block(Block::bordered().title(" Delete ").title_style(style::BAD)),
                r,
            );
        }
        Mode::Forward { input, .. } => {
            let r = centered(area, 70, 6);
            f.render_widget(Clear, r);
            let what = if app.edited.is_some() {
                "the edited body"
            } else {
                "this request"
            };
            let text = vec![
                Line::from(format!("Forward {what} to:")),
                Line::from(Span::styled(
                    input.value().to_string(),
                    Style::new().fg(Color::Yellow),
                )),
                Line::from("↑/↓ recent URLs · Enter send · Esc cancel").dim(),
            ];
            f.render_widget(
                Paragraph::new(text)
                    .block(Block::bordered().title(" Forward ").title_style(HEADER)),
                r,
            );
            f.set_cursor_position((r.x + 1 + input.visual_cursor() as u16, r.y + 2));
        }
        Mode::EditedChoice => {
            let r = centered(area, 64, 5);
            f.render_widget(Clear, r);
            let text = vec![
                Line::from("The edited body is ready."),
                Line::from("r send it to the webhook again (a new message, listeners run)"),
                Line::from("f forward it to a URL · Esc drop it").dim(),
            ];
            f.render_widget(
                Paragraph::new(text).block(Block::bordered().title(" Edited ").title_style(HEADER)),
                r,
            );
        }
    }
}

fn render_form(f: &mut Frame<'_>, area: Rect, form: &WebhookForm) {
    let r = centered(area, 70, 11);
    f.render_widget(Clear, r);
    let title = if form.uuid.is_some() {
        " Edit webhook "
    } else {
        " New webhook "
    };
    let mut lines = Vec::new();
    for (i, (label, input)) in WebhookForm::LABELS
        .iter()
        .zip(form.fields.iter())
        .enumerate()
    {
        let focused = i == form.focus;
        let hint = match i {
            1 => "raw | base64 | ignore",
            2 => "bytes, empty: the global limit",
            _ => "",
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{label:>17} "),
                if focused { HEADER } else { style::LABEL },
            ),
            Span::styled(
                input.value().to_string(),
                if focused {
                    Style::new().fg(Color::Yellow)
                } else {
                    Style::new()
                },
            ),
            Span::styled(
                if input.value().is_empty() {
                    format!(" {hint}")
                } else {
                    String::new()
                },
                DIM,
            ),
        ]));
        lines.push(Line::raw(""));
    }
    lines.push(Line::from("Tab next field · Enter save · Esc cancel").dim());
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title).title_style(HEADER)),
        r,
    );
    let input = &form.fields[form.focus];
    f.set_cursor_position((
        r.x + 19 + input.visual_cursor() as u16,
        r.y + 1 + 2 * form.focus as u16,
    ));
}

/// Every key of a screen, for `?`.
pub fn help(tab: Tab) -> Vec<Line<'static>> {
    let mut keys: Vec<(&str, &str)> = match tab {
        Tab::Webhooks => vec![
            ("n", "new webhook"),
            ("e", "edit the selected webhook"),
            ("d", "delete it (asks first)"),
            ("y", "copy its URL (clipboard and OSC 52)"),
            ("t", "send it a test request"),
            ("Enter", "show its messages"),
        ],
        Tab::Messages => vec![
            ("r", "replay to listeners (message.replay)"),
            ("f", "forward to a URL (↑/↓ recent URLs)"),
            ("E", "edit the body in $EDITOR, then replay or forward it"),
            ("c", "copy as a curl command"),
            ("[ ]", "select a file · s save it"),
            ("g", "back to the newest (follow new arrivals)"),
        ],
        Tab::Executions => vec![
            ("Enter", "jump to the triggering message"),
            ("r", "replay its message"),
        ],
        Tab::Deliveries => vec![("R", "retry now"), ("x", "cancel")],
        Tab::Pipelines => vec![("Enter", "show its runs")],
    };
    keys.extend([
        ("↑ ↓ j k", "move · PgUp PgDn Home End"),
        ("J K", "scroll the detail"),
        ("/", "filter (Messages: event key or body text)"),
        ("Esc", "clear the filter"),
        ("1-5 Tab", "switch screens"),
        ("q", "quit"),
    ]);
    keys.into_iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(format!("{k:>9}  "), HEADER),
                Span::raw(d),
            ])
        })
        .collect()
}
