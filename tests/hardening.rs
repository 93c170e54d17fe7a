//! Hostile and malformed input, end to end with raw bytes on a socket:
//! path tricks, forwarding headers, request smuggling, oversized and
//! invalid requests. Each case states the exact bytes and what must come
//! back; docs/failure-modes.md "Failure modes and limits" records the
//! answers.

use crate::support;

use std::time::Duration;

use crate::support::upstream::Echo;
use crate::support::{routes_yaml, Proxy, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `bytes` on a fresh connection and reads until the proxy closes it
/// or goes quiet; returns everything received.
async fn exchange(proxy: &Proxy, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `serve` with `flag value` exits 2 (a usage error) before reading any
/// file, saying `needle`.
fn assert_flag_refused(flag: &str, value: &str, needle: &str) {
    let (code, _, err) = support::run_cli(&["serve", "--config", "/nonexistent", flag, value]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(needle), "{err}");
}

fn statuses(resp: &str) -> Vec<u16> {
    resp.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| resp[i + 9..].get(..3)?.parse().ok())
        .collect()
}

/// One malformed-request case: the bytes sent, the one status that must
/// come back, and whether the upstream may see the request's head at all.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    status: u16,
    reaches_upstream: bool,
}

fn case(name: &'static str, bytes: &[u8], status: u16, reaches_upstream: bool) -> Case {
    Case {
        name,
        bytes: bytes.to_vec(),
        status,
        reaches_upstream,
    }
}

/// Request smuggling and malformed requests: each gets exactly one 4xx
/// (and the connection closes), never two requests upstream. Each refusal
/// is counted under `route="unmatched"` and has an access-log line with
/// its reason.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_smuggling_requests_are_refused() {
    // Only the bad-chunk case may reach an upstream (its head is valid and
    // forwarded before the body goes wrong), so it gets an upstream of its
    // own: the one behind /app1 must never see a request at all.
    let (up, chunk_up) = tokio::join!(Upstream::start("a"), Upstream::start("chunk"));
    let proxy = Proxy::start(&routes_yaml(&[
        ("/app1", &up.host_port()),
        ("/chunk", &chunk_up.host_port()),
    ]))
    .await;
    let big_line = format!(
        "GET /app1/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    let mut many_headers = String::from("GET /app1 HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many_headers.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(1000)));
    }
    many_headers.push_str("\r\n");
    let cases = vec![
        case("conflicting Content-Length", b"POST /app1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, false),
        case("Content-Length list", b"POST /app1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400, false),
        case("negative Content-Length", b"POST /app1 HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, false),
        case("unknown Transfer-Encoding", b"POST /app1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, false),
        case("chunked not last", b"POST /app1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400, false),
        // The head is valid and already forwarded when the bad size arrives;
        // the upstream sees one request with a broken body, the client a 400.
        case("bad chunk size", b"POST /chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, true),
        case("100 KB request line", big_line.as_bytes(), 414, false),
        case("200 KB of headers", many_headers.as_bytes(), 431, false),
        case("invalid method", b"G@T /app1 HTTP/1.1\r\nHost: x\r\n\r\n", 400, false),
        case("obsolete line folding", b"GET /app1 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400, false),
        case("space before colon", b"GET /app1 HTTP/1.1\r\nHost : x\r\n\r\n", 400, false),
        case("HTTP/0.9 request", b"GET /app1\r\n\r\n", 400, false),
        case("absolute form, other Host", b"GET http://dev.example.com/app1/x HTTP/1.1\r\nHost: other\r\n\r\n", 400, false),
        case("path above the root", b"GET /app1/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400, false),
    ];
    let mut expected = std::collections::BTreeMap::<u16, f64>::new();
    for c in &cases {
        let resp = exchange(&proxy, &c.bytes).await;
        assert_eq!(statuses(&resp), [c.status], "{}: {resp}", c.name);
        if !c.reaches_upstream {
            assert_eq!(up.hits(), 0, "{} reached the upstream", c.name);
            *expected.entry(c.status).or_default() += 1.0;
        }
    }
    assert_eq!(up.hits(), 0, "a refused request reached the upstream");
    let samples = proxy.scrape().await;
    for (code, n) in expected {
        let code = code.to_string();
        let got = support::metric(
            &samples,
            "switchyard_http_requests_total",
            &[("route", "unmatched"), ("code", &code)],
        );
        assert_eq!(got, Some(n), "refusals counted with code {code}");
    }
    for reason in [
        "invalid or conflicting Content-Length",
        "Transfer-Encoding does not end in chunked",
        "request line too long",
        "request head too large",
        "invalid method or request target",
        "invalid header field name",
        "request target and Host disagree",
    ] {
        let logs = proxy.wait_log(reason).await;
        let line = logs.lines().find(|l| l.contains(reason)).unwrap();
        assert!(
            line.contains("request refused") && line.contains("status=4"),
            "{line}"
        );
    }
    assert!(
        chunk_up.hits() <= 1,
        "the bad-chunk request was forwarded twice"
    );
}

/// Content-Length with Transfer-Encoding: the chunked framing wins, the
/// upstream gets one request without the Content-Length, and the bytes
/// after the chunked body are never forwarded as a second request.
#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_is_one_request() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(&routes_yaml(&[("/app1", &up.host_port())])).await;
    let resp = exchange(
        &proxy,
        b"POST /app1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /app1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&resp), [200], "{resp}");
    assert_eq!(up.hits(), 1);
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let echo: Echo = serde_json::from_str(body).unwrap();
    assert_eq!(echo.uri, "/app1");
    assert!(
        echo.header("content-length").is_empty(),
        "{:?}",
        echo.headers
    );
    assert!(!resp.contains("smuggled"));
}

/// Every chunked request body is checked strictly as it arrives (RFC 9112
/// §7.1): a broken chunk gets one 400 and the connection closes, and the
/// bytes after it never run as a request of their own. The empty size line
/// is the case Pingora alone takes for the last chunk. A valid chunked body
/// (extensions and trailers included) is served, and its connection serves
/// the next request.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_are_checked_strictly() {
    let (up, other) = tokio::join!(Upstream::start("a"), Upstream::start("other"));
    let proxy = Proxy::start(&routes_yaml(&[
        ("/app1", &up.host_port()),
        ("/smuggled", &other.host_port()),
    ]))
    .await;
    let head = "POST /app1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let next = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for (name, body, reason) in [
        ("empty size line", "\r\nhello\r\n0\r\n\r\n", "chunk size"),
        ("bare LF after the size", "5\nhello\r\n0\r\n\r\n", "LF"),
        ("hex prefix", "0x5\r\nhello\r\n0\r\n\r\n", "chunk size"),
        ("negative size", "-1\r\nhello\r\n0\r\n\r\n", "chunk size"),
        ("space after the size", "5 \r\nhello\r\n0\r\n\r\n", ""),
        ("data longer than its size", "3\r\nhello\r\n0\r\n\r\n", ""),
        (
            "size overflow",
            "10000000000000000\r\nhello\r\n0\r\n\r\n",
            "",
        ),
        (
            "later chunk broken",
            "5\r\nhello\r\nzz\r\n0\r\n\r\n",
            "chunk size",
        ),
        (
            "trailer folded",
            "0\r\nX-A: 1\r\n folded\r\n\r\n",
            "trailer",
        ),
    ] {
        let resp = exchange(&proxy, format!("{head}{body}{next}").as_bytes()).await;
        assert_eq!(statuses(&resp), [400], "{name}: {resp}");
        assert!(resp.contains("invalid chunked body"), "{name}: {resp}");
        assert!(resp.contains(reason), "{name}: {resp}");
        assert!(
            resp.to_ascii_lowercase().contains("connection: close"),
            "{name}: {resp}"
        );
    }
    assert_eq!(
        other.hits(),
        0,
        "bytes after a broken body ran as a request"
    );
    let logs = proxy.wait_log("request body refused").await;
    assert!(logs.contains("invalid chunked body at byte 0"), "{logs}");

    // Valid bodies, then a second request on the same connection.
    for body in [
        "5\r\nhello\r\n0\r\n\r\n",
        "5;name=value;q=\"a b\"\r\nhello\r\n000\r\nX-Trailer: t\r\n\r\n",
        "0\r\n\r\n",
    ] {
        let mut conn = support::RawConn::connect(proxy.addr).await;
        conn.send(format!("{head}{body}").as_bytes()).await;
        let first = conn.read_response().await.expect("first response");
        assert_eq!(first.status, 200, "{body:?}: {first:?}");
        let second = conn.get("x", "/app1/again").await;
        assert_eq!(second.status, 200, "{body:?}: {second:?}");
        let echo: Echo = serde_json::from_str(&second.body).unwrap();
        assert_eq!(echo.uri, "/app1/again");
    }
}

/// An HTTP/1.1 request without `Host` is a 400 (RFC 9112 §3.2) and never
/// reaches an upstream, even with a catch-all route; HTTP/1.0 needs none.
#[tokio::test(flavor = "multi_thread")]
async fn http11_without_host_is_refused() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(&routes_yaml(&[("/", &up.host_port())])).await;
    for req in [
        &b"GET /x HTTP/1.1\r\n\r\n"[..],
        &b"GET /x HTTP/1.1\r\nX-Host: a\r\n\r\n"[..],
        &b"GET http://a/x HTTP/1.1\r\n\r\n"[..],
    ] {
        let resp = exchange(&proxy, req).await;
        assert_eq!(statuses(&resp), [400], "{resp}");
        assert!(resp.contains("missing Host header"), "{resp}");
    }
    assert_eq!(up.hits(), 0);
    let resp = exchange(&proxy, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
        "{resp}"
    );
    assert_eq!(up.hits(), 1);
    let samples = proxy.scrape().await;
    assert_eq!(
        support::metric(
            &samples,
            "switchyard_http_requests_total",
            &[("route", "unmatched"), ("code", "400")],
        ),
        Some(3.0)
    );
}

/// An absolute-form target is routed by its authority and reaches the
/// upstream in origin form, with a matching Host.
#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_targets_route_by_their_host() {
    let (_any, _dev, proxy) = support::two_hosts_on_one_path().await;
    for req in [
        &b"GET http://dev.example.com/app1/x?q=1 HTTP/1.1\r\nHost: dev.example.com\r\n\r\n"[..],
        // HTTP/1.0 may leave Host out; the authority then supplies it.
        &b"GET http://dev.example.com/app1/x?q=1 HTTP/1.0\r\n\r\n"[..],
    ] {
        let resp = exchange(&proxy, req).await;
        assert_eq!(statuses(&resp), [200], "{resp}");
        let echo: Echo = serde_json::from_str(&resp[resp.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        assert_eq!(echo.upstream, "dev");
        assert_eq!(echo.uri, "/app1/x?q=1");
        assert_eq!(echo.header("host"), ["dev.example.com"]);
    }
}

/// Without `--trusted-proxies` the client's X-Real-IP and X-Forwarded-Proto
/// are overwritten (tested in proxy.rs); with the client's range trusted,
/// X-Forwarded-Proto is kept and X-Real-IP is the right-most untrusted
/// X-Forwarded-For address.
#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxies_are_believed() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start_with(
        &routes_yaml(&[("/app1", &up.host_port())]),
        &["--trusted-proxies", "127.0.0.0/8,10.0.0.0/8"],
    )
    .await;
    let echo: Echo = support::client()
        .get(proxy.url("/app1"))
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "1.1.1.1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo.header("x-real-ip"), ["203.0.113.9"]);
    assert_eq!(echo.header("x-forwarded-proto"), ["https"]);
    assert_eq!(
        echo.header("x-forwarded-for"),
        ["6.6.6.6, 203.0.113.9, 10.1.1.1, 127.0.0.1"]
    );
    assert_flag_refused("--trusted-proxies", "10.0.0.0/33", "not a CIDR");
}

/// A client that hangs up before the response is counted as 499 (nginx's
/// "client closed request") and the proxy does not log it as an error.
#[tokio::test(flavor = "multi_thread")]
async fn client_hang_up_is_counted_as_499() {
    let hang = support::upstream::Hanging::start().await;
    let proxy = Proxy::start(&format!(
        "routes:\n  - {{path: /slow, upstream: '{}', read_timeout: 30s}}\n",
        hang.addr
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The route is matched as soon as the head is read; the upstream never
    // answers, so whenever the client leaves, it leaves before a response.
    drop(s);
    support::eventually("499 counted", || async {
        let m = proxy.scrape().await;
        (support::metric(
            &m,
            "switchyard_http_requests_total",
            &[("route", "/slow"), ("code", "499")],
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    assert!(!proxy.logs().contains("ERROR"), "{}", proxy.logs());
}

/// Thousands of idle client connections do not stop new requests from
/// being served (with a cap above them: the default of 1 024 would answer
/// the rest 503, tested below).
#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_idle_connections_do_not_block_new_requests() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start_with(
        &routes_yaml(&[("/app1", &up.host_port())]),
        &["--max-connections", "4096"],
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    }
    // Half of them even started a request and stalled mid-header.
    for s in idle.iter_mut().step_by(2) {
        s.write_all(b"GET /app1 HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
    }
    for _ in 0..20 {
        let r = support::client()
            .get(proxy.url("/app1/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    drop(idle);
}

/// A reload storm — hundreds of ConfigMap swaps in seconds, alternating a
/// 5 000-route table and a 5-route one — leaves the proxy serving the final
/// table, and a second storm does not grow its memory.
#[tokio::test(flavor = "multi_thread")]
async fn reload_storm_ends_on_the_last_table_with_flat_memory() {
    use crate::support::kubelet::{ConfigMapDir, KubeletOrder};
    let up = Upstream::start("a").await;
    let hp = up.host_port();
    let small = routes_yaml(&[("/app1", &hp), ("/small", &hp)]);
    let mut big = routes_yaml(&[("/app1", &hp), ("/big", &hp)]);
    for i in 0..5000 {
        big.push_str(&format!("  - path: /r{i}\n    upstream: 127.0.0.1:9\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("routes");
    std::fs::create_dir(&volume).unwrap();
    let mut cm = ConfigMapDir::create(&volume, &[("routes.yaml", small.as_bytes())]).unwrap();
    let proxy = Proxy::spawn_in(dir, cm.file("routes.yaml"), &["--access-log", "off"]).await;
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .to_owned();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let mut storm = |swaps: usize| {
        for i in 0..swaps {
            let yaml = if i % 2 == 0 { &big } else { &small };
            cm.update(&[("routes.yaml", yaml.as_bytes())], KubeletOrder::Current)
                .unwrap();
        }
        // End on the big table, with a marker route only the last one has.
        let last = format!("{big}  - path: /last{swaps}\n    upstream: {hp}\n");
        cm.update(&[("routes.yaml", last.as_bytes())], KubeletOrder::Current)
            .unwrap();
    };
    storm(200);
    proxy.wait_status("/last200", 200).await;
    let after_first = rss();
    storm(300);
    proxy.wait_status("/last300", 200).await;
    proxy.wait_status("/small", 404).await;
    let after_second = rss();
    // The second, longer storm may not leave more than a little behind.
    assert!(
        after_second < after_first + after_first / 4,
        "RSS grew from {after_first} kB to {after_second} kB"
    );
    let r = support::client()
        .get(proxy.url("/big/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// An idle keep-alive client connection is closed after
/// `--keepalive-timeout`, not kept forever (Pingora's default).
#[tokio::test(flavor = "multi_thread")]
async fn idle_keepalive_connections_are_closed_after_the_timeout() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start_with(
        &routes_yaml(&[("/app1", &up.host_port())]),
        &["--keepalive-timeout", "1"],
    )
    .await;
    let mut conn = support::RawConn::connect(proxy.addr).await;
    let r = conn.get("x", "/app1").await;
    assert_eq!(r.status, 200);
    let idle = std::time::Instant::now();
    assert!(
        conn.is_closed().await,
        "the idle connection was never closed"
    );
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed too early: {after:?}"
    );
}

/// A client that trickles its request head is cut off with 408 once
/// `--header-timeout` has passed since the connection opened, however
/// steadily it sends; one that sends nothing is closed without an answer.
/// On a keep-alive connection the clock starts at the next head's first
/// byte, not at the end of the previous response.
#[tokio::test(flavor = "multi_thread")]
async fn slow_request_heads_are_cut_off_after_the_header_timeout() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start_with(
        &routes_yaml(&[("/app1", &up.host_port())]),
        &["--header-timeout", "1"],
    )
    .await;

    // One byte every 100 ms: every single read is quick, the head never ends.
    let mut slow = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let started = std::time::Instant::now();
    let trickle = async {
        for b in b"GET /app1 HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The trickle stops once the proxy closes (a write fails) or after a
    // generous bound, whichever is first; the answer is read afterwards.
    let _ = tokio::time::timeout(support::patience(), trickle).await;
    let cut = started.elapsed();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(support::patience(), slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(statuses(&answer), [408], "{answer}");
    assert!(
        answer.contains("request head not received in time"),
        "{answer}"
    );
    assert!(
        cut >= Duration::from_millis(900) && cut < support::patience(),
        "cut after {cut:?}"
    );

    // Silent: closed after the timeout, no answer.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(support::patience(), silent.read_to_end(&mut got)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {got:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Keep-alive: idle for longer than the header timeout (the keep-alive
    // timeout is 75 s), then a head that arrives in one go is served.
    let mut conn = support::RawConn::connect(proxy.addr).await;
    assert_eq!(conn.get("x", "/app1/one").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(conn.get("x", "/app1/two").await.status, 200);

    let samples = proxy.scrape().await;
    let timed_out = support::metric(
        &samples,
        "switchyard_http_requests_total",
        &[("route", "unmatched"), ("code", "408")],
    );
    assert_eq!(timed_out, Some(1.0), "only the trickling client is counted");
    assert_eq!(up.hits(), 2);
}

/// `--max-header-bytes` bounds the request head: one within it is served,
/// one beyond it gets 431 (414 when the request line alone is too long),
/// and neither of those reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn request_heads_beyond_the_size_limit_are_refused() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start_with(
        &routes_yaml(&[("/app1", &up.host_port())]),
        &["--max-header-bytes", "2048"],
    )
    .await;
    let head = |cookie: usize| {
        format!(
            "GET /app1 HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nConnection: close\r\n\r\n",
            "c".repeat(cookie)
        )
    };
    let ok = exchange(&proxy, head(1500).as_bytes()).await;
    assert_eq!(statuses(&ok), [200], "{ok}");
    let big = exchange(&proxy, head(3000).as_bytes()).await;
    assert_eq!(statuses(&big), [431], "{big}");
    assert!(
        big.contains(
            "431 request header fields too large: request head too large (limit 2048 bytes)"
        ),
        "{big}"
    );
    let line = format!("GET /app1/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(3000));
    let long = exchange(&proxy, line.as_bytes()).await;
    assert_eq!(statuses(&long), [414], "{long}");
    assert_eq!(up.hits(), 1);

    assert_flag_refused("--max-header-bytes", "10", "max-header-bytes");
}

/// `--max-connections`: with the cap reached, a new connection is answered
/// 503 and closed at once (and counted); once one closes, new connections
/// are served again.
#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_get_503() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start_with(
        &routes_yaml(&[("/app1", &up.host_port())]),
        &["--max-connections", "3"],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = support::RawConn::connect(proxy.addr).await;
        assert_eq!(c.get("x", "/app1").await.status, 200);
        held.push(c);
    }
    let open =
        |samples: &[support::Sample]| support::metric(samples, "switchyard_connections_open", &[]);
    assert_eq!(open(&proxy.scrape().await), Some(3.0));

    let mut extra = support::RawConn::connect(proxy.addr).await;
    extra.send(b"GET /app1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let r = extra.read_response().await.expect("an answer");
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("too many connections (limit 3)"),
        "{}",
        r.body
    );
    assert!(extra.is_closed().await);
    let samples = proxy.scrape().await;
    assert_eq!(
        support::metric(&samples, "switchyard_connections_refused_total", &[]),
        Some(1.0)
    );
    proxy.wait_log("connection limit reached").await;

    // The held connections still work; closing one frees its place.
    assert_eq!(held[0].get("x", "/app1").await.status, 200);
    held.pop();
    support::eventually("a freed connection slot", || {
        let proxy = &proxy;
        async move {
            let mut c = support::RawConn::connect(proxy.addr).await;
            c.send(b"GET /app1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
            (c.read_response().await?.status == 200).then_some(())
        }
    })
    .await;
    assert_eq!(up.hits(), 5);
}

/// Soft and hard "Max open files" of a process, as /proc shows them.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

/// At startup the open-file soft limit is raised to the hard one (container
/// runtimes often start processes at 1 024 of a far higher hard limit); a
/// limit still too low for `--max-connections` is said in the log, and the
/// proxy serves anyway.
#[tokio::test(flavor = "multi_thread")]
async fn open_file_limit_is_raised_and_checked_against_the_cap() {
    let up = Upstream::start("a").await;
    let yaml = routes_yaml(&[("/app1", &up.host_port())]);

    let raised =
        Proxy::start_in_shell(&yaml, "ulimit -Sn 256", &["--max-connections", "100"]).await;
    let (soft, hard) = open_files_limits(raised.pid());
    let expected = if hard == "unlimited" {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .unwrap()
            .trim()
            .to_owned()
    } else {
        hard.clone()
    };
    assert_eq!(soft, expected, "soft limit not raised (hard {hard})");
    assert!(
        raised.logs().contains(&format!("open_files_limit={soft}")),
        "{}",
        raised.logs()
    );
    assert!(!raised.logs().contains("open-file limit is below"));

    let short = Proxy::start_in_shell(&yaml, "ulimit -n 300", &["--max-connections", "1000"]).await;
    assert_eq!(open_files_limits(short.pid()), ("300".into(), "300".into()));
    let logs = short.wait_log("open-file limit is below").await;
    let line = logs
        .lines()
        .find(|l| l.contains("open-file limit is below"))
        .unwrap();
    assert!(
        line.contains("open_files_limit=300") && line.contains("needed=2128"),
        "{line}"
    );
    let r = support::client()
        .get(short.url("/app1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// RFC 9112 §6.1: an HTTP/1.0 client never receives `Transfer-Encoding`.
/// An upstream's chunked answer reaches it de-chunked, delimited by the
/// connection's close.
#[tokio::test(flavor = "multi_thread")]
async fn http10_clients_get_chunked_answers_dechunked() {
    let up = support::upstream::RawServer::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let proxy = Proxy::start(&routes_yaml(&[("/app1", &up.addr.to_string())])).await;
    for req in [
        &b"GET /app1/x HTTP/1.0\r\n\r\n"[..],
        &b"GET /app1/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = Vec::new();
        // Read to the close: the close is what ends the body.
        tokio::time::timeout(support::patience(), s.read_to_end(&mut out))
            .await
            .expect("the proxy closes the connection")
            .unwrap();
        let resp = String::from_utf8_lossy(&out);
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(" 200 "), "{resp}");
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "{resp}"
        );
        assert_eq!(body, "hello world", "{resp}");
    }
    // HTTP/1.1 clients still get it chunked, as the upstream sent it.
    let resp = exchange(
        &proxy,
        b"GET /app1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        resp.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{resp}"
    );
}

/// A client that stops reading its response is cut after
/// `--send-timeout`: its connection and the upstream's are released,
/// the cut is logged and counted.
#[tokio::test(flavor = "multi_thread")]
async fn clients_that_stop_reading_are_cut_after_the_send_timeout() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start_with(
        &routes_yaml(&[("/app1", &up.host_port())]),
        &["--send-timeout", "1"],
    )
    .await;
    let tx = up.arm_stream().await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /app1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Push until the body backs up all the way to the upstream (the client
    // reads nothing), bounded at 256 MiB.
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let mut pushed = 0usize;
    let backed_up = loop {
        assert!(pushed < 4096, "256 MiB accepted without back-pressure");
        match tokio::time::timeout(Duration::from_millis(500), tx.send(chunk.clone())).await {
            Ok(Ok(())) => pushed += 1,
            Ok(Err(_)) => break false,
            Err(_) => break true,
        }
    };
    assert!(backed_up, "the upstream's stream ended before backing up");
    let logs = proxy.wait_log("client stopped reading").await;
    assert!(
        logs.contains("reason=\"send_timeout\"") || logs.contains("reason=send_timeout"),
        "{logs}"
    );
    // The upstream's side is released too: its body can no longer be sent.
    support::eventually("the upstream stream is dropped", || {
        let tx = tx.clone();
        let chunk = chunk.clone();
        async move {
            match tokio::time::timeout(Duration::from_millis(100), tx.send(chunk)).await {
                Ok(Err(_)) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    let samples = proxy.scrape().await;
    assert_eq!(
        support::metric(
            &samples,
            "switchyard_connections_cut_total",
            &[("reason", "send_timeout")]
        ),
        Some(1.0)
    );
    // The client finds its connection closed once it reads on.
    let mut sink = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(support::patience(), async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the cut connection stayed open");
}

/// A WebSocket idle for its route's `read_timeout` is closed as an idle
/// tunnel: logged and counted as such, not as an upstream failure.
#[tokio::test(flavor = "multi_thread")]
async fn idle_websockets_are_closed_as_idle_tunnels() {
    use futures_util::{SinkExt, StreamExt};
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /app1\n    upstream: {}\n    read_timeout: 1s\n",
        up.host_port()
    ))
    .await;
    let mut ws = support::websocket(&proxy, "/app1/ws").await;
    ws.send(tokio_tungstenite::tungstenite::Message::text("hi"))
        .await
        .unwrap();
    assert!(ws.next().await.is_some_and(|m| m.is_ok()));
    // Then silence: the proxy closes the tunnel after about a second.
    let end = tokio::time::timeout(support::patience(), ws.next()).await;
    assert!(
        matches!(
            end,
            Ok(None)
                | Ok(Some(Err(_)))
                | Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))))
        ),
        "{end:?}"
    );
    let logs = proxy.wait_log("upgraded connection idle").await;
    assert!(!logs.contains("upstream failed"), "{logs}");
    let samples = proxy.scrape().await;
    assert_eq!(
        support::metric(
            &samples,
            "switchyard_connections_cut_total",
            &[("reason", "tunnel_idle")]
        ),
        Some(1.0)
    );
    assert_eq!(
        support::metric(
            &samples,
            "switchyard_upstream_errors_total",
            &[("route", "/app1"), ("kind", "timeout")]
        ),
        None
    );
    assert_eq!(
        support::metric(
            &samples,
            "switchyard_http_requests_total",
            &[("route", "/app1"), ("code", "101")]
        ),
        Some(1.0)
    );
}

/// `OPTIONS *` asks about the server (RFC 9110 §9.3.7): the proxy answers
/// it, 200 with `Allow` and no content, and keeps the connection; `GET *`
/// is a 400 that says the target is not a path.
#[tokio::test(flavor = "multi_thread")]
async fn options_asterisk_is_answered_by_the_proxy() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(&routes_yaml(&[("/", &up.host_port())])).await;
    let mut conn = support::RawConn::connect(proxy.addr).await;
    conn.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let resp = conn.read_response().await.expect("answer");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.header("allow").is_some_and(|a| a.contains("GET")),
        "{resp:?}"
    );
    assert_eq!(resp.header("content-length"), Some("0"));
    let next = conn.get("x", "/after").await;
    assert_eq!(next.status, 200);
    assert_eq!(up.hits(), 1, "OPTIONS * reached the upstream");
    let resp = exchange(&proxy, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("is not a path"), "{resp}");
}

/// Durations and intervals that make no sense are usage errors (exit 2),
/// never silently turned into something else.
#[test]
fn nonsense_durations_are_refused() {
    assert_flag_refused("--drain-delay", "-1", "0 or more");
    assert_flag_refused("--drain-timeout", "-0.5", "0 or more");
    assert_flag_refused("--poll-interval", "0", "poll-interval");
}

/// `/ready` turns 200 only once the main listener accepts connections
/// (Pingora binds it in a thread of its own, later than the admin
/// listener): the first connection after it never finds the port closed.
#[tokio::test(flavor = "multi_thread")]
async fn ready_means_the_main_listener_accepts() {
    let up = Upstream::start("a").await;
    for _ in 0..3 {
        let proxy = Proxy::start(&routes_yaml(&[("/app1", &up.host_port())])).await;
        let mut conn = support::RawConn::connect(proxy.addr).await;
        assert_eq!(conn.get("x", "/app1").await.status, 200);
    }
}
