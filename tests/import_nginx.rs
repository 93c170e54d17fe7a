//! `switchyard import-nginx`, run as the real binary on the nginx.conf
//! files in `tests/fixtures/nginx/`: what translates comes out as a
//! routes.yaml that passes `switchyard check`; what cannot is refused with
//! its line number and exit status 1; an unreadable file is exit 2.

use crate::support::run_cli;
use switchyard_routes::Table;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/nginx/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `import-nginx` on a fixture: (exit code, stdout, stderr).
fn import(name: &str) -> (i32, String, String) {
    run_cli(&["import-nginx", &fixture(name)])
}

/// Writes `yaml` to a temporary file and runs the real `switchyard check`
/// on it, asserting it passes; returns the table for inspection.
fn checked(yaml: &str) -> Table {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, yaml).expect("write");
    let (code, out, err) = run_cli(&["check", path.to_str().expect("utf8 path")]);
    assert_eq!(
        code, 0,
        "switchyard check failed:\n{err}\n--- yaml ---\n{yaml}"
    );
    assert!(out.contains(": ok,"), "{out}");
    switchyard_routes::load("routes.yaml", yaml).expect("loads")
}

fn upstreams(table: &Table, path: &str) -> Vec<String> {
    table
        .lookup(None, path)
        .unwrap_or_else(|| panic!("no route for {path}"))
        .upstreams
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Asserts an untranslatable fixture: exit 1, each `line: needle` reported
/// as `FILE:LINE: …needle…` on stderr, and the partial output still passes
/// `check`. Returns the partial table.
fn refused(name: &str, want: &[(usize, &str)]) -> Table {
    let (code, out, err) = import(name);
    assert_eq!(code, 1, "{name}: stderr:\n{err}");
    let file = fixture(name);
    for (line, needle) in want {
        let prefix = format!("{file}:{line}: ");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "{name}: wanted `{prefix}…{needle}…` in stderr:\n{err}"
        );
    }
    // Problem lines are `FILE:LINE: …`; the closing summary is `FILE: …`.
    let reported = err
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{file}:")))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(reported, want.len(), "{name}: unexpected problems:\n{err}");
    assert!(out.contains("# INCOMPLETE:"), "{out}");
    checked(&out)
}

/// The operator's nginx.conf translates completely: exit 0, a routes.yaml
/// that `switchyard check` accepts, /app1 and /app2 on their dev servers
/// with the path passed unchanged, and no /health route (Switchyard answers
/// /health itself).
#[test]
fn operator_conf_translates_and_passes_check() {
    let (code, out, err) = import("operator.conf");
    assert_eq!(code, 0, "stderr:\n{err}");
    assert!(err.contains("translated, 2 routes"), "{err}");
    let table = checked(&out);
    assert_eq!(table.len(), 2);
    assert_eq!(upstreams(&table, "/app1/x"), ["192.168.2.50:3000"]);
    assert_eq!(upstreams(&table, "/app2/x"), ["192.168.2.51:8080"]);
    for r in table.routes() {
        assert!(!r.strip_prefix, "{}", r.path);
        // Its locations have no trailing `/`: nginx redirected nothing.
        assert!(!r.redirect_bare_prefix, "{}", r.path);
        assert!(r.host.is_none(), "{}", r.path);
        assert_ne!(r.path, "/health");
    }
    assert!(table.lookup(None, "/health").is_none());
    // Each route cites where it came from; /health says why it is absent.
    let file = fixture("operator.conf");
    assert!(
        out.contains(&format!(
            "# from {file}:19 location /app1, upstream app1 at line 7\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "# from {file}:30 location /app2, upstream app2 at line 11\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("# {file}:41: location /health left out")),
        "{out}"
    );
    assert!(out.contains("version: 1\nroutes:\n"), "{out}");
}

/// `location /app2/ { proxy_pass http://app2/; }` replaces `/app2/` with
/// `/`, which is Switchyard's `strip_prefix: true`; nginx redirected the
/// bare `/app2` to `/app2/`, which is `redirect_bare_prefix: true`, noted
/// in the header as a 308.
#[test]
fn proxy_pass_uri_becomes_strip_prefix() {
    let (code, out, err) = import("strip_prefix.conf");
    assert_eq!(code, 0, "stderr:\n{err}");
    let table = checked(&out);
    let route = table.lookup(None, "/app2/x").expect("route");
    assert_eq!(route.path, "/app2");
    assert!(route.strip_prefix);
    assert_eq!(route.upstream_path("/app2/x"), "/x");
    assert!(route.redirect_bare_prefix);
    assert_eq!(
        route.bare_prefix_redirect("/app2", Some("q=1")).as_deref(),
        Some("/app2/?q=1")
    );
    assert!(
        out.contains("    strip_prefix: true\n    redirect_bare_prefix: true\n"),
        "{out}"
    );
    let file = fixture("strip_prefix.conf");
    assert!(
        out.contains(&format!(
            "# {file}:10: location /app2/: nginx answered /app2 with a 301 redirect to /app2/; the route has redirect_bare_prefix: true, so Switchyard redirects it too, with a 308"
        )),
        "{out}"
    );
}

/// Several servers in an upstream block become a round-robin list; one
/// without a port gets nginx's default, 80; `keepalive` is noted as covered.
#[test]
fn upstream_with_several_servers_is_round_robin() {
    let (code, out, err) = import("round_robin.conf");
    assert_eq!(code, 0, "stderr:\n{err}");
    let table = checked(&out);
    assert_eq!(
        upstreams(&table, "/api/users"),
        [
            "10.0.0.7:8080",
            "10.0.0.8:8080",
            "api-3.dev.svc.cluster.local:80"
        ]
    );
    assert!(out.contains("keepalive 16` ignored"), "{out}");
}

/// nginx times (bare seconds, ms, s, h) become routes.yaml durations,
/// inherited from the server block unless the location sets its own.
#[test]
fn timeouts_are_translated() {
    let (code, out, err) = import("timeouts.conf");
    assert_eq!(code, 0, "stderr:\n{err}");
    let table = checked(&out);
    let app1 = table.lookup(None, "/app1").expect("app1");
    assert_eq!(app1.connect_timeout.as_secs(), 2);
    assert_eq!(app1.read_timeout.as_secs(), 3600);
    let reports = table.lookup(None, "/reports").expect("reports");
    assert_eq!(reports.connect_timeout.as_millis(), 500);
    assert_eq!(reports.read_timeout.as_secs(), 90);
    assert!(
        out.contains("    connect_timeout: 2s\n    read_timeout: 1h\n"),
        "{out}"
    );
}

/// A regex location is refused at its line; the prefix location beside it
/// still comes out.
#[test]
fn regex_location_is_refused() {
    let table = refused("regex_location.conf", &[(10, "regex location")]);
    assert_eq!(table.len(), 1);
    assert_eq!(upstreams(&table, "/app1"), ["192.168.2.50:3000"]);
}

/// An exact-match location is refused at its line.
#[test]
fn exact_location_is_refused() {
    let table = refused("exact_location.conf", &[(5, "exact-match location")]);
    assert!(table.is_empty());
}

/// `rewrite` is refused at its line, and its location is left out.
#[test]
fn rewrite_is_refused() {
    let table = refused("rewrite.conf", &[(6, "rewrites the request URI")]);
    assert!(table.is_empty());
}

/// `include` is not followed: refused at its line (mime.types excepted).
#[test]
fn include_is_refused() {
    let table = refused("include.conf", &[(3, "not read")]);
    assert_eq!(table.len(), 1);
}

/// An https upstream is refused: Switchyard's upstreams are plain HTTP.
#[test]
fn https_proxy_pass_is_refused() {
    let table = refused("https_proxy_pass.conf", &[(6, "plain HTTP")]);
    assert!(table.is_empty());
}

/// `weight=` is refused at the server's line; the location using that
/// upstream is left out, the other one still translates.
#[test]
fn weighted_server_is_refused() {
    let table = refused("weight.conf", &[(3, "weight=3")]);
    assert_eq!(table.len(), 1);
    assert_eq!(upstreams(&table, "/app2"), ["192.168.2.51:8080"]);
    let (_, out, _) = import("weight.conf");
    assert!(out.contains("# not translated: "), "{out}");
}

/// A file that is not nginx syntax: exit 1 with the line, nothing printed.
#[test]
fn unbalanced_braces_are_untranslatable() {
    let (code, out, err) = import("unbalanced.conf");
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    let file = fixture("unbalanced.conf");
    assert!(
        err.contains(&format!("{file}:1: unexpected end of file")),
        "{err}"
    );
}

/// A missing file is unreadable: exit 2.
#[test]
fn missing_file_is_exit_2() {
    let (code, out, err) = import("no-such.conf");
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no-such.conf: cannot read"), "{err}");
}
