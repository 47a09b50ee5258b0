//! `hookd listen`: relays a (remote) hookd's captured webhooks to an app on this machine, in
//! commit order and byte for byte, resuming after a sleep, a network drop or a crash where it
//! stopped.
//!
//! Three stages, each in order: `source` reads `message.received` events from the server's
//! stream; a prefetch stage fetches the next few captures (with their bodies when small) while
//! the current one is forwarded; the forward loop sends each to the app until it answers (a
//! failure is retried, and everything after it waits), then records the event as finished.

mod forward;
mod report;
mod server;
mod source;
mod state;

use std::cell::Cell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use hookd_shared::{BodyEncoding, Message, MessageSummary, key};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::json;
use tokio::sync::mpsc;

use crate::cli::Target;
use crate::config::Overrides;
use forward::{Answer, Forwarder};
use report::{Outcome, Reporter};
use server::{ApiError, Server};
use source::{Filters, Item, Start};
use state::State;

/// Captures fetched ahead of the one being forwarded.
const PREFETCH: usize = 16;
/// Bodies up to this size come with their capture (and are held until forwarded); larger ones
/// are streamed from the server to the app when their turn comes.
const PREFETCH_BODY: u64 = 256 * 1024;
/// Why a message announced by the stream could not be relayed.
const PRUNED: &str = "pruned from the server before it could be relayed";
/// Events left out by the filters move the cursor; it is written at most this often for them.
const SKIP_SAVE_EVERY: Duration = Duration::from_secs(1);

/// Arguments of `hookd listen`.
#[derive(clap::Args, Debug)]
pub struct ListenArgs {
    #[command(flatten)]
    pub target: Target,
    /// Where to send each captured request, e.g. http://localhost:3000/webhooks/github.
    #[arg(long, value_name = "URL")]
    pub forward_to: String,
    /// Only this webhook's messages (repeatable).
    #[arg(long = "webhook", value_name = "UUID")]
    pub webhooks: Vec<String>,
    /// Only messages whose event key matches (`*` one segment, `#` any; repeatable).
    #[arg(long = "event-key", value_name = "PATTERN")]
    pub event_keys: Vec<String>,
    /// Where to start: last (where this listener stopped; `now` on its first run), now, all,
    /// or an event seq (start after it).
    #[arg(long, default_value = "last", value_name = "last|now|all|SEQ")]
    pub since: String,
    /// The file that records where this listener stopped [default: one per server and filters
    /// under the user's state directory].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// One JSON object per attempt on stdout.
    #[arg(long)]
    pub json: bool,
    /// A header added to every forwarded request, replacing a captured one of that name
    /// (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// Per forwarded request, e.g. 30s, 500ms.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What went wrong with a request, in a few words: its innermost cause (reqwest's own message
/// repeats the URL), e.g. "cannot connect: Connection refused (os error 111)".
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause
    }
}

/// 1 s, doubling to 30 s.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: Duration::from_secs(1),
        }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(Duration::from_secs(30));
        d
    }
}

/// Why the listener stopped before the user stopped it.
enum Stop {
    /// Wrong token, unknown webhook, bad option: exit code 2.
    Refused(String),
    /// Progress cannot be recorded: exit code 1.
    Failed(String),
}

/// Runs the listener until Ctrl-C (exit 0), or a refusal (exit 2).
pub fn run(over: &Overrides, args: ListenArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(listen(over, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stop::Refused(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(Stop::Failed(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The options, checked.
struct Setup {
    server: Server,
    forwarder: Forwarder,
    filters: Filters,
    state: State,
    start: Start,
}

fn setup(over: &Overrides, args: ListenArgs) -> Result<Setup, String> {
    let (base, token) = args.target.resolve(over)?;
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(format!(
            "--url must be an http:// or https:// URL, got '{base}'"
        ));
    }
    let target = reqwest::Url::parse(&args.forward_to)
        .map_err(|e| format!("--forward-to '{}' is not a URL: {e}", args.forward_to))?;
    if !matches!(target.scheme(), "http" | "https") {
        return Err(format!(
            "--forward-to must be an http:// or https:// URL, got '{}'",
            args.forward_to
        ));
    }
    let mut extra = Vec::new();
    for h in &args.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header '{h}' is not 'Name: value'"))?;
        let name = HeaderName::from_bytes(n.trim().as_bytes())
            .map_err(|_| format!("--header '{h}': '{}' is not a header name", n.trim()))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| format!("--header '{h}': the value holds characters a header cannot"))?;
        extra.push((name, value));
    }
    for w in &args.webhooks {
        uuid::Uuid::parse_str(w).map_err(|_| format!("--webhook '{w}' is not a webhook uuid"))?;
    }
    for p in &args.event_keys {
        key::validate_pattern(p).map_err(|e| format!("--event-key '{p}' {e}"))?;
    }
    let filters = Filters {
        webhooks: args
            .webhooks
            .iter()
            .map(|w| w.to_ascii_lowercase())
            .collect(),
        event_keys: args.event_keys.clone(),
    };
    let state = State::new(args.state.clone(), &base, &filters)?;
    let start =
        match args.since.as_str() {
            "last" => match state.load()? {
                Some(seq) => Start::After(seq),
                None => Start::Now,
            },
            "now" => Start::Now,
            "all" => Start::After(0),
            n => Start::After(n.parse().map_err(|_| {
                format!("--since must be last, now, all or an event seq, got '{n}'")
            })?),
        };
    Ok(Setup {
        server: Server::new(base, token)?,
        forwarder: Forwarder::new(target, extra, args.timeout)?,
        filters,
        state,
        start,
    })
}

async fn listen(over: &Overrides, args: ListenArgs) -> Result<(), Stop> {
    let report = Reporter { json: args.json };
    let forward_to = args.forward_to.clone();
    let s = setup(over, args).map_err(Stop::Refused)?;
    check(&s.server, &s.filters, report).await?;
    let from = match s.start {
        Start::After(0) => "from the start of the log".to_string(),
        Start::After(n) => format!("after event {n}"),
        Start::Now => "from now".to_string(),
    };
    report.note(&format!(
        "forwarding {} from {} to {forward_to}, {from} (state: {})",
        describe(&s.filters),
        s.server.base,
        s.state.path().display()
    ));

    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(source::run(
        s.server.base.clone(),
        s.server.token().map(str::to_string),
        s.start,
        s.filters.clone(),
        tx,
        report,
    ));
    let fetch = Fetch {
        server: s.server.clone(),
        masked: Arc::new(AtomicBool::new(false)),
        report,
    };
    let items = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut ready = std::pin::pin!(
        items
            .map(|item| fetch.clone().prepare(item))
            .buffered(PREFETCH)
    );

    // The last event finished, and the last one written to the state file.
    let cursor: Cell<Option<u64>> = Cell::new(None);
    let saved: Cell<Option<u64>> = Cell::new(None);
    let save = |seq: u64| -> Result<(), Stop> {
        cursor.set(Some(seq));
        s.state
            .save(seq)
            .map_err(|e| Stop::Failed(format!("cannot record progress: {e}")))?;
        saved.set(Some(seq));
        Ok(())
    };
    let work = async {
        let mut last_save = Instant::now();
        while let Some(r) = ready.next().await {
            match r {
                Ready::Message { seq, msg, body } => {
                    let done =
                        deliver(&s.server, &s.forwarder, &fetch.masked, report, &msg, body).await;
                    // Recorded before it is reported: whoever sees the line can rely on a
                    // restarted listener not sending the message again.
                    save(seq)?;
                    last_save = Instant::now();
                    match done {
                        Done::Answered {
                            attempt,
                            status,
                            took,
                        } => report.attempt(
                            &msg.summary,
                            attempt,
                            Outcome::Status(status),
                            took,
                            None,
                        ),
                        Done::Gone => report.gone(&msg.summary, PRUNED),
                    }
                }
                Ready::Gone { seq, summary, why } => {
                    save(seq)?;
                    report.gone(&summary, &why);
                }
                Ready::Skip { seq } => {
                    cursor.set(Some(seq));
                    if last_save.elapsed() >= SKIP_SAVE_EVERY {
                        save(seq)?;
                        last_save = Instant::now();
                    }
                }
                Ready::Position { seq } => {
                    save(seq)?;
                    report.note(&format!("starting after event {seq}, the end of the log"));
                }
                Ready::Lagged {
                    seq,
                    missed,
                    reason,
                } => {
                    if missed > 0 {
                        report.note(&format!(
                            "{missed} events could not be relayed ({reason}): the server pruned \
                             them before this listener got them; carrying on from the oldest kept"
                        ));
                    } else {
                        report.note(&reason);
                    }
                    save(seq)?;
                }
                Ready::Fatal(msg) => return Err(Stop::Refused(msg)),
            }
        }
        Ok(())
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => {
            report.note("stopped");
            Ok(())
        }
    };
    if let Some(c) = cursor.get().filter(|c| saved.get() != Some(*c)) {
        save(c)?;
    }
    result
}

/// Before forwarding anything: the token works and every `--webhook` exists. Waits (saying so)
/// while the server is unreachable.
async fn check(server: &Server, filters: &Filters, report: Reporter) -> Result<(), Stop> {
    let mut backoff = Backoff::new();
    loop {
        let mut result = Ok(());
        if filters.webhooks.is_empty() {
            result = server
                .call("message.list", json!({"limit": 1}))
                .await
                .map(|_| ());
        }
        for w in &filters.webhooks {
            result = server
                .call("webhook.get", json!({ "uuid": w }))
                .await
                .map(|_| ());
            if let Err(ApiError::Refused { status: 404, .. }) = result {
                return Err(Stop::Refused(format!(
                    "the server has no webhook {w} (webhook.get lists them)"
                )));
            }
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(()) => return Ok(()),
            Err(ApiError::Refused { status, message }) => {
                let hint = if status == 401 {
                    " (pass a viewer or admin token with --token or HOOKD_TOKEN)"
                } else {
                    ""
                };
                return Err(Stop::Refused(format!(
                    "the server refused the listener: {message}{hint} [HTTP {status}]"
                )));
            }
            Err(ApiError::Unavailable(e)) => {
                let wait = backoff.next();
                report.note(&format!("{e}; retrying in {}", report::secs(wait)));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn describe(f: &Filters) -> String {
    let mut parts = Vec::new();
    if !f.webhooks.is_empty() {
        parts.push(format!("webhook {}", f.webhooks.join(", ")));
    }
    if !f.event_keys.is_empty() {
        parts.push(format!("event keys {}", f.event_keys.join(", ")));
    }
    if parts.is_empty() {
        "every message".into()
    } else {
        format!("messages of {}", parts.join(" and "))
    }
}

/// An item of the feed, with what forwarding it needs.
enum Ready {
    /// `body`: the whole body when small; else it is streamed from the server.
    Message {
        seq: u64,
        msg: Box<Message>,
        body: Option<Bytes>,
    },
    Gone {
        seq: u64,
        summary: Box<MessageSummary>,
        why: String,
    },
    Skip {
        seq: u64,
    },
    Position {
        seq: u64,
    },
    Lagged {
        seq: u64,
        missed: u64,
        reason: String,
    },
    Fatal(String),
}

/// The prefetch stage.
#[derive(Clone)]
struct Fetch {
    server: Server,
    /// Set once the server refuses credentials as captured (a viewer token): they come masked,
    /// and are then left out of forwarded requests.
    masked: Arc<AtomicBool>,
    report: Reporter,
}

impl Fetch {
    async fn prepare(self, item: Item) -> Ready {
        let (seq, summary) = match item {
            Item::Message { seq, summary } => (seq, summary),
            Item::Skip { seq } => return Ready::Skip { seq },
            Item::Position { seq } => return Ready::Position { seq },
            Item::Lagged { seq, lagged } => {
                return Ready::Lagged {
                    seq,
                    missed: lagged.missed,
                    reason: lagged.reason,
                };
            }
            Item::Refused(msg) => return Ready::Fatal(msg),
        };
        let limit = if summary.size <= PREFETCH_BODY {
            PREFETCH_BODY
        } else {
            0
        };
        let mut backoff = Backoff::new();
        loop {
            let raw = !self.masked.load(Ordering::Relaxed);
            match self.server.message(&summary.id, raw, limit).await {
                Ok(msg) => {
                    let body = whole_body(&msg);
                    return Ready::Message {
                        seq,
                        msg: Box::new(msg),
                        body,
                    };
                }
                Err(ApiError::Refused { status: 403, .. }) if raw => {
                    if !self.masked.swap(true, Ordering::Relaxed) {
                        self.report.note(
                            "a viewer token: the credentials hookd masks for viewers \
                             (Authorization, Cookie, a token parameter) are not forwarded",
                        );
                    }
                }
                Err(ApiError::Refused { status: 404, .. }) => {
                    return Ready::Gone {
                        seq,
                        summary: Box::new(summary),
                        why: PRUNED.into(),
                    };
                }
                Err(ApiError::Refused { status, message }) => {
                    return Ready::Fatal(format!(
                        "the server refused message.get: {message} [HTTP {status}]"
                    ));
                }
                Err(ApiError::Unavailable(e)) => {
                    let wait = backoff.next();
                    self.report.note(&format!(
                        "cannot fetch message {}: {e}; retrying in {}",
                        summary.id,
                        report::secs(wait)
                    ));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// The body `message.get` returned, when it is all of it.
fn whole_body(m: &Message) -> Option<Bytes> {
    if m.body_truncated {
        return None;
    }
    let bytes = match m.encoding {
        BodyEncoding::Utf8 => Bytes::from(m.body.clone().into_bytes()),
        BodyEncoding::Base64 => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(&m.body)
                .ok()?,
        ),
    };
    (bytes.len() as u64 == m.summary.size).then_some(bytes)
}

/// How forwarding a message ended.
enum Done {
    /// The app answered below 500, at this attempt.
    Answered {
        attempt: u32,
        status: u16,
        took: Duration,
    },
    /// The message was pruned from the server meanwhile.
    Gone,
}

/// Forwards one message until the app answers below 500 (a 4xx is final too). Reports the
/// attempts that fail; the last one is the caller's to report.
async fn deliver(
    server: &Server,
    forwarder: &Forwarder,
    masked: &AtomicBool,
    report: Reporter,
    msg: &Message,
    body: Option<Bytes>,
) -> Done {
    let mut backoff = Backoff::new();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let started = Instant::now();
        let sending = match &body {
            Some(b) => Ok(reqwest::Body::from(b.clone())),
            None => match server.body(&msg.summary.id).await {
                Ok(resp) => Ok(reqwest::Body::wrap_stream(resp.bytes_stream())),
                Err(ApiError::Refused { status: 404, .. }) => return Done::Gone,
                Err(e) => Err(format!("cannot read the body from the server: {e}")),
            },
        };
        let answer = match sending {
            Ok(b) => forwarder.send(msg, b, masked.load(Ordering::Relaxed)).await,
            Err(e) => Answer::Failed(e),
        };
        let took = started.elapsed();
        let outcome = match &answer {
            Answer::Status(status) if *status < 500 => {
                return Done::Answered {
                    attempt,
                    status: *status,
                    took,
                };
            }
            Answer::Status(s) => Outcome::Status(*s),
            Answer::Failed(e) => Outcome::Error(e),
        };
        let wait = backoff.next();
        report.attempt(&msg.summary, attempt, outcome, took, Some(wait));
        tokio::time::sleep(wait).await;
    }
}
