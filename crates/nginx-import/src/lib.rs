//! The nginx importer behind `switchyard import-nginx FILE`: translates the
//! nginx.conf of an nginx "dev proxy" pod into a routes.yaml, so a
//! migration starts from the operator's real configuration rather than a
//! retyped copy of it. No I/O: [`import`] takes the file's text and returns
//! the routes.yaml and what could not be translated; the command reads the
//! file, prints, and picks the exit status.
//!
//! It works in stages, one module each:
//! 1. `lex` — text into words and `;` `{` `}`, as `ngx_conf_read_token` reads them;
//! 2. `syntax` — tokens into the tree of directives, each with its line;
//! 3. `translate` — directives into routes, as nginx would route a request,
//!    refusing what Switchyard cannot do the same way (`catalogue` says
//!    what each directive is and why it is ignored or refused);
//! 4. `emit` — the routes and notes written out as routes.yaml text.
//!
//! ```
//! let conf = "server {\n  location /app1 {\n    proxy_pass http://192.168.2.50:3000;\n    proxy_set_header Host $host;\n  }\n}\n";
//! let t = switchyard_nginx_import::import("nginx.conf", conf).unwrap();
//! assert!(t.problems.is_empty());
//! assert_eq!(t.routes, 1);
//! assert!(t.yaml.contains("  - path: /app1\n    upstream: 192.168.2.50:3000\n"));
//! ```
//!
//! **Translated:**
//! - `upstream NAME { server HOST[:PORT]; … }` → the route's `upstream`
//!   list, used round robin as nginx does by default. A server without a
//!   port is `HOST:80`, nginx's default.
//! - prefix locations (`location /p`, `location ^~ /p`) whose `proxy_pass`
//!   is `http://NAME` (an upstream block) or `http://HOST[:PORT]` → one route
//!   each. A URI on `proxy_pass` that equals the location changes nothing; a
//!   `/` on a location that ends in `/` (`location /p/ { proxy_pass
//!   http://x/; }`) is nginx's way of stripping the prefix and becomes
//!   `strip_prefix: true`. Every other URI is refused. A location whose URI
//!   ends in `/` (other than `location /`) also gets
//!   `redirect_bare_prefix: true`: nginx answers its bare prefix (`/p` for
//!   `location /p/`) with a 301 to `/p/`, and Switchyard then answers it
//!   with a 308 to the same place, which a note in the output says.
//! - `proxy_connect_timeout` / `proxy_read_timeout`, inherited from `http`
//!   and `server` as nginx inherits them → `connect_timeout` / `read_timeout`.
//! - several `server` blocks: the default server's routes match any host,
//!   the others' get `host:` for each exact `server_name` — but only when
//!   Switchyard's longest-prefix-then-host matching picks the same location
//!   nginx's host-then-prefix selection would.
//!
//! **Accepted without a route, because Switchyard already behaves so:** the
//! usual proxy headers (`Host $host`, `X-Real-IP $remote_addr`,
//! `X-Forwarded-For $proxy_add_x_forwarded_for`, `X-Forwarded-Proto
//! $scheme`, the WebSocket `Upgrade`/`Connection` pair and its `map`),
//! `proxy_http_version 1.1`, `proxy_buffering`, `proxy_redirect off|default`,
//! `proxy_cache_bypass $http_upgrade`, and `location /health { return 200 …; }`
//! (Switchyard answers `/health` itself). Settings that do not decide where a
//! request goes or what it receives — worker processes, `events`, logging,
//! socket and buffer tuning, MIME types, upstream `keepalive` — are ignored
//! with a comment in the output, so nothing disappears unseen.
//!
//! **Refused, with the line and a reason:** everything else that changes
//! what a client or an upstream sees: regex, exact and named locations,
//! nested locations, `rewrite`, `return`, `if`, other headers, files,
//! access control, limits, caching, TLS listeners, `https://` or variable
//! upstreams, weighted, backup or health-checked servers, and `include`
//! (the included file is not read, so what it says is unknown). A
//! translation that quietly behaved differently would be worse than none.
//! What did translate is still in the routes.yaml, so the operator sees how
//! far the file got, and the refusals are in [`Translation::problems`]
//! (the command prints both, and exits 1).

mod catalogue;
mod emit;
mod error;
mod lex;
mod syntax;
#[cfg(test)]
mod testing;
mod translate;

pub use error::{ImportError, SyntaxError};
pub use translate::{Problem, Translation};

/// Translates the text of an nginx.conf into a routes.yaml. `source_name`
/// (usually the path given on the command line) is what the comments in
/// the output cite.
///
/// Text that is not nginx syntax is an [`ImportError::Syntax`]. Anything
/// else translates: what cannot be translated faithfully is listed in
/// [`Translation::problems`], and the routes.yaml holds what did. That
/// routes.yaml always passes [`switchyard_routes::load`] — the command's
/// contract is that what it prints passes `switchyard check` — and
/// [`ImportError::Unloadable`] reports the bug if it ever does not.
pub fn import(source_name: &str, text: &str) -> Result<Translation, ImportError> {
    let directives = syntax::parse(text)?;
    let t = translate::translate(&directives, source_name);
    // Each route was checked alone while translating; this checks the
    // whole file.
    switchyard_routes::load("(generated routes.yaml)", &t.yaml).map_err(ImportError::Unloadable)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{table, tr, OPERATOR};

    /// Everything printed passes the real loader, whatever was refused.
    #[test]
    fn output_always_loads() {
        for conf in [
            OPERATOR,
            "",
            "http { server { location ~ x { } } }",
            "server { location /a { proxy_pass http://[::1]:8080; proxy_set_header Host $host; } }",
        ] {
            let t = tr(conf);
            table(&t);
        }
    }

    /// Text that is not nginx syntax is refused whole, at its line.
    #[test]
    fn syntax_errors_are_not_translated() {
        let e = import("nginx.conf", "http {\n  server {\n").unwrap_err();
        assert!(
            matches!(&e, ImportError::Syntax(SyntaxError { line: 2, .. })),
            "{e:?}"
        );
        assert_eq!(import("nginx.conf", OPERATOR).unwrap(), tr(OPERATOR));
    }
}
