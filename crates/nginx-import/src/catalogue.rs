//! The directive catalogue: which nginx directives are ignored and why,
//! which proxy headers Switchyard already sends, and the one-line reason
//! each refused directive or `server` parameter has no equivalent.
//! Translation decides *where* a directive may appear; this says *what it
//! is*.

use crate::syntax::Directive;

/// Settings nginx ignores in the output comment, grouped by why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ignored {
    /// Worker processes, `events`, `user`, `pid`, …
    Process,
    /// Connection, buffer and socket tuning.
    Tuning,
    /// MIME types.
    Files,
    /// nginx's own logs.
    Logging,
}

impl Ignored {
    /// The reason the output comment gives.
    pub(crate) fn why(self) -> &'static str {
        match self {
            Ignored::Process => {
                "nginx process settings; Switchyard's are its own command-line flags (--threads, ...)"
            }
            Ignored::Tuning => {
                "connection, buffer and socket tuning, which changes neither where a request goes nor what it receives"
            }
            Ignored::Files => {
                "MIME types for files nginx serves itself; Switchyard serves no files and passes the upstream's Content-Type"
            }
            Ignored::Logging => "nginx's logs; Switchyard logs to stderr (--access-log, --log-format)",
        }
    }
}

/// Whether `proxy_set_header NAME VALUE` (`name` lowercased) sends what
/// Switchyard sends anyway (docs/configuration.md, "What the upstream
/// receives"). `$host`
/// drops a port that Switchyard keeps; an upstream that sees the client's
/// Host as sent is the more faithful side of that difference.
pub(crate) fn header_is_covered(name: &str, value: &str) -> bool {
    match name {
        "host" => matches!(value, "$host" | "$http_host"),
        "x-real-ip" => value == "$remote_addr",
        "x-forwarded-for" => value == "$proxy_add_x_forwarded_for",
        // Switchyard's listener is plain HTTP, so $scheme is `http`
        // there too; a TLS listener is refused separately.
        "x-forwarded-proto" => value == "$scheme",
        "upgrade" => value == "$http_upgrade",
        // The WebSocket idiom, and `""` (keep-alive to the upstream):
        // Switchyard manages the upstream connection and passes upgrades.
        "connection" => {
            value.eq_ignore_ascii_case("upgrade")
                || value == "$connection_upgrade"
                || value.is_empty()
        }
        _ => false,
    }
}

/// Main-context settings of the nginx process itself.
pub(crate) fn is_process_setting(name: &str) -> bool {
    name.starts_with("worker_")
        || matches!(
            name,
            "user"
                | "pid"
                | "daemon"
                | "master_process"
                | "pcre_jit"
                | "timer_resolution"
                | "lock_file"
                | "working_directory"
                | "env"
                | "load_module"
                | "thread_pool"
                | "debug_points"
        )
}

/// nginx's own logs, allowed at every level.
pub(crate) fn is_logging(name: &str) -> bool {
    matches!(
        name,
        "access_log"
            | "error_log"
            | "log_format"
            | "log_not_found"
            | "log_subrequest"
            | "open_log_file_cache"
    )
}

/// Connection, buffer and socket tuning, allowed at http and server level:
/// it changes neither where a request goes nor what it receives.
pub(crate) fn is_tuning(d: &Directive) -> bool {
    let name = d.name.as_str();
    name.ends_with("_hash_max_size")
        || name.ends_with("_hash_bucket_size")
        || matches!(
            name,
            "sendfile"
                | "sendfile_max_chunk"
                | "tcp_nopush"
                | "tcp_nodelay"
                | "keepalive_timeout"
                | "keepalive_requests"
                | "keepalive_time"
                | "keepalive_disable"
                | "reset_timedout_connection"
                | "client_header_timeout"
                | "client_body_timeout"
                | "send_timeout"
                | "client_body_temp_path"
                | "proxy_temp_path"
                | "proxy_buffer_size"
                | "proxy_buffers"
                | "proxy_busy_buffers_size"
                | "server_tokens"
                | "resolver"
                | "resolver_timeout"
        )
        // No limit is what Switchyard has too; any other limit is refused.
        || (name == "client_max_body_size" && d.args == ["0"])
}

/// Why a directive has no Switchyard equivalent, in one line.
pub(crate) fn refusal(name: &str) -> &'static str {
    match name {
        "rewrite" => "it rewrites the request URI; Switchyard forwards the path as it is, or with the route's prefix stripped",
        "return" => "nginx answers the request itself; Switchyard only proxies (and answers /health)",
        "if" | "set" => "conditional or computed configuration; Switchyard has none",
        "add_header" | "add_trailer" | "more_set_headers" | "expires" | "proxy_hide_header"
        | "proxy_pass_header" | "proxy_ignore_headers" | "proxy_cookie_domain" | "proxy_cookie_path" => {
            "it changes the response headers; Switchyard passes the upstream's unchanged"
        }
        "root" | "alias" | "try_files" | "index" | "autoindex" => {
            "it serves files from disk; Switchyard only proxies"
        }
        "error_page" | "proxy_intercept_errors" => {
            "it replaces error answers with nginx's own; Switchyard passes the upstream's answer"
        }
        "auth_basic" | "auth_basic_user_file" | "auth_request" | "allow" | "deny" | "satisfy" => {
            "access control; Switchyard has none, so the route would be open to everyone"
        }
        "client_max_body_size" => {
            "Switchyard sets no limit on request bodies, so larger ones would pass"
        }
        "sub_filter" | "sub_filter_once" | "sub_filter_types" => {
            "it rewrites response bodies; Switchyard passes them unchanged"
        }
        "proxy_send_timeout" => "Switchyard has no send timeout setting, only connect_timeout and read_timeout",
        "proxy_http_version" => "Switchyard speaks HTTP/1.1 to upstreams",
        "proxy_method" | "proxy_pass_request_body" | "proxy_pass_request_headers" | "proxy_set_body" => {
            "it changes the request sent upstream; Switchyard forwards it as it came"
        }
        "include" => {
            "the included file is not read, so what it configures is unknown; paste its contents in place of the include and translate again"
        }
        "fastcgi_pass" | "uwsgi_pass" | "scgi_pass" | "grpc_pass" | "memcached_pass" => {
            "it proxies another protocol; Switchyard speaks HTTP to upstreams"
        }
        "stream" | "mail" => "Switchyard proxies HTTP only",
        "map" | "geo" | "split_clients" => "it defines variables; Switchyard has none",
        "location" => "a location outside a server block",
        "real_ip_header" | "set_real_ip_from" | "real_ip_recursive" => {
            "Switchyard's equivalent is the --trusted-proxies flag, set on the command line"
        }
        n if n.starts_with("limit_") => "request, connection or rate limits; Switchyard has none",
        n if n.starts_with("ssl") || n == "http2" || n == "http3" || n == "quic" => {
            "TLS or HTTP/2 on the listener; Switchyard listens in plain HTTP/1.1 (TLS ends at the ingress)"
        }
        n if n.starts_with("proxy_cache") || n.starts_with("proxy_store") => {
            "response caching; Switchyard does not cache"
        }
        n if n.starts_with("proxy_next_upstream") => {
            "nginx's retry policy; Switchyard tries the next server only when connecting fails"
        }
        n if n.starts_with("proxy_ssl") => "TLS to the upstream; Switchyard's upstreams are plain HTTP",
        n if n.starts_with("gzip") => "it compresses responses; Switchyard passes them as the upstream sent them",
        _ => "it changes how nginx handles requests, and Switchyard has no equivalent",
    }
}

/// Why an upstream `server` parameter has no Switchyard equivalent.
pub(crate) fn server_param_refusal(param: &str) -> &'static str {
    let name = param.split('=').next().unwrap_or(param);
    match name {
        "weight" => "Switchyard's round robin gives every server an equal share",
        "backup" => "Switchyard has no backup servers, so this one would take traffic all the time",
        "down" => "Switchyard would send traffic to it; remove the line to leave the server out",
        "max_fails" | "fail_timeout" => {
            "Switchyard never marks a server down; each request tries the next server when connecting fails"
        }
        "max_conns" => "Switchyard has no per-server connection limit",
        _ => "it has no equivalent in Switchyard",
    }
}
