//! Emitting: the translation written out as routes.yaml text — comments
//! that say where each route came from and what was left out, then the
//! routes, each value quoted where YAML would read it as something else.

use std::fmt::Write as _;

/// One route of the output, its values as routes.yaml writes them.
#[derive(Debug)]
pub(crate) struct Route {
    /// Comment lines above the route (without `#`).
    pub(crate) comments: Vec<String>,
    /// `path`, as the nginx location wrote it.
    pub(crate) path: String,
    /// `host`, lowercased.
    pub(crate) host: Option<String>,
    /// `upstream`: one `host:port`, or several used round robin.
    pub(crate) upstream: Vec<String>,
    /// `strip_prefix`, written only when true.
    pub(crate) strip_prefix: bool,
    /// `redirect_bare_prefix`, written only when true.
    pub(crate) redirect_bare_prefix: bool,
    /// `connect_timeout`, e.g. `2s`; absent means Switchyard's default.
    pub(crate) connect_timeout: Option<String>,
    /// `read_timeout`, e.g. `5m`; absent means Switchyard's default.
    pub(crate) read_timeout: Option<String>,
}

/// One entry of the `routes:` list: a route, or a comment naming a
/// location that was not translated.
#[derive(Debug)]
pub(crate) enum Item {
    /// A route that translated completely.
    Route(Route),
    /// `not translated: FILE:LINE location …`.
    Skipped(String),
}

/// What [`document`] writes: everything translation decided.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    /// The nginx.conf's name, as the comments cite it.
    pub(crate) source: &'a str,
    /// How many parts could not be translated; any makes the file INCOMPLETE.
    pub(crate) problems: usize,
    /// `(line, note)` comments, in line order.
    pub(crate) notes: &'a [(usize, String)],
    /// Ignored settings: why, and each setting with its line.
    pub(crate) ignored: Vec<(&'static str, &'a [(String, usize)])>,
    /// The routes and the skipped locations, in output order.
    pub(crate) items: &'a [Item],
}

/// The routes.yaml: a header of comments (what is incomplete, notes,
/// ignored settings), `version: 1`, then the routes in order.
pub(crate) fn document(doc: &Document<'_>) -> String {
    let routes = doc
        .items
        .iter()
        .filter(|i| matches!(i, Item::Route(_)))
        .count();
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&comment(&format!(
        "# routes.yaml for Switchyard, translated from {} by `switchyard import-nginx`.",
        doc.source
    )));
    if doc.problems > 0 {
        line(&comment(&format!(
            "# INCOMPLETE: {} part(s) of {} could not be translated (listed on stderr); only what did translate is below.",
            doc.problems, doc.source
        )));
    }
    line("#");
    for (l, n) in doc.notes {
        line(&comment(&format!("# {}:{l}: {n}", doc.source)));
    }
    for (why, list) in &doc.ignored {
        let which = join(list.iter().map(|(n, l)| format!("{n} (line {l})")), ", ");
        line(&comment(&format!("# Ignored, {why}: {which}")));
    }
    if routes > 0 {
        line("# nginx's prefix locations match any string prefix (location /app1 also caught /app10); Switchyard matches whole path segments.");
        let default_connect = doc
            .items
            .iter()
            .any(|i| matches!(i, Item::Route(r) if r.connect_timeout.is_none()));
        if default_connect {
            line("# Routes without connect_timeout use Switchyard's default of 5s (nginx's proxy_connect_timeout defaults to 60s).");
        }
    }
    line("version: 1");
    if routes == 0 {
        for i in doc.items {
            if let Item::Skipped(s) = i {
                line(&comment(&format!("# {s}")));
            }
        }
        line("routes: []");
    } else {
        line("routes:");
        for i in doc.items {
            match i {
                Item::Skipped(s) => line(&comment(&format!("  # {s}"))),
                Item::Route(r) => route(r, &mut line),
            }
        }
    }
    out
}

/// Writes one route as an entry of a `routes:` list, a line at a time.
pub(crate) fn route(r: &Route, line: &mut impl FnMut(&str)) {
    for c in &r.comments {
        line(&comment(&format!("  # {c}")));
    }
    line(&format!("  - path: {}", scalar(&r.path)));
    if let Some(h) = &r.host {
        line(&format!("    host: {}", scalar(h)));
    }
    match r.upstream.as_slice() {
        [one] => line(&format!("    upstream: {}", scalar(one))),
        many => line(&format!(
            "    upstream: [{}]",
            join(many.iter().map(|u| scalar(u)), ", ")
        )),
    }
    if r.strip_prefix {
        line("    strip_prefix: true");
    }
    if r.redirect_bare_prefix {
        line("    redirect_bare_prefix: true");
    }
    if let Some(t) = &r.connect_timeout {
        line(&format!("    connect_timeout: {t}"));
    }
    if let Some(t) = &r.read_timeout {
        line(&format!("    read_timeout: {t}"));
    }
}

/// A YAML scalar: plain when that cannot be read as anything but the same
/// string, else double-quoted with escapes.
fn scalar(s: &str) -> String {
    let plain_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-' | ':'));
    let starts_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/');
    let looks_typed = !s.starts_with('/')
        && (s.parse::<f64>().is_ok()
            || !s.contains(['.', ':']) && s.starts_with(|c: char| c.is_ascii_digit())
            || matches!(
                s.to_ascii_lowercase().as_str(),
                "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
            ));
    if plain_chars && starts_ok && !s.ends_with(':') && !looks_typed {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A comment line with no control characters, so text from the nginx.conf
/// cannot end the comment and inject YAML.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The items with `sep` between them.
pub(crate) fn join(items: impl Iterator<Item = String>, sep: &str) -> String {
    items.collect::<Vec<_>>().join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scalars that YAML would read as something else are quoted.
    #[test]
    fn yaml_scalars() {
        assert_eq!(scalar("/app1"), "/app1");
        assert_eq!(scalar("192.168.2.50:3000"), "192.168.2.50:3000");
        assert_eq!(scalar("dev.example.com"), "dev.example.com");
        assert_eq!(scalar("[::1]:80"), "\"[::1]:80\"");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("123"), "\"123\"");
        assert_eq!(scalar("/a #b"), "\"/a #b\"");
        assert_eq!(scalar("a\"b\n"), "\"a\\\"b\\u000A\"");
        assert_eq!(comment("# a\nroutes: []"), "# a?routes: []");
    }
}
