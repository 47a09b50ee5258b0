//! The dashboard's state and the one function that changes it. Keys, stream events, load results
//! and ticks all arrive as `Action`s; `update` changes the state and returns `Effect`s (network
//! calls, clipboard, files, the editor) for the runtime to carry out. Nothing here does I/O, so
//! all of it is tested without a terminal.

use std::collections::VecDeque;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use hookd_shared::{
    Delivery, DeliverySummary, Event, EventType, Execution, ExecutionSummary, Message,
    MessageSummary, PipelineInfo, Webhook,
};
use serde_json::{Value, json};
use tui_input::Input;
use tui_input::backend::crossterm::to_input_request;

/// Items a list keeps in memory; older ones are paged in again when scrolled to.
pub const WINDOW: usize = 1000;
/// Items fetched per page.
pub const PAGE: usize = 200;
/// Seconds of message rate the sparkline shows.
pub const RATE_SECONDS: usize = 60;
/// Recent forward URLs remembered.
const RECENT_URLS: usize = 8;

/// The five screens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Webhooks,
    Messages,
    Executions,
    Deliveries,
    Pipelines,
}

impl Tab {
    /// In tab order.
    pub const ALL: [Tab; 5] = [
        Tab::Webhooks,
        Tab::Messages,
        Tab::Executions,
        Tab::Deliveries,
        Tab::Pipelines,
    ];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Webhooks => "Webhooks",
            Tab::Messages => "Messages",
            Tab::Executions => "Executions",
            Tab::Deliveries => "Deliveries",
            Tab::Pipelines => "Pipelines",
        }
    }

    /// Position in `ALL`.
    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// The stream connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Conn {
    Connecting,
    Connected,
    /// Retrying in `retry_in` seconds.
    Disconnected {
        error: String,
        retry_in: u64,
    },
}

/// A list and the cursor in it.
#[derive(Clone, Debug)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Index into the *visible* (filtered) items.
    pub selected: usize,
    /// Older items exist on the server beyond the window.
    pub more: bool,
    pub loading: bool,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            items: Vec::new(),
            selected: 0,
            more: false,
            loading: false,
        }
    }
}

/// What keys do right now.
#[derive(Debug, Default)]
pub enum Mode {
    #[default]
    Normal,
    Help,
    Filter(Input),
    Form(Box<WebhookForm>),
    ConfirmDelete {
        uuid: String,
        event_key: String,
    },
    /// A URL prompt for message.forward (or forwarding an edited body).
    Forward {
        input: Input,
        recent: Option<usize>,
    },
    /// An edited body is ready: replay it (r) or forward it (f).
    EditedChoice,
}

/// The new/edit webhook form.
#[derive(Debug, Default)]
pub struct WebhookForm {
    /// `Some` when editing.
    pub uuid: Option<String>,
    /// eventKey, payloadType, maxPayloadLength, description.
    pub fields: [Input; 4],
    pub focus: usize,
}

impl WebhookForm {
    /// Field labels, in order.
    pub const LABELS: [&'static str; 4] =
        ["eventKey", "payloadType", "maxPayloadLength", "description"];
}

/// A short message in the status bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Toast {
    pub text: String,
    pub error: bool,
    /// Ticks (seconds) left on screen.
    pub ttl: u8,
}

/// A body edited in $EDITOR, waiting to be replayed or forwarded.
#[derive(Clone, Debug, PartialEq)]
pub struct Edited {
    pub message_id: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

/// Everything that can happen.
#[derive(Debug)]
pub enum Action {
    Key(KeyEvent),
    /// Once a second.
    Tick,
    Connected,
    Disconnected {
        error: String,
        retry_in: u64,
    },
    Event(Box<Event>),
    Loaded(Loaded),
    Toast {
        text: String,
        error: bool,
    },
    /// A message's body, downloaded for `E`: now it can go to $EDITOR.
    BodyForEdit {
        message_id: String,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    Edited(Edited),
}

/// Results of loads.
#[derive(Debug)]
pub enum Loaded {
    Webhooks(Vec<Webhook>),
    Messages {
        items: Vec<MessageSummary>,
        append: bool,
    },
    Executions {
        items: Vec<ExecutionSummary>,
        append: bool,
    },
    Deliveries {
        items: Vec<DeliverySummary>,
        append: bool,
    },
    Pipelines(Vec<PipelineInfo>),
    Message(Box<Message>),
    Execution(Box<Execution>),
    Delivery(Box<Delivery>),
}

/// What a call's answer is for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadKind {
    Webhooks,
    Messages { append: bool },
    Executions { append: bool },
    Deliveries { append: bool },
    Pipelines,
    Message,
    Execution,
    Delivery,
}

/// What to do with a call's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum OnOk {
    Load(LoadKind),
    /// Show this text.
    Toast(String),
}

/// Work for the runtime.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Call a command; its answer comes back as an action.
    Call {
        name: &'static str,
        params: Value,
        on_ok: OnOk,
    },
    /// POST raw bytes to a URL (a webhook's own URL).
    Post {
        url: String,
        content_type: String,
        body: Vec<u8>,
        done: String,
    },
    /// Put text on the clipboard (system and OSC 52).
    Copy(String),
    SaveFile {
        message_id: String,
        index: u32,
        path: PathBuf,
    },
    /// Download the message's body for $EDITOR (in a task; `Action::BodyForEdit` follows).
    Edit {
        message_id: String,
        content_type: Option<String>,
    },
    /// Hand the terminal to $EDITOR on `body` (the user is in the editor until it returns).
    OpenEditor {
        message_id: String,
        content_type: Option<String>,
        body: Vec<u8>,
    },
}

/// The dashboard.
#[derive(Debug)]
pub struct App {
    pub url: String,
    pub tab: Tab,
    pub conn: Conn,
    pub webhooks: List<Webhook>,
    pub messages: List<MessageSummary>,
    pub executions: List<ExecutionSummary>,
    pub deliveries: List<DeliverySummary>,
    pub pipelines: List<PipelineInfo>,
    pub message: Option<Message>,
    pub execution: Option<Execution>,
    pub delivery: Option<Delivery>,
    /// The selected file in the message detail.
    pub file_sel: usize,
    pub detail_scroll: u16,
    /// Messages that arrived while the list was scrolled away from the top.
    pub new_messages: usize,
    /// Messages of one webhook only: (uuid, eventKey).
    pub webhook_scope: Option<(String, String)>,
    /// Executions of one pipeline only.
    pub pipeline_scope: Option<String>,
    /// Per tab: the `/` filter.
    pub filters: [String; 5],
    pub mode: Mode,
    pub toast: Option<Toast>,
    /// Messages per second, oldest first.
    pub rate: VecDeque<u64>,
    pub this_second: u64,
    pub recent_urls: Vec<String>,
    pub edited: Option<Edited>,
    /// The detail pane shows an older item than the selection (an event moved it).
    pub detail_stale: bool,
    /// The loaded message's body, drawn once (highlighted JSON, text or hex) when it loads.
    pub body_lines: Vec<ratatui::text::Line<'static>>,
    pub quit: bool,
}

impl App {
    /// A dashboard for the daemon at `url`; `init` gives the first loads.
    pub fn new(url: &str) -> App {
        App {
            url: url.to_string(),
            tab: Tab::Messages,
            conn: Conn::Connecting,
            webhooks: List::default(),
            messages: List::default(),
            executions: List::default(),
            deliveries: List::default(),
            pipelines: List::default(),
            message: None,
            execution: None,
            delivery: None,
            file_sel: 0,
            detail_scroll: 0,
            new_messages: 0,
            webhook_scope: None,
            pipeline_scope: None,
            filters: Default::default(),
            mode: Mode::Normal,
            toast: None,
            rate: VecDeque::from(vec![0; RATE_SECONDS]),
            this_second: 0,
            recent_urls: vec!["http://localhost:3000/hook".into()],
            edited: None,
            detail_stale: false,
            body_lines: Vec::new(),
            quit: false,
        }
    }

    /// The loads that fill every list (at start and after a reconnect).
    pub fn reload_all(&mut self) -> Vec<Effect> {
        vec![
            self.load(LoadKind::Webhooks),
            self.load(LoadKind::Messages { append: false }),
            self.load(LoadKind::Executions { append: false }),
            self.load(LoadKind::Deliveries { append: false }),
            self.load(LoadKind::Pipelines),
        ]
    }

    fn load(&mut self, kind: LoadKind) -> Effect {
        let limit = PAGE;
        let (name, params): (&'static str, Value) = match kind {
            LoadKind::Webhooks => ("webhook.get", json!({})),
            LoadKind::Pipelines => ("pipeline.get", json!({})),
            LoadKind::Messages { append } => {
                self.messages.loading = true;
                let mut p = json!({ "limit": limit });
                if let Some((uuid, _)) = &self.webhook_scope {
                    p["uuid"] = uuid.clone().into();
                }
                let f = &self.filters[Tab::Messages.index()];
                if !f.is_empty() {
                    p["search"] = f.clone().into();
                }
                if append && let Some(last) = self.messages.items.last() {
                    p["before"] = last.id.clone().into();
                }
                ("message.list", p)
            }
            LoadKind::Executions { append } => {
                self.executions.loading = true;
                let mut p = json!({ "limit": limit });
                if let Some(name) = &self.pipeline_scope {
                    p["pipeline"] = name.clone().into();
                }
                if append && let Some(last) = self.executions.items.last() {
                    p["before"] = last.id.clone().into();
                }
                ("execution.list", p)
            }
            LoadKind::Deliveries { append } => {
                self.deliveries.loading = true;
                let mut p = json!({ "limit": limit });
                if append && let Some(last) = self.deliveries.items.last() {
                    p["before"] = last.id.clone().into();
                }
                ("delivery.list", p)
            }
            LoadKind::Message | LoadKind::Execution | LoadKind::Delivery => ("", Value::Null),
        };
        Effect::Call {
            name,
            params,
            on_ok: OnOk::Load(kind),
        }
    }

    fn toast(&mut self, text: impl Into<String>, error: bool) {
        self.toast = Some(Toast {
            text: text.into(),
            error,
            ttl: if error { 8 } else { 4 },
        });
    }

    /// Applies one action.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Key(k) => {
                // Windows reports releases too.
                if k.kind != KeyEventKind::Press {
                    return Vec::new();
                }
                self.key(k)
            }
            Action::Tick => self.tick(),
            Action::Connected => {
                self.conn = Conn::Connected;
                self.reload_all()
            }
            Action::Disconnected { error, retry_in } => {
                self.conn = Conn::Disconnected { error, retry_in };
                Vec::new()
            }
            Action::Event(e) => self.event(*e),
            Action::Loaded(l) => self.loaded(l),
            Action::Toast { text, error } => {
                self.toast(text, error);
                Vec::new()
            }
            Action::BodyForEdit {
                message_id,
                content_type,
                body,
            } => vec![Effect::OpenEditor {
                message_id,
                content_type,
                body,
            }],
            Action::Edited(e) => {
                self.edited = Some(e);
                self.mode = Mode::EditedChoice;
                Vec::new()
            }
        }
    }

    fn tick(&mut self) -> Vec<Effect> {
        self.rate.push_back(std::mem::take(&mut self.this_second));
        while self.rate.len() > RATE_SECONDS {
            self.rate.pop_front();
        }
        if let Some(t) = self.toast.as_mut() {
            t.ttl = t.ttl.saturating_sub(1);
            if t.ttl == 0 {
                self.toast = None;
            }
        }
        if let Conn::Disconnected { retry_in, .. } = &mut self.conn {
            *retry_in = retry_in.saturating_sub(1);
        }
        if std::mem::take(&mut self.detail_stale) {
            return self.load_detail();
        }
        Vec::new()
    }

    // ---- visible lists (after the / filter) ----

    fn matches(filter: &str, fields: &[&str]) -> bool {
        filter.is_empty() || {
            let f = filter.to_lowercase();
            fields.iter().any(|x| x.to_lowercase().contains(&f))
        }
    }

    /// Webhooks after the filter.
    pub fn visible_webhooks(&self) -> Vec<&Webhook> {
        let f = &self.filters[Tab::Webhooks.index()];
        self.webhooks
            .items
            .iter()
            .filter(|w| Self::matches(f, &[&w.event_key, &w.uuid, &w.description]))
            .collect()
    }

    /// Messages (the server applies the filter).
    pub fn visible_messages(&self) -> Vec<&MessageSummary> {
        self.messages.items.iter().collect()
    }

    /// Executions after the filter.
    pub fn visible_executions(&self) -> Vec<&ExecutionSummary> {
        let f = &self.filters[Tab::Executions.index()];
        self.executions
            .items
            .iter()
            .filter(|e| {
                Self::matches(
                    f,
                    &[
                        &e.pipeline,
                        &e.status,
                        e.event_key.as_deref().unwrap_or(""),
                        e.error.as_deref().unwrap_or(""),
                    ],
                )
            })
            .collect()
    }

    /// Deliveries after the filter.
    pub fn visible_deliveries(&self) -> Vec<&DeliverySummary> {
        let f = &self.filters[Tab::Deliveries.index()];
        self.deliveries
            .items
            .iter()
            .filter(|d| {
                Self::matches(
                    f,
                    &[&d.url, &d.status, d.last_error.as_deref().unwrap_or("")],
                )
            })
            .collect()
    }

    /// Pipelines after the filter.
    pub fn visible_pipelines(&self) -> Vec<&PipelineInfo> {
        let f = &self.filters[Tab::Pipelines.index()];
        self.pipelines
            .items
            .iter()
            .filter(|p| Self::matches(f, &[&p.name, p.event_key.as_deref().unwrap_or("")]))
            .collect()
    }

    fn visible_len(&self) -> usize {
        match self.tab {
            Tab::Webhooks => self.visible_webhooks().len(),
            Tab::Messages => self.messages.items.len(),
            Tab::Executions => self.visible_executions().len(),
            Tab::Deliveries => self.visible_deliveries().len(),
            Tab::Pipelines => self.visible_pipelines().len(),
        }
    }

    fn selected_mut(&mut self) -> &mut usize {
        match self.tab {
            Tab::Webhooks => &mut self.webhooks.selected,
            Tab::Messages => &mut self.messages.selected,
            Tab::Executions => &mut self.executions.selected,
            Tab::Deliveries => &mut self.deliveries.selected,
            Tab::Pipelines => &mut self.pipelines.selected,
        }
    }

    /// The selected webhook.
    pub fn selected_webhook(&self) -> Option<&Webhook> {
        self.visible_webhooks().get(self.webhooks.selected).copied()
    }

    /// The selected message summary.
    pub fn selected_message(&self) -> Option<&MessageSummary> {
        self.messages.items.get(self.messages.selected)
    }

    /// The selected execution summary.
    pub fn selected_execution(&self) -> Option<&ExecutionSummary> {
        self.visible_executions()
            .get(self.executions.selected)
            .copied()
    }

    /// The selected delivery summary.
    pub fn selected_delivery(&self) -> Option<&DeliverySummary> {
        self.visible_deliveries()
            .get(self.deliveries.selected)
            .copied()
    }

    /// The selected pipeline.
    pub fn selected_pipeline(&self) -> Option<&PipelineInfo> {
        self.visible_pipelines()
            .get(self.pipelines.selected)
            .copied()
    }

    /// Loads the detail of the current tab's selection, if it is not the one shown.
    fn load_detail(&mut self) -> Vec<Effect> {
        let call = |name, id: &str, kind| Effect::Call {
            name,
            params: json!({ "id": id }),
            on_ok: OnOk::Load(kind),
        };
        match self.tab {
            Tab::Messages => match self.selected_message() {
                Some(m) if self.message.as_ref().map(|d| &d.summary.id) != Some(&m.id) => {
                    vec![call("message.get", &m.id, LoadKind::Message)]
                }
                _ => Vec::new(),
            },
            Tab::Executions => match self.selected_execution() {
                Some(e)
                    if self.execution.as_ref().map(|d| &d.summary.id) != Some(&e.id)
                        || e.status == "running" =>
                {
                    vec![call("execution.get", &e.id, LoadKind::Execution)]
                }
                _ => Vec::new(),
            },
            Tab::Deliveries => match self.selected_delivery() {
                Some(d) => vec![call("delivery.get", &d.id, LoadKind::Delivery)],
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn move_selection(&mut self, to: isize, absolute: bool) -> Vec<Effect> {
        let len = self.visible_len();
        if len == 0 {
            return Vec::new();
        }
        let sel = self.selected_mut();
        let next = if absolute {
            to.clamp(0, len as isize - 1) as usize
        } else {
            (*sel as isize + to).clamp(0, len as isize - 1) as usize
        };
        let changed = next != *sel;
        *sel = next;
        let mut fx = Vec::new();
        if self.tab == Tab::Messages && next == 0 {
            self.new_messages = 0;
        }
        if changed {
            self.detail_scroll = 0;
            self.file_sel = 0;
            fx.extend(self.load_detail());
        }
        // At the bottom of the window with more on the server: the next page.
        if next + 1 == len {
            let (more, loading, kind) = match self.tab {
                Tab::Messages => (
                    self.messages.more,
                    self.messages.loading,
                    LoadKind::Messages { append: true },
                ),
                Tab::Executions => (
                    self.executions.more,
                    self.executions.loading,
                    LoadKind::Executions { append: true },
                ),
                Tab::Deliveries => (
                    self.deliveries.more,
                    self.deliveries.loading,
                    LoadKind::Deliveries { append: true },
                ),
                _ => (false, true, LoadKind::Webhooks),
            };
            if more && !loading {
                fx.push(self.load(kind));
            }
        }
        fx
    }

    fn set_tab(&mut self, tab: Tab) -> Vec<Effect> {
        self.tab = tab;
        self.detail_scroll = 0;
        self.load_detail()
    }

    // ---- keys ----

    fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            self.quit = true;
            return Vec::new();
        }
        match std::mem::take(&mut self.mode) {
            Mode::Normal => self.key_normal(k),
            Mode::Help => {
                // Any key closes the help.
                Vec::new()
            }
            Mode::Filter(mut input) => match k.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => self.apply_filter(input.value().to_string()),
                _ => {
                    if let Some(req) = to_input_request(&crossterm::event::Event::Key(k)) {
                        input.handle(req);
                    }
                    self.mode = Mode::Filter(input);
                    Vec::new()
                }
            },
            Mode::Form(mut form) => match k.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Tab | KeyCode::Down => {
                    form.focus = (form.focus + 1) % form.fields.len();
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
                KeyCode::BackTab | KeyCode::Up => {
                    form.focus = (form.focus + form.fields.len() - 1) % form.fields.len();
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
                KeyCode::Enter => self.submit_form(*form),
                _ => {
                    if let Some(req) = to_input_request(&crossterm::event::Event::Key(k)) {
                        form.fields[form.focus].handle(req);
                    }
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
            },
            Mode::ConfirmDelete { uuid, event_key } => match k.code {
                KeyCode::Char('y') | KeyCode::Enter => vec![Effect::Call {
                    name: "webhook.delete",
                    params: json!({ "uuid": uuid }),
                    on_ok: OnOk::Toast(format!("deleted {event_key}")),
                }],
                _ => Vec::new(),
            },
            Mode::Forward { mut input, recent } => match k.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => self.submit_forward(input.value().trim().to_string()),
                KeyCode::Up | KeyCode::Down if !self.recent_urls.is_empty() => {
                    let n = self.recent_urls.len();
                    let i = match (recent, k.code) {
                        (None, _) => 0,
                        (Some(i), KeyCode::Up) => (i + 1) % n,
                        (Some(i), _) => (i + n - 1) % n,
                    };
                    input = Input::new(self.recent_urls[i].clone());
                    self.mode = Mode::Forward {
                        input,
                        recent: Some(i),
                    };
                    Vec::new()
                }
                _ => {
                    if let Some(req) = to_input_request(&crossterm::event::Event::Key(k)) {
                        input.handle(req);
                    }
                    self.mode = Mode::Forward { input, recent };
                    Vec::new()
                }
            },
            Mode::EditedChoice => match k.code {
                KeyCode::Char('r') => self.replay_edited(),
                KeyCode::Char('f') => {
                    self.mode = self.forward_prompt();
                    Vec::new()
                }
                KeyCode::Esc => {
                    self.edited = None;
                    Vec::new()
                }
                _ => {
                    self.mode = Mode::EditedChoice;
                    Vec::new()
                }
            },
        }
    }

    fn key_normal(&mut self, k: KeyEvent) -> Vec<Effect> {
        match k.code {
            KeyCode::Char('q') => {
                self.quit = true;
                Vec::new()
            }
            KeyCode::Char(c @ '1'..='5') => self.set_tab(Tab::ALL[(c as usize) - ('1' as usize)]),
            KeyCode::Tab => self.set_tab(Tab::ALL[(self.tab.index() + 1) % 5]),
            KeyCode::BackTab => self.set_tab(Tab::ALL[(self.tab.index() + 4) % 5]),
            KeyCode::Char('?') => {
                self.mode = Mode::Help;
                Vec::new()
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter(Input::new(self.filters[self.tab.index()].clone()));
                Vec::new()
            }
            KeyCode::Esc => self.clear_filter(),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1, false),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1, false),
            KeyCode::PageDown => self.move_selection(10, false),
            KeyCode::PageUp => self.move_selection(-10, false),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(0, true),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX / 2, true),
            KeyCode::Char('J') => {
                self.detail_scroll = self.detail_scroll.saturating_add(5);
                Vec::new()
            }
            KeyCode::Char('K') => {
                self.detail_scroll = self.detail_scroll.saturating_sub(5);
                Vec::new()
            }
            _ => match self.tab {
                Tab::Webhooks => self.key_webhooks(k),
                Tab::Messages => self.key_messages(k),
                Tab::Executions => self.key_executions(k),
                Tab::Deliveries => self.key_deliveries(k),
                Tab::Pipelines => self.key_pipelines(k),
            },
        }
    }

    fn apply_filter(&mut self, f: String) -> Vec<Effect> {
        let i = self.tab.index();
        self.filters[i] = f;
        *self.selected_mut() = 0;
        match self.tab {
            // Messages are searched on the server (event key and body text).
            Tab::Messages => vec![self.load(LoadKind::Messages { append: false })],
            _ => self.load_detail(),
        }
    }

    fn clear_filter(&mut self) -> Vec<Effect> {
        let i = self.tab.index();
        let had = !self.filters[i].is_empty();
        self.filters[i].clear();
        match self.tab {
            Tab::Messages if had || self.webhook_scope.is_some() => {
                self.webhook_scope = None;
                self.messages.selected = 0;
                vec![self.load(LoadKind::Messages { append: false })]
            }
            Tab::Executions if self.pipeline_scope.is_some() => {
                self.pipeline_scope = None;
                self.executions.selected = 0;
                vec![self.load(LoadKind::Executions { append: false })]
            }
            _ => Vec::new(),
        }
    }

    fn key_webhooks(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(w) = self.selected_webhook().cloned() else {
            if k.code == KeyCode::Char('n') {
                self.mode = Mode::Form(Box::default());
            }
            return Vec::new();
        };
        match k.code {
            KeyCode::Char('n') => {
                self.mode = Mode::Form(Box::default());
                Vec::new()
            }
            KeyCode::Char('e') => {
                self.mode = Mode::Form(Box::new(WebhookForm {
                    uuid: Some(w.uuid.clone()),
                    fields: [
                        Input::new(w.event_key.clone()),
                        Input::new(
                            serde_json::to_value(w.payload_type)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                        ),
                        Input::new(w.max_payload_length.to_string()),
                        Input::new(w.description.clone()),
                    ],
                    focus: 0,
                }));
                Vec::new()
            }
            KeyCode::Char('d') => {
                self.mode = Mode::ConfirmDelete {
                    uuid: w.uuid,
                    event_key: w.event_key,
                };
                Vec::new()
            }
            KeyCode::Char('y') => {
                self.toast(format!("copied {}", w.webhook_url), false);
                vec![Effect::Copy(w.webhook_url)]
            }
            KeyCode::Char('t') => vec![Effect::Post {
                url: w.webhook_url,
                content_type: "application/json".into(),
                body: serde_json::to_vec(&json!({"test": true, "sentBy": "hookd-tui"}))
                    .unwrap_or_default(),
                done: format!("test request sent to {}", w.event_key),
            }],
            KeyCode::Enter => {
                self.webhook_scope = Some((w.uuid, w.event_key));
                self.filters[Tab::Messages.index()].clear();
                self.messages.selected = 0;
                self.tab = Tab::Messages;
                vec![self.load(LoadKind::Messages { append: false })]
            }
            _ => Vec::new(),
        }
    }

    fn submit_form(&mut self, form: WebhookForm) -> Vec<Effect> {
        let v: Vec<&str> = form.fields.iter().map(|f| f.value().trim()).collect();
        let mut p = json!({ "eventKey": v[0] });
        if let Some(uuid) = &form.uuid {
            p["uuid"] = uuid.clone().into();
        }
        if !v[1].is_empty() {
            p["payloadType"] = v[1].into();
        }
        if !v[2].is_empty() {
            p["maxPayloadLength"] = v[2].into();
        }
        p["description"] = v[3].into();
        let what = if form.uuid.is_some() {
            "saved"
        } else {
            "created"
        };
        vec![Effect::Call {
            name: "webhook.put",
            params: p,
            on_ok: OnOk::Toast(format!("{what} {}", v[0])),
        }]
    }

    fn forward_prompt(&self) -> Mode {
        let first = self.recent_urls.first().cloned().unwrap_or_default();
        Mode::Forward {
            input: Input::new(first),
            recent: Some(0),
        }
    }

    fn remember_url(&mut self, url: &str) {
        self.recent_urls.retain(|u| u != url);
        self.recent_urls.insert(0, url.to_string());
        self.recent_urls.truncate(RECENT_URLS);
    }

    fn submit_forward(&mut self, url: String) -> Vec<Effect> {
        if url.is_empty() {
            return Vec::new();
        }
        self.remember_url(&url);
        if let Some(e) = self.edited.take() {
            let text = String::from_utf8_lossy(&e.body).into_owned();
            let mut headers = json!({});
            if let Some(ct) = &e.content_type {
                headers["content-type"] = ct.clone().into();
            }
            return vec![Effect::Call {
                name: "webhook.send",
                params: json!({ "url": url, "message": text, "headers": headers, "maxAttempts": 1 }),
                on_ok: OnOk::Toast(format!("edited body sent to {url}")),
            }];
        }
        let Some(m) = self.selected_message() else {
            return Vec::new();
        };
        vec![Effect::Call {
            name: "message.forward",
            params: json!({ "id": m.id, "url": url }),
            on_ok: OnOk::Toast(format!("forwarded to {url}")),
        }]
    }

    fn replay_edited(&mut self) -> Vec<Effect> {
        let Some(e) = self.edited.take() else {
            return Vec::new();
        };
        let Some(url) = self
            .message
            .as_ref()
            .filter(|m| m.summary.id == e.message_id)
            .and_then(|m| {
                self.webhooks
                    .items
                    .iter()
                    .find(|w| w.uuid == m.summary.uuid)
            })
            .map(|w| w.webhook_url.clone())
        else {
            self.toast(
                "the message's webhook no longer exists; forward the edited body instead",
                true,
            );
            return Vec::new();
        };
        vec![Effect::Post {
            url,
            content_type: e
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            body: e.body,
            done: "edited copy sent to the webhook (a new message)".into(),
        }]
    }

    fn key_messages(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(m) = self.selected_message().cloned() else {
            return Vec::new();
        };
        match k.code {
            KeyCode::Char('r') => vec![Effect::Call {
                name: "message.replay",
                params: json!({ "id": m.id }),
                on_ok: OnOk::Toast(format!("replayed {}", m.event_key)),
            }],
            KeyCode::Char('f') => {
                self.mode = self.forward_prompt();
                Vec::new()
            }
            KeyCode::Char('E') => {
                self.toast("fetching the body for $EDITOR…", false);
                vec![Effect::Edit {
                    message_id: m.id,
                    content_type: m.content_type,
                }]
            }
            KeyCode::Char('c') => match self.message.as_ref().filter(|d| d.summary.id == m.id) {
                Some(detail) => {
                    let url = self
                        .webhooks
                        .items
                        .iter()
                        .find(|w| w.uuid == detail.summary.uuid)
                        .map(|w| w.webhook_url.clone())
                        .unwrap_or_else(|| {
                            format!("{}{}?{}", self.url, detail.path, detail.query_string)
                        });
                    let cmd = crate::curl::command(detail, &url);
                    self.toast("copied as curl", false);
                    vec![Effect::Copy(cmd)]
                }
                None => {
                    self.toast("the message is still loading", true);
                    Vec::new()
                }
            },
            KeyCode::Char(']') => {
                let n = self.message.as_ref().map_or(0, |d| d.files.len());
                if n > 0 {
                    self.file_sel = (self.file_sel + 1) % n;
                }
                Vec::new()
            }
            KeyCode::Char('[') => {
                let n = self.message.as_ref().map_or(0, |d| d.files.len());
                if n > 0 {
                    self.file_sel = (self.file_sel + n - 1) % n;
                }
                Vec::new()
            }
            KeyCode::Char('s') => match self
                .message
                .as_ref()
                .and_then(|d| d.files.get(self.file_sel))
            {
                Some(f) => {
                    // Only the file name: a sender must not choose where it lands.
                    let safe = crate::save::file_name(
                        f.filename.as_deref(),
                        &crate::save::file_name(Some(&format!("{}-{}", f.name, f.index)), "file"),
                    );
                    vec![Effect::SaveFile {
                        message_id: m.id,
                        index: f.index,
                        path: PathBuf::from(safe),
                    }]
                }
                None => {
                    self.toast("this message has no files", true);
                    Vec::new()
                }
            },
            _ => Vec::new(),
        }
    }

    fn key_executions(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(e) = self.selected_execution().cloned() else {
            return Vec::new();
        };
        let message = e.replay_of.clone().or(e.message_id.clone());
        match (k.code, message) {
            (KeyCode::Enter, Some(id)) => {
                self.tab = Tab::Messages;
                self.webhook_scope = None;
                self.filters[Tab::Messages.index()].clear();
                if let Some(i) = self.messages.items.iter().position(|m| m.id == id) {
                    self.messages.selected = i;
                }
                vec![Effect::Call {
                    name: "message.get",
                    params: json!({ "id": id }),
                    on_ok: OnOk::Load(LoadKind::Message),
                }]
            }
            (KeyCode::Char('r'), Some(id)) => vec![Effect::Call {
                name: "message.replay",
                params: json!({ "id": id }),
                on_ok: OnOk::Toast(format!("replayed the message of {}", e.pipeline)),
            }],
            (KeyCode::Enter | KeyCode::Char('r'), None) => {
                self.toast("this run was not triggered by a message", true);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn key_deliveries(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(d) = self.selected_delivery().cloned() else {
            return Vec::new();
        };
        match k.code {
            KeyCode::Char('R') => vec![Effect::Call {
                name: "delivery.retry",
                params: json!({ "id": d.id }),
                on_ok: OnOk::Toast(format!("retrying {}", d.url)),
            }],
            KeyCode::Char('x') => vec![Effect::Call {
                name: "delivery.cancel",
                params: json!({ "id": d.id }),
                on_ok: OnOk::Toast(format!("cancelled {}", d.url)),
            }],
            _ => Vec::new(),
        }
    }

    fn key_pipelines(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(p) = self.selected_pipeline().cloned() else {
            return Vec::new();
        };
        match k.code {
            KeyCode::Enter => {
                self.pipeline_scope = Some(p.name);
                self.executions.selected = 0;
                self.tab = Tab::Executions;
                vec![self.load(LoadKind::Executions { append: false })]
            }
            _ => Vec::new(),
        }
    }

    // ---- loads ----

    fn loaded(&mut self, l: Loaded) -> Vec<Effect> {
        match l {
            Loaded::Webhooks(w) => {
                self.webhooks.items = w;
                clamp(&mut self.webhooks.selected, self.webhooks.items.len());
                Vec::new()
            }
            Loaded::Pipelines(p) => {
                self.pipelines.items = p;
                clamp(&mut self.pipelines.selected, self.pipelines.items.len());
                Vec::new()
            }
            Loaded::Messages { items, append } => {
                let more = items.len() == PAGE;
                fill(&mut self.messages, items, append, more, |m| &m.id);
                if !append {
                    self.new_messages = 0;
                }
                if self.tab == Tab::Messages {
                    self.load_detail()
                } else {
                    Vec::new()
                }
            }
            Loaded::Executions { items, append } => {
                let more = items.len() == PAGE;
                fill(&mut self.executions, items, append, more, |e| &e.id);
                if self.tab == Tab::Executions {
                    self.load_detail()
                } else {
                    Vec::new()
                }
            }
            Loaded::Deliveries { items, append } => {
                let more = items.len() == PAGE;
                fill(&mut self.deliveries, items, append, more, |d| &d.id);
                if self.tab == Tab::Deliveries {
                    self.load_detail()
                } else {
                    Vec::new()
                }
            }
            Loaded::Message(m) => {
                self.body_lines = crate::ui::detail::body_lines(&m);
                self.message = Some(*m);
                Vec::new()
            }
            Loaded::Execution(e) => {
                self.execution = Some(*e);
                Vec::new()
            }
            Loaded::Delivery(d) => {
                self.delivery = Some(*d);
                Vec::new()
            }
        }
    }

    // ---- stream events ----

    fn event(&mut self, e: Event) -> Vec<Effect> {
        let data = e.data;
        match e.kind {
            EventType::MessageReceived | EventType::MessageRejected => {
                let Ok(m) = serde_json::from_value::<MessageSummary>(data) else {
                    return Vec::new();
                };
                self.this_second += 1;
                if let Some(w) = self.webhooks.items.iter_mut().find(|w| w.uuid == m.uuid) {
                    if m.status == "accepted" {
                        w.message_count += 1;
                    }
                    w.last_received_at = Some(m.received_at.clone());
                }
                let scoped_out = self
                    .webhook_scope
                    .as_ref()
                    .is_some_and(|(uuid, _)| *uuid != m.uuid);
                let searching = !self.filters[Tab::Messages.index()].is_empty();
                if scoped_out || searching || self.messages.items.iter().any(|x| x.id == m.id) {
                    return Vec::new();
                }
                self.messages.items.insert(0, m);
                if self.messages.items.len() > WINDOW {
                    self.messages.items.truncate(WINDOW);
                    self.messages.more = true;
                }
                if self.messages.selected > 0 {
                    // Scrolled away: keep the same message selected, count the new ones.
                    self.messages.selected += 1;
                    self.new_messages += 1;
                } else if self.tab == Tab::Messages {
                    // Following: the newest is selected; load it on the next tick, not per event.
                    self.detail_stale = true;
                }
                Vec::new()
            }
            EventType::WebhookCreated | EventType::WebhookUpdated => {
                if let Ok(w) = serde_json::from_value::<Webhook>(data) {
                    match self.webhooks.items.iter_mut().find(|x| x.uuid == w.uuid) {
                        Some(x) => *x = w,
                        None => self.webhooks.items.push(w),
                    }
                }
                Vec::new()
            }
            EventType::WebhookDeleted => {
                if let Some(uuid) = data["uuid"].as_str() {
                    self.webhooks.items.retain(|w| w.uuid != uuid);
                    clamp(&mut self.webhooks.selected, self.webhooks.items.len());
                }
                Vec::new()
            }
            EventType::PipelineCreated | EventType::PipelineUpdated => {
                if let Ok(p) = serde_json::from_value::<PipelineInfo>(data) {
                    match self.pipelines.items.iter_mut().find(|x| x.name == p.name) {
                        Some(x) => {
                            let source = std::mem::take(&mut x.source);
                            *x = p;
                            if x.source.is_empty() {
                                x.source = source;
                            }
                        }
                        None => {
                            self.pipelines.items.push(p);
                            self.pipelines.items.sort_by(|a, b| a.name.cmp(&b.name));
                        }
                    }
                }
                Vec::new()
            }
            EventType::PipelineDeleted => {
                if let Some(name) = data["name"].as_str() {
                    self.pipelines.items.retain(|p| p.name != name);
                    clamp(&mut self.pipelines.selected, self.pipelines.items.len());
                }
                Vec::new()
            }
            EventType::ExecutionStarted | EventType::ExecutionFinished => {
                let Ok(x) = serde_json::from_value::<ExecutionSummary>(data) else {
                    return Vec::new();
                };
                if let Some(p) = self
                    .pipelines
                    .items
                    .iter_mut()
                    .find(|p| p.name == x.pipeline)
                {
                    p.last_run_at = x.finished_at.clone().or(p.last_run_at.take());
                }
                if self
                    .pipeline_scope
                    .as_ref()
                    .is_some_and(|p| *p != x.pipeline)
                {
                    return Vec::new();
                }
                let selected_id = self.selected_execution().map(|s| s.id.clone());
                match self.executions.items.iter_mut().find(|e| e.id == x.id) {
                    Some(e) => *e = x.clone(),
                    None => {
                        self.executions.items.insert(0, x.clone());
                        self.executions.items.truncate(WINDOW);
                        if self.executions.selected > 0 {
                            self.executions.selected += 1;
                        }
                    }
                }
                if self.tab == Tab::Executions && selected_id.as_deref() == Some(x.id.as_str()) {
                    self.detail_stale = true;
                }
                Vec::new()
            }
            EventType::DeliverySucceeded | EventType::DeliveryFailed => {
                if let Ok(d) = serde_json::from_value::<DeliverySummary>(data) {
                    upsert_front(&mut self.deliveries, d, |x| &x.id);
                }
                Vec::new()
            }
            EventType::DeliveryAttempted => {
                let id = data["id"].as_str().unwrap_or_default().to_string();
                match self.deliveries.items.iter_mut().find(|d| d.id == id) {
                    Some(d) => {
                        d.attempts = data["n"].as_u64().unwrap_or(u64::from(d.attempts)) as u32;
                        d.last_status = data["status"].as_u64().map(|s| s as u16);
                        d.last_error = data["error"].as_str().map(str::to_string);
                        if let Some(s) = data["deliveryStatus"].as_str() {
                            d.status = s.to_string();
                        }
                        d.next_attempt_at = data["nextAttemptAt"].as_str().map(str::to_string);
                        if self.tab == Tab::Deliveries {
                            self.detail_stale = true;
                        }
                        Vec::new()
                    }
                    // Unknown (created before we loaded): fetch the list again.
                    None => vec![self.load(LoadKind::Deliveries { append: false })],
                }
            }
            EventType::StreamLagged => {
                self.toast("fell behind the event stream; reloading", false);
                self.reload_all()
            }
        }
    }
}

fn clamp(sel: &mut usize, len: usize) {
    if *sel >= len {
        *sel = len.saturating_sub(1);
    }
}

/// Replaces or extends a list with a loaded page, dropping items already present.
fn fill<T>(
    list: &mut List<T>,
    items: Vec<T>,
    append: bool,
    more: bool,
    id: impl Fn(&T) -> &String,
) {
    list.loading = false;
    list.more = more;
    if append {
        let known: std::collections::HashSet<String> =
            list.items.iter().map(|x| id(x).clone()).collect();
        list.items
            .extend(items.into_iter().filter(|x| !known.contains(id(x))));
    } else {
        list.items = items;
    }
    clamp(&mut list.selected, list.items.len());
}

fn upsert_front<T>(list: &mut List<T>, item: T, id: impl Fn(&T) -> &String) {
    match list.items.iter().position(|x| id(x) == id(&item)) {
        Some(i) => list.items[i] = item,
        None => {
            list.items.insert(0, item);
            list.items.truncate(WINDOW);
            if list.selected > 0 {
                list.selected += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn key(c: char) -> Action {
        Action::Key(KeyEvent::from(KeyCode::Char(c)))
    }

    fn code(c: KeyCode) -> Action {
        Action::Key(KeyEvent::from(c))
    }

    fn app() -> App {
        let mut a = App::new("http://127.0.0.1:8080");
        a.update(Action::Connected);
        a.update(Action::Loaded(Loaded::Webhooks(fixtures::webhooks())));
        a.update(Action::Loaded(Loaded::Messages {
            items: fixtures::messages(5),
            append: false,
        }));
        a
    }

    fn event(kind: EventType, data: Value) -> Action {
        Action::Event(Box::new(Event {
            seq: 1,
            kind,
            at: "2026-11-29T12:00:00.000Z".into(),
            data,
        }))
    }

    #[test]
    fn tabs_switch_with_numbers_and_tab() {
        let mut a = app();
        a.update(key('1'));
        assert_eq!(a.tab, Tab::Webhooks);
        a.update(code(KeyCode::Tab));
        assert_eq!(a.tab, Tab::Messages);
        a.update(code(KeyCode::BackTab));
        a.update(code(KeyCode::BackTab));
        assert_eq!(a.tab, Tab::Pipelines);
        a.update(key('q'));
        assert!(a.quit);
    }

    #[test]
    fn new_messages_follow_unless_scrolled() {
        let mut a = app();
        assert_eq!(a.messages.selected, 0);
        let m =
            serde_json::to_value(fixtures::message("m-new", "webhook.github.push")).expect("json");
        a.update(event(EventType::MessageReceived, m.clone()));
        assert_eq!(
            (
                a.messages.items[0].id.as_str(),
                a.messages.selected,
                a.new_messages
            ),
            ("m-new", 0, 0)
        );
        assert!(a.detail_stale, "the newest is loaded on the next tick");
        let fx = a.update(Action::Tick);
        assert!(matches!(
            &fx[..],
            [Effect::Call {
                name: "message.get",
                ..
            }]
        ));

        a.update(key('j'));
        a.update(key('j'));
        let selected = a.selected_message().map(|m| m.id.clone());
        let mut m2 = m.clone();
        m2["id"] = "m-newer".into();
        a.update(event(EventType::MessageReceived, m2));
        assert_eq!(a.new_messages, 1);
        assert_eq!(
            a.selected_message().map(|m| m.id.clone()),
            selected,
            "the selection stays on its message"
        );
        a.update(key('g'));
        assert_eq!((a.messages.selected, a.new_messages), (0, 0));
        // The same event twice (a resync) is not a second message.
        a.update(event(EventType::MessageReceived, m));
        assert_eq!(
            a.messages.items.iter().filter(|x| x.id == "m-new").count(),
            1
        );
    }

    #[test]
    fn moving_loads_the_detail_and_the_next_page_at_the_bottom() {
        let mut a = app();
        a.messages.more = true;
        let fx = a.update(key('j'));
        assert!(
            matches!(&fx[..], [Effect::Call { name: "message.get", params, .. }] if params["id"] == "m-1")
        );
        let fx = a.update(key('G'));
        assert!(fx.iter().any(|e| matches!(e, Effect::Call { name: "message.list", params, .. } if params["before"] == "m-4")));
    }

    #[test]
    fn webhook_keys() {
        let mut a = app();
        a.update(key('1'));
        let fx = a.update(key('y'));
        assert_eq!(
            fx,
            [Effect::Copy(
                "http://127.0.0.1:8080/api/v3/command/webhook.receive?uuid=w-1".into()
            )]
        );
        let fx = a.update(key('t'));
        assert!(matches!(&fx[..], [Effect::Post { url, .. }] if url.ends_with("uuid=w-1")));

        a.update(key('n'));
        for c in "webhook.new".chars() {
            a.update(key(c));
        }
        let fx = a.update(code(KeyCode::Enter));
        assert!(
            matches!(&fx[..], [Effect::Call { name: "webhook.put", params, .. }] if params["eventKey"] == "webhook.new" && params.get("uuid").is_none())
        );

        a.update(key('e'));
        a.update(code(KeyCode::Tab));
        a.update(code(KeyCode::Tab));
        for _ in 0..10 {
            a.update(code(KeyCode::Backspace));
        }
        for c in "4096".chars() {
            a.update(key(c));
        }
        let fx = a.update(code(KeyCode::Enter));
        assert!(
            matches!(&fx[..], [Effect::Call { name: "webhook.put", params, .. }] if params["uuid"] == "w-1" && params["maxPayloadLength"] == "4096")
        );

        a.update(key('d'));
        assert!(matches!(a.mode, Mode::ConfirmDelete { .. }));
        let fx = a.update(key('n'));
        assert!(fx.is_empty(), "anything but y cancels");
        a.update(key('d'));
        let fx = a.update(key('y'));
        assert!(matches!(
            &fx[..],
            [Effect::Call {
                name: "webhook.delete",
                ..
            }]
        ));

        let fx = a.update(code(KeyCode::Enter));
        assert_eq!(a.tab, Tab::Messages);
        assert!(
            matches!(&fx[..], [Effect::Call { name: "message.list", params, .. }] if params["uuid"] == "w-1")
        );
        let fx = a.update(code(KeyCode::Esc));
        assert!(a.webhook_scope.is_none());
        assert!(
            matches!(&fx[..], [Effect::Call { name: "message.list", params, .. }] if params.get("uuid").is_none())
        );
    }

    #[test]
    fn message_actions_and_the_forward_prompt_remembers_urls() {
        let mut a = app();
        let fx = a.update(key('r'));
        assert!(
            matches!(&fx[..], [Effect::Call { name: "message.replay", params, .. }] if params["id"] == "m-0")
        );
        a.update(key('f'));
        for _ in 0..40 {
            a.update(code(KeyCode::Backspace));
        }
        for c in "http://localhost:9000/x".chars() {
            a.update(key(c));
        }
        let fx = a.update(code(KeyCode::Enter));
        assert!(
            matches!(&fx[..], [Effect::Call { name: "message.forward", params, .. }] if params["url"] == "http://localhost:9000/x")
        );
        assert_eq!(a.recent_urls[0], "http://localhost:9000/x");
        a.update(key('f'));
        let Mode::Forward { input, .. } = &a.mode else {
            panic!("prompt")
        };
        assert_eq!(
            input.value(),
            "http://localhost:9000/x",
            "the last URL is offered first"
        );
        a.update(code(KeyCode::Up));
        let Mode::Forward { input, .. } = &a.mode else {
            panic!("prompt")
        };
        assert_eq!(input.value(), "http://localhost:3000/hook");
        a.update(code(KeyCode::Esc));

        a.update(Action::Loaded(Loaded::Message(Box::new(fixtures::detail(
            "m-0",
        )))));
        let fx = a.update(key('c'));
        assert!(matches!(&fx[..], [Effect::Copy(c)] if c.starts_with("curl -X POST")));
        let fx = a.update(key('s'));
        assert!(
            matches!(&fx[..], [Effect::SaveFile { path, .. }] if path == &PathBuf::from("report.pdf"))
        );
        let fx = a.update(key('E'));
        assert!(matches!(&fx[..], [Effect::Edit { message_id, .. }] if message_id == "m-0"));
        // The download is a task: the dashboard goes on meanwhile (issue 28), and only the
        // downloaded body opens the editor.
        let before = a.messages.selected;
        a.update(code(KeyCode::Down));
        assert_ne!(
            a.messages.selected, before,
            "keys work while the body downloads"
        );
        a.update(code(KeyCode::Up));
        let fx = a.update(Action::BodyForEdit {
            message_id: "m-0".into(),
            content_type: Some("application/json".into()),
            body: b"{}".to_vec(),
        });
        assert!(matches!(&fx[..], [Effect::OpenEditor { body, .. }] if body == b"{}"));
        a.update(Action::Edited(Edited {
            message_id: "m-0".into(),
            body: b"{\"edited\":1}".to_vec(),
            content_type: Some("application/json".into()),
        }));
        assert!(matches!(a.mode, Mode::EditedChoice));
        let fx = a.update(key('r'));
        assert!(matches!(&fx[..], [Effect::Post { body, .. }] if body == b"{\"edited\":1}"));
    }

    #[test]
    fn filters_and_help() {
        let mut a = app();
        a.update(key('1'));
        a.update(key('/'));
        for c in "stripe".chars() {
            a.update(key(c));
        }
        a.update(code(KeyCode::Enter));
        assert_eq!(a.visible_webhooks().len(), 1);
        a.update(code(KeyCode::Esc));
        assert_eq!(a.visible_webhooks().len(), 2);
        a.update(key('2'));
        a.update(key('/'));
        for c in "lead".chars() {
            a.update(key(c));
        }
        let fx = a.update(code(KeyCode::Enter));
        assert!(
            matches!(&fx[..], [Effect::Call { name: "message.list", params, .. }] if params["search"] == "lead"),
            "messages are searched on the server"
        );
        a.update(key('?'));
        assert!(matches!(a.mode, Mode::Help));
        a.update(key('x'));
        assert!(matches!(a.mode, Mode::Normal));
    }

    #[test]
    fn executions_deliveries_and_pipelines() {
        let mut a = app();
        a.update(Action::Loaded(Loaded::Executions {
            items: fixtures::executions(),
            append: false,
        }));
        a.update(Action::Loaded(Loaded::Deliveries {
            items: fixtures::deliveries(),
            append: false,
        }));
        a.update(Action::Loaded(Loaded::Pipelines(fixtures::pipelines())));
        a.update(key('3'));
        let fx = a.update(code(KeyCode::Enter));
        assert_eq!(a.tab, Tab::Messages);
        assert!(
            matches!(&fx[..], [Effect::Call { name: "message.get", params, .. }] if params["id"] == "m-0")
        );
        a.update(key('3'));
        let fx = a.update(key('r'));
        assert!(matches!(
            &fx[..],
            [Effect::Call {
                name: "message.replay",
                ..
            }]
        ));
        let mut finished = serde_json::to_value(&fixtures::executions()[0]).expect("json");
        finished["status"] = "failed".into();
        a.update(event(EventType::ExecutionFinished, finished));
        assert_eq!(a.executions.items[0].status, "failed");

        a.update(key('4'));
        let fx = a.update(key('R'));
        assert!(matches!(
            &fx[..],
            [Effect::Call {
                name: "delivery.retry",
                ..
            }]
        ));
        let fx = a.update(key('x'));
        assert!(matches!(
            &fx[..],
            [Effect::Call {
                name: "delivery.cancel",
                ..
            }]
        ));
        a.update(event(
            EventType::DeliveryAttempted,
            json!({"id": "d-0", "n": 2, "status": 500, "deliveryStatus": "pending"}),
        ));
        assert_eq!(
            (
                a.deliveries.items[0].attempts,
                a.deliveries.items[0].last_status
            ),
            (2, Some(500))
        );

        a.update(key('5'));
        let fx = a.update(code(KeyCode::Enter));
        assert_eq!(
            (a.tab, a.pipeline_scope.as_deref()),
            (Tab::Executions, Some("global/app/crm/pipeline/on-lead"))
        );
        assert!(
            matches!(&fx[..], [Effect::Call { name: "execution.list", params, .. }] if params["pipeline"] == "global/app/crm/pipeline/on-lead")
        );
    }

    #[test]
    fn connection_state_and_the_rate() {
        let mut a = app();
        a.update(Action::Disconnected {
            error: "connection refused".into(),
            retry_in: 4,
        });
        a.update(Action::Tick);
        assert_eq!(
            a.conn,
            Conn::Disconnected {
                error: "connection refused".into(),
                retry_in: 3
            }
        );
        let fx = a.update(Action::Connected);
        assert_eq!(fx.len(), 5, "a reconnect reloads every list");
        let m = serde_json::to_value(fixtures::message("m-x", "webhook.a")).expect("json");
        a.update(event(EventType::MessageReceived, m));
        a.update(Action::Tick);
        assert_eq!(a.rate.back(), Some(&1));
        assert_eq!(a.rate.len(), RATE_SECONDS);
    }

    #[test]
    fn key_releases_are_ignored() {
        let mut a = app();
        let mut k = KeyEvent::from(KeyCode::Char('q'));
        k.kind = KeyEventKind::Release;
        a.update(Action::Key(k));
        assert!(!a.quit);
    }
}
