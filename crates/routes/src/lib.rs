//! Switchyard's routing model, with no I/O: the `routes.yaml` schema
//! ([`schema`]), its compilation into an immutable [`Table`] ([`compile`]),
//! and matching a request to a route ([`Table::lookup`]).
//!
//! Compiling is validating: a file that compiles serves. [`load`] is the one
//! entry point the proxy, `switchyard check` and every reload share, so they
//! can never disagree about what is valid ([`load_bytes`] is the same for a
//! file's bytes, checking they are UTF-8 first). A file that is hostile
//! rather than wrong, nested past [`MAX_DEPTH`] or with more than
//! [`MAX_NODES`] values, is refused before anything is built from it, and
//! at most [`MAX_REPORTED_ERRORS`] errors are kept for any file.
//!
//! ```
//! let table = switchyard_routes::load("routes.yaml", "routes:\n  - path: /app1\n    upstream: 127.0.0.1:3000\n").unwrap();
//! let route = table.lookup(Some("example.com"), "/app1/x").unwrap();
//! assert_eq!(route.path, "/app1");
//! assert!(table.lookup(None, "/app10").is_none());
//! ```

mod compile;
mod error;
mod parse;
mod path;
mod prescan;
pub mod schema;
mod table;
mod values;

pub use compile::compile;
pub use error::{ConfigError, ConfigErrors, Location, Problem, RouteLabel, MAX_REPORTED_ERRORS};
pub use parse::parse;
pub use path::{canonical_route_path, normalize_path, PathError};
pub use prescan::{MAX_DEPTH, MAX_NODES};
pub use table::{host_key, Entry, Route, Table, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT};
pub use values::{format_duration, parse_duration, split_host_port, Upstream, UpstreamHost};

/// Parses and compiles the text of a routes file. `source_name` (usually the
/// file's path) is what error lines start with. A leading byte-order mark
/// is skipped, as by [`parse`].
pub fn load(source_name: &str, text: &str) -> Result<Table, ConfigErrors> {
    let result = match parse::parse_lenient(text) {
        (Some(raw), errors) => compile::compile_with(&raw, errors),
        (None, errors) => Err(errors),
    };
    result.map_err(|errors| {
        let (errors, omitted) = errors.finish();
        ConfigErrors {
            source_name: source_name.to_owned(),
            errors,
            omitted,
        }
    })
}

/// [`load`] for a file's raw bytes, which must be UTF-8 (after an optional
/// byte-order mark). Bytes that are not are refused at their line and
/// column, rather than replaced and then misreported as a stray character.
pub fn load_bytes(source_name: &str, bytes: &[u8]) -> Result<Table, ConfigErrors> {
    // Skipped before checking, so that columns on line 1 do not count it.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => load(source_name, text),
        Err(e) => Err(ConfigErrors {
            source_name: source_name.to_owned(),
            errors: vec![utf8_error(bytes, e.valid_up_to())],
            omitted: 0,
        }),
    }
}

/// Where the first invalid byte is: lines end at `\n`, and the column counts
/// characters of the (valid) line before it, from 1, as editors do.
fn utf8_error(bytes: &[u8], valid_up_to: usize) -> ConfigError {
    let valid = bytes
        .get(..valid_up_to)
        .and_then(|prefix| std::str::from_utf8(prefix).ok())
        .unwrap_or_default();
    let (line, line_start) = match valid.rfind('\n') {
        Some(i) => (valid.matches('\n').count() + 1, i + 1),
        None => (1, 0),
    };
    let column = valid.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    ConfigError {
        location: Some(Location { line, column }),
        route: None,
        problem: Problem::InvalidUtf8 {
            byte: bytes.get(valid_up_to).copied().unwrap_or_default(),
        },
    }
}

#[cfg(test)]
mod tests;
