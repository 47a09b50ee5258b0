//! The `hookd-tui` binary: a terminal, an event loop, and the runtime that carries out the app's
//! effects. Keys, stream events, call results and ticks become actions on one channel; frames
//! are drawn at most ~30 times a second and only when something changed, so a burst of events
//! costs a few redraws, not one each.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt;
use hookd_tui::app::{Action, App, Edited, Effect};
use hookd_tui::client::Client;
use hookd_tui::config::{Args, Settings};
use serde_json::json;
use tokio::sync::mpsc;

const FRAME: Duration = Duration::from_millis(33);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load(&args)?;
    let client = Client::new(&settings.url, settings.token.clone());
    // Restores the terminal on panic too.
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, client, &settings).await;
    ratatui::restore();
    result
}

async fn run(
    terminal: &mut ratatui::DefaultTerminal,
    client: Client,
    settings: &Settings,
) -> anyhow::Result<()> {
    let mut app = App::new(&settings.url);
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    tokio::spawn(client.clone().stream(tx.clone()));
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    loop {
        let action = tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => Some(Action::Key(k)),
                Some(Ok(TermEvent::Resize(..))) => {
                    dirty = true;
                    None
                }
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => return Ok(()),
            },
            Some(a) = rx.recv() => Some(a),
            _ = tick.tick() => Some(Action::Tick),
            _ = frame.tick() => {
                if std::mem::take(&mut dirty) {
                    terminal.draw(|f| hookd_tui::ui::render(&app, f))?;
                }
                None
            }
        };
        let Some(action) = action else { continue };
        dirty = true;
        for effect in app.update(action) {
            carry_out(effect, &client, &tx, terminal).await;
        }
        if app.quit {
            return Ok(());
        }
    }
}

/// Runs one effect; anything slow runs in a task that reports back with an action.
async fn carry_out(
    effect: Effect,
    client: &Client,
    tx: &mpsc::UnboundedSender<Action>,
    terminal: &mut ratatui::DefaultTerminal,
) {
    let (client, tx) = (client.clone(), tx.clone());
    match effect {
        Effect::Call {
            name,
            params,
            on_ok,
        } => {
            tokio::spawn(async move {
                let _ = tx.send(client.call_to_action(name, params, on_ok).await);
            });
        }
        Effect::Post {
            url,
            content_type,
            body,
            done,
        } => {
            tokio::spawn(async move {
                let a = match client.post(&url, &content_type, body).await {
                    Ok(code) if (200..300).contains(&code) => Action::Toast {
                        text: done,
                        error: false,
                    },
                    Ok(code) => Action::Toast {
                        text: format!("{url} answered {code}"),
                        error: true,
                    },
                    Err(e) => Action::Toast {
                        text: e,
                        error: true,
                    },
                };
                let _ = tx.send(a);
            });
        }
        Effect::Copy(text) => copy(&text),
        Effect::SaveFile {
            message_id,
            index,
            path,
        } => {
            tokio::spawn(async move {
                let a = match client
                    .raw("message.file", &json!({"id": message_id, "index": index}))
                    .await
                {
                    Ok((_, bytes)) => {
                        let name = path.to_string_lossy();
                        match hookd_tui::save::save_new(std::path::Path::new(""), &name, &bytes) {
                            Ok(path) => Action::Toast {
                                text: format!("saved {} ({} bytes)", path.display(), bytes.len()),
                                error: false,
                            },
                            Err(e) => Action::Toast {
                                text: format!("cannot write {name}: {e}"),
                                error: true,
                            },
                        }
                    }
                    Err(e) => Action::Toast {
                        text: e,
                        error: true,
                    },
                };
                let _ = tx.send(a);
            });
        }
        Effect::Edit {
            message_id,
            content_type,
        } => {
            // The download must not hold the event loop: a task, like every network effect.
            tokio::spawn(async move {
                let a = match client.raw("message.body", &json!({"id": message_id})).await {
                    Ok((_, body)) => Action::BodyForEdit {
                        message_id,
                        content_type,
                        body,
                    },
                    Err(e) => Action::Toast {
                        text: e,
                        error: true,
                    },
                };
                let _ = tx.send(a);
            });
        }
        Effect::OpenEditor {
            message_id,
            content_type,
            body,
        } => {
            let a = match edit(&message_id, content_type, &body, terminal) {
                Ok(a) => a,
                Err(e) => Action::Toast {
                    text: format!("{e:#}"),
                    error: true,
                },
            };
            let _ = tx.send(a);
        }
    }
}

/// The system clipboard when there is one, and OSC 52, which reaches the local terminal's
/// clipboard even over SSH.
fn copy(text: &str) {
    if let Ok(mut c) = arboard::Clipboard::new() {
        let _ = c.set_text(text.to_string());
    }
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b]52;c;{b64}\x07");
    let _ = out.flush();
}

/// Opens the message body in $EDITOR (the terminal is handed over meanwhile).
fn edit(
    message_id: &str,
    content_type: Option<String>,
    body: &[u8],
    terminal: &mut ratatui::DefaultTerminal,
) -> anyhow::Result<Action> {
    let ext = match content_type.as_deref() {
        Some(c) if c.contains("json") => ".json",
        Some(c) if c.contains("xml") => ".xml",
        Some(c) if c.contains("form-urlencoded") => ".txt",
        _ => ".txt",
    };
    let file = tempfile::Builder::new()
        .prefix("hookd-body-")
        .suffix(ext)
        .tempfile()?;
    std::fs::write(file.path(), body)?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    ratatui::restore();
    let status = std::process::Command::new(&editor)
        .arg(file.path())
        .status();
    *terminal = ratatui::init();
    terminal.clear()?;
    let status = status.with_context(|| format!("cannot start {editor} (set $EDITOR)"))?;
    anyhow::ensure!(
        status.success(),
        "{editor} exited with {status}; nothing sent"
    );
    let edited = std::fs::read(file.path())?;
    Ok(Action::Edited(Edited {
        message_id: message_id.to_string(),
        body: edited,
        content_type,
    }))
}
