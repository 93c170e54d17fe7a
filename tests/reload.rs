//! Hot reload end to end: the real binary, its file changed the way the
//! kubelet and editors change it, real traffic across the swaps.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::kubelet::{self, ConfigMapDir, KubeletOrder};
use crate::support::{client, routes_yaml, Proxy, RawConn, Upstream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Starts a proxy whose config lives in a kubelet-style ConfigMap volume.
async fn proxy_on_configmap(yaml: &str) -> (Proxy, ConfigMapDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = dir.path().join("routes");
    std::fs::create_dir(&volume).expect("volume dir");
    let cm = ConfigMapDir::create(&volume, &[("routes.yaml", yaml.as_bytes())]).expect("configmap");
    let config = cm.file("routes.yaml");
    (Proxy::spawn_in(dir, config, &[]).await, cm)
}

async fn configmap_add_remove_change(order: KubeletOrder) {
    let (a, b, c) = tokio::join!(
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("c")
    );
    let (pa, pb, pc) = (a.host_port(), b.host_port(), c.host_port());
    let (proxy, mut cm) = proxy_on_configmap(&routes_yaml(&[("/a", &pa)])).await;
    assert_eq!(
        support::upstream_name(&proxy, "/a").await.as_deref(),
        Some("a")
    );
    assert_eq!(proxy.routes().await["generation"], 1);

    // Add a route: it serves.
    let v2 = routes_yaml(&[("/a", &pa), ("/b", &pb)]);
    assert!(cm
        .update(&[("routes.yaml", v2.as_bytes())], order)
        .expect("update"));
    support::wait_upstream(&proxy, "/b", "b").await;
    proxy.wait_generation(2).await;

    // Remove one: it answers 404 from then on.
    let v3 = routes_yaml(&[("/b", &pb)]);
    cm.update(&[("routes.yaml", v3.as_bytes())], order)
        .expect("update");
    proxy.wait_status("/a", 404).await;
    proxy.wait_generation(3).await;

    // Change an upstream: traffic moves.
    let v4 = routes_yaml(&[("/b", &pc)]);
    cm.update(&[("routes.yaml", v4.as_bytes())], order)
        .expect("update");
    support::wait_upstream(&proxy, "/b", "c").await;
    let routes = proxy.wait_generation(4).await;
    assert_eq!(routes["routes"][0]["upstream"][0], pc);
    assert!(routes["last_error"].is_null());
    let logs = proxy.wait_log("changed=[\"/b\"]").await;
    assert!(logs.contains("added=[\"/b\"]"), "{logs}");
    assert!(logs.contains("removed=[\"/a\"]"), "{logs}");
}

/// The kubelet's ConfigMap update (1.23+ order: `..data` swapped, then key
/// links): add a route → it serves; remove it → 404; change an upstream →
/// traffic moves.
#[tokio::test(flavor = "multi_thread")]
async fn configmap_update_adds_removes_and_changes_routes() {
    configmap_add_remove_change(KubeletOrder::Current).await;
}

/// The same with the pre-1.23 order (key links before the `..data` swap).
#[tokio::test(flavor = "multi_thread")]
async fn configmap_update_in_pre_1_23_order() {
    configmap_add_remove_change(KubeletOrder::Pre123).await;
}

/// A ConfigMap that gains the routes key only in an update: the key link
/// is created (before or after the swap) and the file appears.
#[tokio::test(flavor = "multi_thread")]
async fn configmap_key_links_created_in_either_order() {
    for order in [KubeletOrder::Current, KubeletOrder::Pre123] {
        let up = Upstream::start("late").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("routes");
        std::fs::create_dir(&volume).expect("volume");
        let mut cm =
            ConfigMapDir::create(&volume, &[("routes.yaml", b"routes: []\n")]).expect("cm");
        let proxy = Proxy::spawn_in(dir, cm.file("routes.yaml"), &[]).await;
        // Rename the key: routes.yaml disappears, other.yaml appears...
        cm.update(&[("other.yaml", b"x: 1\n")], order)
            .expect("update");
        proxy.wait_log("cannot read").await;
        // ...and comes back with a route.
        let v = routes_yaml(&[("/late", &up.host_port())]);
        cm.update(&[("routes.yaml", v.as_bytes())], order)
            .expect("update");
        support::wait_upstream(&proxy, "/late", "late").await;
    }
}

/// Each way an editor or a tool rewrites a file is noticed: temp file +
/// rename, vim's backup-rename-recreate, truncate-and-write, and
/// delete-then-recreate.
#[tokio::test(flavor = "multi_thread")]
async fn editor_write_patterns_are_noticed() {
    let up = Upstream::start("e").await;
    let proxy = Proxy::start("routes: []\n").await;
    let path = proxy.config.clone();
    let hp = up.host_port();
    let mut generation = 1;
    for (i, how) in ["rename", "vim", "in-place", "delete-recreate"]
        .into_iter()
        .enumerate()
    {
        let route = format!("/r{i}");
        let yaml = routes_yaml(&[(&route, &hp)]);
        match how {
            "rename" => kubelet::write_via_rename(&path, yaml.as_bytes()).expect("write"),
            "vim" => kubelet::write_like_vim(&path, yaml.as_bytes()).expect("write"),
            "in-place" => kubelet::write_in_place(&path, yaml.as_bytes()).expect("write"),
            _ => kubelet::delete_and_recreate(&path, yaml.as_bytes(), Duration::from_millis(50))
                .await
                .expect("write"),
        }
        support::wait_upstream(&proxy, &route, "e").await;
        generation += 1;
        let routes = proxy.wait_generation(generation).await;
        assert!(routes["last_error"].is_null(), "{how}: {routes}");
    }
    // No attempt along the way saw a missing or partial file.
    assert!(
        !proxy.logs().contains("config rejected"),
        "{}",
        proxy.logs()
    );
}

/// Every kind of bad file is rejected, the old routes keep serving, the
/// error names file:line:column and shows in `/routes` and the reload
/// answer; the next good file clears it.
#[tokio::test(flavor = "multi_thread")]
async fn bad_files_are_rejected_and_the_old_table_keeps_serving() {
    let up = Upstream::start("good").await;
    let good = routes_yaml(&[("/good", &up.host_port())]);
    let proxy = Proxy::start(&good).await;
    let path = proxy.config.clone();
    let shown = path.display().to_string();

    for (name, content, want) in [
        ("missing", None, "cannot read"),
        ("empty", Some(""), ":1:1: the file is empty"),
        ("not yaml", Some("routes: [\n"), "not valid YAML"),
        (
            "unknown key",
            Some("routes:\n  - path: /x\n    upstream: 127.0.0.1:1\n    colour: red\n"),
            ":4:5: route #1 (/x): unknown field `colour`",
        ),
        (
            "failed check",
            Some("routes:\n  - path: /health\n    upstream: 127.0.0.1:1\n"),
            ":2:11: route #1 (/health): path /health is reserved",
        ),
    ] {
        match content {
            None => std::fs::remove_file(&path).expect("remove"),
            Some(c) => kubelet::write_via_rename(&path, c.as_bytes()).expect("write"),
        }
        // The watcher notices and rejects it on its own...
        let routes = support::eventually(&format!("{name}: last_error set"), || async {
            let r = proxy.routes().await;
            r["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(want))
                .then_some(r)
        })
        .await;
        assert_eq!(routes["generation"], 1, "{name}");
        assert!(
            routes["last_error"].as_str().unwrap().starts_with(&shown),
            "{name}: {routes}"
        );
        // ...a manual reload says the same...
        let (status, answer) = proxy.post_reload().await;
        assert_eq!(status, 422, "{name}");
        assert_eq!(answer["result"], "failure");
        assert_eq!(answer["generation"], 1);
        assert!(
            answer["error"].as_str().unwrap().contains(want),
            "{name}: {answer}"
        );
        // ...and the old table still serves.
        assert_eq!(
            support::upstream_name(&proxy, "/good").await.as_deref(),
            Some("good"),
            "{name}"
        );
    }
    kubelet::write_via_rename(&path, good.replace("/good", "/better").as_bytes()).expect("write");
    let routes = proxy.wait_generation(2).await;
    assert!(routes["last_error"].is_null(), "{routes}");
    proxy.wait_status("/better", 200).await;
    let logs = proxy.logs();
    assert!(
        logs.contains("config rejected; generation 1 keeps serving"),
        "{logs}"
    );
}

/// Unchanged bytes are `unchanged`: no new generation.
#[tokio::test(flavor = "multi_thread")]
async fn unchanged_bytes_are_not_a_new_generation() {
    let proxy = Proxy::start("routes: []\n").await;
    let before = proxy.routes().await;
    for _ in 0..2 {
        let (status, answer) = proxy.post_reload().await;
        assert_eq!(status, 200);
        assert_eq!(answer["result"], "unchanged");
        assert_eq!(answer["generation"], 1);
    }
    // Rewriting the same bytes is unchanged too.
    kubelet::write_in_place(&proxy.config, b"routes: []\n").expect("write");
    proxy
        .wait_log("result=\"unchanged\" trigger=\"watch\"")
        .await;
    let after = proxy.routes().await;
    assert_eq!(before["sha256"], after["sha256"]);
    assert_eq!(after["generation"], 1);
    assert_eq!(before["loaded_at"], after["loaded_at"]);
}

/// `/routes` shows the applied table with its hash, generation and time.
#[tokio::test(flavor = "multi_thread")]
async fn routes_endpoint_shows_the_applied_table() {
    let yaml = "routes:\n  - path: /a/\n    host: Dev.Example.com\n    upstream: [127.0.0.1:1, 'svc.ns:8080']\n    strip_prefix: true\n    connect_timeout: 500ms\n";
    let proxy = Proxy::start(yaml).await;
    let r = proxy.routes().await;
    assert_eq!(r["generation"], 1);
    assert_eq!(r["sha256"], sha256_of(yaml.as_bytes()));
    assert!(r["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert!(r["last_error"].is_null());
    let route = &r["routes"][0];
    assert_eq!(route["path"], "/a");
    assert_eq!(route["host"], "dev.example.com");
    assert_eq!(
        route["upstream"],
        serde_json::json!(["127.0.0.1:1", "svc.ns:8080"])
    );
    assert_eq!(route["strip_prefix"], true);
    assert_eq!(route["connect_timeout"], "500ms");
    assert_eq!(route["read_timeout"], "1m");
}

fn sha256_of(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// SIGHUP, `POST /reload` and `switchyard reload` each reload now, with the
/// contract's exit codes: 0 applied or unchanged, 1 rejected, 2 no answer.
#[tokio::test(flavor = "multi_thread")]
async fn manual_triggers_and_reload_command_exit_codes() {
    // No hash poll during the test: every reload here is a manual one or
    // the watcher's.
    let proxy = Proxy::start_with("routes: []\n", &["--poll-interval", "3600"]).await;

    proxy.signal(nix::sys::signal::Signal::SIGHUP);
    proxy.wait_log("trigger=\"sighup\"").await;

    let admin = proxy.admin.to_string();
    let (code, out, _) = support::run_cli(&["reload", "--admin", &admin]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("unchanged: generation 1"), "{out}");

    kubelet::write_via_rename(
        &proxy.config,
        b"routes:\n  - {path: /n, upstream: '127.0.0.1:1'}\n",
    )
    .expect("write");
    proxy.wait_generation(2).await;
    let (code, out, _) = support::run_cli(&["reload", "--admin", &admin]);
    assert_eq!(
        (code, out.trim()),
        (0, "unchanged: generation 2 keeps serving")
    );

    kubelet::write_via_rename(
        &proxy.config,
        b"routes:\n  - {path: /n, upstrem: '127.0.0.1:1'}\n",
    )
    .expect("write");
    let (code, out, _) = support::run_cli(&["reload", "--admin", &admin]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("failure: generation 2 keeps serving"),
        "{out}"
    );
    assert!(
        out.contains(":2:16: route #1 (/n): unknown field `upstrem`"),
        "{out}"
    );
    // The watcher saw that rename too; wait for its attempt, so that it
    // cannot come late and read the next file instead.
    support::eventually("the watcher's attempt on the bad file", || async {
        let failures = support::metric(
            &proxy.scrape().await,
            "switchyard_config_reloads_total",
            &[("result", "failure")],
        );
        (failures >= Some(2.0)).then_some(())
    })
    .await;

    // Fixing the file and reloading by hand applies it at once. The file is
    // kept open meanwhile, and its first byte rewritten (with itself) every
    // 100 ms: the watcher waits for the writer to close it or for 1 s
    // without writes, so however slow the machine, the command, not the
    // watcher, is what applies it.
    let mut writer = std::fs::File::create(&proxy.config).expect("open");
    std::io::Write::write_all(
        &mut writer,
        b"routes:\n  - {path: /m, upstream: '127.0.0.1:1'}\n",
    )
    .expect("write");
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let toucher = {
        let writing = std::sync::Arc::clone(&writing);
        let file = writer.try_clone().expect("clone");
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                file.write_at(b"r", 0).expect("rewrite");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (code, out, _) = support::run_cli(&["reload", "--admin", &admin]);
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    toucher.join().expect("toucher");
    drop(writer);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("added /m") && out.contains("removed /n"),
        "{out}"
    );

    let dead = support::refused_addr().to_string();
    let (code, _, err) = support::run_cli(&["reload", "--admin", &dead]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no answer"), "{err}");
}

/// A streamed response whose route is removed mid-stream finishes from the
/// old upstream, while new requests to that path get 404.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_response_outlives_its_route() {
    let up = Upstream::start("s").await;
    let (proxy, mut cm) = proxy_on_configmap(&routes_yaml(&[("/s", &up.host_port())])).await;
    let tx = up.arm_stream().await;
    tx.send("before\n".into()).await.expect("feed");
    let resp = client()
        .get(proxy.url("/s/stream"))
        .send()
        .await
        .expect("request");
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("chunk").expect("ok");
    assert_eq!(&first[..], b"before\n");

    cm.update(&[("routes.yaml", b"routes: []\n")], KubeletOrder::Current)
        .expect("update");
    proxy.wait_status("/s/stream", 404).await;

    tx.send("after\n".into()).await.expect("feed");
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(rest, b"after\n");
}

/// An upgraded WebSocket keeps working after its route is removed.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_outlives_its_route() {
    let up = Upstream::start("ws").await;
    let (proxy, mut cm) = proxy_on_configmap(&routes_yaml(&[("/app", &up.host_port())])).await;
    let mut ws = support::websocket(&proxy, "/app/ws").await;
    ws.send(Message::text("one")).await.expect("send");
    assert_eq!(
        ws.next()
            .await
            .expect("reply")
            .expect("frame")
            .into_text()
            .expect("text")
            .as_str(),
        "ws: one"
    );

    cm.update(&[("routes.yaml", b"routes: []\n")], KubeletOrder::Current)
        .expect("update");
    proxy.wait_status("/app/ws", 404).await;

    for i in 0..3 {
        ws.send(Message::text(format!("after {i}")))
            .await
            .expect("send");
        let reply = ws.next().await.expect("reply").expect("frame");
        assert_eq!(
            reply.into_text().expect("text").as_str(),
            format!("ws: after {i}")
        );
    }
}

/// One keep-alive connection carries 20 requests across 20 reloads: it is
/// never closed, and each request sees the table current when it arrives.
#[tokio::test(flavor = "multi_thread")]
async fn keepalive_connection_spans_twenty_reloads() {
    let up = Upstream::start("k").await;
    let hp = up.host_port();
    let (proxy, mut cm) = proxy_on_configmap(&routes_yaml(&[("/v0", &hp)])).await;
    let mut conn = RawConn::connect(proxy.addr).await;
    assert_eq!(conn.get("x", "/v0").await.status, 200);
    for i in 1..=20u64 {
        let yaml = routes_yaml(&[(&format!("/v{i}"), &hp)]);
        cm.update(&[("routes.yaml", yaml.as_bytes())], KubeletOrder::Current)
            .expect("update");
        proxy.wait_generation(i + 1).await;
        let now = conn.get("x", &format!("/v{i}")).await;
        assert_eq!(now.status, 200, "request {i} on the same connection");
        let old = conn.get("x", &format!("/v{}", i - 1)).await;
        assert_eq!(old.status, 404, "removed route {}", i - 1);
    }
    assert_eq!(up.hits(), 21);
}

/// A large file rewritten in place in small chunks, while a client hammers
/// a route that is in every version (last in the file, so any cut-off half
/// would lack it): zero failures, and only the finished file is applied.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_in_place_rewrite_never_applies_a_half_file() {
    let up = Upstream::start("stable").await;
    let hp = up.host_port();
    let file = |tag: &str| {
        let mut s = String::from("routes:\n");
        for i in 0..400 {
            s.push_str(&format!(
                "  - path: /{tag}/filler{i}\n    upstream: 127.0.0.1:1\n"
            ));
        }
        s.push_str(&format!("  - path: /stable\n    upstream: {hp}\n"));
        s
    };
    let proxy = Proxy::start(&file("one")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let hammer = {
        let (stop, ok, bad, url) = (
            stop.clone(),
            ok.clone(),
            bad.clone(),
            proxy.url("/stable/x"),
        );
        tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let second = file("two");
    // ~20 KB in 512-byte chunks, 20 ms apart: about 0.8 s of half files.
    kubelet::write_in_place_chunked(
        &proxy.config,
        second.as_bytes(),
        512,
        Duration::from_millis(20),
    )
    .await
    .expect("write");
    let routes = proxy.wait_generation(2).await;
    assert_eq!(routes["sha256"], sha256_of(second.as_bytes()));
    stop.store(true, Ordering::Relaxed);
    hammer.await.expect("hammer");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "failed requests during the rewrite"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    let logs = proxy.logs();
    assert!(
        !logs.contains("config rejected"),
        "a half file was read:\n{logs}"
    );
    assert_eq!(logs.matches("result=\"success\"").count(), 1, "{logs}");
}

/// 100 ConfigMap swaps while concurrent clients run: zero failed requests.
#[tokio::test(flavor = "multi_thread")]
async fn hundred_reloads_under_concurrent_load() {
    let up = Upstream::start("stable").await;
    let hp = up.host_port();
    let (proxy, mut cm) = proxy_on_configmap(&routes_yaml(&[("/stable", &hp)])).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, bad, url) = (
            stop.clone(),
            ok.clone(),
            bad.clone(),
            proxy.url("/stable/y"),
        );
        clients.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 1..=100u64 {
        let extra = format!("/extra{i}");
        let yaml = routes_yaml(&[("/stable", &hp), (&extra, "127.0.0.1:1")]);
        cm.update(&[("routes.yaml", yaml.as_bytes())], KubeletOrder::Current)
            .expect("update");
        proxy.wait_generation(i + 1).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    assert_eq!(bad.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "{}",
        ok.load(Ordering::Relaxed)
    );
}

/// A config file that is itself a mount point (what a `subPath` mount
/// makes) gets a startup warning saying it will never see updates and how
/// to mount the directory instead; a plain file gets none. The bind mount
/// is made in a private mount namespace (`unshare`), so nothing leaks.
#[tokio::test(flavor = "multi_thread")]
async fn subpath_mount_is_warned_about() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source.yaml");
    let target_dir = dir.path().join("etc");
    std::fs::create_dir(&target_dir).expect("dir");
    let target = target_dir.join("routes.yaml");
    std::fs::write(&source, "routes: []\n").expect("write");
    std::fs::write(&target, "").expect("write");
    let (listen, admin) = (support::refused_addr(), support::refused_addr());
    let script = format!(
        "mount --bind '{}' '{}' && exec '{}' serve --config '{}' --listen {listen} --admin-listen {admin}",
        source.display(),
        target.display(),
        support::BIN,
        target.display()
    );
    let mut child = tokio::process::Command::new("unshare")
        .args([
            "--mount",
            "--map-root-user",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("unshare (util-linux) runs");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let warning = tokio::time::timeout(support::patience(), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("is itself a mount point") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("warning within patience");
    assert!(warning.contains("without subPath"), "{warning}");
    assert!(warning.contains(&target.display().to_string()), "{warning}");
    child.kill().await.expect("kill");

    let plain = Proxy::start("routes: []\n").await;
    plain.wait_log("switchyard started").await;
    plain.post_reload().await; // the reload task has run its startup checks
    assert!(!plain.logs().contains("mount point"), "{}", plain.logs());
}

/// A rejected reload is answered and kept with its problems as objects
/// (file, line, column, route, message) beside the text: in the `POST
/// /reload` answer and in `/routes` `last_errors`.
#[tokio::test(flavor = "multi_thread")]
async fn rejected_reloads_report_structured_errors() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(&routes_yaml(&[("/a", &up.host_port())])).await;
    let bad = format!("routes:\n  - path: /a\n    upstrem: {}\n", up.host_port());
    std::fs::write(proxy.config_path(), bad).unwrap();
    let (status, answer) = proxy.post_reload().await;
    assert_eq!(status, 422, "{answer}");
    let errors = answer["errors"].as_array().expect("errors list");
    let first = &errors[0];
    assert_eq!(first["line"], 3, "{answer}");
    assert_eq!(first["column"], 5, "{answer}");
    assert_eq!(first["route"], "route #1 (/a)", "{answer}");
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field `upstrem`")),
        "{answer}"
    );
    assert!(first["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("routes.yaml")));
    assert!(answer["error"]
        .as_str()
        .is_some_and(|e| e.contains(":3:5: route #1 (/a)")));
    let routes = proxy.routes().await;
    assert_eq!(routes["last_errors"][0], *first, "{routes}");
    assert_eq!(routes["last_error"], answer["error"], "{routes}");
    // Unreadable: one problem with no line.
    std::fs::remove_file(proxy.config_path()).unwrap();
    let (_, answer) = proxy.post_reload().await;
    assert!(answer["errors"][0]["line"].is_null(), "{answer}");
    assert!(answer["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("cannot read")));
}
