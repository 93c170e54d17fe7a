//! Matching rules and file checks, one test per rule; each doc comment
//! states the rule it pins down.

use crate::{load, load_bytes, ConfigErrors, Table, MAX_REPORTED_ERRORS};

fn table(yaml: &str) -> Table {
    match load("t.yaml", yaml) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn matched<'a>(t: &'a Table, host: Option<&str>, path: &str) -> Option<&'a str> {
    t.lookup(host, path).map(|r| r.path.as_str())
}

fn upstream_of(t: &Table, host: Option<&str>, path: &str) -> Option<String> {
    t.lookup(host, path).map(|r| r.upstreams[0].to_string())
}

const APPS: &str = "
routes:
  - path: /app1
    upstream: 127.0.0.1:3001
  - path: /app1/api
    upstream: 127.0.0.1:3002
  - path: /app2/
    upstream: 127.0.0.1:3003
";

/// A prefix matches the path itself, the path with a trailing slash, and
/// anything below it.
#[test]
fn prefix_matches_itself_and_below() {
    let t = table(APPS);
    for p in ["/app1", "/app1/", "/app1/x", "/app1/x/y.js"] {
        assert_eq!(matched(&t, None, p), Some("/app1"), "{p}");
    }
}

/// Prefixes match whole segments: `/app1` never matches `/app10` or
/// `/app1x`.
#[test]
fn prefix_matches_whole_segments_only() {
    let t = table(APPS);
    for p in ["/app10", "/app1x", "/app", "/ap"] {
        assert_eq!(matched(&t, None, p), None, "{p}");
    }
}

/// `path: /app2/` means the same as `/app2`.
#[test]
fn trailing_slash_in_route_path_is_ignored() {
    let t = table(APPS);
    assert_eq!(matched(&t, None, "/app2"), Some("/app2"));
    assert_eq!(matched(&t, None, "/app2/z"), Some("/app2"));
    assert_eq!(t.entries()[2].path, "/app2");
}

/// The longest matching prefix wins, whatever the order in the file.
#[test]
fn longest_prefix_wins() {
    let t = table(APPS);
    assert_eq!(matched(&t, None, "/app1/api"), Some("/app1/api"));
    assert_eq!(matched(&t, None, "/app1/api/v1"), Some("/app1/api"));
    assert_eq!(matched(&t, None, "/app1/apix"), Some("/app1"));
    let reversed = table(
        "routes:\n  - {path: /a/b, upstream: '127.0.0.1:2'}\n  - {path: /a, upstream: '127.0.0.1:1'}\n",
    );
    assert_eq!(matched(&reversed, None, "/a/b/c"), Some("/a/b"));
}

/// `/` matches every path, and loses to any longer prefix.
#[test]
fn root_matches_everything() {
    let t = table("routes:\n  - {path: /, upstream: '127.0.0.1:1'}\n  - {path: /a, upstream: '127.0.0.1:2'}\n");
    assert_eq!(upstream_of(&t, None, "/"), Some("127.0.0.1:1".into()));
    assert_eq!(upstream_of(&t, None, "/zzz/y"), Some("127.0.0.1:1".into()));
    assert_eq!(upstream_of(&t, None, "/a/x"), Some("127.0.0.1:2".into()));
}

const HOSTS: &str = "
routes:
  - path: /app
    upstream: 127.0.0.1:1
  - path: /app
    host: dev.example.com
    upstream: 127.0.0.1:2
  - path: /app/deep
    upstream: 127.0.0.1:3
";

/// At equal length, a route with a matching `host` beats one without.
#[test]
fn host_route_beats_hostless_at_equal_length() {
    let t = table(HOSTS);
    assert_eq!(
        upstream_of(&t, Some("dev.example.com"), "/app/x"),
        Some("127.0.0.1:2".into())
    );
    assert_eq!(
        upstream_of(&t, Some("other.example.com"), "/app/x"),
        Some("127.0.0.1:1".into())
    );
    assert_eq!(upstream_of(&t, None, "/app/x"), Some("127.0.0.1:1".into()));
}

/// Length comes first: a longer host-less prefix beats a shorter one with a
/// matching host.
#[test]
fn longer_prefix_beats_host_match() {
    let t = table(HOSTS);
    assert_eq!(
        upstream_of(&t, Some("dev.example.com"), "/app/deep/x"),
        Some("127.0.0.1:3".into())
    );
}

/// Host matching ignores case and the port of the `Host` header.
#[test]
fn host_match_ignores_case_and_port() {
    let t = table(HOSTS);
    for h in [
        "DEV.Example.com",
        "dev.example.com:8080",
        "Dev.Example.Com:80",
    ] {
        assert_eq!(
            upstream_of(&t, Some(h), "/app"),
            Some("127.0.0.1:2".into()),
            "{h}"
        );
    }
}

/// A route with a `host` never matches a request for another host.
#[test]
fn host_route_alone_does_not_match_other_hosts() {
    let t = table("routes:\n  - {path: /a, host: x.test, upstream: '127.0.0.1:1'}\n");
    assert!(t.lookup(Some("y.test"), "/a").is_none());
    assert!(t.lookup(None, "/a").is_none());
    assert!(t.lookup(Some("x.test"), "/a").is_some());
}

/// Matching is byte-exact and case-sensitive on the path.
#[test]
fn path_matching_is_case_sensitive() {
    let t = table(APPS);
    assert_eq!(matched(&t, None, "/APP1"), None);
}

/// `strip_prefix` removes the matched prefix; the bare prefix becomes `/`.
#[test]
fn strip_prefix_rewrites_the_path() {
    let t = table("routes:\n  - {path: /app2, upstream: '127.0.0.1:1', strip_prefix: true}\n  - {path: /keep, upstream: '127.0.0.1:1'}\n");
    let r = t.lookup(None, "/app2/x/y").unwrap();
    assert_eq!(r.upstream_path("/app2/x/y"), "/x/y");
    assert_eq!(r.upstream_path("/app2"), "/");
    assert_eq!(r.upstream_path("/app2/"), "/");
    let k = t.lookup(None, "/keep/x").unwrap();
    assert_eq!(k.upstream_path("/keep/x"), "/keep/x");
}

/// `redirect_bare_prefix: true` redirects exactly the bare prefix, to its
/// slash form with the query kept; the slash form, deeper paths, a route
/// without the setting and the root route are never redirected.
#[test]
fn redirect_bare_prefix_applies_to_the_bare_prefix_only() {
    let t = table("routes:\n  - {path: /app1/, upstream: '127.0.0.1:1', redirect_bare_prefix: true}\n  - {path: /app2, upstream: '127.0.0.1:1'}\n  - {path: /, upstream: '127.0.0.1:1', redirect_bare_prefix: true}\n  - {path: /a/b, upstream: '127.0.0.1:1', redirect_bare_prefix: false}\n");
    let r = t.lookup(None, "/app1").unwrap();
    assert!(r.redirect_bare_prefix);
    assert_eq!(
        r.bare_prefix_redirect("/app1", None).as_deref(),
        Some("/app1/")
    );
    assert_eq!(
        r.bare_prefix_redirect("/app1", Some("x=1&y")).as_deref(),
        Some("/app1/?x=1&y")
    );
    assert_eq!(
        r.bare_prefix_redirect("/app1", Some("")).as_deref(),
        Some("/app1/?")
    );
    for path in ["/app1/", "/app1/x", "/app1/x/"] {
        assert_eq!(r.bare_prefix_redirect(path, None), None, "{path}");
    }
    let plain = t.lookup(None, "/app2").unwrap();
    assert!(!plain.redirect_bare_prefix);
    assert_eq!(plain.bare_prefix_redirect("/app2", None), None);
    let root = t.lookup(None, "/").unwrap();
    assert!(root.redirect_bare_prefix);
    assert_eq!(root.bare_prefix_redirect("/", None), None);
    assert_eq!(root.bare_prefix_redirect("", None), None);
    let off = t.lookup(None, "/a/b").unwrap();
    assert_eq!(off.bare_prefix_redirect("/a/b", None), None);
}

/// `redirect_bare_prefix` is a boolean: anything else is refused at its
/// line and column, naming the route, like every other field.
#[test]
fn redirect_bare_prefix_must_be_a_boolean() {
    for value in ["yes", "on", "1", "~"] {
        let e = errors(&format!(
            "routes:\n  - path: /app1\n    upstream: 127.0.0.1:1\n    redirect_bare_prefix: {value}\n"
        ));
        assert_eq!(e.len(), 1, "{value}: {e:?}");
        assert!(
            e[0].starts_with("r.yaml:4:27: route #1 (/app1): "),
            "{value}: {e:?}"
        );
        assert!(
            e[0].contains("`redirect_bare_prefix`: value was not a boolean"),
            "{value}: {e:?}"
        );
    }
    // A list or map in its place is refused too (the YAML reader places
    // such a type error at the route, not at the value).
    let e = errors(
        "routes:\n  - path: /app1\n    upstream: 127.0.0.1:1\n    redirect_bare_prefix: [true]\n",
    );
    assert!(
        e.len() == 1 && e[0].contains("route #1 (/app1)") && e[0].contains("boolean"),
        "{e:?}"
    );
}

/// `routes: []` is a valid table with no routes.
#[test]
fn empty_route_list_is_valid() {
    let t = table("routes: []\n");
    assert!(t.is_empty());
    assert!(t.lookup(None, "/").is_none());
}

/// Defaults: connect 5 s, read 60 s, no strip, any host; explicit values win.
#[test]
fn defaults_and_explicit_values() {
    let t = table("version: 1\nroutes:\n  - path: /a\n    upstream: [127.0.0.1:1, 'svc.ns:80']\n    connect_timeout: 500ms\n    read_timeout: 1m\n  - path: /b\n    upstream: 127.0.0.1:2\n");
    let a = &t.entries()[0];
    assert_eq!(a.connect_timeout.as_millis(), 500);
    assert_eq!(a.read_timeout.as_secs(), 60);
    assert_eq!(a.upstreams.len(), 2);
    assert_eq!(a.line, 3);
    let b = &t.entries()[1];
    assert_eq!(b.connect_timeout.as_secs(), 5);
    assert_eq!(b.read_timeout.as_secs(), 60);
    assert!(!b.strip_prefix && b.host.is_none());
    assert!(!b.redirect_bare_prefix);
}

fn errors(yaml: &str) -> Vec<String> {
    match load("r.yaml", yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// An unknown key is an error with its line, column and route.
#[test]
fn unknown_key_is_reported_with_position_and_route() {
    let e = errors("routes:\n  - path: /app1\n    upstrem: 127.0.0.1:1\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("r.yaml:3:"), "{e:?}");
    assert!(e[0].contains("route #1 (/app1)"), "{e:?}");
    assert!(e[0].contains("upstrem"), "{e:?}");
    let top = errors("routes: []\nroute: []\n");
    assert!(
        top[0].starts_with("r.yaml:2:") && top[0].contains("route"),
        "{top:?}"
    );
}

/// Every error in the file is reported at once, in file order.
#[test]
fn all_errors_are_reported_at_once() {
    let e = errors(
        "routes:
  - path: /a
    upstream: nope
  - path: /health
    upstream: 127.0.0.1:1
  - path: /b
    upstream: 127.0.0.1:1
    read_timeout: soon
  - path: /b
    upstream: 127.0.0.1:1
  - path: /c
    colour: blue
",
    );
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(
        e[0].starts_with("r.yaml:3:15: route #1 (/a): invalid upstream \"nope\""),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("r.yaml:4:11: route #2 (/health)") && e[1].contains("reserved"),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("r.yaml:8:") && e[2].contains("read_timeout"),
        "{e:?}"
    );
    assert!(
        e[3].starts_with("r.yaml:9:")
            && e[3].contains("duplicate route /b")
            && e[3].contains("line 6"),
        "{e:?}"
    );
    assert!(
        e[4].contains("route #5 (/c)") && e[4].contains("colour"),
        "{e:?}"
    );
}

/// Duplicates are judged on `(host, path)` after canonicalization; the same
/// path for two hosts is fine.
#[test]
fn duplicates_compare_host_and_canonical_path() {
    let e = errors("routes:\n  - {path: /a/, upstream: '127.0.0.1:1'}\n  - {path: /a, upstream: '127.0.0.1:1'}\n");
    assert!(e[0].contains("duplicate"), "{e:?}");
    let e = errors("routes:\n  - {path: /a, host: X.test, upstream: '127.0.0.1:1'}\n  - {path: /a, host: x.TEST, upstream: '127.0.0.1:1'}\n");
    assert!(e[0].contains("duplicate route x.test/a"), "{e:?}");
    table("routes:\n  - {path: /a, host: x.test, upstream: '127.0.0.1:1'}\n  - {path: /a, host: y.test, upstream: '127.0.0.1:1'}\n  - {path: /a, upstream: '127.0.0.1:1'}\n");
}

/// Files that are not routes files at all are rejected with a reason.
#[test]
fn whole_file_problems() {
    for (yaml, want) in [
        ("", "empty"),
        ("# only a comment\n\n", "empty"),
        ("routes: [\n", "not valid YAML"),
        ("- a\n- b\n", "top level"),
        ("version: 1\n", "routes"),
        ("routes: 5\n", "must be a list"),
        ("version: 2\nroutes: []\n", "unsupported version 2"),
        (
            "routes:\n  - path: /a\n    path: /b\n    upstream: 127.0.0.1:1\n",
            "appears twice",
        ),
        ("routes:\n  - path: /a\n", "upstream"),
        ("routes:\n  - path: /a\n    upstream: []\n", "list is empty"),
        ("routes:\n  - path: /a\n    upstream: {x: 1}\n", "host:port"),
        (
            "routes:\n  - path: a\n    upstream: 127.0.0.1:1\n",
            "start with '/'",
        ),
        (
            "routes:\n  - path: /a\n    host: a.test:80\n    upstream: 127.0.0.1:1\n",
            "without a port",
        ),
    ] {
        let e = errors(yaml);
        assert!(e.iter().any(|l| l.contains(want)), "{yaml:?}: {e:?}");
        assert!(e.iter().all(|l| l.starts_with("r.yaml:")), "{e:?}");
    }
}

/// DNS names are kept as names: compiling never resolves them.
#[test]
fn dns_names_are_not_resolved_at_compile_time() {
    let t = table("routes:\n  - {path: /a, upstream: 'no-such-host.invalid:80'}\n");
    assert_eq!(t.entries()[0].upstreams[0].socket_addr(), None);
}

/// A second document is refused at the line of its `---`, whatever follows
/// it, valid YAML, invalid YAML or nothing; after `...` it is refused where
/// it starts. The first document's own errors are still reported.
#[test]
fn a_second_document_is_refused_at_its_start() {
    for (yaml, line) in [
        ("routes: []\n---\nroutes: []\n", 2),
        ("routes: []\n---\n: : [ {\n", 2),
        ("routes: []\n---\n", 2),
        ("---\nroutes: []\n\n--- # more\nroutes: []\n", 4),
        ("routes: []\n...\nroutes: []\n", 3),
        ("routes: []\n...\n\n  - a\n", 4),
    ] {
        let e = errors(yaml);
        assert_eq!(e.len(), 1, "{yaml:?}: {e:?}");
        assert!(
            e[0].starts_with(&format!("r.yaml:{line}:1: a second YAML document")),
            "{yaml:?}: {e:?}"
        );
    }
    let e = errors("routes:\n  - path: /a\n    colour: x\n---\nroutes: []\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("r.yaml:3:") && e[0].contains("colour"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("r.yaml:4:1: a second YAML document"),
        "{e:?}"
    );
}

/// One leading `---`, or a closing `...`, is still one document; a file of
/// nothing but `---` is empty.
#[test]
fn document_markers_around_one_document_are_fine() {
    assert!(table("---\nroutes: []\n").is_empty());
    assert!(table("routes: []\n...\n").is_empty());
    assert!(table("--- # routes\nroutes: []\n...\n").is_empty());
    let e = errors("---\n");
    assert!(e[0].contains("empty"), "{e:?}");
}

/// Bytes that are not UTF-8 are refused at the line of the first bad byte
/// and the column after the characters before it on that line.
#[test]
fn invalid_utf8_is_refused_at_its_line_and_column() {
    // Line 3 holds "# café" (6 characters, 7 bytes) before the bad byte.
    let bytes = b"routes:\n  - path: /a\n# caf\xc3\xa9\xff\n    upstream: 127.0.0.1:1\n";
    let e = match load_bytes("r.yaml", bytes) {
        Ok(_) => panic!("accepted invalid UTF-8"),
        Err(e) => e,
    };
    assert_eq!(
        e.to_string(),
        "r.yaml:3:7: the file is not valid UTF-8 here (byte 0xff); save it as UTF-8"
    );
    // A sequence cut short by the end of the file; a byte-order mark is not
    // counted as a column.
    let e = match load_bytes("r.yaml", b"\xef\xbb\xbfroutes: [] # \xe2\x82") {
        Ok(_) => panic!("accepted invalid UTF-8"),
        Err(e) => e,
    };
    assert!(e.to_string().starts_with("r.yaml:1:14: "), "{e}");
}

/// A UTF-8 byte-order mark at the start is skipped, by `load_bytes`, `load`
/// and `parse`; UTF-8 text loads the same through either.
#[test]
fn byte_order_mark_is_accepted() {
    let text = "\u{feff}routes:\n  - path: /a\n    upstream: 127.0.0.1:1\n";
    match load_bytes("r.yaml", text.as_bytes()) {
        Ok(t) => assert_eq!(t.entries()[0].path, "/a"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(table(text).entries()[0].line, 2);
    assert!(crate::parse(text).is_ok());
    let e = match load_bytes("r.yaml", "\u{feff}routes: [x]\n".as_bytes()) {
        Ok(_) => panic!("accepted a bad route"),
        Err(e) => e,
    };
    assert_eq!(e, load("r.yaml", "routes: [x]\n").expect_err("same error"));
}

fn load_errors(yaml: &str) -> ConfigErrors {
    match load("r.yaml", yaml) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e,
    }
}

/// However many errors a file has, the first MAX_REPORTED_ERRORS are kept
/// and the rest counted; the report ends with a line saying how many more.
#[test]
fn errors_are_capped_and_the_rest_counted() {
    let n = 50_000;
    let e = load_errors(&format!("routes: [{}]\n", "x,".repeat(n)));
    assert_eq!(e.errors.len(), MAX_REPORTED_ERRORS);
    assert_eq!(e.omitted, n - MAX_REPORTED_ERRORS);
    assert_eq!(e.total(), n);
    for (i, err) in e.errors.iter().enumerate() {
        let column = e.errors[i].location.map(|l| l.column);
        assert_eq!(column, Some(10 + 2 * i), "{err}");
    }
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), MAX_REPORTED_ERRORS + 1);
    assert_eq!(
        lines[MAX_REPORTED_ERRORS],
        format!("r.yaml: … and {} more errors", n - MAX_REPORTED_ERRORS)
    );
}

/// The errors kept are the first in the file, even though parsing finds
/// schema errors before compiling finds the others.
#[test]
fn capped_errors_are_the_first_in_file_order() {
    let mut yaml = String::from("routes:\n");
    for i in 1..=30 {
        if i == 2 || i == 29 {
            yaml.push_str(&format!(
                "  - {{path: /r{i}, colour: x, upstream: '127.0.0.1:1'}}\n"
            ));
        } else {
            yaml.push_str(&format!("  - {{path: /r{i}, upstream: nope}}\n"));
        }
    }
    let e = load_errors(&yaml);
    let lines: Vec<usize> = e
        .errors
        .iter()
        .filter_map(|e| e.location)
        .map(|l| l.line)
        .collect();
    assert_eq!(lines, (2..=21).collect::<Vec<_>>());
    assert!(e.errors[1].to_string().contains("colour"), "{e}");
    assert_eq!(e.omitted, 10);
    assert!(
        e.to_string().ends_with("\nr.yaml: … and 10 more errors"),
        "{e}"
    );
}

/// One omitted error reads "1 more error".
#[test]
fn one_omitted_error_is_singular() {
    let e = load_errors(&format!(
        "routes: [{}]\n",
        "x,".repeat(MAX_REPORTED_ERRORS + 1)
    ));
    assert_eq!((e.errors.len(), e.omitted), (MAX_REPORTED_ERRORS, 1));
    assert!(
        e.to_string().ends_with("\nr.yaml: … and 1 more error"),
        "{e}"
    );
    let e = load_errors(&format!("routes: [{}]\n", "x,".repeat(MAX_REPORTED_ERRORS)));
    assert_eq!((e.errors.len(), e.omitted), (MAX_REPORTED_ERRORS, 0));
    assert!(!e.to_string().contains("more error"), "{e}");
}

/// `position` names the route `lookup` finds, by its index.
#[test]
fn position_is_the_index_of_the_route_lookup_finds() {
    let t = crate::load(
        "routes.yaml",
        "routes:\n  - {path: /a, upstream: '127.0.0.1:1'}\n  - {path: /a/b, upstream: '127.0.0.1:2'}\n  - {path: /a, host: x.test, upstream: '127.0.0.1:3'}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (host, path) in [
        (None, "/a/b/c"),
        (Some("X.test:80"), "/a/x"),
        (None, "/a"),
        (None, "/z"),
    ] {
        let by_index = t.position(host, path).and_then(|i| t.get(i));
        assert_eq!(
            by_index.map(|e| &e.route),
            t.lookup(host, path).map(|e| &e.route),
            "{host:?} {path}"
        );
    }
    assert_eq!(t.position(Some("x.test"), "/a"), Some(2));
    assert_eq!(t.position(None, "/z"), None);
}
