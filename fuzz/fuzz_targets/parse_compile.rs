//! Arbitrary bytes as a routes file: `load` must never panic, must agree
//! with `parse` + `compile`, and every table it accepts must route the way
//! the "Matching" section of docs/configuration.md says, checked against a brute-force
//! reference matcher on paths and hosts taken from the input itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_routes::{compile, host_key, load, normalize_path, parse, Route, Table};

/// At most this many lookups per input, so that huge inputs stay fast.
const MAX_LOOKUPS: usize = 256;

/// Whether `prefix` (a canonical route path) matches `path` on whole segments.
fn segment_prefix(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The rules of docs/configuration.md by brute force: the longest matching prefix whose
/// host is absent or equal; at equal length a host route wins.
fn reference<'t>(table: &'t Table, host: Option<&str>, path: &str) -> Option<&'t Route> {
    let host = host.map(host_key);
    table
        .routes()
        .filter(|r| segment_prefix(&r.path, path))
        .filter(|r| match &r.host {
            None => true,
            Some(h) => host.as_deref() == Some(h.as_str()),
        })
        .max_by_key(|r| (r.path.len(), r.host.is_some()))
}

/// Paths and hosts to try: every route's own, a step below and beside it,
/// and every `/...` and host-ish token in the text.
fn probes(table: &Table, text: &str) -> (Vec<String>, Vec<Option<String>>) {
    let mut paths = vec!["/".to_owned(), "//".to_owned()];
    let mut hosts: Vec<Option<String>> = vec![None, Some(String::new())];
    for r in table.routes() {
        paths.push(r.path.clone());
        paths.push(format!("{}/", r.path));
        paths.push(format!("{}/x/../y", r.path));
        paths.push(format!("{}x", r.path));
        if let Some(h) = &r.host {
            hosts.push(Some(h.clone()));
            hosts.push(Some(format!("{}:8080", h.to_ascii_uppercase())));
        }
    }
    let tokens = text.split(|c: char| c.is_whitespace() || "\"',[]{}".contains(c));
    for token in tokens.filter(|t| !t.is_empty()) {
        if token.starts_with('/') {
            paths.push(token.to_owned());
        } else {
            hosts.push(Some(token.to_owned()));
        }
    }
    paths.truncate(64);
    hosts.truncate(8);
    (paths, hosts)
}

fn check_table(table: &Table, text: &str) {
    assert_eq!(table.len(), table.routes().len());
    assert_eq!(table.is_empty(), table.routes().is_empty());
    for (i, r) in table.routes().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(table.get(i).map(|e| &e.route), Some(r));
        assert!(!r.upstreams.is_empty(), "{r:?}");
        assert!(r.path.starts_with('/'), "{r:?}");
        assert!(r.path == "/" || !r.path.ends_with('/'), "{r:?}");
        assert!(!r.path.contains("//"), "{r:?}");
        assert_eq!(normalize_path(&r.path).as_deref(), Ok(r.path.as_str()));
        assert_ne!(r.path, "/health");
        if let Some(h) = &r.host {
            assert_eq!(host_key(h), h.as_str(), "route host not canonical: {r:?}");
        }
        // Every route is reachable by its own path (and host).
        let found = table.lookup(r.host.as_deref(), &r.path);
        assert_eq!(found.map(|f| (&f.path, &f.host)), Some((&r.path, &r.host)));
    }

    let (paths, hosts) = probes(table, text);
    let mut lookups = 0;
    for raw in &paths {
        // The proxy matches normalized paths only.
        let Ok(path) = normalize_path(raw) else {
            continue;
        };
        for host in &hosts {
            lookups += 1;
            if lookups > MAX_LOOKUPS {
                return;
            }
            let got = table.lookup(host.as_deref(), &path).map(|e| &e.route);
            if let Some(r) = got {
                assert!(
                    segment_prefix(&r.path, &path),
                    "{:?} matched {path:?}",
                    r.path
                );
                if let Some(h) = &r.host {
                    let want = host.as_deref().map(host_key);
                    assert_eq!(want.as_deref(), Some(h.as_str()));
                }
                let up = r.upstream_path(&path);
                assert!(up.starts_with('/'), "{path:?} -> {up:?} via {r:?}");
                if !r.strip_prefix || r.path == "/" {
                    assert_eq!(up, &*path);
                }
            }
            let want = reference(table, host.as_deref(), &path);
            assert_eq!(
                got.map(|r| r.index),
                want.map(|r| r.index),
                "host {host:?} path {path:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let loaded = load("fuzz.yaml", &text);
    // `load` is `parse` + `compile`: they must agree on validity.
    let separate = parse(&text).map(|raw| compile(&raw).map(|t| t.len()));
    match &loaded {
        Ok(table) => {
            assert_eq!(separate, Ok(Ok(table.len())));
            check_table(table, &text);
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty());
            assert!(!matches!(separate, Ok(Ok(_))), "parse+compile accepted it");
            let shown = errors.to_string();
            assert!(shown.starts_with("fuzz.yaml:"), "{shown}");
        }
    }
});
