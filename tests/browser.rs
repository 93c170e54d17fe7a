//! The admin status page (`GET /`) end to end: the real binary, real
//! upstreams, and — for what only a browser can say (the page renders, its
//! refresh works) — a real headless Chromium over the DevTools protocol.

use serde_json::{json, Value};

use crate::support::browser::{output_dir, Browser};
use crate::support::{client, eventually, refused_addr, Proxy, Upstream};

/// A syntax error on line 6, column 23: a second `:` in a plain scalar.
const BAD_ON_LINE_6: &str = "routes:\n  - path: /app1\n    upstream: 127.0.0.1:1\n  - path: /app2\n    upstream: 127.0.0.1:2\n    strip_prefix: true: yes\n";

/// Without a browser: the page is HTML with a policy that lets it load and
/// run nothing, is not cached, answers HEAD, and refuses other methods.
#[tokio::test]
async fn status_page_is_self_contained_html() {
    let up = Upstream::start("app1").await;
    let proxy = Proxy::start(&format!(
        "routes:\n  - {{path: /app1, upstream: '{}'}}\n",
        up.host_port()
    ))
    .await;
    let c = client();
    let r = c.get(proxy.admin_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("cache-control"), "no-store");
    assert!(
        header("content-security-policy").starts_with("default-src 'none'"),
        "{}",
        header("content-security-policy")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("<dd id=\"generation\">1</dd>"), "{html}");
    assert!(html.contains(&format!("<code>{}</code>", up.host_port())));
    assert!(!html.contains("<script"));

    let head = c.head(proxy.admin_url("/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let post = c.post(proxy.admin_url("/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    // Other paths still 404, as before the page existed.
    let other = c.get(proxy.admin_url("/status")).send().await.unwrap();
    assert_eq!(other.status(), 404);
}

/// In Chromium: the page renders the applied routes, their request and
/// error counts and the upstream that refused its connect; then a broken
/// routes file shows up, with its line and column, on the page refreshing
/// itself, while generation 1 keeps serving. Screenshots of both states go
/// to `target/tmp/test-output/browser-status-page/`.
#[tokio::test]
#[ignore = "needs chromium; scripts/bootstrap.sh installs it and scripts/test.sh runs this"]
async fn status_page_in_chromium_shows_routes_then_the_rejected_reload() {
    let up = Upstream::start("app1").await;
    let dead = refused_addr();
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /app1\n    upstream: '{}'\n  - path: /dead\n    upstream: '{dead}'\n    strip_prefix: true\n",
        up.host_port()
    ))
    .await;
    let c = client();
    for _ in 0..3 {
        let r = c.get(proxy.url("/app1/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = c.get(proxy.url("/dead/")).send().await.unwrap();
    assert_eq!(r.status(), 502);

    let out = output_dir("browser-status-page");
    let browser = Browser::launch(&out, &[]).await;
    browser.navigate(&proxy.admin_url("/")).await.unwrap();

    assert_eq!(
        browser.eval("document.title").await.unwrap(),
        json!("Switchyard: generation 1")
    );
    let rows = browser
        .eval(
            "[...document.querySelectorAll('#routes tr.route')].map(r => ({
                route: r.dataset.route,
                cells: [...r.cells].map(c => c.textContent.trim()),
            }))",
        )
        .await
        .unwrap();
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let cells = |i: usize| -> Vec<String> {
        rows[i]["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rows[0]["route"], "/app1");
    let app1 = cells(0);
    assert_eq!(app1[0], "any");
    assert_eq!(app1[1], "/app1");
    assert_eq!(app1[2], format!("{} ok", up.host_port()));
    assert_eq!(app1[3], "no");
    assert_eq!(&app1[6..], ["3", "0", "0 / 0 / 0"]);
    assert_eq!(rows[1]["route"], "/dead");
    let dead_row = cells(1);
    assert!(
        dead_row[2].starts_with(&format!("{dead} connect failed")),
        "{dead_row:?}"
    );
    assert_eq!(dead_row[3], "yes");
    assert_eq!(&dead_row[6..], ["1", "1", "1 / 0 / 0"]);
    assert_eq!(
        browser
            .eval_string("document.querySelector('#failing-count').textContent")
            .await
            .unwrap(),
        "1 upstream address failed its last connect."
    );
    assert_eq!(
        browser
            .eval_string(&format!(
                "document.querySelector('tr[data-upstream=\"{dead}\"] td:nth-child(2)').textContent"
            ))
            .await
            .unwrap(),
        "failed"
    );
    assert!(browser
        .eval_string("document.querySelector('#last-rejection').textContent")
        .await
        .unwrap()
        .contains("None"));
    // The page really is laid out (not an empty or error document).
    let height = browser
        .eval("document.querySelector('#routes table').getBoundingClientRect().height")
        .await
        .unwrap();
    assert!(height.as_f64().unwrap_or(0.0) > 40.0, "height {height}");
    browser.screenshot(&out.join("1-routes.png")).await;

    // Now the page refreshes itself; the broken file must show up on it
    // without the test navigating again.
    browser
        .navigate(&proxy.admin_url("/?refresh=1"))
        .await
        .unwrap();
    let loads = browser.mark();
    std::fs::write(proxy.config_path(), BAD_ON_LINE_6).unwrap();
    let problem: Value = eventually("the rejection on the status page", || async {
        // A refresh may replace the document mid-evaluation; that is a
        // "not yet", not a failure.
        let v = browser
            .eval(
                "(() => { const r = document.querySelector('#last-rejection tr.problem');
                    return r && [...r.cells].map(c => c.textContent.trim()); })()",
            )
            .await
            .ok()?;
        (!v.is_null()).then_some(v)
    })
    .await;
    let config = proxy.config_path().display().to_string();
    assert_eq!(problem[0], json!(config));
    assert_eq!(problem[1], "6", "line: {problem}");
    assert_eq!(problem[2], "23", "column: {problem}");
    assert!(
        problem[4]
            .as_str()
            .unwrap()
            .contains("mapping values are not allowed"),
        "{problem}"
    );
    // The rejection can only be on a document loaded after the write, so
    // the page did reload itself; its `load` event may still trail the
    // parsed document by a moment, so it is waited for, not looked up.
    browser
        .wait_event("the page's own reload", loads, |e| {
            e.method == "Page.loadEventFired"
        })
        .await;
    let text = browser
        .eval_string("document.querySelector('#last-rejection').textContent")
        .await
        .unwrap();
    assert!(text.contains("generation 1 keeps serving"), "{text}");
    // The last good table is still the one shown, and the one serving.
    assert_eq!(
        browser
            .eval_string("document.querySelector('#generation').textContent")
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(
        c.get(proxy.url("/app1/")).send().await.unwrap().status(),
        200
    );
    browser.screenshot(&out.join("2-rejected.png")).await;
}
