//! The compiled, immutable routing table and its matcher.
//!
//! Matching walks a trie of path segments, so its cost grows with the
//! number of segments in the request path, not the number of routes.
//!
//! A table carries a payload per route (`Table<P>`): whatever a user of the
//! table needs at run time for that route (the server's upstream peers and
//! metric handles) travels with the route it belongs to, so a match hands
//! back both and nothing is joined by index afterwards.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::values::{split_host_port, Upstream};

/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `read_timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One validated route. Everything a request needs is resolved already,
/// except DNS names, which are resolved per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Position in the table (and in the file), from 0.
    pub index: usize,
    /// Canonical prefix: `/` or `/a/b`, never a trailing `/`.
    pub path: String,
    /// Lowercased host this route is limited to, if any.
    pub host: Option<String>,
    /// Servers, used round robin; never empty.
    pub upstreams: Vec<Upstream>,
    /// Whether the prefix is removed before forwarding.
    pub strip_prefix: bool,
    /// Whether a request for exactly the prefix is redirected to the prefix
    /// with a trailing `/` instead of forwarded ([`Route::bare_prefix_redirect`]).
    pub redirect_bare_prefix: bool,
    /// Time allowed to connect to one upstream.
    pub connect_timeout: Duration,
    /// Time allowed for each read from the upstream.
    pub read_timeout: Duration,
    /// Line of the route in its file.
    pub line: usize,
}

impl Route {
    /// The path the upstream receives for a request path this route matched.
    ///
    /// `path` must be the normalized path that matched (without query).
    /// With `strip_prefix`, `/app2/x` becomes `/x` and `/app2` becomes `/`.
    pub fn upstream_path<'a>(&self, path: &'a str) -> &'a str {
        if !self.strip_prefix || self.path == "/" {
            return path;
        }
        match path.get(self.path.len()..) {
            Some("") | None => "/",
            Some(rest) => rest,
        }
    }

    /// Where a request for `path` (normalized, without query) is sent
    /// instead of the upstream, when this route redirects its bare prefix
    /// and `path` is exactly that prefix: the prefix with a trailing `/`,
    /// the request's query kept. `None` forwards it. Never for `/`, which
    /// has no bare form.
    ///
    /// A dev server mounted under `/app1/` resolves its relative links
    /// against `/app1/`; asked for `/app1` it answers "did you mean
    /// /app1/?" or breaks its links, so nginx redirects the bare prefix of
    /// a `location /app1/` and this does the same when asked to.
    pub fn bare_prefix_redirect(&self, path: &str, query: Option<&str>) -> Option<String> {
        if !self.redirect_bare_prefix || self.path == "/" || path != self.path {
            return None;
        }
        Some(match query {
            Some(q) => format!("{path}/?{q}"),
            None => format!("{path}/"),
        })
    }

    /// `host path` or `path`: how this route is named in logs and errors.
    pub fn key(&self) -> String {
        match &self.host {
            Some(h) => format!("{h}{}", self.path),
            None => self.path.clone(),
        }
    }
}

/// A route and its payload, as the table holds them. Shared (`Arc`), so a
/// request can keep the route it matched for as long as it runs, whatever
/// becomes of the table.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<P> {
    /// The validated route.
    pub route: Route,
    /// What the table's user attached to it.
    pub payload: P,
}

impl<P> Deref for Entry<P> {
    type Target = Route;

    fn deref(&self) -> &Route {
        &self.route
    }
}

/// The matcher's maps are keyed by the routes file and only looked up with
/// what a client sends, so a fast hash cannot be flooded; SipHash cost a
/// measurable share of each request.
type Map = HashMap<Box<str>, usize, foldhash::fast::RandomState>;

#[derive(Debug, Default, Clone)]
struct Node {
    children: Map,
    /// Route with this prefix and no `host`.
    any_host: Option<usize>,
    /// Routes with this prefix and a `host`, keyed by lowercase host.
    by_host: Map,
}

/// An immutable routing table, with a payload of type `P` per route. Build
/// one with [`crate::compile`] or [`crate::load`] (payload `()`), then
/// attach payloads with [`Table::with_payload`].
#[derive(Debug)]
pub struct Table<P = ()> {
    entries: Vec<Arc<Entry<P>>>,
    nodes: Vec<Node>,
    has_host_routes: bool,
}

impl<P> Clone for Table<P> {
    fn clone(&self) -> Self {
        Table {
            entries: self.entries.clone(),
            nodes: self.nodes.clone(),
            has_host_routes: self.has_host_routes,
        }
    }
}

impl Default for Table {
    fn default() -> Self {
        Self::empty()
    }
}

impl Table {
    /// A table with no routes: every request is unmatched.
    pub fn empty() -> Self {
        Self::from_routes(Vec::new())
    }

    /// Builds the matcher. Callers guarantee unique `(host, path)` pairs.
    pub(crate) fn from_routes(routes: Vec<Route>) -> Self {
        let mut nodes = vec![Node::default()];
        let mut has_host_routes = false;
        for route in &routes {
            let mut at = 0;
            if route.path != "/" {
                for seg in route.path[1..].split('/') {
                    at = match nodes[at].children.get(seg) {
                        Some(&next) => next,
                        None => {
                            nodes.push(Node::default());
                            let next = nodes.len() - 1;
                            nodes[at].children.insert(seg.into(), next);
                            next
                        }
                    };
                }
            }
            match &route.host {
                Some(h) => {
                    has_host_routes = true;
                    nodes[at].by_host.insert(h.as_str().into(), route.index);
                }
                None => nodes[at].any_host = Some(route.index),
            }
        }
        Table {
            entries: routes
                .into_iter()
                .map(|route| Arc::new(Entry { route, payload: () }))
                .collect(),
            nodes,
            has_host_routes,
        }
    }
}

impl<P> Table<P> {
    /// The same routes and matcher, with `payload(route)` attached to each
    /// route. The payloads already attached are dropped.
    pub fn with_payload<Q>(&self, mut payload: impl FnMut(&Route) -> Q) -> Table<Q> {
        Table {
            entries: self
                .entries
                .iter()
                .map(|e| {
                    Arc::new(Entry {
                        route: e.route.clone(),
                        payload: payload(&e.route),
                    })
                })
                .collect(),
            nodes: self.nodes.clone(),
            has_host_routes: self.has_host_routes,
        }
    }

    /// The routes in file order.
    pub fn routes(
        &self,
    ) -> impl ExactSizeIterator<Item = &Route> + DoubleEndedIterator + Clone + '_ {
        self.entries.iter().map(|e| &e.route)
    }

    /// The routes with their payloads, in file order.
    pub fn entries(&self) -> &[Arc<Entry<P>>] {
        &self.entries
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The route at `index`, with its payload.
    pub fn get(&self, index: usize) -> Option<&Arc<Entry<P>>> {
        self.entries.get(index)
    }

    /// Finds the route for a request.
    ///
    /// `host` is the request's `Host` as received (any case, maybe with a
    /// port); `path` is the normalized path without the query. The longest
    /// prefix wins, matching whole segments; at equal length a route for
    /// this host beats a route for any host.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<&Arc<Entry<P>>> {
        self.position(host, path).and_then(|i| self.entries.get(i))
    }

    /// Like [`Table::lookup`], the route's index instead ([`Table::get`]
    /// gives it back): something small to keep that names the route
    /// without touching its reference count.
    pub fn position(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = match host {
            Some(h) if self.has_host_routes => Some(host_key(h)),
            _ => None,
        };
        let host = host.as_deref();
        let pick = |node: &Node| {
            host.and_then(|h| node.by_host.get(h).copied())
                .or(node.any_host)
        };
        let mut at = 0;
        let mut best = pick(&self.nodes[0]);
        let mut rest = path.strip_prefix('/').unwrap_or(path);
        loop {
            // A byte search, cheaper than `split('/')` on a short path; '/'
            // is ASCII, so every cut falls on a char boundary.
            let (seg, tail) = match rest.bytes().position(|b| b == b'/') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            match self.nodes[at].children.get(seg) {
                Some(&next) => at = next,
                None => break,
            }
            if let Some(found) = pick(&self.nodes[at]) {
                best = Some(found);
            }
            match tail {
                Some(t) => rest = t,
                None => break,
            }
        }
        best
    }
}

/// The `Host` header reduced to what routes compare: no port, lowercase.
/// Allocates only when the host has uppercase letters.
pub fn host_key(host: &str) -> Cow<'_, str> {
    // A bracketed host drops whatever follows it; any other host drops
    // only a port of digits.
    let bare = match split_host_port(host) {
        (h, Some(port)) if h.starts_with('[') || port.bytes().all(|b| b.is_ascii_digit()) => h,
        (h, None) => h,
        _ => host,
    };
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(bare.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bare)
    }
}
