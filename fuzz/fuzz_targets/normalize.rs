//! `normalize_path` on arbitrary text: every `Ok` is a canonical,
//! dot-free, idempotent path, and the function agrees with a simple
//! reference resolver written independently here.

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use switchyard_routes::{normalize_path, PathError};

/// `.` or `..`, counting `%2e` in any case as a dot: 1 or 2, else 0.
fn dots(seg: &str) -> usize {
    let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
    match decoded.as_str() {
        "." => 1,
        ".." => 2,
        _ => 0,
    }
}

/// RFC 3986 §5.2.4 on whole segments, the way the proxy promises to do it.
fn reference(path: &str) -> Result<String, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    let mut out: Vec<&str> = Vec::new();
    let mut dir = false;
    for seg in rest.split('/') {
        match dots(seg) {
            0 => {
                out.push(seg);
                dir = false;
            }
            1 => dir = true,
            _ => {
                out.pop().ok_or(PathError::EscapesRoot)?;
                dir = true;
            }
        }
    }
    let mut s: String = out.iter().map(|seg| format!("/{seg}")).collect();
    if dir || s.is_empty() {
        s.push('/');
    }
    Ok(s)
}

fuzz_target!(|path: &str| {
    let got = normalize_path(path);
    let had_dots = path
        .strip_prefix('/')
        .is_some_and(|rest| rest.split('/').any(|s| dots(s) > 0));
    match &got {
        Ok(n) => {
            assert!(n.starts_with('/'), "{path:?} -> {n:?}");
            assert!(
                !n[1..].split('/').any(|s| dots(s) > 0),
                "dot segment left: {path:?} -> {n:?}"
            );
            let again = normalize_path(n).expect("a normalized path normalizes");
            assert_eq!(again, *n, "not idempotent: {path:?}");
            if !had_dots {
                assert_eq!(n, path, "changed a path without dot segments");
                assert!(matches!(n, Cow::Borrowed(_)), "allocated for {path:?}");
            }
        }
        Err(PathError::NotAbsolute) => assert!(!path.starts_with('/'), "{path:?}"),
        Err(PathError::EscapesRoot) => assert!(had_dots, "{path:?}"),
    }
    assert_eq!(got.map(Cow::into_owned), reference(path), "{path:?}");
});
