//! Parsers for the scalar values of a route: upstream addresses, hosts and
//! durations. Each returns the reason an operator needs to fix the value.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The host part of an upstream address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamHost {
    /// A literal IPv4 or IPv6 address: no resolution needed.
    Ip(IpAddr),
    /// A DNS name, resolved when a request needs it (never while compiling).
    Name(String),
}

/// One upstream server, `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// Address or name.
    pub host: UpstreamHost,
    /// TCP port, never 0.
    pub port: u16,
}

impl Upstream {
    /// The socket address when the host is a literal IP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            UpstreamHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            UpstreamHost::Name(_) => None,
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            UpstreamHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            UpstreamHost::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            UpstreamHost::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]` into the host and
/// the text of the port, checking neither. A bracketed host keeps its
/// brackets and ends at the first `]`; its port is what follows a `:`
/// right after it, and anything else after the `]` is no port. Any other
/// host ends at the last `:`. An unclosed `[` is all host.
///
/// Shared by every reader of an address (a route's `upstream`, a
/// request's `Host`, the nginx importer's `listen`), so that they agree on
/// where the port is.
pub fn split_host_port(text: &str) -> (&str, Option<&str>) {
    if text.starts_with('[') {
        return match text.find(']') {
            Some(end) => {
                let (host, after) = text.split_at(end + 1);
                (host, after.strip_prefix(':'))
            }
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    }
}

/// Parses `host:port`, `1.2.3.4:port` or `[::1]:port`.
pub fn parse_upstream(text: &str) -> Result<Upstream, String> {
    if text.contains("://") {
        return Err("write host:port without a scheme; upstreams are plain HTTP".into());
    }
    if text.contains('/') {
        return Err("write host:port without a path".into());
    }
    let (host, port) = split_host_port(text);
    let (host, port) = if let Some(inner) = host.strip_prefix('[') {
        let ip = inner
            .strip_suffix(']')
            .ok_or("missing `]` after the IPv6 address")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let port = port.ok_or("missing :port after the address")?;
        (UpstreamHost::Ip(IpAddr::V6(ip)), port)
    } else {
        let port = port.ok_or("missing :port (write host:port, e.g. 127.0.0.1:3000)")?;
        if host.contains(':') {
            return Err("an IPv6 address needs brackets: [::1]:8080".into());
        }
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => UpstreamHost::Ip(ip),
            Err(_) => {
                check_dns_name(host)?;
                UpstreamHost::Name(host.to_ascii_lowercase())
            }
        };
        (host, port)
    };
    let port = match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err(format!("port {port:?} is not a number from 1 to 65535")),
        Ok(p) => p,
    };
    Ok(Upstream { host, port })
}

/// Host names as RFC 1123 allows them (plus `_`, which real clusters use).
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("missing host before :port".into());
    }
    if name.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    if looks_like_ipv4(name) {
        return Err(format!("{name:?} is not a valid IPv4 address"));
    }
    for label in name.strip_suffix('.').unwrap_or(name).split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("{name:?} is not a valid host name"));
        }
    }
    Ok(())
}

/// `999.1.1.1` or `10.0.0` parse as names but are surely mistyped addresses.
fn looks_like_ipv4(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Parses a route's `host`: a name or address without a port. Returns it
/// lowercased, the form requests are compared in.
pub fn parse_host(text: &str) -> Result<String, &'static str> {
    if text.is_empty() {
        return Err("host is empty; leave the key out to match any host");
    }
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(text.to_ascii_lowercase()),
            _ => Err("not a bracketed IPv6 address"),
        };
    }
    if text.contains(':') {
        return Err("write the host without a port; the port of a request's Host is ignored");
    }
    if text.parse::<IpAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    check_dns_name(text).map_err(|_| "not a valid host name")?;
    Ok(text.to_ascii_lowercase())
}

/// Parses `500ms`, `2s`, `1m`, `1h`: a whole number and a unit.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("a unit is required: 500ms, 2s, 1m or 1h")?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a whole number followed by ms, s, m or h")?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err("unknown unit; use ms, s, m or h"),
    };
    if d.is_zero() {
        return Err("must be greater than zero");
    }
    Ok(d)
}

/// Writes a duration the way routes.yaml does: a whole number in the
/// largest unit that keeps it whole — `500ms`, `2s`, `1m`, `1h`.
/// [`parse_duration`] reads it back as the same duration. Parts below a
/// millisecond are dropped; zero, which no route has, is `0h`.
pub fn format_duration(d: Duration) -> String {
    match d.as_millis() {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        let u = parse_upstream("192.168.2.50:3000").unwrap();
        assert_eq!(u.socket_addr(), Some("192.168.2.50:3000".parse().unwrap()));
        let u = parse_upstream("[::1]:8080").unwrap();
        assert_eq!(u.socket_addr(), Some("[::1]:8080".parse().unwrap()));
        assert_eq!(u.to_string(), "[::1]:8080");
        let u = parse_upstream("App.Default.svc:80").unwrap();
        assert_eq!(u.host, UpstreamHost::Name("app.default.svc".into()));
        assert_eq!(u.socket_addr(), None);
    }

    #[test]
    fn upstream_errors_say_why() {
        for (bad, why) in [
            ("http://x:80", "scheme"),
            ("x:80/api", "path"),
            ("x", "missing :port"),
            ("x:0", "1 to 65535"),
            ("x:99999", "1 to 65535"),
            ("::1:80", "brackets"),
            ("[::1]", "missing :port"),
            ("[zz]:80", "not an IPv6"),
            (":80", "missing host"),
            ("999.1.1.1:80", "not a valid IPv4"),
            ("bad_-.x..y:80", "not a valid host name"),
        ] {
            let err = parse_upstream(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(parse_host("Dev.Example.COM").unwrap(), "dev.example.com");
        assert_eq!(parse_host("[::1]").unwrap(), "[::1]");
        assert!(parse_host("dev.example.com:8080").is_err());
        assert!(parse_host("").is_err());
        assert!(parse_host("a b").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "5", "s", "1.5s", "2 s", "0s", "1d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// Each form of address splits where its port starts; a bracketed
    /// host keeps its brackets and only a `:` right after `]` starts a port.
    #[test]
    fn host_port_splits() {
        for (text, want) in [
            ("h:80", ("h", Some("80"))),
            ("1.2.3.4:80", ("1.2.3.4", Some("80"))),
            ("h", ("h", None)),
            ("h:", ("h", Some(""))),
            ("a:b:80", ("a:b", Some("80"))),
            ("[::1]:80", ("[::1]", Some("80"))),
            ("[::1]", ("[::1]", None)),
            ("[::1]:", ("[::1]", Some(""))),
            ("[::1]x:80", ("[::1]", None)),
            ("[::1", ("[::1", None)),
            ("", ("", None)),
        ] {
            assert_eq!(split_host_port(text), want, "{text}");
        }
    }

    /// routes.yaml's own forms come out in the largest whole unit.
    #[test]
    fn durations_are_written_in_the_largest_whole_unit() {
        for (d, want) in [
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(86_400), "24h"),
            (Duration::from_micros(2_000_999), "2s"),
        ] {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
    }

    proptest::proptest! {
        /// Every duration routes.yaml can hold is written back as text that
        /// parses to the same duration, whichever unit it was written in.
        #[test]
        fn formatted_durations_parse_back(n in 1u64.., unit in 0usize..4) {
            let text = format!("{n}{}", ["ms", "s", "m", "h"][unit]);
            let d = parse_duration(&text).unwrap();
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
