//! The client's address: the socket peer, or — only when that peer is a
//! configured trusted proxy — the right-most untrusted hop of
//! `X-Forwarded-For`. Anything a client writes into the header itself sits
//! to the left of what its proxies append, so it is never believed.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

use crate::config::parse_net;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// From `trusted_proxies` (already validated; bad entries are skipped).
    pub fn new(entries: &[String]) -> TrustedProxies {
        TrustedProxies {
            nets: entries.iter().filter_map(|e| parse_net(e)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.nets.is_empty() || !self.trusts(peer) {
            return peer;
        }
        // Every X-Forwarded-For line, in order, as one list of hops.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        return ip;
                    }
                }
                // Garbage from the left of a trusted hop: stop at the last
                // address a trusted proxy vouched for.
                None => return client,
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let inner = hop.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

/// The key a per-IP limiter uses: an IPv6 client usually owns a whole /64,
/// so it counts as one address.
pub fn limiter_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for x in v {
            h.append("x-forwarded-for", HeaderValue::from_str(x).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let t = TrustedProxies::new(&["10.0.0.0/8".into(), "::1".into()]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Untrusted peer: the header is ignored.
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), &xff(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
        // Trusted peer: right-most untrusted hop, spoofed left part ignored.
        assert_eq!(
            t.client_ip(ip("10.1.2.3"), &xff(&["6.6.6.6, 198.51.100.1, 10.9.9.9"])),
            ip("198.51.100.1")
        );
        // Several header lines are one list.
        assert_eq!(
            t.client_ip(ip("::1"), &xff(&["6.6.6.6", "198.51.100.2:4711"])),
            ip("198.51.100.2")
        );
        // Every hop trusted: the left-most.
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &xff(&["10.0.0.2"])),
            ip("10.0.0.2")
        );
        // Garbage: the last address a trusted proxy gave.
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &xff(&["nonsense, 10.0.0.7"])),
            ip("10.0.0.7")
        );
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff(&[])), ip("10.0.0.1"));
        // No proxies configured.
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("10.0.0.1"), &xff(&["1.1.1.1"])),
            ip("10.0.0.1")
        );
        assert!(parse_net("bogus").is_none());
        assert!(
            parse_net("192.168.1.7/24")
                .unwrap()
                .contains(&ip("192.168.1.200"))
        );
        assert_eq!(
            limiter_key(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::")
        );
    }
}
