//! Translation: nginx directives into routes, following nginx's own rules
//! for which server and location a request reaches and what each level
//! inherits, and refusing — with the line and a reason — whatever would
//! make Switchyard behave differently. What each directive *is* lives in
//! [`crate::catalogue`]; this decides what it means where it is written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use switchyard_routes::{canonical_route_path, format_duration, split_host_port};

use crate::catalogue::{
    header_is_covered, is_logging, is_process_setting, is_tuning, refusal, server_param_refusal,
    Ignored,
};
use crate::emit::{self, join, Document, Item, Route};
use crate::syntax::Directive;

/// Something in the nginx.conf that cannot be translated faithfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line in the nginx.conf.
    pub line: usize,
    /// What it is and why it cannot be translated.
    pub message: String,
}

/// The outcome of [`crate::import`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// The routes.yaml: every route that translated completely.
    pub yaml: String,
    /// What could not be translated, in file order. Empty means the yaml is
    /// a complete equivalent.
    pub problems: Vec<Problem>,
    /// Number of routes in `yaml`.
    pub routes: usize,
}

/// An inheritable setting: as in nginx, a `location` takes its `server`'s,
/// which takes its `http`'s, unless it sets its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Setting {
    #[default]
    Unset,
    /// The routes.yaml form, e.g. `2s`.
    Value(String),
    /// Set to something untranslatable (reported where it is written).
    Invalid,
}

#[derive(Debug, Clone, Default)]
struct Inherited {
    /// Whether the `proxy_set_header` list in force sets `Host`. nginx
    /// inherits the whole list from the nearest level that has any
    /// `proxy_set_header`; `None` means no level has one.
    sets_host: Option<bool>,
    connect_timeout: Setting,
    read_timeout: Setting,
}

impl Inherited {
    /// The settings in force inside `block`, which inherits `self`. nginx
    /// applies a level's settings wherever they are written in the block, so
    /// the whole block is looked at before anything in it is translated.
    fn enter(&self, block: &[Directive]) -> Inherited {
        let mut inh = self.clone();
        let headers: Vec<&Directive> = block
            .iter()
            .filter(|d| d.name == "proxy_set_header")
            .collect();
        if !headers.is_empty() {
            inh.sets_host = Some(headers.iter().any(|d| {
                d.args
                    .first()
                    .is_some_and(|n| n.eq_ignore_ascii_case("host"))
            }));
        }
        for d in block {
            let setting = || match d.args.as_slice() {
                [v] => nginx_duration(v).map_or(Setting::Invalid, Setting::Value),
                _ => Setting::Invalid,
            };
            match d.name.as_str() {
                "proxy_connect_timeout" => inh.connect_timeout = setting(),
                "proxy_read_timeout" => inh.read_timeout = setting(),
                _ => {}
            }
        }
        inh
    }
}

#[derive(Debug)]
struct UpstreamBlock {
    line: usize,
    name: String,
    servers: Vec<String>,
    complete: bool,
    used: bool,
}

/// A prefix location on its way to becoming one route per host.
#[derive(Debug)]
struct Candidate {
    line: usize,
    /// `location /app1`, as written.
    label: String,
    /// The location's URI as written.
    prefix: String,
    upstream: Vec<String>,
    /// `upstream app1 at line 5`, when proxy_pass named an upstream block.
    via: Option<String>,
    strip_prefix: bool,
    /// nginx redirects the bare prefix (`/p` to `/p/`) of this location.
    redirect_bare_prefix: bool,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    notes: Vec<String>,
    /// False when anything about it was refused: it is then left out.
    ok: bool,
    /// False for regex, exact and named locations, which have no prefix.
    is_prefix: bool,
}

impl Candidate {
    fn new(line: usize, label: String, prefix: &str) -> Candidate {
        Candidate {
            line,
            label,
            prefix: prefix.to_owned(),
            upstream: Vec::new(),
            via: None,
            strip_prefix: false,
            redirect_bare_prefix: false,
            connect_timeout: None,
            read_timeout: None,
            notes: Vec::new(),
            ok: true,
            is_prefix: true,
        }
    }

    /// A location that is not a prefix location: listed as not translated.
    fn refused(line: usize, label: String) -> Candidate {
        Candidate {
            ok: false,
            is_prefix: false,
            ..Candidate::new(line, label, "")
        }
    }
}

#[derive(Debug, Default)]
struct Server {
    line: usize,
    names: Vec<String>,
    /// Line of the first `server_name`.
    names_line: Option<usize>,
    ports: Vec<u16>,
    default: bool,
    candidates: Vec<Candidate>,
    /// Hosts its routes get; `[None]` for any host. Set by `finish_servers`.
    hosts: Vec<Option<String>>,
}

struct Translator<'a> {
    source: &'a str,
    problems: Vec<Problem>,
    notes: Vec<(usize, String)>,
    ignored: BTreeMap<Ignored, Vec<(String, usize)>>,
    upstreams: Vec<UpstreamBlock>,
    servers: Vec<Server>,
    http_line: Option<usize>,
}

/// Translates parsed nginx configuration into a routes.yaml. `source_name`
/// (usually the path given on the command line) is what comments cite.
pub(crate) fn translate(directives: &[Directive], source_name: &str) -> Translation {
    let mut t = Translator {
        source: source_name,
        problems: Vec::new(),
        notes: Vec::new(),
        ignored: BTreeMap::new(),
        upstreams: Vec::new(),
        servers: Vec::new(),
        http_line: None,
    };
    // Upstream blocks first: nginx resolves `proxy_pass http://NAME` against
    // every upstream in the file, wherever it is written.
    for d in directives {
        match d.name.as_str() {
            "upstream" => t.upstream(d),
            "http" => {
                for u in d.block().iter().filter(|u| u.name == "upstream") {
                    t.upstream(u);
                }
            }
            _ => {}
        }
    }
    // The top level is read as main and http context at once, so that a
    // conf.d snippet (bare `upstream` and `server` blocks) translates too.
    t.http_block(directives, &Inherited::default(), true);
    t.finish_servers();
    t.render()
}

impl Translator<'_> {
    fn problem(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            message: message.into(),
        });
    }

    fn note(&mut self, line: usize, message: impl Into<String>) {
        self.notes.push((line, message.into()));
    }

    fn ignore(&mut self, d: &Directive, why: Ignored) {
        self.ignore_as(d.name.clone(), d.line, why);
    }

    fn ignore_as(&mut self, what: String, line: usize, why: Ignored) {
        self.ignored.entry(why).or_default().push((what, line));
    }

    /// Reports `d` as untranslatable, with the reason for its kind.
    fn refuse(&mut self, d: &Directive) {
        let message = format!("`{}` cannot be translated: {}", d.text(), refusal(&d.name));
        self.problem(d.line, message);
    }

    /// Reports a directive used with or without a block against its syntax,
    /// and returns whether it is well formed.
    fn shape(&mut self, d: &Directive, block: bool, args: std::ops::RangeInclusive<usize>) -> bool {
        if d.block.is_some() != block {
            let what = if block { "needs" } else { "takes no" };
            self.problem(d.line, format!("`{}`: {} {what} block", d.text(), d.name));
            return false;
        }
        if !args.contains(&d.args.len()) {
            self.problem(
                d.line,
                format!("`{}`: wrong number of arguments for {}", d.text(), d.name),
            );
            return false;
        }
        true
    }

    fn http_block(&mut self, block: &[Directive], parent: &Inherited, top: bool) {
        let inh = parent.enter(block);
        for d in block {
            let name = d.name.as_str();
            match name {
                "http" if top => {
                    if let Some(first) = self.http_line {
                        self.problem(
                            d.line,
                            format!("a second http block (the first is at line {first})"),
                        );
                    } else if self.shape(d, true, 0..=0) {
                        self.http_line = Some(d.line);
                        self.http_block(d.block(), &inh, false);
                    }
                }
                "events" if top => self.ignore(d, Ignored::Process),
                _ if top && is_process_setting(name) => self.ignore(d, Ignored::Process),
                "upstream" => {} // read before everything else
                "server" => {
                    if self.shape(d, true, 0..=0) {
                        self.server(d, &inh);
                    }
                }
                "map" => self.map(d),
                "types" | "default_type" => self.ignore(d, Ignored::Files),
                _ if is_tuning(d) => self.ignore(d, Ignored::Tuning),
                _ if self.common(d) => {}
                _ => self.refuse(d),
            }
        }
    }

    /// Directives nginx allows in `http`, `server` and `location` alike.
    /// Returns false when `d` is not one of them.
    fn common(&mut self, d: &Directive) -> bool {
        let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
        match (d.name.as_str(), args.as_slice()) {
            ("include", _) => self.include(d),
            ("proxy_set_header", _) => self.proxy_set_header(d),
            // Switchyard speaks HTTP/1.1 to upstreams and keeps connections.
            ("proxy_http_version", ["1.1"]) => {}
            // Buffering changes when bytes reach the client, never which
            // bytes; Switchyard streams.
            ("proxy_buffering", ["on" | "off"]) => {}
            // Only meaningful with a cache, and Switchyard has none (a
            // `proxy_cache` itself is refused).
            ("proxy_cache_bypass", ["$http_upgrade"]) => {}
            // Switchyard passes Location headers unchanged. `default` only
            // rewrites `http://<proxy_pass host>/…`, which an upstream that
            // is sent the client's Host does not produce.
            ("proxy_redirect", ["off" | "default"]) => {}
            ("proxy_connect_timeout" | "proxy_read_timeout", _) => {
                if self.shape(d, false, 1..=1) {
                    if let Err(why) = nginx_duration(&d.args[0]) {
                        self.problem(d.line, format!("`{}`: {why}", d.text()));
                    }
                }
            }
            (name, _) if is_logging(name) => self.ignore(d, Ignored::Logging),
            _ => return false,
        }
        true
    }

    fn include(&mut self, d: &Directive) {
        // The stock nginx.conf includes mime.types: a `types {}` map used
        // only for files nginx serves itself. Any other file could hold
        // anything, and it is not read.
        if let [file] = d.args.as_slice() {
            if file.rsplit('/').next() == Some("mime.types") {
                self.ignore_as("include mime.types".into(), d.line, Ignored::Files);
                return;
            }
        }
        self.refuse(d);
    }

    fn proxy_set_header(&mut self, d: &Directive) {
        if !self.shape(d, false, 2..=2) {
            return;
        }
        let (name, value) = (d.args[0].to_ascii_lowercase(), d.args[1].as_str());
        let covered = header_is_covered(&name, value);
        if !covered {
            self.problem(
                d.line,
                format!(
                    "`{}` cannot be translated: Switchyard sends the upstream only Host (the client's), X-Real-IP, X-Forwarded-For, X-Forwarded-Proto and the Upgrade pair",
                    d.text()
                ),
            );
        }
    }

    /// Accepts only the WebSocket idiom
    /// `map $http_upgrade $connection_upgrade { default upgrade; '' close; }`,
    /// which exists for `proxy_set_header Connection $connection_upgrade`.
    fn map(&mut self, d: &Directive) {
        let idiom = d.args == ["$http_upgrade", "$connection_upgrade"] && {
            let mut entries: Vec<(&str, Vec<&str>)> = d
                .block()
                .iter()
                .map(|e| (e.name.as_str(), e.args.iter().map(String::as_str).collect()))
                .collect();
            entries.sort();
            entries == [("", vec!["close"]), ("default", vec!["upgrade"])]
        };
        if !idiom {
            self.refuse(d);
        }
    }

    fn upstream(&mut self, d: &Directive) {
        if !self.shape(d, true, 1..=1) {
            return;
        }
        let name = d.args[0].clone();
        if let Some(first) = self.find_upstream(&name).map(|u| u.line) {
            self.problem(
                d.line,
                format!("upstream {name} is defined twice (first at line {first})"),
            );
            return;
        }
        let mut u = UpstreamBlock {
            line: d.line,
            name: name.clone(),
            servers: Vec::new(),
            complete: true,
            used: false,
        };
        let before = self.problems.len();
        for s in d.block() {
            match s.name.as_str() {
                "server" => {
                    if !self.shape(s, false, 1..=usize::MAX) {
                        continue;
                    }
                    let addr = &s.args[0];
                    if addr.starts_with("unix:") {
                        self.problem(
                            s.line,
                            format!("upstream {name}: `{}` cannot be translated: Switchyard connects to upstreams over TCP only", s.text()),
                        );
                    }
                    for param in &s.args[1..] {
                        let why = server_param_refusal(param);
                        self.problem(
                            s.line,
                            format!("upstream {name}: `{}`: `{param}` cannot be translated: {why}", s.text()),
                        );
                    }
                    u.servers.push(with_default_port(addr));
                }
                "keepalive" | "keepalive_requests" | "keepalive_time" | "keepalive_timeout" => {
                    self.note(
                        s.line,
                        format!(
                            "upstream {name}: `{}` ignored: a connection-pool setting, and Switchyard always keeps idle upstream connections for reuse",
                            s.text()
                        ),
                    );
                }
                "zone" => self.note(
                    s.line,
                    format!(
                        "upstream {name}: `{}` ignored: it shares state between nginx worker processes, and Switchyard is one process",
                        s.text()
                    ),
                ),
                "include" => self.include(s),
                "least_conn" | "ip_hash" | "hash" | "random" | "least_time" | "sticky" | "ntlm" => {
                    self.problem(
                        s.line,
                        format!("upstream {name}: `{}` cannot be translated: Switchyard balances round robin only", s.text()),
                    );
                }
                _ => self.refuse(s),
            }
        }
        if self.problems.len() > before {
            u.complete = false;
        } else if u.servers.is_empty() {
            self.problem(d.line, format!("upstream {name} has no servers"));
            u.complete = false;
        }
        self.upstreams.push(u);
    }

    fn find_upstream(&self, name: &str) -> Option<&UpstreamBlock> {
        // nginx compares upstream names case-insensitively.
        self.upstreams
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))
    }

    fn server(&mut self, d: &Directive, parent: &Inherited) {
        let inh = parent.enter(d.block());
        let mut srv = Server {
            line: d.line,
            ..Server::default()
        };
        for c in d.block() {
            match c.name.as_str() {
                "listen" => self.listen(c, &mut srv),
                "server_name" => {
                    srv.names_line.get_or_insert(c.line);
                    srv.names.extend(c.args.iter().cloned());
                }
                "location" => self.location(c, &inh, &mut srv),
                _ if is_tuning(c) => self.ignore(c, Ignored::Tuning),
                _ if self.common(c) => {}
                _ => self.refuse(c),
            }
        }
        // nginx sends a request for exactly `/p` to this server's own
        // `location /p`, if it has one, rather than redirecting it to the
        // `location /p/` (the two are one route here, refused as such).
        let prefixes: HashSet<String> = srv
            .candidates
            .iter()
            .filter(|c| c.is_prefix)
            .map(|c| c.prefix.clone())
            .collect();
        for c in &mut srv.candidates {
            let bare = c.prefix.strip_suffix('/').unwrap_or(&c.prefix);
            if c.redirect_bare_prefix && prefixes.contains(bare) {
                c.redirect_bare_prefix = false;
            }
        }
        if srv.ports.is_empty() {
            // nginx's default: `listen *:80` (when started as root).
            srv.ports.push(80);
        }
        srv.ports.sort_unstable();
        srv.ports.dedup();
        self.servers.push(srv);
    }

    fn listen(&mut self, d: &Directive, srv: &mut Server) {
        let Some((addr, params)) = d.args.split_first() else {
            self.problem(d.line, "`listen` without an address");
            return;
        };
        if addr.starts_with("unix:") {
            self.problem(
                d.line,
                format!(
                    "`{}` cannot be translated: Switchyard listens on TCP (--listen)",
                    d.text()
                ),
            );
            return;
        }
        match listen_port(addr) {
            Some(p) => srv.ports.push(p),
            None => self.problem(d.line, format!("`{}`: cannot read the port", d.text())),
        }
        for p in params {
            match p.as_str() {
                "default_server" | "default" => srv.default = true,
                "ssl" | "http2" | "http3" | "quic" | "spdy" => self.problem(
                    d.line,
                    format!(
                        "`{}` cannot be translated: `{p}` on the listener; Switchyard listens in plain HTTP/1.1 (TLS ends at the ingress)",
                        d.text()
                    ),
                ),
                "proxy_protocol" => self.problem(
                    d.line,
                    format!(
                        "`{}` cannot be translated: Switchyard's listener does not read the PROXY protocol (client addresses come from X-Forwarded-For and --trusted-proxies)",
                        d.text()
                    ),
                ),
                // backlog=, reuseport, ipv6only=, so_keepalive=, deferred,
                // bind, fastopen=, rcvbuf=, sndbuf=, …: socket tuning.
                _ => {}
            }
        }
    }

    fn location(&mut self, d: &Directive, parent: &Inherited, srv: &mut Server) {
        if !self.shape(d, true, 1..=2) {
            return;
        }
        let label = format!("location {}", d.args.join(" "));
        let (modifier, uri) = match d.args.as_slice() {
            [m, u] => (m.as_str(), u.as_str()),
            [u] => split_modifier(u),
            _ => return,
        };
        let is_health = uri.trim_end_matches('/') == "/health";
        if is_health && matches!(modifier, "" | "^~" | "=") && health_check_body(d.block()) {
            self.health_note(d, &label);
            return;
        }
        let refused = match modifier {
            "" | "^~" => None,
            "=" => Some("an exact-match location cannot be translated: Switchyard's routes are path prefixes"),
            "~" | "~*" => Some("a regex location cannot be translated: Switchyard's routes are path prefixes"),
            "@" => Some("a named location (a target for error_page or try_files) cannot be translated: Switchyard has none"),
            _ => Some("unknown location modifier"),
        };
        if let Some(why) = refused {
            self.problem(d.line, format!("{label}: {why}"));
            srv.candidates.push(Candidate::refused(d.line, label));
            return;
        }

        let inh = parent.enter(d.block());
        let before = self.problems.len();
        let mut proxy_pass: Option<&Directive> = None;
        for c in d.block() {
            match c.name.as_str() {
                "location" => self.problem(
                    c.line,
                    format!(
                        "`{}` inside {label} (line {}) cannot be translated: Switchyard's routes are flat; write it as a location of its own",
                        c.text(),
                        d.line
                    ),
                ),
                "proxy_pass" => match proxy_pass {
                    Some(first) => {
                        let first = first.line;
                        self.problem(c.line, format!("a second proxy_pass in {label} (the first is at line {first})"));
                    }
                    None => proxy_pass = Some(c),
                },
                _ if self.common(c) => {}
                _ => self.refuse(c),
            }
        }
        let mut cand = Candidate::new(d.line, label.clone(), uri);
        match proxy_pass {
            Some(pp) => self.proxy_pass(pp, &inh, &mut cand),
            None => {
                // Another refusal in this location usually says what it does
                // instead (root, return, …); say "no proxy_pass" only alone.
                if self.problems.len() == before {
                    self.problem(
                        d.line,
                        format!("{label} has no proxy_pass, so it cannot be translated: Switchyard only proxies"),
                    );
                }
                cand.ok = false;
            }
        }
        match &inh.connect_timeout {
            Setting::Value(v) => cand.connect_timeout = Some(v.clone()),
            Setting::Invalid => cand.ok = false,
            Setting::Unset => {}
        }
        match &inh.read_timeout {
            Setting::Value(v) => cand.read_timeout = Some(v.clone()),
            Setting::Invalid => cand.ok = false,
            Setting::Unset => {}
        }
        if self.problems.len() > before {
            cand.ok = false;
        }
        srv.candidates.push(cand);
    }

    fn health_note(&mut self, d: &Directive, label: &str) {
        self.note(
            d.line,
            format!(
                "{label} left out: Switchyard answers GET /health itself (200 ok, 503 while draining), for exactly /health"
            ),
        );
    }

    fn proxy_pass(&mut self, d: &Directive, inh: &Inherited, cand: &mut Candidate) {
        if !self.shape(d, false, 1..=1) {
            cand.ok = false;
            return;
        }
        let url = d.args[0].as_str();
        let fail = |t: &mut Self, why: &str| {
            t.problem(
                d.line,
                format!("`{}` cannot be translated: {why}", d.text()),
            );
        };
        if url.contains('$') {
            return fail(self, "nginx works out the address per request from variables; Switchyard's upstreams are fixed addresses");
        }
        let lower = url.to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &url["http://".len()..]
        } else if lower.starts_with("https://") {
            return fail(
                self,
                "Switchyard's upstreams are plain HTTP, so it cannot speak TLS to this one",
            );
        } else {
            return fail(self, "expected an http:// address");
        };
        let (authority, uri) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        if authority.starts_with("unix:") {
            return fail(self, "Switchyard connects to upstreams over TCP only");
        }

        match strip_prefix(&cand.prefix, uri) {
            Ok(strip) => cand.strip_prefix = strip,
            Err(why) => return fail(self, &why),
        }
        cand.redirect_bare_prefix = redirects_bare_prefix(&cand.prefix);

        // The upstream block's name is what comes before the last `:`,
        // unless a `]` follows that `:`. Not `split_host_port`, which
        // stops a bracketed address at its first `]`: for malformed text
        // such as `[a]b:80` the two disagree on the name, and which
        // upstream block a proxy_pass names must not change.
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'));
        let host = if has_port {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        } else {
            authority
        };
        match self
            .upstreams
            .iter_mut()
            .find(|u| u.name.eq_ignore_ascii_case(host))
        {
            Some(u) if has_port => {
                let line = u.line;
                fail(
                    self,
                    &format!(
                        "it names upstream {host} (line {line}) with a port, which nginx rejects"
                    ),
                );
            }
            Some(u) => {
                u.used = true;
                cand.upstream = u.servers.clone();
                cand.via = Some(format!("upstream {} at line {}", u.name, u.line));
                if !u.complete {
                    // Its problems are reported at the upstream's lines.
                    cand.ok = false;
                }
            }
            None => cand.upstream = vec![with_default_port(authority)],
        }

        // Without `proxy_set_header Host`, nginx sends `Host: $proxy_host`
        // (the upstream's name); Switchyard always passes the client's.
        if inh.sets_host != Some(true) {
            cand.notes.push(format!(
                "nginx sent this upstream `Host: {authority}` (no proxy_set_header Host); Switchyard passes the client's Host unchanged"
            ));
        }
    }

    /// Turns servers into hosts for their routes, checking that Switchyard's
    /// matching picks what nginx picked.
    ///
    /// nginx first chooses a server by Host (a request no `server_name`
    /// matches goes to the default server), then the longest location prefix
    /// inside it. Switchyard chooses the longest prefix among all routes and
    /// uses `host` only to break a tie. The two agree when the default
    /// server's routes match any host and every path of the default server
    /// also exists in each named server: then a named server's request is
    /// never taken by a longer default-server prefix, nor by one the named
    /// server does not have.
    fn finish_servers(&mut self) {
        let count = self.servers.len();
        let Some(first) = self.servers.first() else {
            self.note(1, "no server blocks: nothing to route");
            return;
        };
        let (first_line, first_ports) = (first.line, first.ports.clone());
        let ports = join(first_ports.iter().map(u16::to_string), ", ");
        self.note(
            first_line,
            format!(
                "nginx listened on port {ports}; Switchyard listens where --listen says (default 0.0.0.0:8080), so point the Service's targetPort there"
            ),
        );
        if count == 1 {
            let names = describe_names(&self.servers[0].names);
            self.servers[0].hosts = vec![None];
            self.note(
                first_line,
                format!(
                    "server ({names}): the only server, so nginx sent it every request whatever the Host; its routes match any host"
                ),
            );
            return;
        }

        let default = self.servers.iter().position(|s| s.default).unwrap_or(0);
        let default_line = self.servers[default].line;
        let default_paths: Vec<(String, usize)> = self.servers[default]
            .candidates
            .iter()
            .filter(|c| c.is_prefix)
            .map(|c| (canonical(&c.prefix), c.line))
            .collect();
        let mut named_at: HashMap<String, usize> = HashMap::new();
        for n in &self.servers[default].names {
            named_at.insert(n.to_ascii_lowercase(), default_line);
        }
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        for (i, srv) in self.servers.iter_mut().enumerate() {
            if srv.ports != first_ports {
                problems.push((
                    srv.line,
                    format!(
                        "server listens on other ports than the server at line {first_line}: Switchyard has one listener, so their routes would all answer on it"
                    ),
                ));
            }
            if i == default {
                srv.hosts = vec![None];
                notes.push((
                    srv.line,
                    format!(
                        "server ({}): the default server, so nginx sent it every request no other server_name matched; its routes match any host",
                        describe_names(&srv.names)
                    ),
                ));
                continue;
            }
            let line = srv.names_line.unwrap_or(srv.line);
            let mut hosts = Vec::new();
            for n in &srv.names {
                if n.is_empty()
                    || n == "_"
                    || n.starts_with('~')
                    || n.starts_with('.')
                    || n.contains(['*', '$'])
                {
                    problems.push((
                        line,
                        format!(
                            "server_name {n:?} cannot be translated: Switchyard's host is one exact name (wildcards, regexes, \"\" and _ have no equivalent outside the default server)"
                        ),
                    ));
                } else if let Some(other) = named_at.get(&n.to_ascii_lowercase()) {
                    problems.push((
                        line,
                        format!("server_name {n} is also on the server at line {other}; nginx uses only the first"),
                    ));
                } else {
                    named_at.insert(n.to_ascii_lowercase(), srv.line);
                    hosts.push(Some(n.to_ascii_lowercase()));
                }
            }
            if hosts.is_empty() {
                for c in &mut srv.candidates {
                    c.ok = false;
                }
                if srv.names.is_empty() {
                    problems.push((
                        srv.line,
                        "a server without server_name that is not the default server cannot be translated: nginx gives it only requests without a Host header".into(),
                    ));
                }
            } else {
                let own: HashSet<String> = srv
                    .candidates
                    .iter()
                    .filter(|c| c.is_prefix)
                    .map(|c| canonical(&c.prefix))
                    .collect();
                for (path, at) in &default_paths {
                    if !own.contains(path) {
                        problems.push((
                            srv.line,
                            format!(
                                "server {}: Switchyard would send its requests under {path} to the default server's location at line {at} (the longest prefix wins before the host), but nginx answers them from this server, which has no location {path}; add one here or translate the servers separately",
                                join(hosts.iter().flatten().cloned(), " ")
                            ),
                        ));
                    }
                }
                notes.push((
                    srv.line,
                    format!(
                        "server ({}): its routes are limited to host {}",
                        describe_names(&srv.names),
                        join(hosts.iter().flatten().cloned(), ", ")
                    ),
                ));
            }
            srv.hosts = hosts;
        }
        for (line, m) in problems {
            self.problem(line, m);
        }
        self.notes.extend(notes);
    }

    /// Builds the routes, in file order, and writes them out.
    fn render(mut self) -> Translation {
        for u in &self.upstreams {
            if !u.used {
                self.notes.push((
                    u.line,
                    format!(
                        "upstream {} is used by no translated location; left out",
                        u.name
                    ),
                ));
            }
        }

        let mut items = Vec::new();
        // (host, canonical path) → (line, label) of the first route.
        let mut seen: HashMap<(Option<String>, String), (usize, String)> = HashMap::new();
        let servers = std::mem::take(&mut self.servers);
        for srv in &servers {
            for c in &srv.candidates {
                if !c.ok {
                    items.push(Item::Skipped(format!(
                        "not translated: {}:{} {} (see the errors)",
                        self.source, c.line, c.label
                    )));
                    continue;
                }
                let mut translated = false;
                for host in &srv.hosts {
                    if let Some(route) = self.route(c, host.as_ref(), &mut seen) {
                        items.push(Item::Route(route));
                        translated = true;
                    }
                }
                if translated && c.redirect_bare_prefix {
                    let bare = canonical(&c.prefix);
                    self.notes.push((
                        c.line,
                        format!(
                            "{}: nginx answered {bare} with a 301 redirect to {bare}/; the route has redirect_bare_prefix: true, so Switchyard redirects it too, with a 308 (which, unlike a 301, keeps a POST a POST)",
                            c.label
                        ),
                    ));
                }
            }
        }

        self.problems.sort_by_key(|p| p.line);
        self.notes.sort_by_key(|n| n.0);
        let routes = items.iter().filter(|i| matches!(i, Item::Route(_))).count();
        let yaml = emit::document(&Document {
            source: self.source,
            problems: self.problems.len(),
            notes: &self.notes,
            ignored: self
                .ignored
                .iter()
                .map(|(why, list)| (why.why(), list.as_slice()))
                .collect(),
            items: &items,
        });
        Translation {
            yaml,
            problems: self.problems,
            routes,
        }
    }

    /// The route for `c` and `host`, or `None` (with a problem reported)
    /// when Switchyard would reject it or it repeats an earlier route.
    fn route(
        &mut self,
        c: &Candidate,
        host: Option<&String>,
        seen: &mut HashMap<(Option<String>, String), (usize, String)>,
    ) -> Option<Route> {
        let mut comments = vec![format!(
            "from {}:{} {}{}{}",
            self.source,
            c.line,
            c.label,
            host.map(|h| format!(" (server_name {h})"))
                .unwrap_or_default(),
            c.via.as_ref().map(|v| format!(", {v}")).unwrap_or_default(),
        )];
        comments.extend(c.notes.iter().map(|n| format!("  {n}")));
        let route = Route {
            comments,
            path: c.prefix.clone(),
            host: host.cloned(),
            upstream: c.upstream.clone(),
            strip_prefix: c.strip_prefix,
            redirect_bare_prefix: c.redirect_bare_prefix,
            connect_timeout: c.connect_timeout.clone(),
            read_timeout: c.read_timeout.clone(),
        };
        // Each route is checked alone with the real loader, so a path or
        // address Switchyard would reject is reported at its nginx line.
        let mut text = String::from("routes:\n");
        emit::route(&route, &mut |s: &str| {
            text.push_str(s);
            text.push('\n');
        });
        let table = match switchyard_routes::load(self.source, &text) {
            Ok(table) => table,
            Err(errors) => {
                for e in errors.errors {
                    self.problem(
                        c.line,
                        format!("{} cannot be a route: {}", c.label, e.problem),
                    );
                }
                return None;
            }
        };
        let compiled = table.routes().next()?;
        let key = (compiled.host.clone(), compiled.path.clone());
        if let Some((line, label)) = seen.get(&key) {
            let on = key
                .0
                .as_ref()
                .map(|h| format!(" for host {h}"))
                .unwrap_or_default();
            self.problem(
                c.line,
                format!(
                    "{} is the same route{on} as {label} at line {line}: Switchyard matches whole segments, so both are path {}",
                    c.label, key.1
                ),
            );
            return None;
        }
        seen.insert(key, (c.line, c.label.clone()));
        Some(route)
    }
}

/// Whether the location's URI on `proxy_pass` maps to `strip_prefix`.
///
/// nginx replaces the part of the request URI that matched the location —
/// exactly the location's string — with the proxy_pass URI. Switchyard can
/// keep the path or remove the whole prefix (`/p/x` → `/x`, `/p` → `/`):
/// - no URI, or a URI equal to the location: the path is unchanged → `false`;
/// - `location /p/` with URI `/`: `/p/x` → `/x` in both → `true`. (A bare
///   `/p` is redirected to `/p/` by both: see [`redirects_bare_prefix`]);
/// - `location /p` with URI `/`: nginx sends `/p/x` as `//x` — refused, with
///   the fix, because Switchyard would send `/x`;
/// - anything else replaces the prefix with another path — refused.
fn strip_prefix(location: &str, uri: Option<&str>) -> Result<bool, String> {
    match uri {
        None => Ok(false),
        Some(u) if u == location => Ok(false),
        Some("/") if location.ends_with('/') => Ok(true),
        Some("/") => Err(format!(
            "nginx replaces exactly `{location}` with `/`, so {location}/x reaches the upstream as //x, while Switchyard's strip_prefix would send /x; if /x is what you want, write `location {location}/` and translate again"
        )),
        Some(u) => Err(format!(
            "the URI `{u}` replaces `{location}` in the path; Switchyard can keep the path or strip the prefix, nothing else"
        )),
    }
}

/// Whether nginx redirects the bare prefix of a proxying prefix location:
/// for a location whose URI ends in `/`, `proxy_pass` sets nginx's
/// `auto_redirect`, so a request for the URI without that `/` (`/p` for
/// `location /p/`) is answered `301` with `Location: /p/` (query kept)
/// instead of reaching a shorter location or none. Switchyard's route
/// path drops the `/`, so without `redirect_bare_prefix` it would forward
/// `/p` to the upstream. `location /` has no bare form.
fn redirects_bare_prefix(location: &str) -> bool {
    location.ends_with('/') && location != "/"
}

/// `location =/x`, `location ~*\.php`: nginx also accepts the modifier
/// written against the URI.
fn split_modifier(arg: &str) -> (&str, &str) {
    for m in ["^~", "~*", "=", "~", "@"] {
        if let Some(rest) = arg.strip_prefix(m) {
            // A named location keeps its `@` as its name.
            return (m, if m == "@" { arg } else { rest });
        }
    }
    ("", arg)
}

/// A location that only answers `return 200 …` (plus logging and the
/// answer's content type): the health check Switchyard provides itself.
fn health_check_body(block: &[Directive]) -> bool {
    let mut returns = 0;
    for d in block {
        let ok = match d.name.as_str() {
            "return" if d.args.first().is_some_and(|s| s == "200") && d.args.len() <= 2 => {
                returns += 1;
                true
            }
            "default_type" => true,
            "add_header" => d
                .args
                .first()
                .is_some_and(|h| h.eq_ignore_ascii_case("content-type")),
            name => is_logging(name),
        };
        if !ok {
            return false;
        }
    }
    returns == 1
}

/// A location's URI in the form Switchyard compares route paths in
/// ([`canonical_route_path`]). A URI the loader refuses (reported when its
/// route is built) is still compared, by its text without trailing `/`.
fn canonical(path: &str) -> String {
    canonical_route_path(path).unwrap_or_else(|_| match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        p => p.to_owned(),
    })
}

/// `HOST` → `HOST:80`, nginx's default port for upstream servers.
fn with_default_port(addr: &str) -> String {
    let has_port = match addr.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => addr.contains(':'),
    };
    if has_port {
        addr.to_owned()
    } else {
        format!("{addr}:80")
    }
}

/// The port of a `listen` address: `80`, `*:80`, `1.2.3.4:80`, `[::]:80`,
/// or a bare address (port 80).
fn listen_port(addr: &str) -> Option<u16> {
    if addr.bytes().all(|b| b.is_ascii_digit()) {
        return addr.parse().ok();
    }
    match split_host_port(addr) {
        // `[::` never closes its address.
        (host, _) if host.starts_with('[') && !host.ends_with(']') => None,
        (_, port) => port.map_or(Some(80), |p| p.parse().ok()),
    }
}

fn describe_names(names: &[String]) -> String {
    if names.is_empty() {
        "no server_name".to_owned()
    } else {
        format!(
            "server_name {}",
            join(
                names.iter().map(|n| if n.is_empty() {
                    "\"\"".to_owned()
                } else {
                    n.clone()
                }),
                " "
            )
        )
    }
}

/// Parses an nginx time (`30`, `500ms`, `2s`, `1m30s`, `1h`, `1d` …; a bare
/// number is seconds) into the routes.yaml form, in the largest whole unit.
fn nginx_duration(text: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("invalid time {text:?}: {why}"));
    let mut rest = text.trim();
    if rest.is_empty() {
        return bad("empty");
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return bad("expected a number");
        }
        let Ok(n) = rest[..digits].parse::<u64>() else {
            return bad("number too large");
        };
        rest = &rest[digits..];
        let (unit_ms, len): (u64, usize) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next() {
                None => (1_000, 0),
                Some('s') => (1_000, 1),
                Some('m') => (60_000, 1),
                Some('h') => (3_600_000, 1),
                Some('d') => (86_400_000, 1),
                Some('w') => (604_800_000, 1),
                Some('M') => (2_592_000_000, 1),
                Some('y') => (31_536_000_000, 1),
                Some(_) => return bad("units are ms, s, m, h, d, w, M and y"),
            }
        };
        rest = rest[len..].trim_start();
        match n.checked_mul(unit_ms).and_then(|ms| total.checked_add(ms)) {
            Some(t) => total = t,
            None => return bad("too large"),
        }
    }
    if total == 0 {
        return bad("Switchyard's timeouts must be greater than zero");
    }
    Ok(format_duration(Duration::from_millis(total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{lines, server, table, tr, OPERATOR};

    /// The operator's file translates completely: one route per prefix
    /// location, the upstream block's server as the upstream, no /health.
    #[test]
    fn operator_file_translates() {
        let t = tr(OPERATOR);
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(t.routes, 2);
        let table = table(&t);
        let r = table.lookup(None, "/app1/x").unwrap();
        assert_eq!(r.path, "/app1");
        assert_eq!(r.upstreams[0].to_string(), "192.168.2.50:3000");
        assert!(!r.strip_prefix);
        assert_eq!(
            table.lookup(None, "/app2").unwrap().upstreams[0].to_string(),
            "192.168.2.51:8080"
        );
        assert!(table.lookup(None, "/health").is_none());
        assert!(t
            .yaml
            .contains("# from nginx.conf:8 location /app1, upstream app1 at line 3\n"));
        assert!(t.yaml.contains("nginx.conf:22: location /health left out"));
        assert!(t.yaml.contains("Ignored, nginx process settings"));
        assert!(t
            .yaml
            .starts_with("# routes.yaml for Switchyard, translated from nginx.conf"));
    }

    /// An upstream block with several servers becomes a round-robin list; a
    /// server without a port gets nginx's default, 80; keepalive is noted.
    #[test]
    fn upstream_servers_become_a_list() {
        let t = tr(&format!(
            "upstream pool {{ server 10.0.0.1:8080; server web.internal; keepalive 16; }}\n{}",
            server("location /api { proxy_pass http://pool; proxy_set_header Host $host; }")
        ));
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert!(
            t.yaml
                .contains("upstream: [10.0.0.1:8080, web.internal:80]"),
            "{}",
            t.yaml
        );
        assert!(t.yaml.contains("keepalive 16` ignored"));
    }

    /// `proxy_pass http://HOST[:PORT]` without an upstream block is that
    /// address, port 80 when absent.
    #[test]
    fn direct_address() {
        let t = tr(&server(
            "location /a { proxy_pass http://10.1.1.1:3000; proxy_set_header Host $host; }\nlocation /b { proxy_pass http://svc.ns; proxy_set_header Host $host; }",
        ));
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        let table = table(&t);
        assert_eq!(
            table.lookup(None, "/a").unwrap().upstreams[0].to_string(),
            "10.1.1.1:3000"
        );
        assert_eq!(
            table.lookup(None, "/b").unwrap().upstreams[0].to_string(),
            "svc.ns:80"
        );
    }

    /// The URI on proxy_pass: none or equal to the location keeps the path;
    /// `/` on a location ending in `/` strips; anything else is refused.
    #[test]
    fn proxy_pass_uri_and_strip_prefix() {
        assert_eq!(strip_prefix("/app1", None), Ok(false));
        assert_eq!(strip_prefix("/app1", Some("/app1")), Ok(false));
        assert_eq!(strip_prefix("/app1/", Some("/app1/")), Ok(false));
        assert_eq!(strip_prefix("/", Some("/")), Ok(false));
        assert_eq!(strip_prefix("/app2/", Some("/")), Ok(true));
        assert!(strip_prefix("/app2", Some("/"))
            .unwrap_err()
            .contains("//x"));
        assert!(strip_prefix("/app2/", Some("/app2")).is_err());
        assert!(strip_prefix("/app2/", Some("/api/")).is_err());
        assert!(strip_prefix("/app2", Some("/?x=1")).is_err());

        let t = tr(&server(
            "location /app2/ { proxy_pass http://10.0.0.2:8080/; proxy_set_header Host $host; }",
        ));
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        let table = table(&t);
        let r = table.lookup(None, "/app2/x").unwrap();
        assert!(r.strip_prefix);
        assert_eq!(r.upstream_path("/app2/x"), "/x");

        let t = tr(&server(
            "location /app2 {\n proxy_pass http://10.0.0.2:8080/;\n}",
        ));
        assert_eq!(lines(&t), [5]);
        assert!(t.problems[0].message.contains("write `location /app2/`"));
    }

    /// A location ending in `/` is one whose bare prefix nginx redirects
    /// (`/app1` → `/app1/`, a 301): its route gets `redirect_bare_prefix`,
    /// and a note says Switchyard answers it with a 308. A location without
    /// the `/`, and `location /`, get neither; other settings are as before.
    #[test]
    fn a_trailing_slash_location_redirects_its_bare_prefix() {
        assert!(redirects_bare_prefix("/app1/"));
        assert!(redirects_bare_prefix("/a/b/"));
        assert!(!redirects_bare_prefix("/app1"));
        assert!(!redirects_bare_prefix("/"));

        let t = tr(&server(
            "location /app1/ { proxy_pass http://10.0.0.1:3000; proxy_set_header Host $host; }\nlocation /app2/ { proxy_pass http://10.0.0.2:8080/; proxy_set_header Host $host; }\nlocation /app3 { proxy_pass http://10.0.0.3:80; proxy_set_header Host $host; }\nlocation / { proxy_pass http://10.0.0.4:80; proxy_set_header Host $host; }",
        ));
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(t.routes, 4);
        assert!(
            t.yaml.contains(
                "  - path: /app1/\n    upstream: 10.0.0.1:3000\n    redirect_bare_prefix: true\n"
            ),
            "{}",
            t.yaml
        );
        assert!(
            t.yaml.contains("  - path: /app2/\n    upstream: 10.0.0.2:8080\n    strip_prefix: true\n    redirect_bare_prefix: true\n"),
            "{}",
            t.yaml
        );
        assert_eq!(
            t.yaml.matches("    redirect_bare_prefix: true\n").count(),
            2,
            "{}",
            t.yaml
        );
        let table = table(&t);
        let app1 = table.lookup(None, "/app1").unwrap();
        assert_eq!(
            app1.bare_prefix_redirect("/app1", Some("x=1")).as_deref(),
            Some("/app1/?x=1")
        );
        assert!(!app1.strip_prefix);
        let app2 = table.lookup(None, "/app2/x").unwrap();
        assert!(app2.redirect_bare_prefix && app2.strip_prefix);
        assert!(!table.lookup(None, "/app3").unwrap().redirect_bare_prefix);
        assert!(!table.lookup(None, "/").unwrap().redirect_bare_prefix);
        // One note per location, at its line, in the header comments.
        for (line, bare) in [(4, "/app1"), (5, "/app2")] {
            let note = format!("# nginx.conf:{line}: location {bare}/: nginx answered {bare} with a 301 redirect to {bare}/; the route has redirect_bare_prefix: true, so Switchyard redirects it too, with a 308");
            assert_eq!(t.yaml.matches(&note).count(), 1, "{}", t.yaml);
        }
        assert_eq!(
            t.yaml.matches("with a 301 redirect").count(),
            2,
            "{}",
            t.yaml
        );
    }

    /// Where nginx did not redirect, neither does the route: a server that
    /// also has `location /p` sends `/p` there (that location is refused as
    /// the same route); a location that is not translated gets no note.
    #[test]
    fn no_redirect_where_nginx_had_none() {
        let t = tr(&server(
            "location /a/ { proxy_pass http://h:1; proxy_set_header Host $host; }\nlocation /a { proxy_pass http://h:2; proxy_set_header Host $host; }",
        ));
        assert_eq!(lines(&t), [5]);
        assert_eq!(t.routes, 1);
        assert!(!t.yaml.contains("redirect_bare_prefix"), "{}", t.yaml);
        assert!(!t.yaml.contains("301"), "{}", t.yaml);

        let t = tr(&server(
            "location /b/ {\n proxy_pass http://h:1;\n add_header X-A b;\n}",
        ));
        assert_eq!(t.routes, 0);
        assert!(!t.yaml.contains("301"), "{}", t.yaml);

        // Each host of a named server gets the setting; the note is once.
        let conf = "server {\n listen 80;\n}\nserver {\n listen 80;\n server_name a.test b.test;\n location /c/ { proxy_pass http://h:3; proxy_set_header Host $host; }\n}\n";
        let t = tr(conf);
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(
            t.yaml.matches("    redirect_bare_prefix: true\n").count(),
            2,
            "{}",
            t.yaml
        );
        assert_eq!(
            t.yaml.matches("with a 301 redirect").count(),
            1,
            "{}",
            t.yaml
        );
    }

    /// Timeouts convert units and are inherited from http and server, with
    /// the location's own winning.
    #[test]
    fn timeouts_convert_and_inherit() {
        assert_eq!(nginx_duration("5").unwrap(), "5s");
        assert_eq!(nginx_duration("500ms").unwrap(), "500ms");
        assert_eq!(nginx_duration("60s").unwrap(), "1m");
        assert_eq!(nginx_duration("1m30s").unwrap(), "90s");
        assert_eq!(nginx_duration("2h").unwrap(), "2h");
        assert_eq!(nginx_duration("1d").unwrap(), "24h");
        for bad in ["", "0", "5x", "s", "1.5s", "99999999999999999999"] {
            assert!(nginx_duration(bad).is_err(), "{bad}");
        }

        let t = tr("http {\n proxy_read_timeout 300;\n server {\n  proxy_connect_timeout 2s;\n  location /a { proxy_pass http://h:1; proxy_set_header Host $host; }\n  location /b { proxy_pass http://h:2; proxy_set_header Host $host; proxy_read_timeout 1500ms; }\n }\n}\n");
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        let table = table(&t);
        let a = table.lookup(None, "/a").unwrap();
        assert_eq!(
            (a.connect_timeout.as_secs(), a.read_timeout.as_secs()),
            (2, 300)
        );
        let b = table.lookup(None, "/b").unwrap();
        assert_eq!(b.read_timeout.as_millis(), 1500);

        // A bad timeout is reported where written, and the location that
        // inherits it is left out.
        let t = tr(&server("proxy_read_timeout 0;\nlocation /a { proxy_pass http://h:1; proxy_set_header Host $host; }"));
        assert_eq!(lines(&t), [4]);
        assert_eq!(t.routes, 0);
    }

    /// The proxy headers Switchyard sets itself are accepted silently; any
    /// other header or value is refused.
    #[test]
    fn covered_and_other_headers() {
        let t = tr(&server(
            "location /a {\n proxy_pass http://h:1;\n proxy_set_header Host $http_host;\n proxy_set_header Connection $connection_upgrade;\n proxy_buffering off;\n proxy_cache_bypass $http_upgrade;\n proxy_redirect off;\n}",
        ));
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        let t = tr(&server("location /a {\n proxy_pass http://h:1;\n proxy_set_header X-Forwarded-Host $host;\n proxy_set_header X-Real-IP 1.2.3.4;\n}"));
        assert_eq!(lines(&t), [6, 7]);
        assert_eq!(t.routes, 0);
    }

    /// Without `proxy_set_header Host`, nginx sent the upstream its own
    /// name; the route says so. A location's own proxy_set_header list
    /// replaces the server's, as in nginx.
    #[test]
    fn missing_host_header_is_noted() {
        let t = tr(&server("proxy_set_header Host $host;\nlocation /a { proxy_pass http://h:1; }\nlocation /b { proxy_pass http://h:2; proxy_set_header X-Real-IP $remote_addr; }"));
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(
            t.yaml.matches("nginx sent this upstream `Host: ").count(),
            1
        );
        assert!(t.yaml.contains("`Host: h:2`"));
    }

    /// Only prefix locations translate; `^~` is a prefix location too.
    #[test]
    fn location_kinds() {
        let t = tr(&server(
            "location ^~ /a { proxy_pass http://h:1; proxy_set_header Host $host; }",
        ));
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(t.routes, 1);
        for loc in ["~ \\.php$", "~* /x", "= /exact", "=/exact", "@named"] {
            let t = tr(&server(&format!(
                "location {loc} {{ proxy_pass http://h:1; }}"
            )));
            assert_eq!(lines(&t), [4], "{loc}");
            assert_eq!(t.routes, 0);
            assert!(
                t.yaml.contains("# not translated: nginx.conf:4 location"),
                "{}",
                t.yaml
            );
        }
    }

    /// A location inside a location is refused, and so is its parent.
    #[test]
    fn nested_location() {
        let t = tr(&server(
            "location /a {\n proxy_pass http://h:1;\n location /a/b { proxy_pass http://h:2; }\n}",
        ));
        assert_eq!(lines(&t), [6]);
        assert_eq!(t.routes, 0);
    }

    /// `/health` locations that only `return 200` are what Switchyard does
    /// already; one that proxies collides with the reserved path.
    #[test]
    fn health_location() {
        for loc in ["/health", "/health/", "= /health"] {
            let t = tr(&server(&format!("location {loc} {{ access_log off; return 200 'healthy\\n'; add_header Content-Type text/plain; }}")));
            assert!(t.problems.is_empty(), "{loc}: {:?}", t.problems);
            assert!(t.yaml.contains("left out: Switchyard answers GET /health"));
        }
        let t = tr(&server(
            "location /health { proxy_pass http://h:1; proxy_set_header Host $host; }",
        ));
        assert_eq!(lines(&t), [4]);
        assert!(
            t.problems[0].message.contains("reserved"),
            "{:?}",
            t.problems
        );
        let t = tr(&server("location /status { return 200; }"));
        assert_eq!(lines(&t), [4]);
    }

    /// `/a` and `/a/` are one route in Switchyard: the second is refused.
    #[test]
    fn duplicate_prefixes() {
        let t = tr(&server("location /a { proxy_pass http://h:1; proxy_set_header Host $host; }\nlocation /a/ { proxy_pass http://h:2; proxy_set_header Host $host; }"));
        assert_eq!(lines(&t), [5]);
        assert!(t.problems[0]
            .message
            .contains("same route as location /a at line 4"));
        assert_eq!(t.routes, 1);
    }

    /// proxy_pass forms Switchyard cannot follow.
    #[test]
    fn proxy_pass_refusals() {
        for (pp, why) in [
            ("https://h:443", "plain HTTP"),
            ("http://$backend", "variables"),
            ("http://unix:/tmp/s.sock", "TCP"),
            ("h:80", "http://"),
        ] {
            let t = tr(&server(&format!(
                "location /a {{ proxy_pass {pp}; proxy_set_header Host $host; }}"
            )));
            assert_eq!(lines(&t), [4], "{pp}");
            assert!(
                t.problems[0].message.contains(why),
                "{pp}: {:?}",
                t.problems
            );
        }
        let t = tr(&format!(
            "upstream u {{ server h:1; }}\n{}",
            server("location /a { proxy_pass http://u:8080; }")
        ));
        assert_eq!(lines(&t), [5]);
    }

    /// Server parameters that change balancing or health are refused at
    /// their line, and the routes using that upstream are left out.
    #[test]
    fn server_parameters_are_refused() {
        for p in [
            "weight=2",
            "backup",
            "down",
            "max_fails=3",
            "fail_timeout=10s",
            "max_conns=5",
        ] {
            let t = tr(&format!(
                "upstream u {{\n server h:1;\n server h:2 {p};\n}}\n{}",
                server("location /a { proxy_pass http://u; proxy_set_header Host $host; }")
            ));
            assert_eq!(lines(&t), [3], "{p}");
            assert_eq!(t.routes, 0, "{p}");
        }
        let t = tr("upstream u {\n least_conn;\n server h:1;\n}\n");
        assert_eq!(lines(&t), [2]);
        let t = tr("upstream u {\n}\n");
        assert_eq!(lines(&t), [1]);
    }

    /// Directives that change behaviour are refused with their line and a
    /// reason; those that do not are ignored with a comment.
    #[test]
    fn behaviour_changing_directives_are_refused() {
        for (d, why) in [
            ("rewrite ^/a/(.*)$ /$1 break;", "rewrites"),
            ("return 301 /x;", "answers the request itself"),
            ("if ($host = x) { return 404; }", "conditional"),
            ("add_header X-A b;", "response headers"),
            ("root /srv;", "files"),
            ("try_files $uri =404;", "files"),
            ("auth_basic on;", "access control"),
            ("limit_req zone=a;", "limits"),
            ("sub_filter a b;", "response bodies"),
            ("proxy_cache c;", "caching"),
            ("include snippets/proxy.conf;", "not read"),
            ("proxy_http_version 1.0;", "HTTP/1.1"),
            ("client_max_body_size 10m;", "no limit"),
            ("gzip on;", "compresses"),
        ] {
            let t = tr(&server(&format!(
                "location /a {{\n proxy_pass http://h:1;\n proxy_set_header Host $host;\n {d}\n}}"
            )));
            assert_eq!(lines(&t), [7], "{d}: {:?}", t.problems);
            assert!(t.problems[0].message.contains(why), "{d}: {:?}", t.problems);
            assert_eq!(t.routes, 0, "{d}");
        }
        let t = tr(&server("listen 443 ssl;\nssl_certificate /c.pem;"));
        assert_eq!(lines(&t), [4, 5]);
    }

    /// Main and http settings that do not touch routing are listed in a
    /// comment, `include mime.types` among them; other includes are refused.
    #[test]
    fn unrelated_settings_are_ignored_with_a_comment() {
        let t = tr("user nginx;\nworker_processes auto;\npid /run/nginx.pid;\nevents { worker_connections 1024; }\nhttp {\n include /etc/nginx/mime.types;\n default_type application/octet-stream;\n sendfile on;\n keepalive_timeout 65;\n access_log /var/log/nginx/access.log;\n}\n");
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert!(
            t.yaml.contains(
                "user (line 1), worker_processes (line 2), pid (line 3), events (line 4)"
            ),
            "{}",
            t.yaml
        );
        assert!(t
            .yaml
            .contains("include mime.types (line 6), default_type (line 7)"));
        assert!(t
            .yaml
            .contains("sendfile (line 8), keepalive_timeout (line 9)"));
        assert!(t.yaml.contains("access_log (line 10)"));
        assert!(t.yaml.contains("routes: []"));
        let t = tr("http {\n include /etc/nginx/conf.d/*.conf;\n}\n");
        assert_eq!(lines(&t), [2]);
    }

    /// The WebSocket `map` idiom is accepted; any other map is refused.
    #[test]
    fn connection_upgrade_map() {
        let t = tr(
            "http {\n map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n}\n",
        );
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        let t = tr("http {\n map $uri $x { default 1; }\n}\n");
        assert_eq!(lines(&t), [2]);
    }

    /// With one server block, server_name does not matter: nginx sends it
    /// every request, so its routes match any host.
    #[test]
    fn single_server_matches_any_host() {
        let t = tr("server {\n listen 80;\n server_name *.dev.example.com;\n location /a { proxy_pass http://h:1; proxy_set_header Host $host; }\n}\n");
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert!(!t.yaml.contains("host:"));
        assert!(t.yaml.contains("the only server"));
    }

    /// Several servers: the default server's routes match any host, a named
    /// server's routes get `host:` — when every default-server path is also
    /// in the named server, so Switchyard picks what nginx picks.
    #[test]
    fn several_servers() {
        let loc = |p: &str, port: u16| {
            format!("location {p} {{ proxy_pass http://h:{port}; proxy_set_header Host $host; }}")
        };
        let conf = format!(
            "server {{\n listen 80 default_server;\n {}\n}}\nserver {{\n listen 80;\n server_name A.example.com b.example.com;\n {}\n {}\n}}\n",
            loc("/app", 1),
            loc("/app", 2),
            loc("/other", 3)
        );
        let t = tr(&conf);
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        assert_eq!(t.routes, 5);
        let table = table(&t);
        assert_eq!(
            table.lookup(Some("x.org"), "/app").unwrap().upstreams[0].port,
            1
        );
        assert_eq!(
            table
                .lookup(Some("a.example.com"), "/app")
                .unwrap()
                .upstreams[0]
                .port,
            2
        );
        assert_eq!(
            table
                .lookup(Some("b.example.com"), "/other")
                .unwrap()
                .upstreams[0]
                .port,
            3
        );

        // The named server lacks /app: Switchyard would send its /app
        // requests to the default server, nginx would not.
        let conf = format!(
            "server {{\n listen 80;\n {}\n}}\nserver {{\n listen 80;\n server_name a.example.com;\n {}\n}}\n",
            loc("/app", 1),
            loc("/", 2)
        );
        let t = tr(&conf);
        assert_eq!(lines(&t), [5]);

        // Wildcards, a second listener port, a name used twice.
        let conf = format!("server {{\n listen 80;\n}}\nserver {{\n listen 80;\n server_name *.example.com;\n {}\n}}\n", loc("/a", 1));
        assert_eq!(lines(&tr(&conf)), [6]);
        let conf = "server {\n listen 80;\n}\nserver {\n listen 8081;\n server_name a.b;\n}\n";
        assert_eq!(lines(&tr(conf)), [4]);
        let conf = "server {\n listen 80;\n server_name a.b;\n}\nserver {\n listen 80;\n server_name a.b;\n}\n";
        assert_eq!(lines(&tr(conf)), [7]);
    }

    /// A path Switchyard would reject is reported at its nginx line.
    #[test]
    fn invalid_paths_are_reported() {
        let t = tr(&server(
            "location /a//b { proxy_pass http://h:1; proxy_set_header Host $host; }",
        ));
        assert_eq!(lines(&t), [4]);
        assert!(
            t.problems[0].message.contains("cannot be a route"),
            "{:?}",
            t.problems
        );
    }
}
