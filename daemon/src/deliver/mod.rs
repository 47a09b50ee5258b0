//! Outgoing webhooks: a scheduler that attempts committed deliveries when they are due, with
//! bounded concurrency overall and per destination host (a hanging host only ever holds its
//! own permits), Standard Webhooks signatures, SSRF-guarded connections and no redirects.
//! Pending retries live in SQLite, so they survive restarts and `kill -9`.

pub mod guard;
pub mod sign;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::locks::lock;
use crate::store::Store;
use crate::store::deliveries::{AttemptRecord, DeliveryRow, Next};
use guard::{GuardedResolver, Policy};

/// Response bytes kept per attempt.
const MAX_RESPONSE: usize = 64 * 1024;
/// Attempts started (or waiting for a host permit) at most at once.
const MAX_IN_FLIGHT: usize = 1000;
/// The longest the scheduler sleeps without looking (guards against a missed wake-up).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Default delays before each attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_SCHEDULE: [i64; 8] = [
    0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
];

/// Pauses all attempts while their outcomes cannot be recorded (a full disk, say). An attempt
/// that was not recorded is still due, so without a pause it would be sent again at once, in a
/// loop: measured on a full disk, 20 pending deliveries kept a core busy, sent each again
/// hundreds of times a second and logged 7,500 errors a second.
#[derive(Debug, Default)]
struct Hold {
    until: Option<Instant>,
    pause: Duration,
}

impl Hold {
    /// Recording failed at `now`: pause for the next `store::retry_pause`, unless a pause is
    /// already running. Returns the pause.
    fn failed(&mut self, now: Instant) -> Duration {
        if self.until.is_some_and(|u| u > now) {
            return self.pause;
        }
        self.pause = crate::store::retry_pause(self.pause);
        self.until = Some(now + self.pause);
        self.pause
    }

    /// An attempt was recorded: the store writes again.
    fn recorded(&mut self) {
        *self = Hold::default();
    }

    /// How long attempts must still wait at `now`.
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until.filter(|u| *u > now).map(|u| u - now)
    }
}

/// The delivery machinery.
pub struct Deliverer {
    wake: Notify,
    /// Deliveries being attempted, or whose attempt ended after the scheduler's last read began.
    in_flight: Mutex<HashSet<i64>>,
    /// Attempts recorded since the scheduler last looked. Only the scheduler takes a delivery out
    /// of `in_flight`, before it reads again: a read that overlapped the attempt's record could
    /// still list it as due, and it would be attempted twice.
    ended: Mutex<Vec<i64>>,
    global: Arc<Semaphore>,
    per_host: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_per_host: usize,
    hold: Mutex<Hold>,
    /// Refuses private destinations unless configured.
    pub policy: Arc<Policy>,
    /// As `policy`, plus loopback when forwarding locally is on.
    pub local_policy: Arc<Policy>,
    strict: reqwest::Client,
    local: reqwest::Client,
    /// Where deliveries and their attempts are recorded.
    store: Store,
}

/// The client for one policy: its resolver checks every address, redirects are not followed,
/// system proxies are not used (the proxy would be what we connect to).
fn client(policy: Arc<Policy>) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("hookd/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(8)
        // Many servers close idle connections after 5 s (Node's default); reusing one they just
        // closed would fail an attempt for nothing.
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl Deliverer {
    /// Builds the clients and limits from the config.
    pub fn new(config: &Config, store: Store) -> Result<Deliverer, String> {
        let s = &config.send;
        let policy = Arc::new(Policy {
            allow_cidrs: s.allow_cidrs.clone(),
            allow_private: s.allow_private,
            allow_loopback: false,
        });
        let forward_local = s
            .allow_forward_local
            .unwrap_or_else(|| config.listen.ip().is_loopback());
        let local_policy = Arc::new(Policy {
            allow_loopback: forward_local,
            ..(*policy).clone()
        });
        Ok(Deliverer {
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            ended: Mutex::new(Vec::new()),
            global: Arc::new(Semaphore::new(s.max_concurrency)),
            per_host: Mutex::new(HashMap::new()),
            max_per_host: s.max_per_host,
            hold: Mutex::new(Hold::default()),
            strict: client(policy.clone())?,
            local: client(local_policy.clone())?,
            policy,
            local_policy,
            store,
        })
    }

    /// Makes the scheduler look at once (a delivery was created or retried).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn host_permits(&self, host: &str) -> Arc<Semaphore> {
        let mut map = lock(&self.per_host);
        map.entry(host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
            .clone()
    }
}

/// The scheduler: starts due attempts, sleeps until the next is due or it is woken.
pub async fn run(d: Arc<Deliverer>, shutdown: CancellationToken) {
    loop {
        let held = lock(&d.hold).remaining(Instant::now());
        if let Some(pause) = held {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        let ended = std::mem::take(&mut *lock(&d.ended));
        {
            let mut in_flight = lock(&d.in_flight);
            for seq in ended {
                in_flight.remove(&seq);
            }
        }
        let now = crate::clock::now_ms();
        let room = MAX_IN_FLIGHT.saturating_sub(lock(&d.in_flight).len());
        let due = if room == 0 {
            Vec::new()
        } else {
            d.store
                .due_deliveries(now, (room as u32).min(500))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!("reading due deliveries failed: {e}");
                    Vec::new()
                })
        };
        let mut started_all_due = true;
        for row in due {
            let fresh = lock(&d.in_flight).insert(row.seq);
            if !fresh {
                // Already in flight: its end will wake us.
                started_all_due = false;
                continue;
            }
            tokio::spawn(attempt(d.clone(), row));
        }
        let next = d.store.next_delivery_due().await.ok().flatten();
        let wait = match next {
            Some(t) if t > crate::clock::now_ms() => {
                Duration::from_millis((t - crate::clock::now_ms()) as u64)
            }
            // Due now but in flight (or beyond the in-flight cap): wait to be woken.
            Some(_) if !started_all_due || room == 0 => MAX_SLEEP,
            Some(_) => Duration::ZERO,
            None => MAX_SLEEP,
        };
        tokio::select! {
            () = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
            () = d.wake.notified() => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Makes one attempt of `row` and records it.
async fn attempt(d: Arc<Deliverer>, row: DeliveryRow) {
    let seq = row.seq;
    let record = attempt_once(&d, &row).await;
    let outcome = match record.next {
        crate::store::deliveries::Next::Succeeded => "success",
        crate::store::deliveries::Next::Failed => "failed",
        crate::store::deliveries::Next::RetryAt(_) => "retry",
    };
    metrics::counter!(crate::metrics::DELIVERY_ATTEMPTS, "outcome" => outcome).increment(1);
    metrics::histogram!(crate::metrics::DELIVERY_ATTEMPT_SECONDS)
        .record(record.duration_ms.max(0) as f64 / 1000.0);
    let recorded = d.store.record_attempt(record).await;
    {
        let mut hold = lock(&d.hold);
        match &recorded {
            Ok(_) => hold.recorded(),
            Err(e) => {
                let pause = hold.failed(Instant::now());
                tracing::error!(
                    "recording an attempt of delivery {seq} failed: {e}; attempts pause for {} s, \
                     then this one is made again",
                    pause.as_secs()
                );
            }
        }
    }
    lock(&d.ended).push(seq);
    d.wake();
}

async fn attempt_once(d: &Deliverer, row: &DeliveryRow) -> AttemptRecord {
    let url = reqwest::Url::parse(&row.url).map_err(|e| format!("invalid URL: {e}"));
    let host = url
        .as_ref()
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(0)
            )
        })
        .unwrap_or_default();
    // Host permit first: waiting for a slow host never holds a global permit.
    let _host = d.host_permits(&host).acquire_owned().await;
    let _global = d.global.clone().acquire_owned().await;
    let at = crate::clock::now_ms();
    let started = Instant::now();
    let result = send(d, row, url).await;
    let duration_ms = started.elapsed().as_millis() as i64;
    let n = row.attempts + 1;
    match result {
        Ok((status, headers, body)) => {
            let retry_after = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| parse_retry_after(v));
            AttemptRecord {
                seq: row.seq,
                at,
                duration_ms,
                status: Some(status),
                response_headers: headers,
                response_body: body,
                error: None,
                next: decide(Some(status), n, row, retry_after),
            }
        }
        Err(error) => AttemptRecord {
            seq: row.seq,
            at,
            duration_ms,
            status: None,
            response_headers: Vec::new(),
            response_body: Vec::new(),
            error: Some(error),
            next: decide(None, n, row, None),
        },
    }
}

type Response = (u16, Vec<(String, String)>, Vec<u8>);

async fn send(
    d: &Deliverer,
    row: &DeliveryRow,
    url: Result<reqwest::Url, String>,
) -> Result<Response, String> {
    let url = url?;
    let policy = if row.local {
        &d.local_policy
    } else {
        &d.policy
    };
    // Literal IPs never reach the resolver: check them here.
    guard::precheck_literal(policy, &url)?;
    let body = match (&row.body, row.message_seq) {
        (Some(b), _) => b.clone(),
        (None, Some(seq)) => {
            d.store
                .message_with_body(seq)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the forwarded message no longer exists")?
                .1
        }
        (None, None) => Vec::new(),
    };
    let method = reqwest::Method::from_bytes(row.method.as_bytes()).map_err(|e| e.to_string())?;
    let client = if row.local { &d.local } else { &d.strict };
    let mut req = client
        .request(method, url)
        .timeout(Duration::from_millis(row.timeout_ms.max(1) as u64));
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &row.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    if let Some(secret) = &row.secret {
        let secret = sign::Secret::parse(secret)?;
        let ts = crate::clock::now_ms() / 1000;
        let sig = secret.sign(&row.msg_id, ts, &body);
        for (k, v) in [
            ("webhook-id", row.msg_id.clone()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(HeaderName::from_static(k), v);
            }
        }
    }
    req = req.headers(headers).body(body);
    let mut resp = req.send().await.map_err(|e| chain(&e))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut kept = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_RESPONSE.saturating_sub(kept.len());
        if room == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok((status, headers, kept))
}

/// The whole cause chain of an error, which is where the useful part is (a refused
/// destination, a connection reset, a timeout).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// What follows attempt `n` that ended with `status` (None: no response).
fn decide(status: Option<u16>, n: u32, row: &DeliveryRow, retry_after: Option<i64>) -> Next {
    match status {
        Some(s) if (200..300).contains(&s) => return Next::Succeeded,
        Some(410) => return Next::Failed,
        _ => {}
    }
    if n >= row.max_attempts {
        return Next::Failed;
    }
    let schedule = if row.schedule.is_empty() {
        &DEFAULT_SCHEDULE[..]
    } else {
        &row.schedule[..]
    };
    let planned = schedule
        .get(n as usize)
        .or(schedule.last())
        .copied()
        .unwrap_or(0)
        .max(0);
    let longest = schedule.iter().copied().max().unwrap_or(0);
    let delay = match (status, retry_after) {
        // Honoured, but never past the schedule's longest delay.
        (Some(429 | 503), Some(ra)) => ra.clamp(0, longest.max(planned)),
        _ => jitter(planned),
    };
    Next::RetryAt(crate::clock::now_ms() + delay)
}

/// ±10 %, so deliveries that failed together do not retry together.
fn jitter(ms: i64) -> i64 {
    if ms <= 0 {
        return 0;
    }
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let r = i64::from(u16::from_le_bytes(b)) - 32_768; // -32768..32767
    ms + ms * r / 327_680
}

/// `Retry-After: 120` or an HTTP date (any of RFC 9110's three forms), as milliseconds from now.
fn parse_retry_after(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return Some(secs.max(0) * 1000);
    }
    let when = httpdate::parse_http_date(v).ok()?;
    let ms = when.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some((ms - crate::clock::now_ms()).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_pause_longer_each_time_their_outcomes_cannot_be_recorded() {
        let t0 = Instant::now();
        let mut hold = Hold::default();
        assert_eq!(hold.remaining(t0), None);
        assert_eq!(hold.failed(t0), Duration::from_secs(1));
        assert_eq!(hold.remaining(t0), Some(Duration::from_secs(1)));
        // Failures of attempts already under way do not stretch the running pause.
        assert_eq!(
            hold.failed(t0 + Duration::from_millis(500)),
            Duration::from_secs(1)
        );
        assert_eq!(hold.remaining(t0 + Duration::from_secs(1)), None);
        let mut at = t0 + Duration::from_secs(1);
        let mut pauses = Vec::new();
        for _ in 0..8 {
            let p = hold.failed(at);
            pauses.push(p.as_secs());
            at += p;
        }
        assert_eq!(pauses, [2, 4, 8, 16, 32, 60, 60, 60]);
        hold.recorded();
        assert_eq!(hold.remaining(at), None);
        assert_eq!(hold.failed(at), Duration::from_secs(1));
    }

    fn row(max: u32, schedule: Vec<i64>) -> DeliveryRow {
        DeliveryRow {
            seq: 1,
            created_at: 0,
            msg_id: "msg_1".into(),
            url: "http://x/".into(),
            method: "POST".into(),
            headers: vec![],
            body: None,
            message_seq: None,
            message_id: None,
            secret: None,
            timeout_ms: 1000,
            schedule,
            max_attempts: max,
            attempts: 0,
            status: "pending".into(),
            next_attempt_at: None,
            last_status: None,
            last_error: None,
            source: "api".into(),
            local: false,
        }
    }

    #[test]
    fn outcomes_follow_the_rules() {
        let r = row(3, vec![0, 1000, 60_000]);
        assert_eq!(decide(Some(204), 1, &r, None), Next::Succeeded);
        assert_eq!(decide(Some(410), 1, &r, None), Next::Failed);
        assert_eq!(
            decide(Some(500), 3, &r, None),
            Next::Failed,
            "the last attempt failed"
        );
        let Next::RetryAt(t) = decide(Some(500), 1, &r, None) else {
            panic!("retry expected");
        };
        let delay = t - crate::clock::now_ms();
        assert!((850..=1100).contains(&delay), "{delay}");
        // A redirect is a failure, not followed.
        assert!(matches!(decide(Some(302), 1, &r, None), Next::RetryAt(_)));
        // Retry-After honoured on 429/503, within the schedule's longest delay.
        let Next::RetryAt(t) = decide(Some(429), 1, &r, Some(30_000)) else {
            panic!("retry expected");
        };
        assert!((t - crate::clock::now_ms() - 30_000).abs() < 100);
        let Next::RetryAt(t) = decide(Some(503), 1, &r, Some(3_600_000)) else {
            panic!("retry expected");
        };
        assert!(t - crate::clock::now_ms() <= 60_000);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(120_000));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0),
            "past dates mean now"
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(0),
            "RFC 850's obsolete form"
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994"),
            Some(0),
            "asctime"
        );
        let later = httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(120),
        );
        let ms = parse_retry_after(&later).expect("a future date");
        assert!((118_000..=120_000).contains(&ms), "{later}: {ms}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
