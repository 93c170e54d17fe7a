//! Property tests for `switchyard-routes`, checked against small reference
//! implementations written here from docs/configuration.md ("routes.yaml", "Matching"):
//!
//! - `trie_lookup_agrees_with_reference`: on random tables (paths of 0–4
//!   segments from `{a, b, ab, c}` so prefixes collide, optional hosts from
//!   a small set written in random case), `Table::lookup` picks the same
//!   route as a brute-force matcher: whole-segment prefixes, the longest
//!   wins, at equal length a route for the request's host (lowercased, port
//!   dropped) beats one for any host.
//! - `normalize_is_idempotent_and_resolves_like_rfc3986`: `normalize_path`
//!   on paths full of `.`, `..`, `%2e`, `%2E.` and empty segments is
//!   idempotent and agrees with a stack-based RFC 3986 §5.2.4 resolver.
//! - `normalized_paths_are_dot_free_and_route_like_reference`: what
//!   `normalize_path` returns has no dot segment left, and the route it
//!   matches is the one the reference picks for the normalized path.
//! - `load_never_panics_on_yamlish_text`: `load` on text glued from YAML
//!   and routes-file fragments returns (`Ok` or `Err`), never panics, and
//!   an `Ok` table finds each of its routes by its own path and host.
//!
//! The fuzz targets in `fuzz/` check the same rules on arbitrary input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::Config;
use switchyard_routes::{load, normalize_path, PathError, Table};

/// Route segments: few, so that tables share and nest prefixes.
const SEGS: &[&str] = &["a", "b", "ab", "c"];
/// Extra request-only segments: near misses and an empty segment (`//`).
const REQUEST_ONLY_SEGS: &[&str] = &["x", "abc", ""];
/// Route hosts, in canonical (lowercase) form. The IPv6 one needs quoting
/// in YAML and has letters, so case matters for it too.
const HOSTS: &[&str] = &["dev.example.com", "api.test", "10.0.0.1", "[fe80::a]"];
/// Segments for normalization: dot forms, near misses and plain names.
const DOT_SEGS: &[&str] = &[
    ".",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E.",
    ".%2e",
    "",
    "a",
    "b",
    "...",
    "..a",
    ".a",
    "%2f",
    "%2e%2e%2e",
    "%2",
    "%",
    "ab",
];

/// One generated route, as the model knows it.
#[derive(Debug, Clone)]
struct ModelRoute {
    /// Segments of the canonical path; empty for `/`.
    segs: Vec<&'static str>,
    /// Canonical host.
    host: Option<&'static str>,
    /// How it is written: a trailing `/` on the path, and a case mask for
    /// the host.
    trailing_slash: bool,
    host_case: u32,
}

impl ModelRoute {
    fn path(&self) -> String {
        segs_to_path(&self.segs)
    }
}

fn segs_to_path(segs: &[&str]) -> String {
    if segs.is_empty() {
        "/".to_owned()
    } else {
        segs.iter().map(|s| format!("/{s}")).collect()
    }
}

/// Upper-cases the letters of `s` whose bit is set in `mask`.
fn with_case(s: &str, mask: u32) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask & (1 << (i % 32)) != 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// The routes file for a model, every value quoted.
fn yaml_for(routes: &[ModelRoute]) -> String {
    if routes.is_empty() {
        return "routes: []\n".to_owned();
    }
    let mut y = String::from("version: 1\nroutes:\n");
    for (i, r) in routes.iter().enumerate() {
        let mut path = r.path();
        if r.trailing_slash && path != "/" {
            path.push('/');
        }
        y.push_str(&format!("  - path: \"{path}\"\n"));
        y.push_str(&format!("    upstream: \"127.0.0.1:{}\"\n", 1000 + i));
        if let Some(h) = r.host {
            y.push_str(&format!("    host: \"{}\"\n", with_case(h, r.host_case)));
        }
    }
    y
}

/// Brute-force matching by the rules in docs/configuration.md. `host` is the canonical
/// request host (lowercased, port dropped). Returns (path, host) of the
/// winner.
fn reference(
    routes: &[ModelRoute],
    host: Option<&str>,
    path: &str,
) -> Option<(String, Option<String>)> {
    let req: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    routes
        .iter()
        .filter(|r| r.segs.len() <= req.len() && r.segs[..] == req[..r.segs.len()])
        .filter(|r| r.host.is_none() || r.host == host)
        .max_by_key(|r| (r.segs.len(), r.host.is_some()))
        .map(|r| (r.path(), r.host.map(str::to_owned)))
}

fn looked_up(table: &Table, host: Option<&str>, path: &str) -> Option<(String, Option<String>)> {
    table
        .lookup(host, path)
        .map(|r| (r.path.clone(), r.host.clone()))
}

fn load_model(routes: &[ModelRoute]) -> Table {
    let yaml = yaml_for(routes);
    match load("props.yaml", &yaml) {
        Ok(t) => t,
        Err(e) => panic!("generated file rejected:\n{yaml}\n{e}"),
    }
}

/// `.` or `..` (1 or 2), counting `%2e` in any case as a dot; else 0.
fn dots(seg: &str) -> usize {
    match seg.to_ascii_lowercase().replace("%2e", ".").as_str() {
        "." => 1,
        ".." => 2,
        _ => 0,
    }
}

/// RFC 3986 §5.2.4 on whole segments, as docs/configuration.md describes it.
fn resolve(path: &str) -> Result<String, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut out: Vec<&str> = Vec::new();
    let mut dir = false;
    for seg in rest.split('/') {
        dir = dots(seg) > 0;
        match dots(seg) {
            0 => out.push(seg),
            1 => {}
            _ => {
                out.pop().ok_or(PathError::EscapesRoot)?;
            }
        }
    }
    let mut s: String = out.iter().map(|seg| format!("/{seg}")).collect();
    if dir || s.is_empty() {
        s.push('/');
    }
    Ok(s)
}

fn seg_from(alphabet: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(alphabet)
}

fn model_route() -> impl Strategy<Value = ModelRoute> {
    (
        prop::collection::vec(seg_from(SEGS), 0..=4),
        prop::option::of(seg_from(HOSTS)),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(segs, host, trailing_slash, host_case)| ModelRoute {
            segs,
            host,
            trailing_slash,
            host_case,
        })
}

/// Route sets with unique (host, path): later duplicates are dropped.
fn model_table() -> impl Strategy<Value = Vec<ModelRoute>> {
    prop::collection::vec(model_route(), 0..12).prop_map(|routes| {
        let mut seen = std::collections::HashSet::new();
        routes
            .into_iter()
            .filter(|r| seen.insert((r.path(), r.host)))
            .collect()
    })
}

/// A request `Host`: absent, one of the route hosts or a stranger, in any
/// case, with or without a port. Returns (header as sent, canonical form).
fn request_host() -> impl Strategy<Value = (Option<String>, Option<String>)> {
    let known =
        (seg_from(HOSTS), any::<u32>(), prop::option::of(1u16..)).prop_map(|(h, case, port)| {
            let mut sent = with_case(h, case);
            if let Some(p) = port {
                sent.push_str(&format!(":{p}"));
            }
            (Some(sent), Some(h.to_owned()))
        });
    prop_oneof![
        1 => Just((None, None)),
        1 => Just((Some("other.example:8080".to_owned()), Some("other.example".to_owned()))),
        4 => known,
    ]
}

/// A request path over the route alphabet plus near misses, with or
/// without a trailing `/`.
fn request_path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![4 => seg_from(SEGS), 1 => seg_from(REQUEST_ONLY_SEGS)];
    (prop::collection::vec(seg, 0..=6), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = segs_to_path(&segs);
        if slash && !p.ends_with('/') {
            p.push('/');
        }
        p
    })
}

/// A path with dot segments among the route alphabet.
fn dotted_path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![seg_from(DOT_SEGS), seg_from(SEGS)];
    prop::collection::vec(seg, 0..=8).prop_map(|segs| format!("/{}", segs.join("/")))
}

/// Pieces of routes files, valid and not.
const FRAGMENTS: &[&str] = &[
    "routes:",
    "routes: []",
    "version: 1",
    "version: 2",
    "- path: ",
    "  - path: ",
    "upstream: ",
    "    upstream: ",
    "    host: ",
    "    strip_prefix: ",
    "    redirect_bare_prefix: ",
    "    connect_timeout: ",
    "    read_timeout: ",
    "    stripprefix: ",
    "\n",
    "\n",
    "\n",
    "  ",
    "    ",
    "\t",
    "/",
    "/a",
    "/a/b/",
    "/health",
    "//",
    "/../x",
    "/%2e%2E",
    "127.0.0.1:80",
    "[::1]:8080",
    "a.svc:80",
    "http://x:80",
    "x:0",
    "999.1.1.1:80",
    "dev.example.com",
    "DEV.Example.com",
    "[fe80::a]",
    "host:1",
    "true",
    "yes",
    "5s",
    "500ms",
    "1.5s",
    "0s",
    "1d",
    "30",
    "18446744073709551616",
    "-1",
    "~",
    "null",
    "[",
    "]",
    "{",
    "}",
    ", ",
    ": ",
    "? ",
    "-",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "!tag ",
    "|",
    ">",
    "---",
    "...",
    "%",
    "日本",
    "\u{feff}",
    "\r\n",
];

/// Indents, keys and values for line-shaped text, which is far likelier
/// than loose fragments to get past the YAML parser into the checks.
const INDENTS: &[&str] = &["", "  ", "  - ", "    ", "   ", "- ", "\t"];
const KEYS: &[&str] = &[
    "path",
    "upstream",
    "host",
    "strip_prefix",
    "connect_timeout",
    "read_timeout",
    "routes",
    "version",
    "stripprefix",
    "redirect_bare_prefix",
];
const VALUES: &[&str] = &[
    "/a",
    "/a/",
    "/",
    "/b/c",
    "\"/a\"",
    "/health",
    "/a//b",
    "/a/./b",
    "127.0.0.1:80",
    "\"[::1]:80\"",
    "[127.0.0.1:80, a.svc:81]",
    "[]",
    "a.svc:80",
    "dev.example.com",
    "Dev.Example.COM",
    "\"[fe80::a]\"",
    "true",
    "false",
    "2s",
    "500ms",
    "0s",
    "30",
    "1",
    "2",
    "~",
    "",
    "{}",
];

fn yaml_line() -> impl Strategy<Value = String> {
    (seg_from(INDENTS), seg_from(KEYS), seg_from(VALUES))
        .prop_map(|(indent, key, value)| format!("{indent}{key}: {value}\n"))
}

fn yamlish_text() -> impl Strategy<Value = String> {
    let loose = prop::collection::vec(seg_from(FRAGMENTS), 0..64).prop_map(|p| p.concat());
    let lines = (
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![4 => yaml_line(), 1 => seg_from(FRAGMENTS).prop_map(str::to_owned)],
            0..24,
        ),
    )
        .prop_map(|(header, lines)| {
            let head = if header { "routes:\n" } else { "" };
            format!("{head}{}", lines.concat())
        });
    prop_oneof![loose, lines, route_blocks()]
}

/// Routes that mostly have the right shape, with values that may be wrong.
fn route_blocks() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        3 => prop::collection::vec(seg_from(SEGS), 0..3).prop_map(|s| segs_to_path(&s)),
        1 => seg_from(VALUES).prop_map(str::to_owned),
    ];
    let upstream = prop_oneof![
        3 => Just("127.0.0.1:80"),
        1 => seg_from(VALUES),
    ];
    let good = prop_oneof![
        Just(("host", "dev.example.com")),
        Just(("host", "\"[FE80::A]\"")),
        Just(("strip_prefix", "true")),
        Just(("redirect_bare_prefix", "true")),
        Just(("connect_timeout", "2s")),
        Just(("read_timeout", "500ms")),
    ];
    let any_value = (seg_from(&KEYS[2..6]), seg_from(VALUES));
    let extra = prop_oneof![3 => good, 1 => any_value]
        .prop_map(|(key, value)| format!("    {key}: {value}\n"));
    let block =
        (path, upstream, prop::collection::vec(extra, 0..3)).prop_map(|(path, upstream, extra)| {
            format!(
                "  - path: {path}\n    upstream: {upstream}\n{}",
                extra.concat()
            )
        });
    prop::collection::vec(block, 0..6).prop_map(|blocks| format!("routes:\n{}", blocks.concat()))
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures print their minimal input; nothing is written to disk.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(2048))]

    /// (a) The trie matcher picks what the brute-force reference picks.
    #[test]
    fn trie_lookup_agrees_with_reference(
        routes in model_table(),
        requests in prop::collection::vec((request_host(), request_path()), 1..16),
    ) {
        let table = load_model(&routes);
        prop_assert_eq!(table.len(), routes.len());
        for ((sent, canonical), path) in &requests {
            let got = looked_up(&table, sent.as_deref(), path);
            let want = reference(&routes, canonical.as_deref(), path);
            prop_assert_eq!(got, want, "host {:?} path {:?}", sent, path);
        }
    }

    /// (b) Normalizing twice changes nothing, and the result is what an
    /// RFC 3986 stack resolver gives.
    #[test]
    fn normalize_is_idempotent_and_resolves_like_rfc3986(path in dotted_path()) {
        let got = normalize_path(&path).map(|n| n.into_owned());
        prop_assert_eq!(&got, &resolve(&path), "{:?}", path);
        if let Ok(once) = got {
            let twice = normalize_path(&once);
            prop_assert_eq!(twice.as_deref(), Ok(once.as_str()), "{:?}", path);
        }
    }

    /// (c) A normalized path has no dot segment, and routes the way the
    /// reference routes it.
    #[test]
    fn normalized_paths_are_dot_free_and_route_like_reference(
        routes in model_table(),
        (sent, canonical) in request_host(),
        paths in prop::collection::vec(dotted_path(), 1..8),
    ) {
        let table = load_model(&routes);
        for path in &paths {
            match normalize_path(path) {
                Ok(n) => {
                    prop_assert!(n.starts_with('/'), "{:?} -> {:?}", path, n);
                    prop_assert!(
                        n[1..].split('/').all(|s| dots(s) == 0),
                        "dot segment left: {:?} -> {:?}", path, n
                    );
                    let got = looked_up(&table, sent.as_deref(), &n);
                    let want = reference(&routes, canonical.as_deref(), &n);
                    prop_assert_eq!(got, want, "host {:?} path {:?} -> {:?}", sent, path, n);
                }
                Err(e) => prop_assert_eq!(e, PathError::EscapesRoot, "{:?}", path),
            }
        }
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// (d) `load` returns on any YAML-ish text; what it accepts is usable.
    #[test]
    fn load_never_panics_on_yamlish_text(text in yamlish_text()) {
        match load("fuzz.yaml", &text) {
            Ok(table) => {
                for r in table.routes() {
                    let found = table.lookup(r.host.as_deref(), &r.path);
                    prop_assert_eq!(
                        found.map(|f| (&f.path, &f.host)),
                        Some((&r.path, &r.host)),
                        "{:?}", text
                    );
                }
            }
            Err(errors) => {
                prop_assert!(!errors.errors.is_empty(), "{:?}", text);
                prop_assert!(errors.to_string().starts_with("fuzz.yaml:"));
            }
        }
    }
}
