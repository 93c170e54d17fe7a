//! [`RawFile`] → [`Table`]: every check a route must pass, all errors at once.

use std::collections::HashMap;

use marked_yaml::Spanned;

use crate::error::{ConfigError, Errors, Problem, RouteLabel};
use crate::parse::start;
use crate::path::canonical_route_path;
use crate::schema::{RawFile, RawRoute, RawUpstreams};
use crate::table::{Route, Table, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT};
use crate::values::{parse_duration, parse_host, parse_upstream};

/// Validates a parsed file and builds its table. If this succeeds, the table
/// serves: nothing about it can fail later except per-request DNS lookups.
/// On failure returns the problems in file order: the first
/// [`MAX_REPORTED_ERRORS`] of them.
///
/// [`MAX_REPORTED_ERRORS`]: crate::MAX_REPORTED_ERRORS
pub fn compile(raw: &RawFile) -> Result<Table, Vec<ConfigError>> {
    compile_with(raw, Errors::new()).map_err(|errors| errors.finish().0)
}

/// Compiles, adding to errors already found while parsing, so that one
/// report holds them all.
pub(crate) fn compile_with(raw: &RawFile, mut errors: Errors) -> Result<Table, Errors> {
    if let Some(v) = &raw.version {
        if **v != 1 {
            errors.push(ConfigError {
                location: start(v.span()),
                route: None,
                problem: Problem::Version { found: **v },
            });
        }
    }

    let mut routes = Vec::with_capacity(raw.routes.len());
    // (host, path) → line of the first definition
    let mut seen: HashMap<(Option<String>, String), usize> = HashMap::new();
    for (position, r) in &raw.routes {
        let label = RouteLabel {
            index: *position,
            path: Some(r.path.as_str().to_owned()),
        };
        let mut report = |span: &marked_yaml::Span, problem: Problem| {
            errors.push(ConfigError {
                location: start(span),
                route: Some(label.clone()),
                problem,
            });
        };
        // Duplicates are judged even when the route has other errors, so
        // that one `check` shows them all.
        let key = canonical_route_path(&r.path).ok().zip(match &r.host {
            None => Some(None),
            Some(h) => parse_host(h).ok().map(Some),
        });
        if let Some((path, host)) = key {
            let line = r.path.span().start().map_or(0, |m| m.line());
            let what = match &host {
                Some(h) => format!("{h}{path}"),
                None => path.clone(),
            };
            match seen.get(&(host.clone(), path.clone())) {
                Some(&first_line) => {
                    report(r.path.span(), Problem::Duplicate { what, first_line });
                    continue;
                }
                None => {
                    seen.insert((host, path), line);
                }
            }
        }
        let Some(route) = compile_route(r, routes.len(), &mut report) else {
            continue;
        };
        routes.push(route);
    }

    if errors.is_empty() {
        Ok(Table::from_routes(routes))
    } else {
        Err(errors)
    }
}

/// Checks one route; reports each problem and returns `None` if there was any.
fn compile_route(
    r: &RawRoute,
    index: usize,
    report: &mut impl FnMut(&marked_yaml::Span, Problem),
) -> Option<Route> {
    let mut ok = true;
    let mut fail = |span: &marked_yaml::Span, problem: Problem| {
        ok = false;
        report(span, problem);
    };

    let path = match canonical_route_path(&r.path) {
        Ok(p) if p == "/health" => {
            fail(r.path.span(), Problem::ReservedPath);
            None
        }
        Ok(p) => Some(p),
        Err(reason) => {
            fail(
                r.path.span(),
                Problem::Path {
                    path: r.path.as_str().to_owned(),
                    reason,
                },
            );
            None
        }
    };

    let host = r.host.as_ref().and_then(|h| match parse_host(h) {
        Ok(h) => Some(h),
        Err(reason) => {
            fail(
                h.span(),
                Problem::Host {
                    value: h.as_str().to_owned(),
                    reason,
                },
            );
            None
        }
    });

    let mut upstreams = Vec::new();
    let written: Vec<(&str, &marked_yaml::Span)> = match &*r.upstream {
        RawUpstreams::One(one) => vec![(one.as_str(), r.upstream.span())],
        RawUpstreams::Many(many) => many.iter().map(|u| (u.as_str(), u.span())).collect(),
    };
    if written.is_empty() {
        fail(r.upstream.span(), Problem::NoUpstream);
    }
    for (text, span) in written {
        match parse_upstream(text) {
            Ok(parsed) => upstreams.push(parsed),
            Err(reason) => fail(
                span,
                Problem::Upstream {
                    value: text.to_owned(),
                    reason,
                },
            ),
        }
    }

    let mut duration = |field: &'static str, v: &Option<Spanned<String>>, default| match v {
        None => Some(default),
        Some(v) => match parse_duration(v) {
            Ok(d) => Some(d),
            Err(reason) => {
                fail(
                    v.span(),
                    Problem::Duration {
                        field,
                        value: v.as_str().to_owned(),
                        reason,
                    },
                );
                None
            }
        },
    };
    let connect_timeout = duration(
        "connect_timeout",
        &r.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let read_timeout = duration("read_timeout", &r.read_timeout, DEFAULT_READ_TIMEOUT);

    if !ok {
        return None;
    }
    Some(Route {
        index,
        path: path?,
        host: match &r.host {
            Some(_) => Some(host?),
            None => None,
        },
        upstreams,
        strip_prefix: r.strip_prefix.as_ref().is_some_and(|s| **s),
        redirect_bare_prefix: r.redirect_bare_prefix.as_ref().is_some_and(|s| **s),
        connect_timeout: connect_timeout?,
        read_timeout: read_timeout?,
        line: r.path.span().start().map_or(0, |m| m.line()),
    })
}
