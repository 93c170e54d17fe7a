//! The operator's status page, `GET /` on the admin listener: one
//! read-only HTML page with what `/routes`, `/metrics` and the logs say
//! between them, for a person with a browser and a port-forward rather
//! than `jq` and PromQL.
//!
//! Everything is rendered on the server from values gathered when the page
//! is asked for: the applied table, the last rejection, the request and
//! upstream-error counters as the registry holds them (no work is added to
//! the request path), and the last connect outcome per upstream address
//! ([`crate::upstream_health`]). There are no external assets and no
//! script, so the page works from a locked-down pod through any tunnel; a
//! route path, host, file name or error message can hold anything, so
//! every value is escaped on the way out ([`Esc`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use prometheus::proto::MetricFamily;
use switchyard_routes::Route;

use crate::report::Rejection;
use crate::upstream_health::ConnectRecord;

/// HTML-escapes its text when displayed: `&`, `<`, `>`, `"` and `'`, so
/// that a value is inert both in element text and in a quoted attribute.
pub(crate) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Requests and failures of one `route` label since the process started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Traffic {
    /// Requests finished, any status.
    pub requests: u64,
    /// Of those, answered 5xx.
    pub server_errors: u64,
    /// Upstream attempts that failed to connect.
    pub connect_errors: u64,
    /// Upstream attempts that timed out.
    pub timeouts: u64,
    /// Other upstream failures.
    pub other_errors: u64,
}

impl Traffic {
    fn upstream_errors(&self) -> u64 {
        self.connect_errors + self.timeouts + self.other_errors
    }
}

const REQUESTS: &str = "switchyard_http_requests_total";
const UPSTREAM_ERRORS: &str = "switchyard_upstream_errors_total";

/// Sums the request and upstream-error counters by their `route` label.
pub(crate) fn traffic_by_route(families: &[MetricFamily]) -> BTreeMap<String, Traffic> {
    let mut out: BTreeMap<String, Traffic> = BTreeMap::new();
    for family in families {
        let name = family.name();
        if name != REQUESTS && name != UPSTREAM_ERRORS {
            continue;
        }
        for m in family.get_metric() {
            let label = |want: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == want)
                    .map(|l| l.value())
            };
            let Some(route) = label("route") else {
                continue;
            };
            // Counters are whole numbers held as f64; `as` saturates.
            let value = m.get_counter().get_value() as u64;
            let t = out.entry(route.to_owned()).or_default();
            if name == REQUESTS {
                t.requests += value;
                if label("code").is_some_and(|c| c.starts_with('5')) {
                    t.server_errors += value;
                }
            } else {
                match label("kind") {
                    Some("connect") => t.connect_errors += value,
                    Some("timeout") => t.timeouts += value,
                    _ => t.other_errors += value,
                }
            }
        }
    }
    out
}

/// The applied table, as the page shows it.
pub(crate) struct Applied<'a> {
    /// Its generation.
    pub generation: u64,
    /// SHA-256 of its file, lowercase hex.
    pub sha256: &'a str,
    /// When it was applied.
    pub loaded_at: SystemTime,
    /// Its routes, in file order.
    pub routes: Vec<&'a Route>,
}

/// Everything one rendering of the page shows.
pub(crate) struct PageInput<'a> {
    /// The time the page is rendered at; ages are relative to it.
    pub now: SystemTime,
    /// Whether the process is draining (SIGTERM received).
    pub draining: bool,
    /// The applied table.
    pub applied: Applied<'a>,
    /// Why the last reload attempt was rejected, if it was.
    pub rejection: Option<&'a Rejection>,
    /// Traffic by `route` label.
    pub traffic: &'a BTreeMap<String, Traffic>,
    /// Last connect outcome by upstream address.
    pub upstreams: &'a [(SocketAddr, ConnectRecord)],
    /// Seconds between automatic refreshes (`?refresh=N`), if asked for.
    pub refresh: Option<u32>,
}

/// The shortest and longest automatic refresh periods honoured, in
/// seconds: an open tab must not turn into a load generator.
const REFRESH_RANGE: (u32, u32) = (1, 3600);

/// The `refresh` parameter of a query string, clamped; `None` when absent
/// or not a number.
pub(crate) fn refresh_param(query: Option<&str>) -> Option<u32> {
    let value = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("refresh="))?;
    let n: u32 = value.parse().ok()?;
    Some(n.clamp(REFRESH_RANGE.0, REFRESH_RANGE.1))
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}\
table{border-collapse:collapse;background:#fff}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}\
code{font:12px ui-monospace,monospace}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}\
dt{font-weight:600}dd{margin:0}.bad{color:#a40000;font-weight:600}.ok{color:#1a6b1a}\
.muted{color:#666}.state{display:inline-block;padding:.1em .5em;border-radius:.3em;background:#1a6b1a;color:#fff}\
.state.draining{background:#a40000}section.rejected{border-left:4px solid #a40000;padding-left:.8em}\
footer{margin-top:2em;color:#666;font-size:.9em}";

/// Renders the whole page.
pub(crate) fn render(p: &PageInput<'_>) -> String {
    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail; the results are ignored here and
    // in every helper for that reason.
    let _ = write_page(&mut out, p);
    out
}

fn write_page(out: &mut String, p: &PageInput<'_>) -> fmt::Result {
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    if let Some(secs) = p.refresh {
        write!(out, "<meta http-equiv=\"refresh\" content=\"{secs}\">")?;
    }
    writeln!(
        out,
        "<title>Switchyard: generation {}</title><style>{STYLE}</style></head><body>",
        p.applied.generation
    )?;
    let (state_class, state) = if p.draining {
        ("state draining", "draining")
    } else {
        ("state", "serving")
    };
    writeln!(
        out,
        "<h1>Switchyard</h1><p><span class=\"{state_class}\" id=\"state\">{state}</span> \
         rendered {}</p>",
        Esc(&rfc3339(p.now))
    )?;
    write_applied(out, p)?;
    write_rejection(out, p)?;
    write_routes(out, p)?;
    write_other_traffic(out, p)?;
    write_upstreams(out, p)?;
    out.push_str(
        "<footer>Read-only. Counts are since the process started. The same data for tools: \
         <a href=\"/routes\">/routes</a> (JSON), <a href=\"/metrics\">/metrics</a> (Prometheus). \
         <a href=\"/?refresh=5\">Refresh every 5 s</a>.</footer>\n</body></html>\n",
    );
    Ok(())
}

fn write_applied(out: &mut String, p: &PageInput<'_>) -> fmt::Result {
    let a = &p.applied;
    writeln!(
        out,
        "<section id=\"applied\"><h2>Applied configuration</h2><dl>\
         <dt>Generation</dt><dd id=\"generation\">{}</dd>\
         <dt>File SHA-256</dt><dd><code id=\"sha256\">{}</code></dd>\
         <dt>Loaded</dt><dd id=\"loaded-at\">{} <span class=\"muted\">({})</span></dd>\
         <dt>Routes</dt><dd>{}</dd></dl></section>",
        a.generation,
        Esc(a.sha256),
        Esc(&rfc3339(a.loaded_at)),
        Esc(&ago(p.now, a.loaded_at)),
        a.routes.len(),
    )
}

fn write_rejection(out: &mut String, p: &PageInput<'_>) -> fmt::Result {
    let Some(r) = p.rejection else {
        out.push_str(
            "<section id=\"last-rejection\"><h2>Last rejected reload</h2>\
             <p class=\"ok\">None: the last reload attempt applied the file or found it \
             unchanged.</p></section>\n",
        );
        return Ok(());
    };
    writeln!(
        out,
        "<section id=\"last-rejection\" class=\"rejected\"><h2>Last rejected reload</h2>\
         <p class=\"bad\">The file was rejected; generation {} keeps serving. \
         Fix the file (check it with <code>switchyard check</code>) and save it again.</p>\
         <table><thead><tr><th>File</th><th>Line</th><th>Column</th><th>Route</th>\
         <th>Problem</th></tr></thead><tbody>",
        p.applied.generation
    )?;
    for e in &r.errors {
        writeln!(
            out,
            "<tr class=\"problem\"><td><code>{}</code></td><td class=\"n line\">{}</td>\
             <td class=\"n column\">{}</td><td>{}</td><td class=\"message\">{}</td></tr>",
            Esc(&e.file),
            OrDash(e.line),
            OrDash(e.column),
            Esc(e.route.as_deref().unwrap_or("")),
            Esc(&e.message),
        )?;
    }
    out.push_str("</tbody></table>");
    if r.omitted > 0 {
        write!(out, "<p>… and {} more problems not listed.</p>", r.omitted)?;
    }
    out.push_str("</section>\n");
    Ok(())
}

fn write_routes(out: &mut String, p: &PageInput<'_>) -> fmt::Result {
    let health: BTreeMap<SocketAddr, &ConnectRecord> =
        p.upstreams.iter().map(|(a, r)| (*a, r)).collect();
    out.push_str(
        "<section id=\"routes\"><h2>Routes</h2>\
         <table><thead><tr><th>Host</th><th>Path</th><th>Upstreams</th><th>Strip prefix</th>\
         <th>Connect timeout</th><th>Read timeout</th><th>Requests</th><th>5xx</th>\
         <th>Upstream errors<br><span class=\"muted\">connect / timeout / other</span></th>\
         </tr></thead><tbody>\n",
    );
    if p.applied.routes.is_empty() {
        out.push_str("<tr><td colspan=\"9\" class=\"muted\">No routes: every request is answered 404.</td></tr>\n");
    }
    for route in &p.applied.routes {
        let key = route.key();
        let t = p.traffic.get(&key).copied().unwrap_or_default();
        write!(
            out,
            "<tr class=\"route\" data-route=\"{}\"><td>{}</td><td><code>{}</code></td><td>",
            Esc(&key),
            Esc(route.host.as_deref().unwrap_or("any")),
            Esc(&route.path),
        )?;
        for (i, u) in route.upstreams.iter().enumerate() {
            if i > 0 {
                out.push_str("<br>");
            }
            write!(out, "<code>{}</code>", Esc(&u.to_string()))?;
            // Names resolve per request, so only a literal address can be
            // matched to what the health map was told.
            match u.socket_addr().and_then(|a| health.get(&a)) {
                Some(r) if !r.ok => write!(
                    out,
                    " <span class=\"bad\">connect failed {}</span>",
                    Esc(&ago(p.now, r.at))
                )?,
                Some(_) => out.push_str(" <span class=\"ok\">ok</span>"),
                None => {}
            }
        }
        write!(
            out,
            "</td><td>{}</td><td>{}</td><td>{}</td>",
            if route.strip_prefix { "yes" } else { "no" },
            Esc(&switchyard_routes::format_duration(route.connect_timeout)),
            Esc(&switchyard_routes::format_duration(route.read_timeout)),
        )?;
        write_counts(out, &t)?;
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></section>\n");
    Ok(())
}

fn write_counts(out: &mut String, t: &Traffic) -> fmt::Result {
    let bad = |n: u64| if n > 0 { " bad" } else { "" };
    write!(
        out,
        "<td class=\"n requests\">{}</td><td class=\"n errors{}\">{}</td>\
         <td class=\"n upstream-errors{}\">{} / {} / {}</td>",
        t.requests,
        bad(t.server_errors),
        t.server_errors,
        bad(t.upstream_errors()),
        t.connect_errors,
        t.timeouts,
        t.other_errors,
    )
}

/// Series that belong to no applied route: `unmatched`, the main
/// listener's `/health`, and routes since removed (their counters live on
/// until a restart, as counters should).
fn write_other_traffic(out: &mut String, p: &PageInput<'_>) -> fmt::Result {
    let applied: std::collections::HashSet<String> =
        p.applied.routes.iter().map(|r| r.key()).collect();
    let others: Vec<(&String, &Traffic)> = p
        .traffic
        .iter()
        .filter(|(k, _)| !applied.contains(k.as_str()))
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    out.push_str(
        "<section id=\"other-traffic\"><h2>Other requests</h2>\
         <table><thead><tr><th>Counted as</th><th>Requests</th><th>5xx</th>\
         <th>Upstream errors<br><span class=\"muted\">connect / timeout / other</span></th>\
         </tr></thead><tbody>\n",
    );
    for (key, t) in others {
        let what = match key.as_str() {
            crate::metrics::UNMATCHED => "no route matched, or refused before routing",
            crate::metrics::HEALTH => "the main listener's health check",
            _ => "a route no longer in the applied table",
        };
        write!(
            out,
            "<tr data-route=\"{}\"><td><code>{}</code> <span class=\"muted\">{}</span></td>",
            Esc(key),
            Esc(key),
            what
        )?;
        write_counts(out, t)?;
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></section>\n");
    Ok(())
}

fn write_upstreams(out: &mut String, p: &PageInput<'_>) -> fmt::Result {
    out.push_str("<section id=\"upstreams\"><h2>Upstream connections</h2>");
    if p.upstreams.is_empty() {
        out.push_str(
            "<p class=\"muted\">No new upstream connection attempted yet.</p></section>\n",
        );
        return Ok(());
    }
    let failing = p.upstreams.iter().filter(|(_, r)| !r.ok).count();
    if failing > 0 {
        write!(
            out,
            "<p class=\"bad\" id=\"failing-count\">{failing} upstream address{} failed {} last connect.</p>",
            if failing == 1 { "" } else { "es" },
            if failing == 1 { "its" } else { "their" },
        )?;
    }
    out.push_str(
        "<table><thead><tr><th>Address</th><th>Last connect</th><th>At</th><th>Since</th>\
         <th>In a row</th><th>Routes</th></tr></thead><tbody>\n",
    );
    for (addr, r) in p.upstreams {
        let routes: Vec<String> = p
            .applied
            .routes
            .iter()
            .filter(|route| {
                route
                    .upstreams
                    .iter()
                    .any(|u| u.socket_addr() == Some(*addr))
            })
            .map(|route| route.key())
            .collect();
        let addr = addr.to_string();
        writeln!(
            out,
            "<tr class=\"upstream\" data-upstream=\"{}\"><td><code>{}</code></td><td class=\"{}\">{}</td>\
             <td>{} <span class=\"muted\">({})</span></td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            Esc(&addr),
            Esc(&addr),
            if r.ok { "ok" } else { "bad" },
            if r.ok { "ok" } else { "failed" },
            Esc(&rfc3339(r.at)),
            Esc(&ago(p.now, r.at)),
            Esc(&ago(p.now, r.since)),
            r.streak,
            if routes.is_empty() {
                "<span class=\"muted\">none (by address)</span>".to_owned()
            } else {
                routes
                    .iter()
                    .map(|k| format!("<code>{}</code>", Esc(k)))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        )?;
    }
    out.push_str("</tbody></table></section>\n");
    Ok(())
}

/// A number, or a dash when there is none (a problem with the whole file
/// has no line).
struct OrDash(Option<usize>);

impl fmt::Display for OrDash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("–"),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `3m 12s ago`, to the second; `just now` in the future too (clocks).
fn ago(now: SystemTime, then: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(d) if d.as_secs() > 0 => format!(
            "{} ago",
            humantime::format_duration(Duration::from_secs(d.as_secs()))
        ),
        _ => "just now".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::metrics::UpstreamErrorKind;
    use crate::report::ReportedError;
    use switchyard_routes::Table;

    const HOSTILE: &str = "<script>alert(\"x\")</script>&'";

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(
            Esc(HOSTILE).to_string(),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        assert_eq!(Esc("").to_string(), "");
        assert_eq!(Esc("plain /app1 ü").to_string(), "plain /app1 ü");
        assert_eq!(Esc("&amp;").to_string(), "&amp;amp;");
        assert_eq!(Esc("\"'\"").to_string(), "&quot;&#39;&quot;");
        // Multi-byte characters around escapes stay whole.
        assert_eq!(Esc("é<ü>").to_string(), "é&lt;ü&gt;");
    }

    fn table(yaml: &str) -> Table {
        switchyard_routes::load_bytes("routes.yaml", yaml.as_bytes()).expect("valid routes")
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn page(
        table: &Table,
        rejection: Option<&Rejection>,
        traffic: &BTreeMap<String, Traffic>,
        upstreams: &[(SocketAddr, ConnectRecord)],
    ) -> String {
        render(&PageInput {
            now: t(200),
            draining: false,
            applied: Applied {
                generation: 7,
                sha256: "ab12",
                loaded_at: t(8),
                routes: table.routes().collect(),
            },
            rejection,
            traffic,
            upstreams,
            refresh: None,
        })
    }

    /// Text with `<` or `>` anywhere but in the page's own markup: the
    /// hostile string must never appear raw.
    fn assert_no_raw(html: &str, raw: &str) {
        assert!(!html.contains(raw), "raw {raw:?} in page:\n{html}");
    }

    #[test]
    fn shows_the_applied_table() {
        let tbl = table(
            "routes:\n  - {path: /app1, upstream: 127.0.0.1:3001}\n  - {path: /app2, host: dev.example.com, upstream: [10.0.0.7:80, 'svc.ns:8080'], strip_prefix: true, connect_timeout: 2s}\n",
        );
        let html = page(&tbl, None, &BTreeMap::new(), &[]);
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<dd id=\"generation\">7</dd>"), "{html}");
        assert!(html.contains("<code id=\"sha256\">ab12</code>"));
        assert!(html.contains("2023-11-14T22:13:28Z"), "loaded_at: {html}");
        assert!(html.contains("(3m 12s ago)"), "{html}");
        assert!(html.contains("data-route=\"/app1\""));
        assert!(html.contains("data-route=\"dev.example.com/app2\""));
        assert!(html.contains("<code>127.0.0.1:3001</code>"));
        assert!(html.contains("<code>svc.ns:8080</code>"));
        assert!(html.contains("<td>2s</td><td>1m</td>"), "{html}");
        assert!(html.contains("None: the last reload attempt"));
        assert!(html.contains("No new upstream connection attempted yet"));
        // No script, no external resource.
        assert_no_raw(&html, "<script");
        assert_no_raw(&html, "src=");
        assert_no_raw(&html, "http://");
        assert_no_raw(&html, "https://");
    }

    #[test]
    fn escapes_hostile_routes_hosts_and_errors() {
        // A route path may hold any character but whitespace, `?` and `#`.
        let hostile_path = format!("/{HOSTILE}");
        let tbl = table(&format!(
            "routes:\n  - path: '{}'\n    upstream: 127.0.0.1:1\n",
            hostile_path.replace('\'', "''")
        ));
        assert_eq!(
            tbl.routes().next().map(|r| r.path.as_str()),
            Some(hostile_path.as_str())
        );
        let rejection = Rejection {
            text: HOSTILE.to_owned(),
            errors: vec![ReportedError {
                file: "/etc/<script>/routes.yaml".to_owned(),
                line: Some(3),
                column: Some(5),
                route: Some("route #1 (\"/x'<y>\")".to_owned()),
                message: format!("unknown field `{HOSTILE}`"),
            }],
            omitted: 2,
        };
        let mut traffic = BTreeMap::new();
        traffic.insert(
            "<img src=x onerror=alert(1)>/p".to_owned(),
            Traffic {
                requests: 1,
                ..Traffic::default()
            },
        );
        let html = page(&tbl, Some(&rejection), &traffic, &[]);
        assert_no_raw(&html, "<script");
        assert_no_raw(&html, "</script");
        assert_no_raw(&html, "<img");
        assert_no_raw(&html, "<y>");
        assert!(html.contains("/etc/&lt;script&gt;/routes.yaml"));
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
        assert!(html.contains("route #1 (&quot;/x&#39;&lt;y&gt;&quot;)"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;/p"));
        // Attribute values cannot be broken out of either.
        assert!(html.contains("data-route=\"&lt;img src=x onerror=alert(1)&gt;/p\""));
        assert!(html.contains("… and 2 more problems not listed."));
        // The hostile route path, in the table and in its attribute.
        let escaped = Esc(&hostile_path).to_string();
        assert!(html.contains(&format!("<code>{escaped}</code>")), "{html}");
        assert!(html.contains(&format!("data-route=\"{escaped}\"")));
    }

    #[test]
    fn shows_the_rejection_with_file_line_and_column() {
        let tbl = table("routes:\n  - {path: /a, upstream: 127.0.0.1:1}\n");
        let rejection = Rejection {
            text: String::new(),
            errors: vec![
                ReportedError {
                    file: "/etc/switchyard/routes.yaml".to_owned(),
                    line: Some(4),
                    column: Some(9),
                    route: Some("route #2 (/b)".to_owned()),
                    message: "unknown field `upstrem`".to_owned(),
                },
                ReportedError {
                    file: "/etc/switchyard/routes.yaml".to_owned(),
                    line: None,
                    column: None,
                    route: None,
                    message: "empty".to_owned(),
                },
            ],
            omitted: 0,
        };
        let html = page(&tbl, Some(&rejection), &BTreeMap::new(), &[]);
        assert!(html.contains("generation 7 keeps serving"));
        assert!(
            html.contains(
                "<td><code>/etc/switchyard/routes.yaml</code></td><td class=\"n line\">4</td>\
             <td class=\"n column\">9</td><td>route #2 (/b)</td>\
             <td class=\"message\">unknown field `upstrem`</td>"
            ),
            "{html}"
        );
        assert!(html.contains("<td class=\"n line\">–</td>"));
        assert!(!html.contains("more problems not listed"));
    }

    #[test]
    fn counts_requests_5xx_and_upstream_errors_per_route() {
        let metrics = Metrics::new().unwrap();
        let a = metrics.route_handles("/a");
        for code in [200, 200, 404, 502, 504, 503] {
            a.request(code, Duration::from_millis(1));
        }
        a.upstream_error(UpstreamErrorKind::Connect);
        a.upstream_error(UpstreamErrorKind::Connect);
        a.upstream_error(UpstreamErrorKind::Timeout);
        a.upstream_error(UpstreamErrorKind::Other);
        let gone = metrics.route_handles("/gone");
        gone.request(200, Duration::from_millis(1));
        metrics
            .route_handles(crate::metrics::UNMATCHED)
            .request(404, Duration::from_millis(1));

        let traffic = traffic_by_route(&metrics.route_counters());
        assert_eq!(
            traffic.get("/a"),
            Some(&Traffic {
                requests: 6,
                server_errors: 3,
                connect_errors: 2,
                timeouts: 1,
                other_errors: 1,
            })
        );
        assert_eq!(traffic.get("/gone").map(|t| t.requests), Some(1));

        let tbl = table("routes:\n  - {path: /a, upstream: 127.0.0.1:1}\n  - {path: /idle, upstream: 127.0.0.1:2}\n");
        let html = page(&tbl, None, &traffic, &[]);
        assert!(
            html.contains(
                "<td class=\"n requests\">6</td><td class=\"n errors bad\">3</td>\
             <td class=\"n upstream-errors bad\">2 / 1 / 1</td>"
            ),
            "{html}"
        );
        // A route without traffic shows zeros, not nothing.
        assert!(html.contains(
            "<td class=\"n requests\">0</td><td class=\"n errors\">0</td>\
             <td class=\"n upstream-errors\">0 / 0 / 0</td>"
        ));
        // Series of no applied route are listed apart.
        let other = html
            .split("id=\"other-traffic\"")
            .nth(1)
            .expect("other traffic");
        assert!(other.contains("data-route=\"/gone\""));
        assert!(other.contains("a route no longer in the applied table"));
        assert!(other.contains("data-route=\"unmatched\""));
        assert!(!other.contains("data-route=\"/a\""));
    }

    #[test]
    fn shows_which_upstreams_failed_their_last_connect() {
        let tbl = table(
            "routes:\n  - {path: /a, upstream: [127.0.0.1:1, 127.0.0.1:2]}\n  - {path: /b, upstream: 127.0.0.1:2}\n",
        );
        let up = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let upstreams = vec![
            (
                up(2),
                ConnectRecord {
                    ok: false,
                    at: t(190),
                    since: t(100),
                    streak: 4,
                },
            ),
            (
                up(1),
                ConnectRecord {
                    ok: true,
                    at: t(199),
                    since: t(50),
                    streak: 9,
                },
            ),
        ];
        let html = page(&tbl, None, &BTreeMap::new(), &upstreams);
        assert!(
            html.contains("1 upstream address failed its last connect."),
            "{html}"
        );
        let section = html.split("id=\"upstreams\"").nth(1).expect("upstreams");
        let failed = section
            .split("data-upstream=\"127.0.0.1:2\"")
            .nth(1)
            .and_then(|s| s.split("</tr>").next())
            .expect("row for :2");
        assert!(failed.contains("<td class=\"bad\">failed</td>"), "{failed}");
        assert!(failed.contains("(10s ago)"));
        assert!(
            failed.contains("<td>1m 40s ago</td><td class=\"n\">4</td>"),
            "{failed}"
        );
        assert!(failed.contains("<code>/a</code> <code>/b</code>"));
        let ok = section
            .split("data-upstream=\"127.0.0.1:1\"")
            .nth(1)
            .expect("row for :1");
        assert!(ok.contains("<td class=\"ok\">ok</td>"));
        // In the routes table, next to the upstream.
        let routes = html.split("id=\"routes\"").nth(1).expect("routes");
        assert!(routes.contains(
            "<code>127.0.0.1:2</code> <span class=\"bad\">connect failed 10s ago</span>"
        ));
        assert!(routes.contains("<code>127.0.0.1:1</code> <span class=\"ok\">ok</span>"));
    }

    #[test]
    fn refresh_is_optional_and_bounded() {
        assert_eq!(refresh_param(None), None);
        assert_eq!(refresh_param(Some("")), None);
        assert_eq!(refresh_param(Some("refresh=5")), Some(5));
        assert_eq!(refresh_param(Some("a=1&refresh=0")), Some(1));
        assert_eq!(refresh_param(Some("refresh=999999")), Some(3600));
        assert_eq!(refresh_param(Some("refresh=x")), None);
        let tbl = table("routes: []\n");
        let traffic = BTreeMap::new();
        let mut input = PageInput {
            now: t(0),
            draining: true,
            applied: Applied {
                generation: 1,
                sha256: "00",
                loaded_at: t(0),
                routes: tbl.routes().collect(),
            },
            rejection: None,
            traffic: &traffic,
            upstreams: &[],
            refresh: None,
        };
        assert!(!render(&input).contains("http-equiv"));
        input.refresh = Some(2);
        let html = render(&input);
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
        assert!(html.contains("id=\"state\">draining</span>"));
        assert!(html.contains("No routes: every request is answered 404."));
    }
}
