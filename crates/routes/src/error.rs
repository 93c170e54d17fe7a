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
    /// Lists and mappings nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH).
    /// Building and reading a tree is recursive, so a file nested thousands
    /// deep would overflow the stack; it is refused before any is built.
    #[error(
        "lists and mappings nest more than {limit} levels deep here; a routes file needs 4, so check the indentation and brackets"
    )]
    TooDeep {
        /// The deepest nesting allowed.
        limit: usize,
    },
    /// More YAML nodes than [`MAX_NODES`](crate::MAX_NODES), which no routes
    /// file of up to 1 MiB has; refused before they are built, since each
    /// costs memory.
    #[error(
        "more than {limit} YAML values (keys, values, lists, mappings) by here; that is far beyond any real routes file, so check what generated it"
    )]
    TooManyNodes {
        /// The most nodes allowed.
        limit: usize,
    },
    /// A second YAML document (after `---`, or after `...`); it would
    /// otherwise be ignored.
    #[error(
        "a second YAML document starts here; a routes file is one document, so delete from here to the end or merge it into the first"
    )]
    SecondDocument,
    /// Bytes that are not UTF-8.
    #[error("the file is not valid UTF-8 here (byte 0x{byte:02x}); save it as UTF-8")]
    InvalidUtf8 {
        /// The first byte that is not part of valid UTF-8.
        byte: u8,
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

/// At most this many errors are kept for one file; the rest are counted in
/// [`ConfigErrors::omitted`]. Twenty fill a terminal and show the pattern,
/// and a hostile file with a million bad entries then costs twenty errors'
/// memory, not a million.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// Problems found in one file: the first [`MAX_REPORTED_ERRORS`] in file
/// order, and how many more there were. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file name the errors are reported against.
    pub source_name: String,
    /// The problems, in file order; at most [`MAX_REPORTED_ERRORS`].
    pub errors: Vec<ConfigError>,
    /// How many further problems were found but not kept.
    pub omitted: usize,
}

impl ConfigErrors {
    /// How many problems were found: those kept plus those omitted.
    pub fn total(&self) -> usize {
        self.errors.len() + self.omitted
    }
}

impl fmt::Display for ConfigErrors {
    /// One line per problem: `file:line:column: [route #N (/path): ]message`,
    /// then `file: … and K more errors` when some were omitted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{e}", self.source_name)?;
        }
        if self.omitted > 0 {
            if !self.errors.is_empty() {
                writeln!(f)?;
            }
            let s = if self.omitted == 1 { "" } else { "s" };
            write!(
                f,
                "{}: … and {} more error{s}",
                self.source_name, self.omitted
            )?;
        }
        Ok(())
    }
}

/// Collects errors as parsing and compiling find them, keeping only the
/// [`MAX_REPORTED_ERRORS`] that come first in the file and counting the
/// rest, so that memory stays bounded however many there are. Errors are
/// found out of file order (parsing finds schema errors before compiling
/// finds the others), so "first" is judged by location, not arrival.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    /// `(arrival, error)`; arrival breaks ties between equal locations so
    /// the result is what a stable sort of every error would start with.
    kept: Vec<(usize, ConfigError)>,
    /// How many errors have been pushed in all.
    found: usize,
}

impl Errors {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A collection of one error.
    pub(crate) fn one(error: ConfigError) -> Self {
        let mut errors = Self::new();
        errors.push(error);
        errors
    }

    pub(crate) fn push(&mut self, error: ConfigError) {
        let arrival = self.found;
        self.found += 1;
        if self.kept.len() < MAX_REPORTED_ERRORS {
            self.kept.push((arrival, error));
            return;
        }
        // Full: the new error replaces the last-placed kept one if it comes
        // before it in the file.
        let last = self
            .kept
            .iter_mut()
            .max_by_key(|(arrival, e)| (order_key(e), *arrival));
        if let Some(last) = last {
            if (order_key(&error), arrival) < (order_key(&last.1), last.0) {
                *last = (arrival, error);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.found == 0
    }

    /// The kept errors in file order, and how many were dropped.
    pub(crate) fn finish(mut self) -> (Vec<ConfigError>, usize) {
        self.kept
            .sort_by_key(|(arrival, e)| (order_key(e), *arrival));
        let omitted = self.found.saturating_sub(self.kept.len());
        (self.kept.into_iter().map(|(_, e)| e).collect(), omitted)
    }
}

/// File order; whole-file problems (no location) first.
fn order_key(e: &ConfigError) -> Location {
    e.location.unwrap_or(Location { line: 0, column: 0 })
}
