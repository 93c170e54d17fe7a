//! What the main listener does with a request, decided from the request
//! head alone: a pure function of the routing table, the method, `Host`
//! and the request target, with no I/O and no Pingora types, so that every
//! path serving requests takes the same decision from the same code.

use std::sync::Arc;

use http::Method;
use switchyard_routes::{normalize_path, Entry, PathError, Table};

/// The parts of the request target the decision looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestTarget<'a> {
    /// The path as parsed from the target (`*` for an asterisk-form one).
    pub path: &'a str,
    /// The query, without its `?`.
    pub query: Option<&'a str>,
    /// `host[:port]` of an absolute-form target (`http://h/x`).
    pub authority: Option<&'a str>,
}

/// What to do with a request; `P` is the table's per-route payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision<'t, P> {
    /// The main listener's own `/health`.
    Health,
    /// `OPTIONS *` asks about the server, not about a resource: answered by
    /// the proxy itself (RFC 9110 §9.3.7), never routed.
    ServerOptions,
    /// 400: the path cannot be routed.
    BadPath(PathError),
    /// 404: no route; the normalized path, for the answer.
    NoRoute(String),
    /// 308 to the route's prefix with a trailing `/`: the request named
    /// exactly the bare prefix of a route with `redirect_bare_prefix`.
    /// Answered by the proxy, counted under the route.
    Redirect {
        /// The route matched, with its payload.
        route: &'t Arc<Entry<P>>,
        /// The `Location` value: `/app1/`, with the request's query.
        location: String,
    },
    /// Forward to a route.
    Forward(Forward<'t, P>),
}

/// A request to forward, and how it goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forward<'t, P> {
    /// The route matched, with its payload.
    pub route: &'t Arc<Entry<P>>,
    /// Its index in the table ([`Table::get`]).
    pub index: usize,
    /// The target to send instead of the client's (path and query), when
    /// it differs: a stripped prefix, a normalized path, an absolute-form
    /// target sent on in origin form. `None` sends it as it came.
    pub target: Option<String>,
    /// A `Host` to add: an absolute-form target's authority when the
    /// request had no `Host` (HTTP/1.0).
    pub host: Option<String>,
}

/// The decision for one request against `table`.
pub(crate) fn decide<'t, P>(
    table: &'t Table<P>,
    method: &Method,
    host: Option<&str>,
    target: RequestTarget<'_>,
) -> Decision<'t, P> {
    if *method == Method::OPTIONS && target.path == "*" && target.authority.is_none() {
        return Decision::ServerOptions;
    }
    let normalized = match normalize_path(target.path) {
        Ok(p) => p,
        Err(e) => return Decision::BadPath(e),
    };
    if normalized == "/health" {
        return Decision::Health;
    }
    let found = table.position(host.or(target.authority), &normalized);
    let Some((index, route)) = found.and_then(|i| Some((i, table.get(i)?))) else {
        return Decision::NoRoute(normalized.into_owned());
    };
    if let Some(location) = route.bare_prefix_redirect(&normalized, target.query) {
        return Decision::Redirect { route, location };
    }
    let upstream_path = route.upstream_path(&normalized);
    let rewritten = upstream_path != target.path || target.authority.is_some();
    Decision::Forward(Forward {
        route,
        index,
        target: rewritten.then(|| match target.query {
            Some(q) => format!("{upstream_path}?{q}"),
            None => upstream_path.to_owned(),
        }),
        // Pingora has already refused an absolute-form target whose
        // authority differs from a Host header, so only a missing one is
        // filled in.
        host: match (host, target.authority) {
            (None, Some(a)) => Some(a.to_owned()),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let yaml = "routes:\n  - {path: /app1, upstream: '127.0.0.1:1'}\n  - {path: /app2, upstream: '127.0.0.1:2', strip_prefix: true}\n  - {path: /app1, host: dev.example.com, upstream: '127.0.0.1:3'}\n  - {path: /r1/, upstream: '127.0.0.1:4', redirect_bare_prefix: true}\n  - {path: /r2, upstream: '127.0.0.1:5', redirect_bare_prefix: true, strip_prefix: true}\n";
        switchyard_routes::load("routes.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn origin(path: &str) -> RequestTarget<'_> {
        RequestTarget {
            path,
            query: None,
            authority: None,
        }
    }

    fn forward(d: Decision<'_, ()>) -> Forward<'_, ()> {
        match d {
            Decision::Forward(f) => f,
            other => panic!("expected a forward, got {other:?}"),
        }
    }

    /// `OPTIONS *` is about the server: answered, not refused as a path.
    #[test]
    fn options_asterisk_is_answered_by_the_proxy() {
        let t = table();
        assert_eq!(
            decide(&t, &Method::OPTIONS, Some("a"), origin("*")),
            Decision::ServerOptions
        );
        // Any other method with `*` has no path to route.
        assert_eq!(
            decide(&t, &Method::GET, Some("a"), origin("*")),
            Decision::BadPath(PathError::NotAbsolute)
        );
        // OPTIONS on a path is routed like any request.
        assert_eq!(
            forward(decide(&t, &Method::OPTIONS, Some("a"), origin("/app1/x")))
                .route
                .index,
            0
        );
    }

    /// A path that climbs above `/` is a 400, however it is spelled.
    #[test]
    fn paths_above_the_root_are_refused() {
        for path in ["/a/../../x", "/app1/%2e%2e/%2e%2e/etc"] {
            assert_eq!(
                decide(&table(), &Method::GET, Some("a"), origin(path)),
                Decision::BadPath(PathError::EscapesRoot),
                "{path}"
            );
        }
    }

    /// `/health` is the proxy's own, after normalization.
    #[test]
    fn health_is_the_proxys_own() {
        for path in ["/health", "/x/../health"] {
            assert_eq!(
                decide(&table(), &Method::GET, None, origin(path)),
                Decision::Health
            );
        }
    }

    /// No route: 404 with the normalized path.
    #[test]
    fn no_route_names_the_normalized_path() {
        assert_eq!(
            decide(&table(), &Method::GET, Some("a"), origin("/app3/./x")),
            Decision::NoRoute("/app3/x".into())
        );
    }

    /// A target that reaches the upstream as sent is not rewritten; a
    /// stripped prefix or a normalized path is, with the query kept.
    #[test]
    fn the_upstream_target_is_rewritten_only_when_it_differs() {
        let t = table();
        let plain = forward(decide(&t, &Method::GET, Some("a"), origin("/app1/x")));
        assert_eq!(
            (plain.route.index, plain.target, plain.host),
            (0, None, None)
        );
        let stripped = RequestTarget {
            path: "/app2/x",
            query: Some("q=1"),
            authority: None,
        };
        assert_eq!(
            forward(decide(&t, &Method::GET, Some("a"), stripped)).target,
            Some("/x?q=1".into())
        );
        assert_eq!(
            forward(decide(&t, &Method::GET, Some("a"), origin("/app1/./y"))).target,
            Some("/app1/y".into())
        );
    }

    /// The host decides between routes of the same path; an absolute-form
    /// target's authority stands in for a missing `Host` and is sent on as
    /// one, the target in origin form.
    #[test]
    fn hosts_and_absolute_form() {
        let t = table();
        assert_eq!(
            forward(decide(
                &t,
                &Method::GET,
                Some("DEV.example.com:8080"),
                origin("/app1")
            ))
            .route
            .index,
            2
        );
        let absolute = RequestTarget {
            path: "/app1/x",
            query: None,
            authority: Some("dev.example.com"),
        };
        let filled = forward(decide(&t, &Method::GET, None, absolute));
        assert_eq!(
            (filled.route.index, filled.target, filled.host),
            (2, Some("/app1/x".into()), Some("dev.example.com".into()))
        );
        let with_host = forward(decide(&t, &Method::GET, Some("dev.example.com"), absolute));
        assert_eq!((with_host.route.index, with_host.host), (2, None));
    }

    fn redirect(d: Decision<'_, ()>) -> (usize, String) {
        match d {
            Decision::Redirect { route, location } => (route.index, location),
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    /// A route with `redirect_bare_prefix` answers exactly its bare prefix
    /// (after normalization) with its slash form, the query kept, whatever
    /// the method; the slash form and everything under it are forwarded.
    #[test]
    fn the_bare_prefix_is_redirected_to_its_slash_form() {
        let t = table();
        let with_query = RequestTarget {
            path: "/r1",
            query: Some("x=1&y=%2F"),
            authority: None,
        };
        assert_eq!(
            redirect(decide(&t, &Method::GET, Some("a"), with_query)),
            (3, "/r1/?x=1&y=%2F".to_owned())
        );
        for method in [Method::GET, Method::HEAD, Method::POST, Method::OPTIONS] {
            assert_eq!(
                redirect(decide(&t, &method, Some("a"), origin("/r1"))),
                (3, "/r1/".to_owned()),
                "{method}"
            );
        }
        // Matched on the normalized path, as routing is.
        assert_eq!(
            redirect(decide(&t, &Method::GET, Some("a"), origin("/x/../r1"))).1,
            "/r1/"
        );
        // strip_prefix does not change which path is bare.
        assert_eq!(
            redirect(decide(&t, &Method::GET, Some("a"), origin("/r2"))).1,
            "/r2/"
        );
        // An absolute-form target is redirected the same way; the
        // Location stays a path.
        let absolute = RequestTarget {
            path: "/r1",
            query: None,
            authority: Some("dev.example.com"),
        };
        assert_eq!(redirect(decide(&t, &Method::GET, None, absolute)).1, "/r1/");
        for path in ["/r1/", "/r1/x", "/r1/x/..", "/r1/."] {
            assert_eq!(
                forward(decide(&t, &Method::GET, Some("a"), origin(path)))
                    .route
                    .index,
                3,
                "{path}"
            );
        }
        let slash = forward(decide(&t, &Method::GET, Some("a"), origin("/r2/")));
        assert_eq!((slash.route.index, slash.target), (4, Some("/".into())));
        // Not a prefix of the route: whole segments, as ever.
        assert_eq!(
            decide(&t, &Method::GET, Some("a"), origin("/r10")),
            Decision::NoRoute("/r10".into())
        );
    }

    /// Without the setting the bare prefix is forwarded, and the root
    /// route, which has no bare form, never redirects.
    #[test]
    fn no_redirect_without_the_setting_or_for_the_root() {
        let t = table();
        assert_eq!(
            forward(decide(&t, &Method::GET, Some("a"), origin("/app1")))
                .route
                .index,
            0
        );
        let root = switchyard_routes::load(
            "routes.yaml",
            "routes:\n  - {path: /, upstream: '127.0.0.1:6', redirect_bare_prefix: true}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        for path in ["/", "/x"] {
            assert_eq!(
                forward(decide(&root, &Method::GET, Some("a"), origin(path)))
                    .route
                    .index,
                0,
                "{path}"
            );
        }
        let stripped = forward(decide(&t, &Method::GET, Some("a"), origin("/app2")));
        assert_eq!(
            (stripped.route.index, stripped.target),
            (1, Some("/".into()))
        );
    }
}
