//! Every screen at 80x24 and 160x48, drawn from fixed data on ratatui's TestBackend, with keys
//! fed through `App::update` as a user would. Review changes with `cargo insta review`.

use crossterm::event::{KeyCode, KeyEvent};
use hookd_tui::app::{Action, App, Conn, Loaded, Tab};
use hookd_tui::{fixtures, ui};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn draw(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| ui::render(app, f)).expect("draw");
    format!("{}", t.backend())
}

fn key(app: &mut App, c: KeyCode) {
    app.update(Action::Key(KeyEvent::from(c)));
}

fn connected() -> App {
    let mut a = App::new("http://127.0.0.1:8080");
    a.update(Action::Connected);
    a
}

fn loaded() -> App {
    let mut a = connected();
    a.update(Action::Loaded(Loaded::Webhooks(fixtures::webhooks())));
    a.update(Action::Loaded(Loaded::Messages {
        items: fixtures::messages(30),
        append: false,
    }));
    a.update(Action::Loaded(Loaded::Message(Box::new(fixtures::detail(
        "m-0",
    )))));
    a.update(Action::Loaded(Loaded::Executions {
        items: fixtures::executions(),
        append: false,
    }));
    a.update(Action::Loaded(Loaded::Execution(Box::new(
        fixtures::execution_detail(),
    ))));
    a.update(Action::Loaded(Loaded::Deliveries {
        items: fixtures::deliveries(),
        append: false,
    }));
    a.update(Action::Loaded(Loaded::Delivery(Box::new(
        fixtures::delivery_detail(),
    ))));
    a.update(Action::Loaded(Loaded::Pipelines(fixtures::pipelines())));
    a
}

fn snap_all(name: &str, app: &App) {
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), draw(app, w, h));
    }
}

#[test]
fn every_screen_empty() {
    let mut a = connected();
    for tab in Tab::ALL {
        a.tab = tab;
        snap_all(&format!("empty_{}", tab.title().to_lowercase()), &a);
    }
}

#[test]
fn disconnected() {
    let mut a = loaded();
    a.update(Action::Disconnected {
        error: "Connection refused (os error 111)".into(),
        retry_in: 4,
    });
    snap_all("disconnected", &a);
}

#[test]
fn every_screen_with_data() {
    let mut a = loaded();
    key(&mut a, KeyCode::Char('1'));
    snap_all("webhooks", &a);
    key(&mut a, KeyCode::Char('2'));
    snap_all("messages", &a);
    key(&mut a, KeyCode::Char('3'));
    // The failed run, with its step log.
    key(&mut a, KeyCode::Down);
    snap_all("executions", &a);
    key(&mut a, KeyCode::Char('4'));
    snap_all("deliveries", &a);
    key(&mut a, KeyCode::Char('5'));
    snap_all("pipelines", &a);
}

#[test]
fn binary_bodies_show_as_hex_and_new_arrivals_are_counted() {
    let mut a = loaded();
    a.update(Action::Loaded(Loaded::Message(Box::new(
        fixtures::binary_detail("m-0"),
    ))));
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Up);
    snap_all("message_binary", &a);
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    for i in 0..3 {
        let m = fixtures::message(&format!("m-new-{i}"), "webhook.github.push");
        a.update(Action::Event(Box::new(hookd_shared::Event {
            seq: 100 + i,
            kind: hookd_shared::EventType::MessageReceived,
            at: "2026-11-29T12:00:00.000Z".into(),
            data: serde_json::to_value(m).expect("json"),
        })));
    }
    snap_all("messages_scrolled_with_new", &a);
}

#[test]
fn popups() {
    let mut a = loaded();
    key(&mut a, KeyCode::Char('?'));
    snap_all("help_messages", &a);
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('f'));
    snap_all("forward_prompt", &a);
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('1'));
    key(&mut a, KeyCode::Char('n'));
    for c in "webhook.shop.order".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    snap_all("webhook_form", &a);
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('d'));
    snap_all("confirm_delete", &a);
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('/'));
    for c in "stripe".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    snap_all("filter_typing", &a);
    key(&mut a, KeyCode::Enter);
    snap_all("filtered", &a);
}

#[test]
fn a_frame_at_1000_events_a_second_stays_bounded() {
    // The window caps memory: thousands of events keep at most `WINDOW` messages.
    let mut a = loaded();
    for i in 0..5_000u64 {
        let m = fixtures::message(&format!("burst-{i}"), "webhook.github.push");
        a.update(Action::Event(Box::new(hookd_shared::Event {
            seq: 1000 + i,
            kind: hookd_shared::EventType::MessageReceived,
            at: "2026-11-29T12:00:00.000Z".into(),
            data: serde_json::to_value(m).expect("json"),
        })));
    }
    assert_eq!(a.messages.items.len(), hookd_tui::app::WINDOW);
    assert!(a.messages.more);
    assert_eq!(a.conn, Conn::Connected);
    draw(&a, 160, 48);
}

/// Issue 28: keys that share a long prefix stay tellable apart where the list is narrow (80x24,
/// and 120x40, where the detail pane takes half the width): columns are as wide as their
/// content allows, and a key that must be shortened keeps its last segment.
#[test]
fn long_event_keys_keep_their_last_segment() {
    let mut a = connected();
    let keys = [
        "webhook.github.pull_request_review_comment",
        "webhook.github.pull_request",
        "webhook.github.push",
        "tui.live.arrival",
    ];
    let mut hooks = fixtures::webhooks();
    hooks[0].event_key = keys[0].into();
    hooks[1].event_key = keys[1].into();
    a.update(Action::Loaded(Loaded::Webhooks(hooks)));
    let items = keys
        .iter()
        .enumerate()
        .map(|(i, k)| fixtures::message(&format!("m-{i}"), k))
        .collect();
    a.update(Action::Loaded(Loaded::Messages {
        items,
        append: false,
    }));
    let mut pipelines = fixtures::pipelines();
    pipelines[0].name = "global/app/github/pipeline/on-pull-request-review".into();
    pipelines[0].event_key = Some(keys[0].into());
    a.update(Action::Loaded(Loaded::Pipelines(pipelines)));
    for (tab, name) in [
        (Tab::Webhooks, "webhooks"),
        (Tab::Messages, "messages"),
        (Tab::Pipelines, "pipelines"),
    ] {
        a.tab = tab;
        for (w, h) in [(80, 24), (120, 40)] {
            insta::assert_snapshot!(format!("long_keys_{name}_{w}x{h}"), draw(&a, w, h));
        }
    }
}
