//! Switchyard's routing model, with no I/O: the `routes.yaml` schema
//! ([`schema`]), its compilation into an immutable [`Table`] ([`compile`]),
//! and matching a request to a route ([`Table::lookup`]).
//!
//! Compiling is validating: a file that compiles serves. [`load`] is the one
//! entry point the proxy, `switchyard check` and every reload share, so they
//! can never disagree about what is valid.
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
pub mod schema;
mod table;
mod values;

pub use compile::compile;
pub use error::{ConfigError, ConfigErrors, Location, Problem, RouteLabel};
pub use parse::parse;
pub use path::{normalize_path, PathError};
pub use table::{host_key, Route, Table, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT};
pub use values::{parse_duration, Upstream, UpstreamHost};

/// Parses and compiles the text of a routes file. `source_name` (usually the
/// file's path) is what error lines start with.
pub fn load(source_name: &str, text: &str) -> Result<Table, ConfigErrors> {
    let result = match parse::parse_lenient(text) {
        (Some(raw), errors) => compile::compile_with(&raw, errors),
        (None, errors) => Err(errors),
    };
    result.map_err(|errors| ConfigErrors {
        source_name: source_name.to_owned(),
        errors,
    })
}

#[cfg(test)]
mod tests;
