//! SSRF protection: outgoing calls may not reach loopback, private, link-local, unique-local,
//! site-local, CGNAT, benchmarking, IETF-reserved, multicast or unspecified addresses (nor the
//! IPv6 forms that embed such an IPv4 address: IPv4-mapped, IPv4-compatible, NAT64, 6to4) unless
//! the config allows it. The check runs on the addresses a hostname actually resolves to, inside
//! reqwest's resolver, so the address checked is the address connected to (no DNS rebinding
//! window). Literal-IP URLs never reach a resolver and are checked directly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which destinations are allowed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_cidrs: Vec<IpNet>,
    pub allow_private: bool,
    /// Loopback only (for message.forward to a developer's machine).
    pub allow_loopback: bool,
}

impl Policy {
    /// `Ok` if `ip` may be connected to; else why not, in words a person can act on.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let (reached, form) = match embedded_v4(ip) {
            Some((v4, form)) => (IpAddr::V4(v4), Some(form)),
            None => (ip, None),
        };
        if self
            .allow_cidrs
            .iter()
            .any(|n| n.contains(&reached) || n.contains(&ip))
        {
            return Ok(());
        }
        let Some(kind) = special(reached) else {
            return Ok(());
        };
        if self.allow_private || (self.allow_loopback && kind == "a loopback") {
            return Ok(());
        }
        let written = match form {
            Some(form) if form != "IPv4-mapped" => format!(" (written as {ip}, {form})"),
            _ => String::new(),
        };
        Err(format!(
            "destination {reached} is {kind} address{written}; allow it with send.allowPrivate \
             or send.allowCidrs"
        ))
    }
}

/// The IPv4 address an IPv6 address reaches, and the form it is written in: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated but still routed by some
/// stacks), NAT64 (`64:ff9b::a.b.c.d`, RFC 6052) and 6to4 (`2002:aabb:ccdd::/48`, RFC 3056).
/// Every check of a destination goes through this one function, so no form slips past one of
/// them. (The local-use NAT64 prefix `64:ff9b:1::/48` embeds at an offset its operator picks,
/// so it is refused as a whole in `special`.)
fn embedded_v4(ip: IpAddr) -> Option<(Ipv4Addr, &'static str)> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some((v4, "IPv4-mapped"));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some((v4(s[6], s[7]), "NAT64"));
    }
    if s[0] == 0x2002 {
        return Some((v4(s[1], s[2]), "6to4"));
    }
    // `::` and `::1` are IPv6's own unspecified and loopback addresses, not IPv4 ones.
    if s[..6] == [0; 6] && s[6] != 0 {
        return Some((v4(s[6], s[7]), "IPv4-compatible"));
    }
    None
}

/// What kind of non-public address `ip` is, if any.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("a loopback")
            } else if v4.is_private() {
                Some("a private")
            } else if v4.is_link_local() {
                Some("a link-local")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("a CGNAT (100.64.0.0/10)")
            } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
                Some("a benchmarking (198.18.0.0/15)")
            } else if o[..3] == [192, 0, 0] {
                Some("an IETF protocol assignment (192.0.0.0/24)")
            } else if v4.is_multicast() {
                Some("a multicast")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("an unspecified (0.0.0.0/8)")
            } else if v4.is_broadcast() {
                Some("a broadcast")
            } else if o[0] >= 240 {
                Some("a reserved (240.0.0.0/4)")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s0 = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback")
            } else if v6.is_unspecified() {
                Some("an unspecified")
            } else if (s0 & 0xfe00) == 0xfc00 {
                Some("a unique-local (fc00::/7)")
            } else if (s0 & 0xffc0) == 0xfe80 {
                Some("a link-local")
            } else if (s0 & 0xffc0) == 0xfec0 {
                Some("a site-local (fec0::/10)")
            } else if v6.segments()[..3] == [0x64, 0xff9b, 1] {
                Some("a local-use NAT64 (64:ff9b:1::/48)")
            } else if v6.is_multicast() {
                Some("a multicast")
            } else {
                None
            }
        }
    }
}

/// A reqwest resolver that only returns allowed addresses.
pub struct GuardedResolver {
    pub policy: Arc<Policy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| format!("{host} resolves to no address"));
                return Err(format!("{host}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Checks a literal-IP host (names are checked by the resolver at connect time).
pub fn precheck_literal(policy: &Policy, url: &reqwest::Url) -> Result<(), String> {
    let name = url.host_str().unwrap_or_default();
    match name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => policy.check(ip),
        Err(_) => Ok(()),
    }
}

/// Checks a URL's host before a delivery is accepted: a literal IP directly, a name by resolving
/// it now (the resolver checks again at connect time).
pub async fn precheck(policy: &Policy, url: &reqwest::Url) -> Result<(), String> {
    let name = url.host_str().ok_or_else(|| format!("{url} has no host"))?;
    if let Ok(ip) = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return policy.check(ip);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0))
        .await
        .map_err(|e| format!("cannot resolve {name}: {e}"))?
        .collect();
    // Refuse when any address is refused: a name that mixes public and private answers is
    // exactly what a rebinding attack looks like.
    for a in &addrs {
        policy
            .check(a.ip())
            .map_err(|e| format!("{name} resolves to {}: {e}", a.ip()))?;
    }
    if addrs.is_empty() {
        return Err(format!("{name} resolves to no address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn private_forms_are_refused_by_default() {
        let p = Policy::default();
        for bad in [
            "127.0.0.1",
            "10.0.0.5",
            "172.16.3.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "64:ff9b::a00:1",
            // Ranges a review found open (issue 28).
            "198.18.0.1",
            "198.19.255.254",
            "192.0.0.8",
            "240.0.0.1",
            "fec0::1",
            "2002:7f00:1::1",
            "2002:a00:5::1",
            "::127.0.0.1",
            "::10.0.0.5",
            "64:ff9b:1::a00:5",
            "64:ff9b::7f00:1",
        ] {
            assert!(p.check(ip(bad)).is_err(), "{bad} must be refused");
        }
        for good in [
            "93.184.216.34",
            "2606:4700::1111",
            "100.128.0.1",
            "::ffff:93.184.216.34",
            "198.20.0.1",
            "192.0.1.1",
            "2002:5db8:d822::1",
            "64:ff9b::5db8:d822",
        ] {
            assert!(p.check(ip(good)).is_ok(), "{good} must be allowed");
        }
        let e = p.check(ip("10.0.0.5")).expect_err("refused");
        assert_eq!(
            e,
            "destination 10.0.0.5 is a private address; allow it with send.allowPrivate or send.allowCidrs"
        );
        let e = p.check(ip("::ffff:127.0.0.1")).expect_err("refused");
        assert!(e.contains("127.0.0.1 is a loopback"), "{e}");
        let e = p.check(ip("2002:a00:5::1")).expect_err("refused");
        assert!(
            e.starts_with(
                "destination 10.0.0.5 is a private address (written as 2002:a00:5::1, 6to4)"
            ),
            "{e}"
        );
    }

    #[test]
    fn an_allowed_range_opens_its_embedded_forms_too() {
        let p = Policy {
            allow_cidrs: vec![
                "198.18.0.0/15".parse().expect("cidr"),
                "fec0::/10".parse().expect("cidr"),
            ],
            ..Policy::default()
        };
        for ok in [
            "198.18.0.1",
            "2002:c612:1::1",
            "::ffff:198.18.0.1",
            "fec0::1",
        ] {
            assert!(p.check(ip(ok)).is_ok(), "{ok}");
        }
        assert!(p.check(ip("2002:7f00:1::1")).is_err());
    }

    #[test]
    fn config_opens_what_it_names() {
        let p = Policy {
            allow_cidrs: vec!["127.0.0.1/32".parse().expect("cidr")],
            ..Policy::default()
        };
        assert!(p.check(ip("127.0.0.1")).is_ok());
        assert!(p.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check(ip("127.0.0.2")).is_err());
        let loopback = Policy {
            allow_loopback: true,
            ..Policy::default()
        };
        assert!(loopback.check(ip("127.0.0.2")).is_ok() && loopback.check(ip("10.0.0.1")).is_err());
        let all = Policy {
            allow_private: true,
            ..Policy::default()
        };
        assert!(all.check(ip("10.0.0.1")).is_ok());
    }
}
