//! Metrics end to end: exact values after known traffic and reloads,
//! `promtool check metrics` on the exposition, a real Prometheus scraping
//! the admin listener, and the access log.

use crate::support;

use std::time::Duration;

use crate::support::kubelet;
use crate::support::upstream::{Hanging, RawServer};
use crate::support::{client, metric, refused_addr, routes_yaml, Proxy, RawConn, Upstream};

const RELOADS: &str = "switchyard_config_reloads_total";
const REQUESTS: &str = "switchyard_http_requests_total";
const ERRORS: &str = "switchyard_upstream_errors_total";

/// After a known sequence of requests and good, bad and unchanged reloads,
/// every metric in the contract's table has exactly the value it must.
#[tokio::test(flavor = "multi_thread")]
async fn scraped_values_follow_requests_and_reloads_exactly() {
    let up = Upstream::start("a").await;
    let dead = refused_addr();
    let v1 = format!(
        "routes:\n  - {{path: /a, upstream: '{}'}}\n  - {{path: /dead, upstream: '{dead}'}}\n",
        up.host_port()
    );
    let proxy = Proxy::start(&v1).await;

    // Startup: generation 1, no reload attempts yet, all results at 0.
    let m = proxy.scrape().await;
    assert_eq!(metric(&m, "switchyard_config_generation", &[]), Some(1.0));
    assert_eq!(metric(&m, "switchyard_routes", &[]), Some(2.0));
    assert_eq!(
        metric(&m, "switchyard_config_last_reload_successful", &[]),
        Some(1.0)
    );
    for r in ["success", "failure", "unchanged"] {
        assert_eq!(metric(&m, RELOADS, &[("result", r)]), Some(0.0), "{r}");
    }
    let started_ts = metric(
        &m,
        "switchyard_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(started_ts > 1.7e9, "{started_ts}");
    let info: Vec<_> = m
        .iter()
        .filter(|s| s.name == "switchyard_config_info")
        .collect();
    assert_eq!(info.len(), 1);
    let sha1 = info[0].labels["sha256"].clone();
    assert_eq!(proxy.routes().await["sha256"], sha1.as_str());
    assert!(metric(&m, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(metric(&m, "process_open_fds", &[]).unwrap() > 0.0);
    assert!(metric(&m, "process_cpu_seconds_total", &[]).is_some());

    // Requests: 3 matched 200s, one 404, one /health, one 502.
    let mut conn = RawConn::connect(proxy.addr).await;
    for _ in 0..3 {
        assert_eq!(conn.get("x", "/a/x").await.status, 200);
    }
    assert_eq!(conn.get("x", "/nope").await.status, 404);
    assert_eq!(conn.get("x", "/health").await.status, 200);
    assert_eq!(conn.get("x", "/dead").await.status, 502);

    // Reloads: success, failure, unchanged (the good bytes again), manual
    // unchanged, success.
    let path = proxy.config.clone();
    let v2 = v1.replace("/a,", "/b,");
    kubelet::write_via_rename(&path, v2.as_bytes()).unwrap();
    proxy.wait_generation(2).await;
    kubelet::write_via_rename(&path, b"routes: [\n").unwrap();
    support::eventually("failure counted", || async {
        (metric(&proxy.scrape().await, RELOADS, &[("result", "failure")]) == Some(1.0))
            .then_some(())
    })
    .await;
    let m = proxy.scrape().await;
    assert_eq!(
        metric(&m, "switchyard_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(metric(&m, "switchyard_config_generation", &[]), Some(2.0));
    kubelet::write_via_rename(&path, v2.as_bytes()).unwrap();
    support::eventually("unchanged counted", || async {
        (metric(&proxy.scrape().await, RELOADS, &[("result", "unchanged")]) == Some(1.0))
            .then_some(())
    })
    .await;
    assert_eq!(
        metric(
            &proxy.scrape().await,
            "switchyard_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(proxy.post_reload().await.1["result"], "unchanged");
    let v3 = format!("{v2}  - {{path: /c, upstream: '{}'}}\n", up.host_port());
    kubelet::write_via_rename(&path, v3.as_bytes()).unwrap();
    let routes = proxy.wait_generation(3).await;

    let m = proxy.scrape().await;
    // Each attempt logs exactly one line and moves exactly one counter. The
    // watcher may, rarely, look twice at one write (the second look is an
    // `unchanged`, or a second `failure` for the same bad bytes), so the
    // counters are checked against the attempts the log shows.
    let logs = proxy.logs();
    let attempts = |result: &str| logs.matches(&format!("result=\"{result}\"")).count() as f64;
    for result in ["success", "failure", "unchanged"] {
        assert_eq!(
            metric(&m, RELOADS, &[("result", result)]),
            Some(attempts(result)),
            "{result}\n{logs}"
        );
    }
    // Two different good files: exactly two applied tables.
    assert_eq!(metric(&m, RELOADS, &[("result", "success")]), Some(2.0));
    assert!(
        attempts("failure") >= 1.0 && attempts("unchanged") >= 2.0,
        "{logs}"
    );
    assert_eq!(
        metric(&m, "switchyard_config_reload_duration_seconds_count", &[]),
        Some(attempts("success") + attempts("failure") + attempts("unchanged"))
    );
    // Sub-millisecond reloads land in a bucket below 1 ms.
    let fast = metric(
        &m,
        "switchyard_config_reload_duration_seconds_bucket",
        &[("le", "0.001")],
    )
    .unwrap();
    assert!(fast >= 1.0, "no reload under 1 ms? {fast}");
    assert_eq!(
        metric(&m, "switchyard_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(metric(&m, "switchyard_config_generation", &[]), Some(3.0));
    assert_eq!(metric(&m, "switchyard_routes", &[]), Some(3.0));
    let info: Vec<_> = m
        .iter()
        .filter(|s| s.name == "switchyard_config_info")
        .collect();
    assert_eq!(info.len(), 1, "exactly one config_info series");
    assert_eq!(info[0].labels["sha256"], routes["sha256"].as_str().unwrap());
    assert_ne!(info[0].labels["sha256"], sha1);
    assert!(
        metric(
            &m,
            "switchyard_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            >= started_ts
    );

    assert_eq!(
        metric(&m, REQUESTS, &[("route", "/a"), ("code", "200")]),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, REQUESTS, &[("route", "unmatched"), ("code", "404")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, REQUESTS, &[("route", "/health"), ("code", "200")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, REQUESTS, &[("route", "/dead"), ("code", "502")]),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "switchyard_http_request_duration_seconds_count",
            &[("route", "/a")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, ERRORS, &[("route", "/dead"), ("kind", "connect")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, ERRORS, &[("route", "/a"), ("kind", "connect")]),
        None
    );
}

/// Upstream errors are counted by kind: `connect` (refused, per attempt),
/// `timeout` (no answer within read_timeout), `other` (garbage, or a body
/// cut short).
#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_by_kind() {
    let hang = Hanging::start().await;
    let garbage = RawServer::start(b"this is not http\r\n\r\n").await;
    let cut = RawServer::start(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..").await;
    let good = Upstream::start("good").await;
    let dead = refused_addr();
    let proxy = Proxy::start(&format!(
        "routes:
  - {{path: /two, upstream: ['{dead}', '{}']}}
  - {{path: /slow, upstream: '{}', read_timeout: 200ms}}
  - {{path: /garbage, upstream: '{}'}}
  - {{path: /cut, upstream: '{}'}}
",
        good.host_port(),
        hang.addr,
        garbage.addr,
        cut.addr
    ))
    .await;
    let c = client();
    // Round robin starts at the dead one every other request.
    for _ in 0..2 {
        assert_eq!(c.get(proxy.url("/two")).send().await.unwrap().status(), 200);
    }
    assert_eq!(
        c.get(proxy.url("/slow")).send().await.unwrap().status(),
        504
    );
    assert_eq!(
        c.get(proxy.url("/garbage")).send().await.unwrap().status(),
        502
    );
    // The client sees the connection end before the promised 100 bytes.
    let cut_result = match c.get(proxy.url("/cut")).send().await {
        Ok(r) => r.bytes().await.map(|b| b.len()),
        Err(e) => Err(e),
    };
    assert!(
        cut_result.is_err(),
        "a cut body must not look complete: {cut_result:?}"
    );

    let m = support::eventually("cut body counted", || async {
        let m = proxy.scrape().await;
        metric(&m, ERRORS, &[("route", "/cut"), ("kind", "other")])
            .is_some()
            .then_some(m)
    })
    .await;
    assert_eq!(
        metric(&m, ERRORS, &[("route", "/two"), ("kind", "connect")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, REQUESTS, &[("route", "/two"), ("code", "200")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, ERRORS, &[("route", "/slow"), ("kind", "timeout")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, ERRORS, &[("route", "/garbage"), ("kind", "other")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, ERRORS, &[("route", "/cut"), ("kind", "other")]),
        Some(1.0)
    );
}

/// `promtool check metrics` accepts the exposition, with traffic and a
/// failed reload in it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs promtool; ./scripts/test.sh installs it and runs it"]
async fn promtool_accepts_the_exposition() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(&routes_yaml(&[("/a", &up.host_port())])).await;
    client().get(proxy.url("/a")).send().await.unwrap();
    client().get(proxy.url("/zz")).send().await.unwrap();
    kubelet::write_via_rename(&proxy.config, b"nope: [\n").unwrap();
    proxy.post_reload().await;
    let text = proxy.scrape_text().await;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool on PATH (scripts/bootstrap.sh installs it)");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real Prometheus server scrapes the admin listener every second; its
/// HTTP API shows the target up and `switchyard_config_generation`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Prometheus server; ./scripts/test.sh installs it and runs it"]
async fn prometheus_scrapes_the_admin_listener() {
    let proxy = Proxy::start("routes: []\n").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['{}']\n",
            proxy.admin
        ),
    )
    .unwrap();
    let mut prom = None;
    let mut web = String::new();
    for _ in 0..5 {
        let addr = refused_addr();
        web = addr.to_string();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus on PATH (scripts/bootstrap.sh installs it)");
        prom = Some(child);
        let ready = tokio::time::timeout(support::patience(), async {
            loop {
                if let Ok(r) = client().get(format!("http://{web}/-/ready")).send().await {
                    if r.status() == 200 {
                        return true;
                    }
                }
                if let Some(Ok(Some(_))) = prom.as_mut().map(|c| c.try_wait()) {
                    return false; // exited: most likely the port was taken
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if ready == Ok(true) {
            break;
        }
    }
    let _prom = prom.expect("prometheus started");
    let c = client();
    let generation = support::eventually("prometheus has switchyard_config_generation", || {
        let c = c.clone();
        let url = format!("http://{web}/api/v1/query?query=switchyard_config_generation");
        async move {
            let v: serde_json::Value = c.get(&url).send().await.ok()?.json().await.ok()?;
            let result = v["data"]["result"].as_array()?.first()?.clone();
            Some(result["value"][1].as_str()?.to_owned())
        }
    })
    .await;
    assert_eq!(generation, "1");
    let health = support::eventually("target up", || {
        let c = c.clone();
        let url = format!("http://{web}/api/v1/targets");
        async move {
            let v: serde_json::Value = c.get(&url).send().await.ok()?.json().await.ok()?;
            let t = v["data"]["activeTargets"].as_array()?.first()?.clone();
            (t["health"] == "up").then_some(t)
        }
    })
    .await;
    assert_eq!(health["labels"]["job"], "switchyard");
}

/// One access-log line per request with method, path, route, status,
/// upstream, duration and bytes; `--access-log off` writes none.
#[tokio::test(flavor = "multi_thread")]
async fn access_log_lines_and_switch() {
    let up = Upstream::start("a").await;
    let yaml = format!(
        "routes:\n  - {{path: /a, upstream: '{}', strip_prefix: true}}\n",
        up.host_port()
    );
    let proxy = Proxy::start_with(&yaml, &["--log-format", "json"]).await;
    client().get(proxy.url("/a/x?q=1")).send().await.unwrap();
    client().get(proxy.url("/zz")).send().await.unwrap();
    // The two requests may be served by different threads, so their lines
    // can land in either order: wait for both, then pick them by path.
    let access = |logs: &str| -> Vec<serde_json::Value> {
        logs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "switchyard::access")
            .collect()
    };
    let lines = support::eventually("two access lines", || {
        let lines = access(&proxy.logs());
        async move { (lines.len() >= 2).then_some(lines) }
    })
    .await;
    assert_eq!(lines.len(), 2, "{}", proxy.logs());
    let by_path = |p: &str| lines.iter().find(|l| l["path"] == p).cloned().unwrap();
    let a = &by_path("/a/x?q=1");
    assert_eq!(a["method"], "GET");
    assert_eq!(
        a["path"], "/a/x?q=1",
        "the client's path, not the stripped one"
    );
    assert_eq!(a["route"], "/a");
    assert_eq!(a["status"], 200);
    assert_eq!(a["upstream"], up.host_port());
    assert!(a["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(a["bytes"].as_u64().unwrap() > 0);
    let zz = by_path("/zz");
    assert_eq!(zz["route"], "unmatched");
    assert_eq!(zz["status"], 404);

    let quiet = Proxy::start_with(&yaml, &["--access-log", "off"]).await;
    client().get(quiet.url("/a/x")).send().await.unwrap();
    // The request is counted, so it has been fully handled, yet not logged.
    support::eventually("request counted", || async {
        (metric(
            &quiet.scrape().await,
            REQUESTS,
            &[("route", "/a"), ("code", "200")],
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    assert!(
        !quiet.logs().contains("switchyard::access"),
        "{}",
        quiet.logs()
    );
}

/// `GET /metrics` only; unknown admin paths are 404 and wrong methods 405
/// (`GET /` is the status page, tested in `browser.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_methods() {
    let proxy = Proxy::start("routes: []\n").await;
    let c = client();
    let r = c.get(proxy.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for (method, path, want) in [
        (reqwest::Method::POST, "/metrics", 405),
        (reqwest::Method::GET, "/reload", 405),
        (reqwest::Method::GET, "/metricsx", 404),
        (reqwest::Method::GET, "/status", 404),
        (reqwest::Method::DELETE, "/", 405),
    ] {
        let r = c
            .request(method.clone(), proxy.admin_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{method} {path}");
    }
}

/// Two routes of one path on different hosts are counted apart: the
/// `route` label (and the access log's `route`) is the route's identity,
/// host and path.
#[tokio::test(flavor = "multi_thread")]
async fn routes_of_one_path_on_two_hosts_have_series_of_their_own() {
    let (_any, _dev, proxy) = support::two_hosts_on_one_path().await;
    let c = client();
    for host in ["dev.example.com", "other.example.com", "dev.example.com"] {
        let r = c
            .get(proxy.url("/app1/x"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let samples = proxy.scrape().await;
    let count = |route: &str| {
        support::metric(
            &samples,
            "switchyard_http_requests_total",
            &[("route", route), ("code", "200")],
        )
    };
    assert_eq!(count("dev.example.com/app1"), Some(2.0));
    assert_eq!(count("/app1"), Some(1.0));
    let logs = proxy.wait_log("route=\"dev.example.com/app1\"").await;
    assert!(logs.contains("route=\"/app1\""), "{logs}");
}
