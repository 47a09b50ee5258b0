//! Rate limits on the receive path, in memory: per webhook (its `rateLimit`), per source IP
//! (`[server] perIpRate`), and a cap on how many rejected requests are recorded, so a flood of
//! bad signatures cannot fill the disk. Memory stays bounded however many IPs show up.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most source IPs tracked at once; past that, idle ones are forgotten first.
const MAX_IPS: usize = 100_000;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by `K`.
pub struct Buckets<K> {
    map: Mutex<HashMap<K, Bucket>>,
    max_keys: usize,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    /// Buckets for at most `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Buckets {
            map: Mutex::new(HashMap::new()),
            max_keys,
        }
    }

    /// Takes a token for `key`; `Err(wait)` when there is none yet.
    pub fn take(&self, key: &K, per_second: f64, burst: f64) -> Result<(), Duration> {
        if per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = crate::locks::lock(&self.map);
        if !map.contains_key(key) && map.len() >= self.max_keys {
            evict(&mut map, now, per_second, burst, self.max_keys);
        }
        let b = map.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_second).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_second))
        }
    }

    /// Forgets a key (e.g. a deleted webhook).
    pub fn forget(&self, key: &K) {
        crate::locks::lock(&self.map).remove(key);
    }
}

/// Drops buckets that have refilled (forgetting an idle key loses nothing); if that is not
/// enough, drops the least recently used half, so the map never grows past its cap and the
/// sources sending right now keep their buckets (an attacker's flood of new keys cannot reset
/// the bucket of the source it wants to keep sending from). Amortised: after a drop there is
/// room for many new keys before the next one.
fn evict<K: Eq + Hash + Clone>(
    map: &mut HashMap<K, Bucket>,
    now: Instant,
    per_second: f64,
    burst: f64,
    max_keys: usize,
) {
    map.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * per_second < burst);
    if map.len() >= max_keys {
        let mut by_use: Vec<(Instant, K)> = map.iter().map(|(k, b)| (b.last, k.clone())).collect();
        let half = by_use.len() / 2;
        by_use.select_nth_unstable_by_key(half, |(last, _)| *last);
        for (_, k) in &by_use[..=half] {
            map.remove(k);
        }
    }
}

/// The per-IP limit's key for a source: an IPv4 address itself (also when written as
/// IPv4-mapped IPv6), an IPv6 address's first `v6_prefix` bits, since one host or network
/// commonly holds a whole /64 and could otherwise rotate through it unlimited.
pub fn source_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(v6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        },
        v4 => v4,
    }
}

/// Every limit on the receive path.
pub struct Limits {
    pub per_webhook: Buckets<String>,
    pub per_ip: Buckets<IpAddr>,
    /// Recorded rejections per webhook: 1/s, bursts of 60.
    rejected_per_webhook: Buckets<String>,
    /// Recorded rejections overall: 10/s, bursts of 600.
    rejected_total: Buckets<()>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_webhook: Buckets::new(usize::MAX),
            per_ip: Buckets::new(MAX_IPS),
            rejected_per_webhook: Buckets::new(usize::MAX),
            rejected_total: Buckets::new(1),
        }
    }
}

impl Limits {
    /// Forgets a deleted webhook's buckets.
    pub fn forget_webhook(&self, uuid: &str) {
        let uuid = uuid.to_string();
        self.per_webhook.forget(&uuid);
        self.rejected_per_webhook.forget(&uuid);
    }

    /// Whether another rejected request of `webhook` may be recorded now.
    pub fn may_record_rejection(&self, webhook: &str) -> bool {
        self.rejected_per_webhook
            .take(&webhook.to_string(), 1.0, 60.0)
            .is_ok()
            && self.rejected_total.take(&(), 10.0, 600.0).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_bursts_then_the_rate() {
        let b: Buckets<u8> = Buckets::new(10);
        for _ in 0..3 {
            assert!(b.take(&1, 1.0, 3.0).is_ok());
        }
        let wait = b.take(&1, 1.0, 3.0).expect_err("empty");
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        assert!(b.take(&2, 1.0, 3.0).is_ok(), "keys are independent");
    }

    #[test]
    fn ipv6_sources_share_their_prefix_and_ipv4_stays_exact() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            source_key(ip("2001:db8:1:2:aaaa::1"), 64),
            source_key(ip("2001:db8:1:2:ffff:1:2:3"), 64)
        );
        assert_ne!(
            source_key(ip("2001:db8:1:2::1"), 64),
            source_key(ip("2001:db8:1:3::1"), 64)
        );
        assert_eq!(
            source_key(ip("2001:db8:1:2::1"), 128),
            ip("2001:db8:1:2::1")
        );
        assert_eq!(source_key(ip("2001:db8:1:2::1"), 48), ip("2001:db8:1::"));
        assert_eq!(source_key(ip("::ffff:192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(source_key(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        // A client rotating through its /64 drains one bucket.
        let b: Buckets<IpAddr> = Buckets::new(100);
        let mut limited = 0;
        for i in 0..10u16 {
            let src = ip(&format!("2001:db8:1:2::{i:x}"));
            if b.take(&source_key(src, 64), 0.001, 3.0).is_err() {
                limited += 1;
            }
        }
        assert_eq!(limited, 7);
    }

    #[test]
    fn eviction_keeps_the_recently_used_buckets() {
        let b: Buckets<u32> = Buckets::new(100);
        // Key 0 is drained and used all along; 1..2000 arrive once each and fill the map twenty
        // times over (an arbitrary half dropped each time would lose key 0 almost surely).
        assert!(b.take(&0, 0.001, 1.0).is_ok());
        for k in 1..2000u32 {
            let _ = b.take(&k, 0.001, 1.0);
            assert!(
                b.take(&0, 0.001, 1.0).is_err(),
                "key 0 lost its bucket at {k}"
            );
        }
    }

    #[test]
    fn many_keys_stay_bounded() {
        let b: Buckets<u32> = Buckets::new(1000);
        for k in 0..100_000u32 {
            let _ = b.take(&k, 1.0, 5.0);
        }
        assert!(b.map.lock().map(|m| m.len()).unwrap_or(0) <= 1000);
    }
}
