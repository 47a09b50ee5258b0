//! Daemon settings: defaults, then an optional TOML file, then `HOOKD_*` variables, then flags
//! (each later source wins).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::retention::Limits;
pub mod keys;

pub use crate::retention::RetentionConfig;

/// The address hookd listens on when nothing else is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Global body limit when nothing else is configured: 25 MiB.
pub const DEFAULT_MAX_BODY: u64 = 25 * 1024 * 1024;

/// One per core, as tokio would pick. (Measured before connections moved to lanes: on two cores
/// shared with the load generator one thread served ~5 % more JSON receives and outgoing
/// deliveries alike or slower, docs/BENCHMARKS.md, target 1: not enough to change the default.)
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resolved settings of one daemon.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Base of every `webhookUrl`; `None` derives it from the bound address.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// Global body limit in bytes; no webhook may exceed it.
    pub max_body: u64,
    pub max_connections: usize,
    /// Threads serving connections (`server::Lanes`), and as many for deliveries and the rest.
    pub threads: usize,
    /// Bootstrap admin token; `None` generates one into `<data-dir>/admin.token`.
    pub admin_token: Option<String>,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// Most parts a multipart body may have.
    pub max_parts: usize,
    /// Proxies whose `X-Forwarded-For` is believed (for allowCidrs and per-IP limits).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Requests per second per source IP on webhook URLs (0: no limit), and the burst.
    pub per_ip_rate: f64,
    pub per_ip_burst: u32,
    /// IPv6 sources share a per-IP bucket per prefix of this many bits.
    pub per_ip_v6_prefix: u8,
    /// A body slower than this (bytes/s, after the first headerReadTimeout) is cut off.
    pub min_body_rate: u64,
    pub synchronous: Synchronous,
    /// The storage backend (`[storage] url`); SQLite in the data dir by default.
    pub storage: StorageUrl,
    pub events: EventsConfig,
    pub pipeline: PipelineConfig,
    pub smtp: Option<SmtpConfig>,
    pub send: SendConfig,
    pub retention: RetentionConfig,
    pub metrics: MetricsConfig,
    /// Log lines as text for a person, or JSON for a log shipper.
    pub log_format: LogFormat,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Record and serve metrics at all.
    pub enabled: bool,
    /// Serve `/metrics` (and `/healthz`, `/readyz`) on this address of its own, without a
    /// token, instead of on the main listener with one.
    pub listen: Option<SocketAddr>,
    /// On the main listener, whether `/metrics` needs a (viewer) token.
    pub token_required: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Outgoing webhooks (`webhook.send`, `message.forward`).
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Destinations allowed even though they are private, loopback, ...
    pub allow_cidrs: Vec<ipnet::IpNet>,
    /// Allow every private/loopback/link-local destination.
    pub allow_private: bool,
    /// Let `message.forward` reach loopback (default: when hookd itself listens on loopback).
    pub allow_forward_local: Option<bool>,
    /// Attempts in flight at once, overall and per destination host.
    pub max_concurrency: usize,
    pub max_per_host: usize,
}

/// Listener pipelines.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Runs at once; more wait in the queue.
    pub workers: usize,
    /// Programs (`exec`) running at once across all runs; more wait for one to end.
    pub programs: usize,
    /// Every run's time limit.
    pub timeout: Duration,
    /// Runs one trace (a message and the `event.send` chains it sets off) may queue in all.
    pub max_runs_per_trace: u32,
    /// What a run may do as `anonymous` (before any iam.run.as).
    pub anonymous_commands: Vec<String>,
    /// The nice value (0–19) of the threads runs execute on, so receiving goes first; 0 also
    /// keeps runs going at full pace during a burst of receives.
    pub nice: i32,
}

/// The SMTP server `mail.send` uses.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub starttls: StartTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Default sender.
    pub from: Option<String>,
}

/// Whether SMTP upgrades to TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    None,
    Opportunistic,
    Required,
}

/// What anonymous runs may do unless `[pipeline] anonymousCommands` says otherwise.
pub const DEFAULT_ANONYMOUS: [&str; 8] = [
    "log",
    "set",
    "var.set",
    "body.set",
    "exit",
    "event.send",
    "webhook.send",
    "mail.send",
];

/// The event stream and its log.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Most simultaneous WebSocket clients.
    pub max_clients: usize,
    /// The log keeps at most this many events...
    pub max_count: u64,
    /// ...and none older than this.
    pub max_age: Duration,
}

/// SQLite's `synchronous` setting: what a 2xx survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: a 2xx survives power loss.
    Full,
    /// fsync at checkpoints: a 2xx survives a crash of hookd, not of the machine.
    Normal,
}

/// A parsed `[storage] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// The embedded database in this directory (bodies beside it).
    Sqlite(PathBuf),
}

/// The schemes `[storage] url` accepts.
pub const SUPPORTED_SCHEMES: &str = "sqlite://";

impl StorageUrl {
    /// The default: SQLite in the data dir.
    pub fn default_for(data_dir: &Path) -> StorageUrl {
        StorageUrl::Sqlite(data_dir.to_path_buf())
    }

    /// Parses `sqlite://<dir>` or `sqlite://<dir>/hookd.db` (relative paths are relative to the
    /// working directory); any other scheme is an error naming the supported ones.
    pub fn parse(url: &str) -> Result<StorageUrl, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "storage url '{url}' has no scheme; use {SUPPORTED_SCHEMES}<data dir>"
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(format!(
                        "storage url '{url}' names no directory; e.g. sqlite:///var/lib/hookd"
                    ));
                }
                let path = Path::new(rest);
                let dir = match path.file_name() {
                    Some(f) if f == "hookd.db" => path.parent().unwrap_or(Path::new(".")),
                    _ => path,
                };
                Ok(StorageUrl::Sqlite(dir.to_path_buf()))
            }
            "postgres" | "postgresql" => Err(format!(
                "storage url '{url}': PostgreSQL is not supported by this build yet; supported: {SUPPORTED_SCHEMES}"
            )),
            other => Err(format!(
                "storage url '{url}': unknown scheme '{other}'; supported: {SUPPORTED_SCHEMES}"
            )),
        }
    }

    /// The directory the SQLite adapter uses.
    pub fn sqlite_dir(&self) -> &Path {
        match self {
            StorageUrl::Sqlite(d) => d,
        }
    }
}

impl Config {
    /// Defaults with the given data dir: what tests and embedders start from.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        let data_dir = data_dir.into();
        Config {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            public_url: None,
            storage: StorageUrl::default_for(&data_dir),
            data_dir,
            max_body: DEFAULT_MAX_BODY,
            max_connections: 1024,
            threads: default_threads(),
            admin_token: None,
            header_read_timeout: Duration::from_secs(10),
            max_parts: 1000,
            trusted_proxies: Vec::new(),
            per_ip_rate: 0.0,
            per_ip_burst: 0,
            per_ip_v6_prefix: 64,
            min_body_rate: 1024,
            synchronous: Synchronous::Full,
            events: EventsConfig {
                max_clients: 256,
                max_count: 1_000_000,
                max_age: Duration::from_secs(30 * 24 * 3600),
            },
            pipeline: PipelineConfig {
                // Runs mostly wait on the writer; 48 drained a burst's runs ~1.5x faster than
                // 16 (docs/BENCHMARKS.md, target 2). Processes are bounded by `programs`.
                workers: 48,
                programs: 16,
                max_runs_per_trace: 1000,
                timeout: Duration::from_secs(60),
                anonymous_commands: DEFAULT_ANONYMOUS.iter().map(|s| s.to_string()).collect(),
                nice: 10,
            },
            smtp: None,
            retention: RetentionConfig {
                interval: Duration::from_secs(60),
                ..RetentionConfig::default()
            },
            metrics: MetricsConfig {
                enabled: true,
                listen: None,
                token_required: true,
            },
            log_format: LogFormat::Text,
            send: SendConfig {
                allow_cidrs: Vec::new(),
                allow_private: false,
                allow_forward_local: None,
                max_concurrency: 64,
                max_per_host: 8,
            },
        }
    }

    /// Layers `file` (if any), then `over` (variables and flags, already merged by clap).
    pub fn load(over: &Overrides) -> Result<Config, ConfigError> {
        let file = FileConfig::load(over.config.as_deref())?;
        let s = file.server;
        let data_dir = over
            .data_dir
            .clone()
            .or(s.data_dir)
            .unwrap_or_else(default_data_dir);
        let mut c = Config::with_data_dir(data_dir);
        if let Some(listen) = over
            .listen
            .or(s.listen.as_deref().map(parse_addr).transpose()?)
        {
            c.listen = listen;
        }
        c.public_url = over
            .public_url
            .clone()
            .or(s.public_url)
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &c.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "publicUrl '{url}' must start with http:// or https://"
            )));
        }
        if let Some(v) = over.max_body.or(s.max_body.map(|v| v.0)) {
            c.max_body = v;
        }
        if let Some(v) = over.max_connections.or(s.max_connections) {
            c.max_connections = v.max(1);
        }
        if let Some(v) = s.threads {
            c.threads = if v == 0 { default_threads() } else { v };
        }
        c.admin_token = s.admin_token.filter(|t| !t.is_empty());
        if let Some(v) = s.header_read_timeout {
            c.header_read_timeout = v.0;
        }
        if let Some(v) = s.max_parts {
            c.max_parts = v;
        }
        if let Some(v) = s.trusted_proxies {
            c.trusted_proxies = v.iter().map(|p| parse_cidr(p)).collect::<Result<_, _>>()?;
        }
        if let Some(v) = s.per_ip_rate {
            c.per_ip_rate = v.max(0.0);
            c.per_ip_burst = s.per_ip_burst.unwrap_or((v * 2.0).ceil() as u32).max(1);
        }
        if let Some(v) = s.per_ip_v6_prefix {
            if !(1..=128).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "[server] perIpV6Prefix = {v}: must be 1 to 128 (64: one bucket per /64)"
                )));
            }
            c.per_ip_v6_prefix = v;
        }
        if let Some(v) = s.min_body_rate {
            c.min_body_rate = v;
        }
        if let Some(url) = over.store.clone().or(file.storage.url) {
            c.storage = StorageUrl::parse(&url).map_err(ConfigError::Invalid)?;
        }
        if let Some(v) = file.storage.synchronous {
            c.synchronous = v;
        }
        let e = file.events;
        if let Some(v) = e.max_clients {
            c.events.max_clients = v;
        }
        if let Some(v) = e.max_count {
            c.events.max_count = v;
        }
        if let Some(v) = e.max_age {
            c.events.max_age = v.0;
        }
        let p = file.pipeline;
        if let Some(v) = p.workers {
            c.pipeline.workers = v.max(1);
        }
        if let Some(v) = p.programs {
            c.pipeline.programs = v.max(1);
        }
        if let Some(v) = p.max_runs_per_trace {
            c.pipeline.max_runs_per_trace = v.max(1);
        }
        if let Some(v) = p.timeout {
            c.pipeline.timeout = v.0;
        }
        if let Some(v) = p.anonymous_commands {
            c.pipeline.anonymous_commands = v;
        }
        if let Some(v) = p.nice {
            if !(0..=19).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "[pipeline] nice = {v}: must be 0 (runs share the CPU equally with receiving) \
                     to 19 (runs only get what receiving leaves)"
                )));
            }
            c.pipeline.nice = v;
        }
        let send = file.send;
        if let Some(cidrs) = send.allow_cidrs {
            c.send.allow_cidrs = cidrs
                .iter()
                .map(|s: &String| parse_cidr(s))
                .collect::<Result<_, _>>()?;
        }
        c.send.allow_private = send.allow_private.unwrap_or(false);
        c.send.allow_forward_local = send.allow_forward_local;
        if let Some(v) = send.max_concurrency {
            c.send.max_concurrency = v.max(1);
        }
        if let Some(v) = send.max_per_host {
            c.send.max_per_host = v.max(1);
        }
        file.retention.apply(&mut c)?;
        let m = file.metrics;
        if let Some(v) = m.enabled {
            c.metrics.enabled = v;
        }
        if let Some(v) = m.listen.as_deref().map(parse_addr).transpose()? {
            c.metrics.listen = Some(v);
        }
        if let Some(v) = m.token {
            c.metrics.token_required = v;
        }
        if let Some(v) = over.log_format.or(s.log_format) {
            c.log_format = v;
        }
        if let Some(m) = file.smtp {
            let host = m.host.ok_or_else(|| {
                ConfigError::Invalid(
                    "[smtp] needs host (the SMTP server, e.g. smtp.example.com)".into(),
                )
            })?;
            let starttls = m.starttls.unwrap_or(StartTls::Opportunistic);
            c.smtp = Some(SmtpConfig {
                port: m
                    .port
                    .unwrap_or(if starttls == StartTls::None { 25 } else { 587 }),
                host,
                starttls,
                username: m.username,
                password: m.password,
                from: m.from,
            });
        }
        Ok(c)
    }
}

/// Settings given as flags or `HOOKD_*` variables (clap resolves flag-over-variable).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Overrides {
    /// TOML config file (sections [server], [storage]).
    #[arg(long, env = "HOOKD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "HOOKD_LISTEN", global = true, value_parser = parse_addr)]
    pub listen: Option<SocketAddr>,
    /// Base URL used to build webhook URLs [default: derived from the listen address].
    #[arg(long, env = "HOOKD_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Where the database and captured files live [default: ~/.local/share/hookd].
    #[arg(long, env = "HOOKD_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Storage backend URL [default: sqlite://<data dir>]
    #[arg(long, env = "HOOKD_STORE", global = true)]
    pub store: Option<String>,
    /// Largest accepted request body, e.g. 25MiB [default: 25MiB].
    #[arg(long, env = "HOOKD_MAX_BODY", global = true, value_parser = parse_size)]
    pub max_body: Option<u64>,
    /// Most simultaneous connections [default: 1024].
    #[arg(long, env = "HOOKD_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Log lines as text (default) or json, one object per line.
    #[arg(long, env = "HOOKD_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// A config file that cannot be used; the message names the file and the problem.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    // `cause`, not `source`: as the error's source it would be printed twice by `{:#}`.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("hookd"))
        .unwrap_or_else(|| PathBuf::from("hookd-data"))
}

fn parse_addr(s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "listen address '{s}' is not of the form IP:PORT, e.g. 127.0.0.1:8080"
        ))
    })
}

/// `10.0.0.0/8`, `127.0.0.1` (a single address), `::1/128`.
fn parse_cidr(s: &str) -> Result<ipnet::IpNet, ConfigError> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            ConfigError::Invalid(format!(
                "'{s}' is not a CIDR such as 10.0.0.0/8 or 127.0.0.1/32"
            ))
        })
}

pub use hookd_shared::units::parse_size;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    storage: StorageSection,
    #[serde(default)]
    events: EventsSection,
    #[serde(default)]
    pipeline: PipelineSection,
    smtp: Option<SmtpSection>,
    #[serde(default)]
    send: SendSection,
    #[serde(default)]
    retention: RetentionSection,
    #[serde(default)]
    metrics: MetricsSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MetricsSection {
    #[serde(default, deserialize_with = "flag")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "text")]
    listen: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    token: Option<bool>,
}

/// `[retention]`: the messages' limits, and a subsection per other kind.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RetentionSection {
    max_age: Option<Seconds>,
    max_count: Option<u64>,
    max_bytes: Option<Size>,
    interval: Option<Seconds>,
    #[serde(default)]
    executions: KindRetention,
    #[serde(default)]
    deliveries: KindRetention,
    #[serde(default)]
    events: KindRetention,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KindRetention {
    max_age: Option<Seconds>,
    max_count: Option<u64>,
    max_bytes: Option<Size>,
}

impl KindRetention {
    fn limits(&self, section: &str) -> Result<Limits, ConfigError> {
        if self.max_bytes.is_some() {
            return Err(ConfigError::Invalid(format!(
                "[retention.{section}] maxBytes: only messages are limited by size (their bodies \
                 are what fills a disk); limit {section} by maxAge or maxCount"
            )));
        }
        if self.max_count == Some(0) {
            return Err(ConfigError::Invalid(format!(
                "[retention.{section}] maxCount = 0 would keep nothing; leave it out for no limit"
            )));
        }
        Ok(Limits {
            max_age: self.max_age.as_ref().map(|s| s.0),
            max_count: self.max_count,
            max_bytes: None,
        })
    }
}

impl RetentionSection {
    fn apply(self, c: &mut Config) -> Result<(), ConfigError> {
        if self.max_count == Some(0) || self.max_bytes.as_ref().is_some_and(|b| b.0 == 0) {
            return Err(ConfigError::Invalid(
                "[retention] maxCount and maxBytes must be at least 1; leave them out for no limit"
                    .into(),
            ));
        }
        c.retention.messages = Limits {
            max_age: self.max_age.map(|s| s.0),
            max_count: self.max_count,
            max_bytes: self.max_bytes.map(|b| b.0),
        };
        c.retention.executions = self.executions.limits("executions")?;
        c.retention.deliveries = self.deliveries.limits("deliveries")?;
        let events = self.events.limits("events")?;
        if let Some(n) = events.max_count {
            c.events.max_count = n;
        }
        if let Some(a) = events.max_age {
            c.events.max_age = a;
        }
        if let Some(i) = self.interval {
            if i.0 < Duration::from_secs(1) {
                return Err(ConfigError::Invalid(
                    "[retention] interval must be at least 1s".into(),
                ));
            }
            c.retention.interval = i.0;
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SendSection {
    #[serde(default, deserialize_with = "list")]
    allow_cidrs: Option<Vec<String>>,
    #[serde(default, deserialize_with = "flag")]
    allow_private: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    allow_forward_local: Option<bool>,
    max_concurrency: Option<usize>,
    max_per_host: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PipelineSection {
    workers: Option<usize>,
    programs: Option<usize>,
    max_runs_per_trace: Option<u32>,
    timeout: Option<Seconds>,
    #[serde(default, deserialize_with = "list")]
    anonymous_commands: Option<Vec<String>>,
    nice: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SmtpSection {
    #[serde(default, deserialize_with = "text")]
    host: Option<String>,
    port: Option<u16>,
    starttls: Option<StartTls>,
    #[serde(default, deserialize_with = "text")]
    username: Option<String>,
    #[serde(default, deserialize_with = "text")]
    password: Option<String>,
    #[serde(default, deserialize_with = "text")]
    from: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServerSection {
    #[serde(default, deserialize_with = "text")]
    listen: Option<String>,
    #[serde(default, deserialize_with = "text")]
    public_url: Option<String>,
    #[serde(default, deserialize_with = "path")]
    data_dir: Option<PathBuf>,
    max_body: Option<Size>,
    max_connections: Option<usize>,
    threads: Option<usize>,
    #[serde(default, deserialize_with = "text")]
    admin_token: Option<String>,
    header_read_timeout: Option<Seconds>,
    max_parts: Option<usize>,
    #[serde(default, deserialize_with = "list")]
    trusted_proxies: Option<Vec<String>>,
    per_ip_rate: Option<f64>,
    per_ip_burst: Option<u32>,
    per_ip_v6_prefix: Option<u8>,
    min_body_rate: Option<u64>,
    log_format: Option<LogFormat>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EventsSection {
    max_clients: Option<usize>,
    max_count: Option<u64>,
    max_age: Option<Seconds>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StorageSection {
    #[serde(default, deserialize_with = "text")]
    url: Option<String>,
    synchronous: Option<Synchronous>,
}

/// A size written as an integer (bytes) or a string with a unit.
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as an integer (seconds) or a string such as `"10s"` or `"1m 30s"`.
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Seconds(Duration::from_secs(n))),
            Raw::S(s) => humantime::parse_duration(&s)
                .map(Seconds)
                .map_err(|e| serde::de::Error::custom(format!("'{s}': {e}"))),
        }
    }
}

impl FileConfig {
    /// The file (if any) with the `HOOKD_*` variables of `keys::KEYS` over it, in one figment.
    fn load(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        use figment::providers::{Env, Format, Toml};
        let mut fig = figment::Figment::new();
        if let Some(path) = path {
            // Read here rather than by figment, so a missing file is named with the OS's reason.
            let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                path: path.to_path_buf(),
                cause,
            })?;
            fig = fig.merge(Toml::string(&text));
        }
        let env = Env::prefixed("HOOKD_")
            .filter_map(|var| keys::path_for_env(var.as_str()).map(Into::into))
            .lowercase(false);
        fig.merge(env).extract().map_err(|e| explain(e, path))
    }
}

/// A figment error as a person reads it: which variable or file, which key, what is wrong.
fn explain(errors: figment::Error, path: Option<&Path>) -> ConfigError {
    let mut lines = Vec::new();
    for e in errors {
        // Figment prefixes the profile ("default") to key paths.
        let key: Vec<&str> = e
            .path
            .iter()
            .map(String::as_str)
            .filter(|p| *p != "default")
            .collect();
        let key = key.join(".");
        let from_env = e
            .metadata
            .as_ref()
            .is_some_and(|m| m.name.contains("environment"));
        let place = match (from_env, path) {
            (true, _) if !key.is_empty() => format!("variable {}", keys::env_name(&key)),
            (true, _) => "the HOOKD_* variables".into(),
            (false, Some(p)) => format!("config file {}", p.display()),
            (false, None) => "the configuration".into(),
        };
        let at = if key.is_empty() || from_env {
            String::new()
        } else {
            format!(" at {key}")
        };
        lines.push(format!("{place}{at}: {}", e.kind));
    }
    ConfigError::Invalid(lines.join("; "))
}

/// A string setting; a variable's digits or `true` (which figment reads as a number or a bool)
/// are taken as the text they were.
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|r| match r {
        Raw::S(s) => s,
        Raw::I(i) => i.to_string(),
        Raw::U(u) => u.to_string(),
        Raw::F(f) => f.to_string(),
        Raw::B(b) => b.to_string(),
    }))
}

fn path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(text(d)?.map(PathBuf::from))
}

/// A list: a TOML array, or (from a variable) one comma-separated string.
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|r| match r {
        Raw::List(l) => l,
        Raw::One(s) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
    }))
}

/// A boolean: true/false, or from a variable also 1/0 and yes/no.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        B(bool),
        N(i64),
        S(String),
    }
    Option::<Raw>::deserialize(d)?
        .map(|r| match r {
            Raw::B(b) => Ok(b),
            Raw::N(1) => Ok(true),
            Raw::N(0) => Ok(false),
            Raw::S(s) if ["yes", "on"].contains(&s.trim()) => Ok(true),
            Raw::S(s) if ["no", "off"].contains(&s.trim()) => Ok(false),
            _ => Err(serde::de::Error::custom(
                "expected true or false (also 1/0, yes/no)",
            )),
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_name_their_backend_or_say_what_is_supported() {
        assert_eq!(
            StorageUrl::parse("sqlite:///var/lib/hookd").expect("dir"),
            StorageUrl::Sqlite("/var/lib/hookd".into())
        );
        assert_eq!(
            StorageUrl::parse("sqlite://data/hookd.db").expect("file"),
            StorageUrl::Sqlite("data".into())
        );
        let e = StorageUrl::parse("mysql://db/hookd").expect_err("unknown");
        assert!(
            e.contains("unknown scheme 'mysql'") && e.contains("sqlite://"),
            "{e}"
        );
        let e = StorageUrl::parse("/var/lib/hookd").expect_err("no scheme");
        assert!(e.contains("no scheme"), "{e}");
        assert!(StorageUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("25MiB"), Ok(25 << 20));
        assert_eq!(parse_size("25M"), Ok(25 << 20));
        assert_eq!(parse_size("2 KB"), Ok(2000));
        assert!(parse_size("12 parsecs").unwrap_err().contains("parsecs"));
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<FileConfig>("[server]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("listn"), "{err}");
        let err = toml::from_str::<FileConfig>("[sever]\n")
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("sever"));
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hookd.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:9999\"\npublicUrl = \"https://hooks.example.com/\"\n\
             maxBody = \"1MiB\"\nheaderReadTimeout = \"3s\"\n[storage]\nsynchronous = \"normal\"\n",
        )
        .expect("write");
        let mut over = Overrides {
            config: Some(path),
            ..Overrides::default()
        };
        let c = Config::load(&over).expect("load");
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.public_url.as_deref(), Some("https://hooks.example.com"));
        assert_eq!(c.max_body, 1 << 20);
        assert_eq!(c.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.synchronous, Synchronous::Normal);
        over.max_body = Some(5);
        over.listen = Some("127.0.0.1:1".parse().expect("addr"));
        let c = Config::load(&over).expect("load");
        assert_eq!((c.max_body, c.listen.port()), (5, 1));
    }

    /// The config loaded from a file holding `toml`.
    fn load_file(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hookd.toml");
        std::fs::write(&path, toml).expect("write");
        Config::load(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
    }

    #[test]
    fn pipeline_nice_is_checked() {
        let nice = |toml| load_file(toml).expect("load").pipeline.nice;
        assert_eq!(nice("[pipeline]\nnice = 0\n"), 0);
        let err = load_file("[pipeline]\nnice = 20\n")
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("nice = 20: must be 0"));
        assert_eq!(nice(""), 10);
    }

    #[test]
    fn runs_and_programs_are_bounded_apart() {
        let bounds = |toml| {
            let p = load_file(toml).expect("load").pipeline;
            (p.workers, p.programs)
        };
        assert_eq!(bounds(""), (48, 16));
        assert_eq!(bounds("[pipeline]\nworkers = 4\nprograms = 0\n"), (4, 1));
    }

    #[test]
    fn http_threads_default_to_one_per_core_and_zero_means_the_default() {
        let threads = |toml| load_file(toml).expect("load").threads;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(threads(""), cores);
        assert_eq!(threads("[server]\nthreads = 3\n"), 3);
        assert_eq!(threads("[server]\nthreads = 0\n"), cores);
    }

    /// The key table and the file's sections agree both ways: every key of the table is one the
    /// file accepts, and every key a section accepts is in the table (so it has a variable and
    /// is documented).
    #[test]
    fn the_key_table_covers_every_setting() {
        let toml_for = |path: &str, value: &str| {
            let (section, key) = path.rsplit_once('.').expect("section.key");
            format!("[{section}]\n{key} = {value}\n")
        };
        for k in keys::KEYS {
            let err = toml::from_str::<FileConfig>(&toml_for(k.path, "\"x\""))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!err.contains("unknown field"), "{}: {err}", k.path);
        }
        for section in [
            "server",
            "storage",
            "events",
            "pipeline",
            "smtp",
            "send",
            "retention",
            "retention.executions",
            "retention.deliveries",
            "retention.events",
            "metrics",
        ] {
            let err = toml::from_str::<FileConfig>(&format!("[{section}]\nzzz = 1\n"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let expected = err
                .split("expected one of")
                .nth(1)
                .or_else(|| err.split("expected").nth(1))
                .unwrap_or_else(|| panic!("no field list for [{section}]: {err}"));
            for field in expected.split('`').skip(1).step_by(2) {
                let path = format!("{section}.{field}");
                let subsection = ["executions", "deliveries", "events"].contains(&field);
                // Refused with a reason of its own (only messages are limited by size).
                let refused = section.starts_with("retention.") && field == "maxBytes";
                if subsection || refused {
                    continue;
                }
                assert!(
                    keys::KEYS.iter().any(|k| k.path == path),
                    "{path} is missing from config/keys.rs"
                );
            }
        }
    }

    #[test]
    fn the_example_config_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/hookd.example.toml");
        let text = std::fs::read_to_string(&path).expect("docs/hookd.example.toml exists");
        toml::from_str::<FileConfig>(&text).expect("example config parses");
    }
}
