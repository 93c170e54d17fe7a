//! The command line: `check` on good and broken files, and `serve`
//! failing fast when it cannot serve.

use crate::support;

use std::time::{Duration, Instant};

use crate::support::{run_cli, BIN};

fn check_file(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, yaml).expect("write");
    let path = path.to_str().expect("utf8 path").to_owned();
    let (code, out, err) = run_cli(&["check", &path]);
    // Make the messages independent of the temp dir.
    (code, out.replace(&path, "F"), err.replace(&path, "F"))
}

/// A valid file: exit 0 and a one-line summary.
#[test]
fn check_accepts_a_valid_file() {
    let (code, out, _) = check_file("routes:\n  - path: /a\n    upstream: 127.0.0.1:1\n");
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "F: ok, 1 routes");
}

/// Broken files: exit 1, and each problem as `file:line:column: message`
/// naming its route.
#[test]
fn check_reports_each_broken_file_with_position() {
    for (yaml, want) in [
        // unknown key, with its line and column
        ("routes:\n  - path: /a\n    upstream: 127.0.0.1:1\n    stripprefix: true\n", "F:4:5: route #1 (/a): unknown field `stripprefix`"),
        // duplicate path
        ("routes:\n  - path: /a\n    upstream: 127.0.0.1:1\n  - path: /a/\n    upstream: 127.0.0.1:2\n", "F:4:11: route #2 (/a/): duplicate route /a: already defined at line 2"),
        // reserved /health
        ("routes:\n  - path: /health\n    upstream: 127.0.0.1:1\n", "F:2:11: route #1 (/health): path /health is reserved"),
        // bad address
        ("routes:\n  - path: /a\n    upstream: [127.0.0.1:1, 'http://x:80']\n", "F:3:29: route #1 (/a): invalid upstream \"http://x:80\""),
        // empty file
        ("", "F:1:1: the file is empty"),
        // not YAML
        ("routes: [\n  - path: /a\n", "not valid YAML"),
        ("just words\n", "top level must be a mapping"),
    ] {
        let (code, _, err) = check_file(yaml);
        assert_eq!(code, 1, "{yaml:?}: {err}");
        assert!(err.contains(want), "{yaml:?}:\n{err}\nwanted: {want}");
    }
}

/// All errors at once, one line each, then a count.
#[test]
fn check_reports_every_error_at_once() {
    let (code, _, err) = check_file(
        "routes:\n  - path: /a\n    upstream: nope\n  - path: /b\n    upstream: 127.0.0.1:1\n    connect_timeout: 5\n",
    );
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].starts_with("F:3:15: route #1 (/a):"), "{err}");
    assert!(
        lines[1].starts_with("F:6:22: route #2 (/b): invalid connect_timeout"),
        "{err}"
    );
    assert_eq!(lines[2], "F: 2 errors");
}

/// A file that cannot be read: exit 2.
#[test]
fn check_missing_file_exits_2() {
    let (code, _, err) = run_cli(&["check", "/nonexistent/routes.yaml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/routes.yaml: cannot read"),
        "{err}"
    );
}

/// Every example under `config/` passes `check`.
#[test]
fn every_shipped_config_passes_check() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let (code, out, err) = run_cli(&["check", path.to_str().expect("utf8")]);
            assert_eq!(code, 0, "{}: {out}{err}", path.display());
            n += 1;
        }
    }
    assert!(n > 0, "no example configs found");
}

/// `serve` on an invalid file prints the same errors and exits non-zero at once.
#[test]
fn serve_fails_fast_on_an_invalid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, "routes:\n  - path: /a\n    upstrem: 127.0.0.1:1\n").expect("write");
    let start = Instant::now();
    let path = path.to_str().expect("utf8");
    let (code, _, err) = run_cli(&[
        "serve",
        "--config",
        path,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains(":3:5: route #1 (/a): unknown field `upstrem`"),
        "{err}"
    );
}

/// `serve` on a missing file exits 2.
#[test]
fn serve_fails_fast_on_a_missing_file() {
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/routes.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// `serve` on a port that is taken exits non-zero within seconds (Pingora
/// alone would retry for 30 s and then exit 0).
#[test]
fn serve_fails_fast_on_a_busy_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, "routes: []\n").expect("write");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    let free = support::refused_addr().to_string();
    for (listen, admin) in [(&busy_addr, &free), (&free, &busy_addr)] {
        let start = Instant::now();
        let path = path.to_str().expect("utf8");
        let (code, _, err) = run_cli(&[
            "serve",
            "--config",
            path,
            "--listen",
            listen,
            "--admin-listen",
            admin,
        ]);
        assert_eq!(code, 3);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(
            err.contains(&format!("cannot listen on {busy_addr}")),
            "{err}"
        );
    }
}

/// Every flag reads `SWITCHYARD_<FLAG>` from the environment.
#[tokio::test(flavor = "multi_thread")]
async fn serve_reads_flags_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, "routes: []\n").expect("write");
    let (listen, admin) = (support::refused_addr(), support::refused_addr());
    let mut child = tokio::process::Command::new(BIN)
        .arg("serve")
        .env("SWITCHYARD_CONFIG", &path)
        .env("SWITCHYARD_LISTEN", listen.to_string())
        .env("SWITCHYARD_ADMIN_LISTEN", admin.to_string())
        .env("SWITCHYARD_THREADS", "1")
        .env("SWITCHYARD_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let c = support::client();
    support::eventually("admin /ready via env-configured address", || {
        let c = c.clone();
        async move {
            let r = c.get(format!("http://{admin}/ready")).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    let r = c
        .get(format!("http://{listen}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    child.kill().await.expect("kill");
}

/// `--help` works for every subcommand.
#[test]
fn help_on_every_subcommand() {
    for args in [&["--help"][..], &["serve", "--help"], &["check", "--help"]] {
        let (code, out, _) = run_cli(args);
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Usage"), "{out}");
    }
}
