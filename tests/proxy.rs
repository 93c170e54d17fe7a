//! End to end: the real binary in front of real upstreams, real clients.

use crate::support;

use std::time::Duration;

use crate::support::upstream::{Blackhole, Echo, Hanging};
use crate::support::{client, eventually, refused_addr, Proxy, RawConn, Upstream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn get_echo(url: &str) -> Echo {
    let resp = client().get(url).send().await.expect("request");
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("echo json")
}

/// Every matching rule, through the proxy: whole segments, trailing slash,
/// longest prefix, root fallback, host beats host-less at equal length.
#[tokio::test(flavor = "multi_thread")]
async fn matching_rules_hold_end_to_end() {
    let (a, api, root, host) = tokio::join!(
        Upstream::start("app1"),
        Upstream::start("api"),
        Upstream::start("root"),
        Upstream::start("host")
    );
    let yaml = format!(
        "routes:
  - {{path: /app1/, upstream: '{}'}}
  - {{path: /app1/api, upstream: '{}'}}
  - {{path: /, upstream: '{}'}}
  - {{path: /app1, host: Dev.Example.com, upstream: '{}'}}
",
        a.host_port(),
        api.host_port(),
        root.host_port(),
        host.host_port()
    );
    let proxy = Proxy::start(&yaml).await;
    for (path, want) in [
        ("/app1", "app1"),
        ("/app1/", "app1"),
        ("/app1/x/y", "app1"),
        ("/app10", "root"),
        ("/app1x/y", "root"),
        ("/app1/api", "api"),
        ("/app1/api/v2", "api"),
        ("/app1/apix", "app1"),
        ("/", "root"),
        ("/other", "root"),
    ] {
        assert_eq!(get_echo(&proxy.url(path)).await.upstream, want, "{path}");
    }
    let mut conn = RawConn::connect(proxy.addr).await;
    for (h, want) in [
        ("dev.example.com", "host"),
        ("DEV.example.COM:8080", "host"),
        ("other.example.com", "app1"),
    ] {
        let r = conn.get(h, "/app1/x").await;
        assert_eq!(r.status, 200);
        assert!(
            r.body.contains(&format!("\"upstream\":\"{want}\"")),
            "{h}: {}",
            r.body
        );
    }
    // Longer beats host-specific.
    let r = conn.get("dev.example.com", "/app1/api/z").await;
    assert!(r.body.contains("\"upstream\":\"api\""), "{}", r.body);
}

/// The upstream receives the client's path and query, its Host, and the
/// forwarding headers; a client-sent X-Forwarded-For is kept in front.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_receives_path_host_and_forwarding_headers() {
    let up = Upstream::start("app1").await;
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /app1\n    upstream: {}\n",
        up.host_port()
    ))
    .await;

    let echo: Echo = client()
        .get(proxy.url("/app1/a%20b/c?x=1&y=%2F"))
        .header("host", "dev.example.com:8443")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(echo.uri, "/app1/a%20b/c?x=1&y=%2F");
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.header("host"), ["dev.example.com:8443"]);
    assert_eq!(echo.header("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(echo.header("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(echo.header("x-forwarded-proto"), ["http"]);

    let echo = get_echo(&proxy.url("/app1")).await;
    assert_eq!(echo.header("x-forwarded-for"), ["127.0.0.1"]);
}

/// `strip_prefix: true` removes the prefix and keeps the query; the bare
/// prefix reaches the upstream as `/`.
#[tokio::test(flavor = "multi_thread")]
async fn strip_prefix_forwards_the_rest() {
    let up = Upstream::start("app2").await;
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /app2\n    upstream: {}\n    strip_prefix: true\n",
        up.host_port()
    ))
    .await;
    assert_eq!(get_echo(&proxy.url("/app2/x/y?q=1")).await.uri, "/x/y?q=1");
    assert_eq!(get_echo(&proxy.url("/app2")).await.uri, "/");
    assert_eq!(get_echo(&proxy.url("/app2?q=2")).await.uri, "/?q=2");
    assert_eq!(get_echo(&proxy.url("/app2/")).await.uri, "/");
}

/// Dot segments are resolved before matching, and the upstream receives
/// the path that was matched; climbing above the root is a 400.
#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_route_and_forward_the_normalized_path() {
    let (a, b) = tokio::join!(Upstream::start("app1"), Upstream::start("app2"));
    let proxy = Proxy::start(&format!(
        "routes:\n  - {{path: /app1, upstream: '{}'}}\n  - {{path: /app2, upstream: '{}'}}\n",
        a.host_port(),
        b.host_port()
    ))
    .await;
    let mut conn = RawConn::connect(proxy.addr).await;
    let r = conn.get("x", "/app1/../app2/file?z=1").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"upstream\":\"app2\""), "{}", r.body);
    assert!(r.body.contains("\"uri\":\"/app2/file?z=1\""), "{}", r.body);
    let r = conn.get("x", "/app1/%2e%2e/app2").await;
    assert!(r.body.contains("\"upstream\":\"app2\""), "{}", r.body);
    let r = conn.get("x", "/app1/../../etc/passwd").await;
    assert_eq!(r.status, 400);
    assert_eq!(a.hits() + b.hits(), 2);
}

/// Several upstreams are used in turn.
#[tokio::test(flavor = "multi_thread")]
async fn upstreams_are_used_round_robin() {
    let (a, b) = tokio::join!(Upstream::start("a"), Upstream::start("b"));
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /rr\n    upstream: [{}, {}]\n",
        a.host_port(),
        b.host_port()
    ))
    .await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(get_echo(&proxy.url("/rr")).await.upstream);
    }
    assert_eq!(a.hits(), 3, "{seen:?}");
    assert_eq!(b.hits(), 3, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "alternates: {seen:?}"
    );
}

/// A server that refuses connections is skipped for the next one; no
/// request fails while one upstream is up.
#[tokio::test(flavor = "multi_thread")]
async fn refusing_upstream_is_skipped() {
    let good = Upstream::start("good").await;
    let dead = refused_addr();
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /x\n    upstream: [{dead}, {}, {dead}]\n",
        good.host_port()
    ))
    .await;
    for _ in 0..6 {
        assert_eq!(get_echo(&proxy.url("/x")).await.upstream, "good");
    }
    assert_eq!(good.hits(), 6);
}

/// The proxy's own answers: 404 names the path, 502 and 504 name the route.
/// After a 404 or `/health` the connection stays open; after a 502 or 504
/// pingora-proxy closes it, and the answer says `Connection: close`.
#[tokio::test(flavor = "multi_thread")]
async fn own_answers_name_path_or_route_and_keep_the_connection() {
    let hang = Hanging::start().await;
    let dead = refused_addr();
    let up = Upstream::start("ok").await;
    let proxy = Proxy::start(&format!(
        "routes:
  - {{path: /dead, upstream: '{dead}'}}
  - {{path: /slow, upstream: '{}', read_timeout: 300ms}}
  - {{path: /ok, upstream: '{}'}}
",
        hang.addr,
        up.host_port()
    ))
    .await;
    let mut conn = RawConn::connect(proxy.addr).await;

    let r = conn.get("x", "/nowhere/y").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("/nowhere/y"), "{}", r.body);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain"));

    let r = conn.get("x", "/health").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    // Same connection, still usable after both.
    let r = conn.get("x", "/ok").await;
    assert_eq!(r.status, 200);

    let r = conn.get("x", "/dead/y").await;
    assert_eq!(r.status, 502);
    assert!(r.body.contains("route /dead"), "{}", r.body);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(conn.is_closed().await);

    let mut conn = RawConn::connect(proxy.addr).await;
    let r = conn.get("x", "/slow/y").await;
    assert_eq!(r.status, 504);
    assert!(r.body.contains("route /slow"), "{}", r.body);
    assert_eq!(r.header("connection"), Some("close"));
}

/// A connect that times out answers 504 after the route's
/// `connect_timeout`, naming the route; with a second upstream it moves on.
#[tokio::test(flavor = "multi_thread")]
async fn connect_timeout_is_504_and_moves_on() {
    let hole = Blackhole::start();
    let up = Upstream::start("ok").await;
    let proxy = Proxy::start(&format!(
        "routes:
  - {{path: /hole, upstream: '{}', connect_timeout: 200ms}}
  - {{path: /mixed, upstream: ['{}', '{}'], connect_timeout: 200ms}}
",
        hole.addr,
        hole.addr,
        up.host_port()
    ))
    .await;
    let started = std::time::Instant::now();
    let r = client()
        .get(proxy.url("/hole/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(r.text().await.expect("body").contains("route /hole"));
    for _ in 0..2 {
        assert_eq!(get_echo(&proxy.url("/mixed")).await.upstream, "ok");
    }
}

/// DNS names resolve per request, and a name
/// that does not resolve fails the request with 502, not the config.
#[tokio::test(flavor = "multi_thread")]
async fn dns_names_resolve_per_request() {
    let up = Upstream::start("named").await;
    let proxy = Proxy::start(&format!(
        "routes:
  - {{path: /named, upstream: 'localhost:{}'}}
  - {{path: /nxdomain, upstream: 'no-such-host.invalid:80'}}
",
        up.addr.port()
    ))
    .await;
    // localhost may resolve to ::1 first, where nothing listens; the
    // request may then fail, so only require that the v4 answer arrives or
    // the failure is a clean 502.
    let resp = client()
        .get(proxy.url("/named/x"))
        .send()
        .await
        .expect("request");
    assert!(
        resp.status() == 200 || resp.status() == 502,
        "{}",
        resp.status()
    );
    let resp = client()
        .get(proxy.url("/nxdomain"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.expect("body");
    assert!(body.contains("route /nxdomain"), "{body}");
}

/// A WebSocket upgrade passes through and echoes both ways.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_proxy() {
    let up = Upstream::start("ws").await;
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /app1\n    upstream: {}\n",
        up.host_port()
    ))
    .await;
    let mut ws = support::websocket(&proxy, "/app1/ws").await;
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let reply = ws.next().await.expect("reply").expect("frame");
        assert_eq!(
            reply.into_text().expect("text").as_str(),
            format!("ws: hello {i}")
        );
    }
    ws.close(None).await.expect("close");
}

/// A streamed response streams: the first chunk reaches the client while
/// the upstream has not finished the body.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_response_arrives_before_upstream_finishes() {
    let up = Upstream::start("stream").await;
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /s\n    upstream: {}\n",
        up.host_port()
    ))
    .await;
    let tx = up.arm_stream().await;
    tx.send("first chunk\n".into()).await.expect("feed");
    let resp = client()
        .get(proxy.url("/s/stream"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(support::patience(), body.next())
        .await
        .expect("first chunk while the upstream is still open")
        .expect("chunk")
        .expect("ok");
    assert_eq!(&first[..], b"first chunk\n");
    tx.send("second chunk\n".into()).await.expect("feed");
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(rest, b"second chunk\n");
}

/// `/health` on the main listener and `/health`, `/ready` on the admin
/// listener answer 200; unknown admin paths are 404.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness_endpoints() {
    let proxy = Proxy::start("routes: []\n").await;
    let c = client();
    let r = c.get(proxy.url("/health")).send().await.expect("health");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "ok\n");
    for p in ["/health", "/ready"] {
        let r = c.get(proxy.admin_url(p)).send().await.expect("admin");
        assert_eq!(r.status(), 200, "{p}");
    }
    let r = c.get(proxy.admin_url("/nope")).send().await.expect("admin");
    assert_eq!(r.status(), 404);
    // With no routes everything else is unmatched.
    let r = c.get(proxy.url("/app1")).send().await.expect("req");
    assert_eq!(r.status(), 404);
}

/// One startup line names the config file, the route count and both
/// listen addresses; `--log-format json` makes every line JSON.
#[tokio::test(flavor = "multi_thread")]
async fn startup_line_and_json_logs() {
    let proxy = Proxy::start_with(
        "routes:\n  - {path: /a, upstream: '127.0.0.1:9'}\n",
        &["--log-format", "json"],
    )
    .await;
    let logs = eventually("startup line", || {
        let logs = proxy.logs();
        async move { logs.contains("switchyard started").then_some(logs) }
    })
    .await;
    let mut started = None;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "switchyard started" {
            started = Some(v);
        }
    }
    let started = started.expect("startup line");
    assert_eq!(started["routes"], 1);
    assert_eq!(started["config"], proxy.config_path().display().to_string());
    assert_eq!(started["listen"], proxy.addr.to_string());
    assert_eq!(started["admin"], proxy.admin.to_string());
    let _ = Duration::ZERO;
}

/// `redirect_bare_prefix: true`, through the real binary on both request
/// paths (the fast path and pingora-proxy): exactly the bare prefix is
/// answered `308` with `Location` (query kept) by the proxy itself, for
/// any method, HEAD without a body; the slash form and deeper paths reach
/// the upstream; a route without the setting forwards its bare prefix; the
/// root route is never redirected. The connection stays usable after each
/// redirect, and a client that follows it lands on the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn bare_prefix_redirect_is_308_and_the_rest_is_forwarded() {
    use crate::support::metric;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (app1, plain, root) = tokio::join!(
        Upstream::start("app1"),
        Upstream::start("plain"),
        Upstream::start("root")
    );
    let yaml = format!(
        "routes:
  - {{path: /app1/, upstream: '{}', redirect_bare_prefix: true}}
  - {{path: /plain, upstream: '{}'}}
  - {{path: /, upstream: '{}', redirect_bare_prefix: true}}
",
        app1.host_port(),
        plain.host_port(),
        root.host_port()
    );
    for fast in ["on", "off"] {
        let hits_before = app1.hits();
        let proxy = Proxy::start_with(&yaml, &["--fast-path", fast]).await;
        let mut conn = RawConn::connect(proxy.addr).await;

        let r = conn.get("dev.example.com", "/app1?x=1&y=%2F").await;
        assert_eq!(r.status, 308, "{fast}: {r:?}");
        assert_eq!(r.header("location"), Some("/app1/?x=1&y=%2F"), "{fast}");
        assert_eq!(
            r.body, "308 permanent redirect: /app1/?x=1&y=%2F\n",
            "{fast}"
        );
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert_eq!(r.header("cache-control"), Some("no-store"), "{fast}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{fast}: {r:?}"
        );
        // Matched on the normalized path, like routing.
        let r = conn.get("x", "/x/../app1").await;
        assert_eq!(
            (r.status, r.header("location")),
            (308, Some("/app1/")),
            "{fast}"
        );

        // Same connection: the slash form and below are forwarded as sent.
        for path in ["/app1/", "/app1/x?q=1"] {
            let r = conn.get("x", path).await;
            assert_eq!(r.status, 200, "{fast} {path}: {r:?}");
            let echo: Echo = serde_json::from_str(&r.body).expect("echo");
            assert_eq!((echo.upstream.as_str(), echo.uri.as_str()), ("app1", path));
        }
        // Without the setting the bare prefix is forwarded; the root
        // route has no bare form.
        let r = conn.get("x", "/plain").await;
        assert_eq!(r.status, 200, "{fast}: {r:?}");
        assert!(r.body.contains("\"uri\":\"/plain\""), "{fast}: {}", r.body);
        let r = conn.get("x", "/").await;
        assert_eq!(r.status, 200, "{fast}: {r:?}");
        assert!(
            r.body.contains("\"upstream\":\"root\""),
            "{fast}: {}",
            r.body
        );

        // A POST with a body gets the same 308 (which keeps the method).
        // As after any answer of the proxy's own to a request with a body:
        // the fast path consumes a body that has arrived in full and keeps
        // the connection; pingora-proxy answers before reading the body
        // and so closes it.
        conn.send(b"POST /app1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
            .await;
        let r = conn.read_response().await.expect("response to POST");
        assert_eq!(
            (r.status, r.header("location")),
            (308, Some("/app1/")),
            "{fast}: {r:?}"
        );
        if fast == "on" {
            assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
            let r = conn.get("x", "/app1/after-post").await;
            assert_eq!(r.status, 200, "{fast}: {r:?}");
        } else {
            assert_eq!(r.header("connection"), Some("close"), "{r:?}");
            assert!(conn.is_closed().await);
            let mut conn = RawConn::connect(proxy.addr).await;
            let r = conn.get("x", "/app1/after-post").await;
            assert_eq!(r.status, 200, "{fast}: {r:?}");
        }

        // HEAD: the same head, no body. What follows the head on the
        // connection must be the next response's status line.
        let mut raw = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .expect("connect");
        raw.write_all(b"HEAD /app1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send HEAD");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let head_end = tokio::time::timeout(support::patience(), async {
            loop {
                if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i + 4;
                }
                let n = raw.read(&mut buf).await.expect("read");
                assert!(
                    n > 0,
                    "{fast}: closed after {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("HEAD answer");
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 308 permanent redirect\r\n"),
            "{fast}: {head}"
        );
        assert!(head.contains("\r\nlocation: /app1/\r\n"), "{fast}: {head}");
        assert!(
            head.contains(&format!(
                "\r\ncontent-length: {}\r\n",
                "308 permanent redirect: /app1/\n".len()
            )),
            "{fast}: the length of the GET's body: {head}"
        );
        raw.write_all(b"GET /app1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send GET");
        let mut rest = got[head_end..].to_vec();
        tokio::time::timeout(support::patience(), raw.read_to_end(&mut rest))
            .await
            .expect("GET answer")
            .expect("read");
        assert!(
            rest.starts_with(b"HTTP/1.1 200 "),
            "{fast}: bytes after the HEAD answer: {:?}",
            String::from_utf8_lossy(&rest)
        );

        // A client that follows redirects ends on the upstream, query kept.
        let echo = get_echo(&proxy.url("/app1?x=1")).await;
        assert_eq!(
            (echo.upstream.as_str(), echo.uri.as_str()),
            ("app1", "/app1/?x=1")
        );

        // Only the forwarded requests reached the upstream.
        assert_eq!(app1.hits() - hits_before, 5, "{fast}");
        // The redirects are counted under the route they matched.
        eventually("308s counted under /app1", || async {
            let samples = proxy.scrape().await;
            let n = metric(
                &samples,
                "switchyard_http_requests_total",
                &[("route", "/app1"), ("code", "308")],
            );
            (n == Some(5.0)).then_some(())
        })
        .await;
        // /routes shows the setting of each route.
        let routes = proxy.routes().await;
        let flags: Vec<_> = routes["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .map(|r| (r["path"].clone(), r["redirect_bare_prefix"].clone()))
            .collect();
        assert_eq!(
            flags,
            [
                (serde_json::json!("/app1"), serde_json::json!(true)),
                (serde_json::json!("/plain"), serde_json::json!(false)),
                (serde_json::json!("/"), serde_json::json!(true)),
            ],
            "{fast}"
        );
    }
}

/// An upstream that answers an upload before reading its body (a 413, as
/// a dev server with a body limit sends) and closes: the client gets that
/// answer, not a 502, on both paths, and the connection closes after it
/// (the rest of the body was never read). The upstream closing with the
/// body unread resets the proxy's connection to it, so the proxy's next
/// body write fails after the answer has arrived.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_answering_before_the_whole_body_is_relayed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const ANSWER: &[u8] =
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large";
    const BODY: usize = 64 * 1024 * 1024;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_request_head(&mut conn).await.is_none() {
                    return;
                }
                let _ = conn.write_all(ANSWER).await;
                // Dropped with the body unread: the kernel resets it.
            });
        }
    });
    let yaml = format!("routes:\n  - {{path: /up, upstream: '{upstream}'}}\n");
    let cases = ["on", "off"]
        .into_iter()
        .flat_map(|fast| [false, true].map(move |chunked| (fast, chunked)));
    for (fast, chunked) in cases {
        let case = format!("--fast-path {fast}, chunked {chunked}");
        let proxy = Proxy::start_with(&yaml, &["--fast-path", fast]).await;
        let conn = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .expect("connect");
        let (mut rx, mut tx) = conn.into_split();
        // The client sends its body as long as the proxy takes it, and
        // reads meanwhile, as curl does.
        let sender = tokio::spawn(async move {
            let framing = if chunked {
                "Transfer-Encoding: chunked".to_owned()
            } else {
                format!("Content-Length: {BODY}")
            };
            let head = format!("POST /up/file HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n");
            tx.write_all(head.as_bytes()).await.expect("head sent");
            let mut piece = vec![b'a'; 64 * 1024];
            if chunked {
                piece.splice(0..0, b"10000\r\n".iter().copied());
                piece.extend_from_slice(b"\r\n");
            }
            let mut sent = 0;
            while sent < BODY {
                if tx.write_all(&piece).await.is_err() {
                    break;
                }
                sent += piece.len();
            }
            sent
        });
        let mut got = Vec::new();
        let answered = read_until(&mut rx, &mut got, b"too large").await;
        let text = String::from_utf8_lossy(&got);
        assert!(answered, "{case}: no answer in time: {text:?}");
        assert!(
            text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{case}: {text:?}"
        );
        assert!(text.ends_with("\r\n\r\ntoo large"), "{case}: {text:?}");
        assert!(
            text.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{case}: {text:?}"
        );
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(support::patience(), rx.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "{case}: the connection stayed open: {closed:?}"
        );
        let sent = sender.await.expect("sender");
        assert!(
            sent < BODY,
            "{case}: the whole body was taken ({sent} bytes)"
        );
    }
}

/// An upstream that begins its answer at once and reads the body as it
/// answers (one that streams progress back during an upload), more slowly
/// than the client sends it: the body still goes through whole on both
/// paths (an answer begun is no reason to stop sending the body).
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_answering_while_it_reads_gets_the_whole_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BODY: usize = 4 * 1024 * 1024;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some((got, head_end)) = read_request_head(&mut conn).await else {
                    return;
                };
                let mut chunk = vec![0u8; 64 * 1024];
                let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nstart\n\r\n";
                if conn.write_all(head).await.is_err() {
                    return;
                }
                let mut body = got.len() - head_end;
                while body < BODY {
                    // A slow reader: the proxy's writes wait on it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match conn.read(&mut chunk).await {
                        Ok(n) if n > 0 => body += n,
                        _ => return,
                    }
                }
                let line = format!("got {body}\n");
                let tail = format!("{:X}\r\n{line}\r\n0\r\n\r\n", line.len());
                let _ = conn.write_all(tail.as_bytes()).await;
            });
        }
    });
    let yaml = format!("routes:\n  - {{path: /up, upstream: '{upstream}'}}\n");
    for fast in ["on", "off"] {
        let proxy = Proxy::start_with(&yaml, &["--fast-path", fast]).await;
        let conn = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .expect("connect");
        let (mut rx, mut tx) = conn.into_split();
        let sender = tokio::spawn(async move {
            let head =
                format!("POST /up/file HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY}\r\n\r\n");
            tx.write_all(head.as_bytes()).await.expect("head sent");
            tx.write_all(&vec![b'a'; BODY]).await.expect("body sent");
            tx
        });
        let mut got = Vec::new();
        let done = read_until(&mut rx, &mut got, b"\r\n0\r\n\r\n").await;
        let text = String::from_utf8_lossy(&got);
        assert!(done, "{fast}: no whole answer in time: {text:?}");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{fast}: {text:?}");
        assert!(
            text.contains(&format!("got {BODY}\n")),
            "{fast}: the upstream did not get the whole body: {text:?}"
        );
        let _tx = sender.await.expect("sender");
    }
}

/// Reads from `from` into `got` until `got` ends with `end`, the peer
/// closes, or [`support::patience`] runs out; true if `end` came.
async fn read_until<R: tokio::io::AsyncRead + Unpin>(
    from: &mut R,
    got: &mut Vec<u8>,
    end: &[u8],
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(support::patience(), async {
        while !got.ends_with(end) {
            match from.read(&mut chunk).await {
                Ok(n) if n > 0 => got.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
    })
    .await;
    read.is_ok() && got.ends_with(end)
}

/// Reads a request head from `conn`: the bytes read, which may run on
/// into the body, and where the head ends in them; `None` if the peer
/// closed first.
async fn read_request_head(conn: &mut tokio::net::TcpStream) -> Option<(Vec<u8>, usize)> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((got, i + 4));
        }
        match conn.read(&mut chunk).await {
            Ok(n) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}
