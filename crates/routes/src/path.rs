//! Paths: the canonical form of a route's `path`, and the normalization of a
//! request path that matching and forwarding both use.

use std::borrow::Cow;

/// A route `path` in canonical form: starts with `/`, no trailing `/`
/// (except the root itself), no empty, `.` or `..` segments. Two routes
/// with the same canonical path (and host) are the same route. The error
/// says what is wrong with the path.
pub fn canonical_route_path(path: &str) -> Result<String, &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    if path.contains(['?', '#']) {
        return Err("must not contain '?' or '#'; matching is on the path only");
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters");
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok("/".to_owned());
    }
    for seg in trimmed[1..].split('/') {
        if seg.is_empty() {
            return Err("must not contain an empty segment ('//')");
        }
        if dot_kind(seg).is_some() {
            return Err("must not contain '.' or '..' segments");
        }
    }
    Ok(trimmed.to_owned())
}

/// Why a request path cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `..` segments climb above `/`.
    #[error("path climbs above the root")]
    EscapesRoot,
    /// Not an origin-form path.
    #[error("path does not start with '/'")]
    NotAbsolute,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dot {
    One,
    Two,
}

/// Whether a segment is `.` or `..`, counting `%2e`/`%2E` as a dot: a server
/// behind the proxy may decode it and resolve the segment itself.
fn dot_kind(seg: &str) -> Option<Dot> {
    let b = seg.as_bytes();
    let is_dot = |s: &[u8]| s == b"." || s.eq_ignore_ascii_case(b"%2e");
    match b.len() {
        1 | 3 if is_dot(b) => Some(Dot::One),
        2 | 4 | 6 => {
            for split in [1, 3] {
                if split < b.len() && is_dot(&b[..split]) && is_dot(&b[split..]) {
                    return Some(Dot::Two);
                }
            }
            None
        }
        _ => None,
    }
}

/// Resolves `.` and `..` segments (RFC 3986 §5.2.4), treating `%2e` as a
/// dot. Other percent-encodings and empty segments are kept as they are.
/// Borrows when there is nothing to resolve, which is nearly always.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Nearly every path has no dot segment; without a '.' or '%' it cannot.
    if !path.bytes().any(|b| b == b'.' || b == b'%') {
        return Ok(Cow::Borrowed(path));
    }
    let segments = || path[1..].split('/');
    if !segments().any(|s| dot_kind(s).is_some()) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in segments() {
        trailing_slash = false;
        match dot_kind(seg) {
            Some(Dot::One) => trailing_slash = true,
            Some(Dot::Two) => {
                out.pop().ok_or(PathError::EscapesRoot)?;
                trailing_slash = true;
            }
            None => out.push(seg),
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing_slash || s.is_empty() {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths_are_canonical() {
        assert_eq!(canonical_route_path("/app1/").unwrap(), "/app1");
        assert_eq!(canonical_route_path("/").unwrap(), "/");
        assert_eq!(canonical_route_path("/a/b").unwrap(), "/a/b");
        for bad in [
            "app1", "/a//b", "/a/../b", "/a/./b", "/a?x", "/a b", "//", "/%2e%2e",
        ] {
            assert!(canonical_route_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(normalize_path("/app1/x?"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize_path("/a..b/.c/"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn dot_segments_resolve() {
        for (input, want) in [
            ("/app1/../app2", "/app2"),
            ("/app1/./x", "/app1/x"),
            ("/app1/x/..", "/app1/"),
            ("/app1/.", "/app1/"),
            ("/app1/%2e%2E/app2", "/app2"),
            ("/app1/.%2e/app2/%2E/y", "/app2/y"),
            ("/a/b/../../c", "/c"),
            ("/..a/%2fb/../c", "/..a/c"),
            ("/a//../b", "/a/b"),
            ("/.", "/"),
        ] {
            assert_eq!(normalize_path(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn climbing_above_root_is_an_error() {
        for bad in ["/..", "/a/../..", "/a/../../x", "/%2e%2e/x"] {
            assert_eq!(normalize_path(bad), Err(PathError::EscapesRoot), "{bad}");
        }
        assert_eq!(normalize_path("x"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normalization_is_idempotent() {
        for p in ["/a/./b/../c/", "/x/%2e/y", "/a//b/..", "/"] {
            let once = normalize_path(p).unwrap().into_owned();
            assert_eq!(normalize_path(&once).unwrap(), once);
        }
    }
}
