//! Errors found while loading a routes file.
//!
//! Every problem carries the place it was found (line and column, 1-based)
//! and, when it belongs to one, the route it belongs to, so that `check`, a
//! rejected reload and `/routes` `last_error` can all say exactly what is
//! wrong and where.

use std::fmt;

/// A position in the routes file, 1-based like an editor shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Line, counting from 1.
    pub line: usize,
    /// Column, counting from 1.
    pub column: usize,
}

impl From<&marked_yaml::Marker> for Location {
    fn from(m: &marked_yaml::Marker) -> Self {
        Location {
            line: m.line(),
            column: m.column(),
        }
    }
}

/// Which route an error belongs to: its position in the list and, when the
/// entry had a readable `path`, that path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLabel {
    /// 1-based position in `routes`.
    pub index: usize,
    /// The `path` as written, when there was one.
    pub path: Option<String>,
}

impl fmt::Display for RouteLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "route #{} ({p})", self.index),
            None => write!(f, "route #{}", self.index),
        }
    }
}

/// What is wrong. Each variant's text is the message an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The file holds nothing but whitespace and comments.
    #[error("the file is empty; write `routes: []` to serve no routes on purpose")]
    Empty,
    /// The text is not valid YAML (or uses a YAML feature this file forbids).
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// The YAML does not have the shape of a routes file (unknown key, wrong
    /// type, missing field).
    #[error("{0}")]
    Schema(String),
    /// `version` names a schema this build does not read.
    #[error("unsupported version {found}; this switchyard reads version 1")]
    Version {
        /// The version found in the file.
        found: u64,
    },
    /// A route `path` that cannot be matched.
    #[error("invalid path {path:?}: {reason}")]
    Path {
        /// The path as written.
        path: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// `path: /health` is answered by the proxy itself.
    #[error("path /health is reserved for the proxy's own health check")]
    ReservedPath,
    /// Two routes with the same host and path.
    #[error("duplicate route {what}: already defined at line {first_line}")]
    Duplicate {
        /// `path` or `host path` of the duplicate.
        what: String,
        /// Line of the first definition.
        first_line: usize,
    },
    /// An upstream that is not `host:port`.
    #[error("invalid upstream {value:?}: {reason}")]
    Upstream {
        /// The upstream as written.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An upstream list with nothing in it.
    #[error("upstream list is empty; give at least one host:port")]
    NoUpstream,
    /// A `host` that is not a host name.
    #[error("invalid host {value:?}: {reason}")]
    Host {
        /// The host as written.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A timeout that is not a positive duration like `500ms`, `2s` or `1m`.
    #[error("invalid {field} {value:?}: {reason}")]
    Duration {
        /// Which field.
        field: &'static str,
        /// The value as written.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
}

/// One problem, where it is, and which route it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the file; `None` for whole-file problems such as `Empty`.
    pub location: Option<Location>,
    /// The route the problem belongs to, if any.
    pub route: Option<RouteLabel>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loc = self.location.unwrap_or(Location { line: 1, column: 1 });
        write!(f, "{}:{}: ", loc.line, loc.column)?;
        if let Some(route) = &self.route {
            write!(f, "{route}: ")?;
        }
        write!(f, "{}", self.problem)
    }
}

/// Every problem found in one file. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file name the errors are reported against.
    pub source_name: String,
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    /// One line per problem: `file:line:column: [route #N (/path): ]message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{e}", self.source_name)?;
        }
        Ok(())
    }
}
