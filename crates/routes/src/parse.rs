//! Text → [`RawFile`]: YAML with positions, then serde per route.
//!
//! Each route is deserialized on its own so that `check` can report the
//! errors of every route at once instead of stopping at the first.

use marked_yaml::{from_node, FromNodeError, LoadError, LoaderOptions, Node, Span};

use crate::error::{ConfigError, Errors, Location, Problem, RouteLabel};
use crate::prescan::prescan;
use crate::schema::{RawFile, RawHeader, RawRoute};

/// Parses the text of a routes file. A leading byte-order mark is skipped.
/// On failure returns the problems found, in file order: the first
/// [`MAX_REPORTED_ERRORS`] of them.
///
/// [`MAX_REPORTED_ERRORS`]: crate::MAX_REPORTED_ERRORS
pub fn parse(text: &str) -> Result<RawFile, Vec<ConfigError>> {
    match parse_lenient(text) {
        (Some(raw), errors) if errors.is_empty() => Ok(raw),
        (_, errors) => Err(errors.finish().0),
    }
}

/// Parses as much as it can: the routes that read cleanly, plus the errors
/// of those that did not, so compiling can go on to find further errors in
/// the good ones. `None` when the file as a whole is unreadable.
pub(crate) fn parse_lenient(text: &str) -> (Option<RawFile>, Errors) {
    // Editors write one, and YAML would read it as part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match parse_inner(text) {
        Ok(pair) => pair,
        Err(errors) => (None, errors),
    }
}

fn parse_inner(text: &str) -> Result<(Option<RawFile>, Errors), Errors> {
    if is_blank(text) {
        return Err(Errors::one(ConfigError {
            location: None,
            route: None,
            problem: Problem::Empty,
        }));
    }
    // Before marked-yaml builds a node: its building, and serde's reading,
    // recurse and take memory per node.
    let second_document = prescan(text).map_err(Errors::one)?;
    let mut errors = Errors::new();
    if let Some(e) = second_document {
        errors.push(e);
    }
    // A repeated key (a second `path:` in one route) would otherwise let the
    // last one win silently.
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let node = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(node) => node,
        Err(e) => {
            errors.push(load_error(&e));
            return Err(errors);
        }
    };

    let header = match from_node::<RawHeader>(&node) {
        Ok(h) => Some(h),
        Err(e) => {
            errors.push(schema_error(&e, &node, None));
            None
        }
    };

    let mut routes = Vec::new();
    match node.as_mapping().and_then(|m| m.get_node("routes")) {
        // A missing key is reported by the header.
        None => {}
        Some(Node::Sequence(seq)) => {
            for (i, item) in seq.iter().enumerate() {
                match from_node::<RawRoute>(item) {
                    Ok(r) => routes.push((i + 1, r)),
                    Err(e) => {
                        let label = RouteLabel {
                            index: i + 1,
                            path: item
                                .as_mapping()
                                .and_then(|m| m.get_scalar("path"))
                                .map(|s| s.as_str().to_owned()),
                        };
                        errors.push(schema_error(&e, item, Some(label)));
                    }
                }
            }
        }
        Some(other) => errors.push(ConfigError {
            location: start(other.span()),
            route: None,
            problem: Problem::Schema(
                "`routes` must be a list of routes (`routes: []` for none)".into(),
            ),
        }),
    }

    let raw = header.map(|h| RawFile {
        version: h.version,
        routes,
    });
    Ok((raw, errors))
}

/// True when the text holds nothing but blank lines and comments.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

pub(crate) fn start(span: &Span) -> Option<Location> {
    span.start().map(Location::from)
}

fn load_error(e: &LoadError) -> ConfigError {
    let (marker, message) = match e {
        LoadError::TopLevelMustBeMapping(m) => (
            Some(m),
            "the top level must be a mapping with a `routes` key".to_owned(),
        ),
        LoadError::TopLevelMustBeSequence(m) => (Some(m), "unexpected top-level list".to_owned()),
        LoadError::UnexpectedAnchor(m) => {
            (Some(m), "anchors and aliases are not supported".to_owned())
        }
        LoadError::MappingKeyMustBeScalar(m) => (Some(m), "keys must be plain strings".to_owned()),
        LoadError::UnexpectedTag(m) => (Some(m), "YAML tags are not supported".to_owned()),
        LoadError::ScanError(m, se) => (Some(m), se.info().to_owned()),
        LoadError::DuplicateKey(inner) => {
            let first = inner.prev_key.span().start().map(|m| m.line()).unwrap_or(0);
            (
                inner.key.span().start(),
                format!(
                    "key `{}` appears twice in one mapping (first at line {first})",
                    inner.key.as_str()
                ),
            )
        }
    };
    ConfigError {
        location: marker.map(Location::from),
        route: None,
        problem: Problem::Yaml(message),
    }
}

fn schema_error(e: &FromNodeError, node: &Node, route: Option<RouteLabel>) -> ConfigError {
    // Point at the offending key itself, not at the mapping that holds it.
    let key_location = match &**e {
        marked_yaml::Error::UnknownFieldError(field, _, _) => node
            .as_mapping()
            .and_then(|m| m.keys().find(|k| k.as_str() == field))
            .and_then(|k| start(k.span())),
        _ => None,
    };
    let location = key_location
        .or_else(|| e.start_mark().as_ref().map(Location::from))
        .or_else(|| start(node.span()));
    // A value of the wrong type is named by its key: serde's text alone
    // ("value was not a boolean") does not say which field it means.
    let field = key_location.is_none().then(|| {
        node.as_mapping().and_then(|m| {
            m.iter()
                .find(|(_, v)| location.is_some() && start(v.span()) == location)
                .map(|(k, _)| k.as_str())
        })
    });
    let message = schema_message(&e.to_string());
    ConfigError {
        location,
        route,
        problem: Problem::Schema(match field.flatten() {
            Some(field) => format!("`{field}`: {message}"),
            None => message,
        }),
    }
}

/// serde's texts start with a capital and quote with backticks; keep them,
/// minus the capital, so every message reads the same way.
fn schema_message(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
