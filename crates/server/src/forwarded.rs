//! The forwarding headers an upstream receives, and whom to believe.
//!
//! By default nothing a client sends is believed: `X-Real-IP` is the
//! connection's peer address and `X-Forwarded-Proto` is `http` (the main
//! listener speaks plain HTTP), whatever the request said. `X-Forwarded-For`
//! is always kept and appended to.
//!
//! With `--trusted-proxies` (e.g. the ingress controller's pod range), a
//! request whose peer is trusted keeps its `X-Forwarded-Proto`, and its
//! `X-Real-IP` is the right-most address in `X-Forwarded-For` (plus the
//! peer) that is not itself a trusted proxy — the nearest hop nobody we
//! trust can vouch for. Addresses further left could have been written by
//! the client and are never taken.

use std::net::IpAddr;

use ipnet::IpNet;

/// What to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forwarded {
    /// The whole `X-Forwarded-For` value: the incoming list plus the peer.
    pub x_forwarded_for: String,
    /// The client address to report in `X-Real-IP`.
    pub real_ip: IpAddr,
    /// The scheme to report in `X-Forwarded-Proto`.
    pub proto: &'static str,
}

/// IPv4 clients on a dual-stack socket appear as `::ffff:a.b.c.d`; report
/// them as the IPv4 address upstreams expect.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A client connection's peer as the forwarding fields need it, worked
/// out once per connection rather than per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The address, IPv4-mapped addresses as IPv4.
    pub ip: IpAddr,
    /// `ip` as text.
    pub text: String,
    /// Whether its `X-Forwarded-*` fields are believed.
    pub trusted: bool,
}

impl Peer {
    pub(crate) fn new(ip: IpAddr, trusted: &[IpNet]) -> Self {
        let ip = canonical_ip(ip);
        Peer {
            ip,
            text: ip.to_string(),
            trusted: is_trusted(ip, trusted),
        }
    }
}

/// The pieces of the `X-Forwarded-For` value sent on: the entries of the
/// incoming values (every line, in order, split at commas, trimmed, empty
/// ones dropped), each followed by `", "`, then `peer`. Pieces rather than
/// a string, so the fast path writes them straight into its buffer.
pub(crate) fn chain<'a>(
    incoming: &'a [&'a str],
    peer: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    incoming
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| [p, ", "])
        .chain(std::iter::once(peer))
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical_ip(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry as an address: plain, `[v6]`, or `v4:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    e.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}

/// Computes the headers for a request from `peer` that carried the given
/// `X-Forwarded-For` values (every line, in order) and `X-Forwarded-Proto`.
pub(crate) fn forwarded(
    peer: IpAddr,
    incoming_xff: &[&str],
    incoming_proto: Option<&str>,
    trusted: &[IpNet],
) -> Forwarded {
    let peer = canonical_ip(peer);
    let peer_text = peer.to_string();
    let xff: String = chain(incoming_xff, &peer_text).collect();

    if !is_trusted(peer, trusted) {
        return Forwarded {
            x_forwarded_for: xff,
            real_ip: peer,
            proto: "http",
        };
    }
    // Walk from the right past trusted hops; stop at the first address we
    // cannot vouch for (or cannot even read, in which case the last hop we
    // trust reported garbage and the peer is the best we know).
    let mut real_ip = peer;
    for entry in xff.rsplit(',').skip(1) {
        match parse_entry(entry) {
            Some(ip) if is_trusted(ip, trusted) => real_ip = canonical_ip(ip),
            Some(ip) => {
                real_ip = canonical_ip(ip);
                break;
            }
            None => break,
        }
    }
    let proto = match incoming_proto.map(str::trim) {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    Forwarded {
        x_forwarded_for: xff,
        real_ip,
        proto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|n| n.parse().unwrap_or_else(|e| panic!("{n}: {e}")))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let f = forwarded(
            ip("198.51.100.7"),
            &["1.2.3.4"],
            Some("https"),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(f.real_ip, ip("198.51.100.7"));
        assert_eq!(f.proto, "http");
        assert_eq!(f.x_forwarded_for, "1.2.3.4, 198.51.100.7");
    }

    #[test]
    fn no_trusted_proxies_means_trust_nobody() {
        let f = forwarded(ip("10.0.0.5"), &["1.2.3.4"], Some("https"), &[]);
        assert_eq!(f.real_ip, ip("10.0.0.5"));
        assert_eq!(f.proto, "http");
    }

    #[test]
    fn trusted_peer_yields_the_rightmost_untrusted_address() {
        let trusted = nets(&["10.0.0.0/8", "192.168.0.0/16"]);
        // client spoofs 6.6.6.6, real client 203.0.113.9, then two trusted hops
        let f = forwarded(
            ip("10.1.2.3"),
            &["6.6.6.6, 203.0.113.9", "192.168.1.1"],
            Some("https"),
            &trusted,
        );
        assert_eq!(f.real_ip, ip("203.0.113.9"));
        assert_eq!(f.proto, "https");
        assert_eq!(
            f.x_forwarded_for,
            "6.6.6.6, 203.0.113.9, 192.168.1.1, 10.1.2.3"
        );
    }

    #[test]
    fn all_hops_trusted_takes_the_leftmost() {
        let f = forwarded(ip("10.1.2.3"), &["10.9.9.9"], None, &nets(&["10.0.0.0/8"]));
        assert_eq!(f.real_ip, ip("10.9.9.9"));
        assert_eq!(f.proto, "http");
    }

    #[test]
    fn garbage_in_the_list_stops_the_walk() {
        let f = forwarded(
            ip("10.1.2.3"),
            &["203.0.113.9, unknown"],
            Some("HTTPS"),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(f.real_ip, ip("10.1.2.3"));
        assert_eq!(f.proto, "https");
    }

    #[test]
    fn entries_with_ports_and_brackets_and_mapped_v4() {
        assert_eq!(parse_entry(" 1.2.3.4:5678 "), Some(ip("1.2.3.4")));
        assert_eq!(parse_entry("[2001:db8::1]:80"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("2001:db8::1"), Some(ip("2001:db8::1")));
        let f = forwarded(ip("::ffff:10.0.0.1"), &[], None, &nets(&["10.0.0.0/8"]));
        assert_eq!(f.real_ip, ip("10.0.0.1"));
        assert_eq!(f.x_forwarded_for, "10.0.0.1");
    }
}
