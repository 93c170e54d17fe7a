//! Routes files that are hostile rather than merely wrong, end to end on
//! the real binary: nesting thousands deep, a mebibyte of values, files far
//! larger than any routes file, a device or a named pipe at the path, a
//! second YAML document, invalid UTF-8. Each is tried three ways:
//! `switchyard check`, `serve` at startup, and a hot reload of a running
//! proxy (the file replaced as an editor does), which must keep serving its
//! old table, count and report the failure with its place, and take the
//! next good file. Also: the config directory removed and created again,
//! the file briefly gone and back, and what a hostile reload costs in
//! memory against the Deployment's 128 MiB limit.

use crate::support;

use std::ffi::OsStr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::kubelet::write_via_rename;
use crate::support::{patience, routes_yaml, Proxy, Upstream};
use switchyard_routes::{MAX_DEPTH, MAX_NODES};
use switchyard_server::source::{DEFAULT_MAX_CONFIG_BYTES, READ_TIMEOUT};

/// The route every proxy here starts with, and must keep serving.
const GOOD_PATH: &str = "/good";

/// The name of the upstream behind it.
const GOOD_NAME: &str = "good";

const MIB: usize = 1024 * 1024;

/// Error texts (a `check`'s stderr, a `/reload` answer, `last_error`, a
/// log line) for a hostile file must stay below this, however big it is.
const SMALL_ERROR: usize = 16 * 1024;

/// The Deployment's memory limit, in kB as `/proc/PID/status` counts.
const POD_LIMIT_KB: u64 = 128 * 1024;

/// What is put at the config path.
enum Hostile {
    /// A regular file with these bytes.
    Bytes(Vec<u8>),
    /// A regular file of this many bytes of YAML comment lines, written in
    /// 1 MiB chunks.
    Comment(usize),
    /// A symlink to this target.
    Symlink(&'static str),
    /// A named pipe.
    Fifo,
}

impl Hostile {
    /// Puts it at `path` the way an editor saves: made under a temporary
    /// name in the same directory, then renamed over `path`.
    fn put(&self, path: &Path) {
        let tmp = path.with_file_name(".routes.yaml.new");
        let _ = std::fs::remove_file(&tmp);
        match self {
            Hostile::Bytes(bytes) => std::fs::write(&tmp, bytes).expect("write"),
            Hostile::Comment(len) => write_comment(&tmp, *len),
            Hostile::Symlink(target) => std::os::unix::fs::symlink(target, &tmp).expect("symlink"),
            Hostile::Fifo => {
                nix::unistd::mkfifo(&tmp, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .expect("mkfifo");
            }
        }
        std::fs::rename(&tmp, path).expect("rename over the config");
    }
}

/// Writes `len` bytes of `# xxx…` lines to `path`, a mebibyte at a time.
fn write_comment(path: &Path, len: usize) {
    use std::io::Write;
    let line = format!("# {}\n", "x".repeat(61));
    let chunk = line.repeat(MIB / line.len());
    let mut file = std::fs::File::create(path).expect("create");
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk.as_bytes()[..n]).expect("write");
        left -= n;
    }
    file.sync_all().expect("sync");
}

/// One hostile file and how it must be refused.
struct Case {
    name: &'static str,
    file: Hostile,
    /// `check`'s and `serve`'s exit code: 1 invalid, 2 unreadable.
    code: i32,
    /// What every report of the refusal says right after the file's name:
    /// `:line:column: problem` for a file that was read, `: cannot read: …`
    /// for one that was not.
    want: String,
}

impl Case {
    fn new(name: &'static str, file: Hostile, code: i32, want: &str) -> Case {
        Case {
            name,
            file,
            code,
            want: want.to_owned(),
        }
    }

    /// The refusal as reported for the file `shown`: its name, then `want`.
    fn report(&self, shown: &str) -> String {
        format!("{shown}{}", self.want)
    }

    /// Asserts `text` (`what`, a report about the file `shown`) says it.
    fn assert_reported(&self, what: &str, shown: &str, text: &str) {
        let report = self.report(shown);
        assert!(
            text.contains(&report),
            "{}: {what} lacks {report:?}:\n{}",
            self.name,
            head(text)
        );
    }
}

/// The start of `text`, enough to show in a failed assertion.
fn head(text: &str) -> String {
    text.chars().take(2000).collect()
}

/// Runs the binary with `args`, for at most [`patience`]: (exit code,
/// stderr, how long it took). A process still running then is killed.
async fn run_bounded<I, S>(args: I) -> (i32, String, Duration)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let started = Instant::now();
    let run = tokio::process::Command::new(support::BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(patience(), run)
        .await
        .expect("switchyard did not exit within patience")
        .expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

/// `switchyard check PATH [extra]`: (exit code, stderr).
async fn check(path: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![OsStr::new("check"), path.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    let (code, stderr, took) = run_bounded(args).await;
    eprintln!("check {} took {took:?}", path.display());
    (code, stderr)
}

/// `switchyard serve --config PATH [extra]`, which must exit by itself:
/// (exit code, stderr).
async fn serve_at_startup(path: &Path, extra: &[&str]) -> (i32, String) {
    let (listen, admin) = (
        support::refused_addr().to_string(),
        support::refused_addr().to_string(),
    );
    let mut args = vec![
        OsStr::new("serve"),
        OsStr::new("--config"),
        path.as_os_str(),
        OsStr::new("--listen"),
        OsStr::new(&listen),
        OsStr::new("--admin-listen"),
        OsStr::new(&admin),
        OsStr::new("--threads"),
        OsStr::new("1"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let (code, stderr, _) = run_bounded(args).await;
    (code, stderr)
}

/// `check` and `serve` at startup both refuse `case` with its exit code
/// and its error on stderr. Returns `check`'s stderr.
async fn refused_before_serving(case: &Case, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.yaml");
    case.file.put(&path);
    let shown = path.display().to_string();

    let (code, checked) = check(&path, extra).await;
    assert_eq!(
        code, case.code,
        "{}: check exit code:\n{checked}",
        case.name
    );
    case.assert_reported("check's stderr", &shown, &checked);

    let (code, served) = serve_at_startup(&path, extra).await;
    assert_eq!(code, case.code, "{}: serve exit code:\n{served}", case.name);
    case.assert_reported("serve's stderr", &shown, &served);
    assert!(
        !served.contains("switchyard started"),
        "{}: serve started:\n{served}",
        case.name
    );
    checked
}

/// The process is still there (not exited, not a zombie awaiting reaping).
fn assert_alive(pid: u32, what: &str) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("{what}: the proxy is gone: {e}"));
    let state = status
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("State: ?");
    assert!(
        !state.contains("zombie") && !state.contains("dead"),
        "{what}: the proxy died: {state}"
    );
}

/// (VmRSS, VmHWM) of `pid`, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn reload_failures(proxy: &Proxy) -> f64 {
    support::metric(
        &proxy.scrape().await,
        "switchyard_config_reloads_total",
        &[("result", "failure")],
    )
    .unwrap_or(0.0)
}

async fn last_reload_successful(proxy: &Proxy) -> Option<f64> {
    support::metric(
        &proxy.scrape().await,
        "switchyard_config_last_reload_successful",
        &[],
    )
}

/// How a running proxy reported one refused reload.
struct Refusal {
    /// The `POST /reload` answer's `error`.
    answer: String,
    /// `/routes` `last_error` afterwards.
    last_error: String,
    /// The "config rejected" log line naming the problem.
    log_line: String,
    /// How long `POST /reload` took to answer.
    took: Duration,
}

/// A running proxy serving [`GOOD_PATH`] from a real upstream, to throw
/// hostile files at.
struct Live {
    up: Upstream,
    proxy: Proxy,
    /// The generation serving now.
    generation: u64,
    /// Good files applied since startup.
    fixes: usize,
}

impl Live {
    async fn start(extra: &[&str]) -> Live {
        let up = Upstream::start(GOOD_NAME).await;
        let proxy = Proxy::start_with(&routes_yaml(&[(GOOD_PATH, &up.host_port())]), extra).await;
        support::wait_upstream(&proxy, GOOD_PATH, GOOD_NAME).await;
        Live {
            up,
            proxy,
            generation: 1,
            fixes: 0,
        }
    }

    /// Replaces the routes file with `case` and reloads: refused with 422,
    /// counted as a failure, named with its place in `/routes` and in a
    /// "config rejected" log line, while the process lives on and the old
    /// table keeps serving.
    async fn refuse(&self, case: &Case) -> Refusal {
        let proxy = &self.proxy;
        let shown = proxy.config.display().to_string();
        let failures = reload_failures(proxy).await;
        case.file.put(&proxy.config);

        let started = Instant::now();
        let (status, answer) = proxy.post_reload().await;
        let took = started.elapsed();
        assert_eq!(status, 422, "{}: {answer}", case.name);
        assert_eq!(answer["result"], "failure", "{}: {answer}", case.name);
        assert_eq!(answer["generation"], self.generation, "{}", case.name);
        let answer = answer["error"].as_str().unwrap_or_default().to_owned();
        case.assert_reported("the /reload answer", &shown, &answer);

        let routes = proxy.routes().await;
        assert_eq!(routes["generation"], self.generation, "{}", case.name);
        let last_error = routes["last_error"].as_str().unwrap_or_default().to_owned();
        case.assert_reported("last_error", &shown, &last_error);

        let now = reload_failures(proxy).await;
        assert!(
            now > failures,
            "{}: failures went from {failures} to {now}",
            case.name
        );

        let log_line = support::eventually(&format!("{}: rejection logged", case.name), || {
            let logs = proxy.logs();
            let shown = &shown;
            async move {
                logs.lines()
                    .find(|l| l.contains("config rejected") && l.contains(&case.report(shown)))
                    .map(str::to_owned)
            }
        })
        .await;
        case.assert_reported("the log line", &shown, &log_line);

        assert_alive(proxy.pid(), case.name);
        assert_eq!(
            support::upstream_name(proxy, GOOD_PATH).await.as_deref(),
            Some(GOOD_NAME),
            "{}: the old table stopped serving",
            case.name
        );
        Refusal {
            answer,
            last_error,
            log_line,
            took,
        }
    }

    /// Replaces whatever is at the path with a good file that adds a route:
    /// it serves, as the next generation, and `last_error` is cleared.
    async fn recover(&mut self) -> String {
        self.fixes += 1;
        let added = format!("/fixed{}", self.fixes);
        let hp = self.up.host_port();
        let yaml = routes_yaml(&[(GOOD_PATH, &hp), (&added, &hp)]);
        write_via_rename(&self.proxy.config, yaml.as_bytes()).expect("write");
        support::wait_upstream(&self.proxy, &added, GOOD_NAME).await;
        self.generation += 1;
        let routes = self.proxy.wait_generation(self.generation).await;
        assert!(routes["last_error"].is_null(), "{routes}");
        assert_eq!(
            support::upstream_name(&self.proxy, GOOD_PATH)
                .await
                .as_deref(),
            Some(GOOD_NAME)
        );
        added
    }
}

/// `check`, `serve` at startup, then a hot reload of `live` and recovery.
async fn refused_three_ways(live: &mut Live, case: &Case, extra: &[&str]) -> Refusal {
    refused_before_serving(case, extra).await;
    let refusal = live.refuse(case).await;
    live.recover().await;
    refusal
}

/// `routes: [x,x,…]` of exactly `len` bytes: about `len / 2` scalars.
fn scalars_file(len: usize) -> Vec<u8> {
    let mut text = String::from("routes: [");
    text.push_str(&"x,".repeat((len - text.len() - 3) / 2));
    text.push_str("x]\n");
    assert_eq!(text.len(), len);
    text.into_bytes()
}

/// A 1 MiB `routes: [x,x,…]`, refused at the value past [`MAX_NODES`].
fn mebibyte_of_values() -> Case {
    // Nodes 1–3 are the top mapping, `routes` and the list; the i-th `x`
    // is node 3 + i, at column 10 + 2(i − 1).
    let column = 10 + 2 * (MAX_NODES - 3);
    Case::new(
        "1 MiB of [x,x,…]",
        Hostile::Bytes(scalars_file(MIB)),
        1,
        &format!(":1:{column}: more than {MAX_NODES} YAML values (keys, values, lists, mappings) by here"),
    )
}

/// `yaml` padded with a trailing comment line to exactly `len` bytes.
fn padded(yaml: &str, len: usize) -> Vec<u8> {
    let pad = len - yaml.len() - 2;
    format!("{yaml}#{}\n", "x".repeat(pad)).into_bytes()
}

/// Nesting 20,000 deep, as block lists (`- - - …`) and as flow lists
/// (`[[[…`), is refused at the place it passes the depth limit, by `check`
/// and `serve` (exit 1) and by a reload; the process (which used to abort
/// with a stack overflow) lives on and serves its old table.
#[tokio::test(flavor = "multi_thread")]
async fn deep_nesting_is_refused_at_the_depth_limit_without_crashing() {
    let depth = format!("lists and mappings nest more than {MAX_DEPTH} levels deep here");
    let cases = [
        Case::new(
            "20,000 nested block lists",
            Hostile::Bytes(format!("routes:\n{}", "- ".repeat(20_000)).into_bytes()),
            1,
            &format!(":2:63: {depth}"),
        ),
        Case::new(
            "20,000 nested flow lists",
            Hostile::Bytes(format!("routes: {}", "[".repeat(20_000)).into_bytes()),
            1,
            &format!(":1:40: {depth}"),
        ),
    ];
    let mut live = Live::start(&[]).await;
    for case in &cases {
        refused_three_ways(&mut live, case, &[]).await;
    }
}

/// A 1 MiB `routes: [x,x,…]` (some 524,000 values) is refused by the node
/// limit at the value that passes it, without building the rest; every
/// report of it stays one short line, under 16 KiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_mebibyte_of_values_is_refused_with_a_short_error() {
    let case = mebibyte_of_values();
    let checked = refused_before_serving(&case, &[]).await;
    let mut live = Live::start(&[]).await;
    let refusal = live.refuse(&case).await;
    eprintln!(
        "1 MiB [x,…]: POST /reload answered in {:?}; check stderr {} B, answer {} B, last_error {} B, log line {} B",
        refusal.took,
        checked.len(),
        refusal.answer.len(),
        refusal.last_error.len(),
        refusal.log_line.len()
    );
    for (what, text) in [
        ("check's stderr", &checked),
        ("the /reload answer", &refusal.answer),
        ("last_error", &refusal.last_error),
        ("the log line", &refusal.log_line),
    ] {
        assert!(
            text.len() < SMALL_ERROR,
            "{what} is {} bytes:\n{}",
            text.len(),
            head(text)
        );
        // One problem: the file stops being read at the limit.
        assert_eq!(text.matches("YAML values").count(), 1, "{what}: {text}");
        assert!(!text.contains("more errors"), "{what}: {text}");
    }
    assert!(checked.trim_end().ends_with(": 1 error"), "{checked}");
    live.recover().await;
}

/// A file larger than `--max-config-bytes` is refused unread, with its
/// size and the limit: a 50 MiB file against the default (1 MiB + 64 KiB),
/// and a file one byte over `--max-config-bytes 1000`. `check` and `serve`
/// exit 2 (unreadable); a file exactly at the limit is read.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_files_are_refused_unread() {
    let big = 50 * MIB;
    let case = Case::new(
        "50 MiB of comments",
        Hostile::Comment(big),
        2,
        &format!(
            ": cannot read: the file has {big} bytes, more than the limit of {DEFAULT_MAX_CONFIG_BYTES}"
        ),
    );
    let mut live = Live::start(&[]).await;
    let refusal = refused_three_ways(&mut live, &case, &[]).await;
    eprintln!("50 MiB: POST /reload answered in {:?}", refusal.took);

    let small = ["--max-config-bytes", "1000"];
    let good = routes_yaml(&[(GOOD_PATH, "127.0.0.1:1")]);
    let case = Case::new(
        "one byte over --max-config-bytes 1000",
        Hostile::Bytes(padded(&good, 1001)),
        2,
        ": cannot read: the file has 1001 bytes, more than the limit of 1000",
    );
    let mut live = Live::start(&small).await;
    refused_three_ways(&mut live, &case, &small).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let at_limit = dir.path().join("routes.yaml");
    std::fs::write(&at_limit, padded(&good, 1000)).expect("write");
    let (code, err) = check(&at_limit, &small).await;
    assert_eq!(code, 0, "a file of exactly the limit: {err}");
}

/// A symlink to `/dev/zero` and a named pipe at the config path are
/// refused as "not a regular file" without reading (exit 2). For the pipe,
/// `POST /reload` answers at once (not after the read timeout), and the
/// reload task is not stuck: a valid file replacing the pipe is applied.
#[tokio::test(flavor = "multi_thread")]
async fn devices_and_pipes_are_refused_as_not_regular_files() {
    let zero = Case::new(
        "symlink to /dev/zero",
        Hostile::Symlink("/dev/zero"),
        2,
        ": cannot read: not a regular file but a character device",
    );
    let fifo = Case::new(
        "named pipe",
        Hostile::Fifo,
        2,
        ": cannot read: not a regular file but a named pipe",
    );
    let mut live = Live::start(&[]).await;
    refused_three_ways(&mut live, &zero, &[]).await;

    refused_before_serving(&fifo, &[]).await;
    let refusal = live.refuse(&fifo).await;
    eprintln!("named pipe: POST /reload answered in {:?}", refusal.took);
    assert!(
        refusal.took < READ_TIMEOUT,
        "POST /reload took {:?}: the read waited on the pipe",
        refusal.took
    );
    // The pipe is still there; a second reload is refused at once too.
    let (status, answer) = live.proxy.post_reload().await;
    assert_eq!(status, 422, "{answer}");
    let still = std::fs::symlink_metadata(&live.proxy.config).expect("the pipe");
    assert!(still.file_type().is_fifo(), "{still:?}");
    let added = live.recover().await;
    let routes = live.proxy.routes().await;
    assert!(
        routes["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .any(|r| r["path"] == added.as_str()),
        "{routes}"
    );
}

/// A second YAML document, whether what follows its `---` is invalid or
/// valid YAML, is refused at the `---` line; a 0xFF byte in a route's path
/// on line 3 is refused at its line and column as invalid UTF-8 (exit 1).
#[tokio::test(flavor = "multi_thread")]
async fn second_documents_and_invalid_utf8_are_refused_where_they_are() {
    let second = ":2:1: a second YAML document starts here";
    let cases = [
        Case::new(
            "invalid YAML after ---",
            Hostile::Bytes(b"routes: []\n---\nroutes: [".to_vec()),
            1,
            second,
        ),
        Case::new(
            "a valid second document",
            Hostile::Bytes(b"routes: []\n---\nroutes: []\n".to_vec()),
            1,
            second,
        ),
        Case::new(
            "0xFF in a path",
            // "    path: /app" is 14 characters: the byte is column 15.
            Hostile::Bytes(b"routes:\n  - upstream: 127.0.0.1:1\n    path: /app\xff1\n".to_vec()),
            1,
            ":3:15: the file is not valid UTF-8 here (byte 0xff)",
        ),
    ];
    let mut live = Live::start(&[]).await;
    for case in &cases {
        refused_three_ways(&mut live, case, &[]).await;
    }
}

/// With the poll effectively off, the config directory removed (`rm -rf`)
/// and created again with a new file: the watch comes back on the new
/// directory (and says so), the new route serves, and a later edit in the
/// new directory is seen too.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_and_recreated_config_directory_is_watched_again() {
    let up = Upstream::start(GOOD_NAME).await;
    let hp = up.host_port();
    let proxy = Proxy::start_with(
        &routes_yaml(&[(GOOD_PATH, &hp)]),
        &["--poll-interval", "3600"],
    )
    .await;
    let dir = proxy.config.parent().expect("config dir").to_path_buf();

    std::fs::remove_dir_all(&dir).expect("rm -rf");
    proxy.wait_log("the config directory was removed").await;
    support::wait_upstream(&proxy, GOOD_PATH, GOOD_NAME).await;

    std::fs::create_dir(&dir).expect("mkdir");
    let back = routes_yaml(&[(GOOD_PATH, &hp), ("/back", &hp)]);
    write_via_rename(&proxy.config, back.as_bytes()).expect("write");
    proxy
        .wait_log("the config directory is back; watching it again")
        .await;
    support::wait_upstream(&proxy, "/back", GOOD_NAME).await;

    // The new watch works: an edit is seen without the poll.
    let again = routes_yaml(&[(GOOD_PATH, &hp), ("/again", &hp)]);
    write_via_rename(&proxy.config, again.as_bytes()).expect("write");
    support::wait_upstream(&proxy, "/again", GOOD_NAME).await;
    proxy.wait_status("/back", 404).await;
    let routes = proxy.routes().await;
    assert!(routes["last_error"].is_null(), "{routes}");
}

/// The file moved away, a reload fails (`last_error` set, the
/// last-reload-successful gauge 0), the same file moved back: reading the
/// applied bytes again clears `last_error` and sets the gauge back to 1,
/// without a new generation.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_bytes_back_after_a_read_error_clear_the_error() {
    let up = Upstream::start(GOOD_NAME).await;
    let proxy = Proxy::start_with(
        &routes_yaml(&[(GOOD_PATH, &up.host_port())]),
        &["--poll-interval", "1"],
    )
    .await;
    let away = proxy.dir().join("routes.yaml.away");

    std::fs::rename(&proxy.config, &away).expect("move away");
    let (status, answer) = proxy.post_reload().await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["result"], "failure");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot read")),
        "{answer}"
    );
    let routes = proxy.routes().await;
    assert!(
        routes["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot read")),
        "{routes}"
    );
    assert_eq!(last_reload_successful(&proxy).await, Some(0.0));
    support::wait_upstream(&proxy, GOOD_PATH, GOOD_NAME).await;

    std::fs::rename(&away, &proxy.config).expect("move back");
    let routes = support::eventually("last_error cleared and the gauge 1", || async {
        let routes = proxy.routes().await;
        let ok = last_reload_successful(&proxy).await == Some(1.0);
        (ok && routes["last_error"].is_null()).then_some(routes)
    })
    .await;
    assert_eq!(routes["generation"], 1, "{routes}");
    proxy.wait_log("result=\"unchanged\"").await;
    support::wait_upstream(&proxy, GOOD_PATH, GOOD_NAME).await;
}

/// The proxy's memory across two hostile 1 MiB reloads — `[x,x,…]`, and
/// 20,000 plausible routes with one error at the end — and the recovery
/// after each: the peak (VmHWM) stays under the Deployment's 128 MiB, and
/// RSS after recovery is within 8 MiB of RSS before (the parsed tree of a
/// 1 MiB file is ~40 MiB; the proxy hands it back to the system after each
/// reload instead of leaving it in the allocator).
#[tokio::test(flavor = "multi_thread")]
async fn hostile_reloads_stay_within_the_memory_limit() {
    let mut routes = String::from("routes:\n");
    for i in 0..19_999 {
        routes.push_str(&format!(
            "  - path: /svc{i:05}\n    upstream: 10.0.{}.{}:8080\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let tail = "  - path: /svc19999\n    upstream: 10.0.79.250:8080\n    colour: red\n";
    // A header comment makes the whole file exactly 1 MiB.
    let header = padded("", MIB - routes.len() - tail.len());
    let mut many = header;
    many.extend_from_slice(routes.as_bytes());
    many.extend_from_slice(tail.as_bytes());
    assert_eq!(many.len(), MIB);
    let bad_line = String::from_utf8_lossy(&many).lines().count();

    let cases = [
        mebibyte_of_values(),
        Case::new(
            "20,000 routes, the last one bad",
            Hostile::Bytes(many),
            1,
            &format!(":{bad_line}:5: route #20000 (/svc19999): unknown field `colour`"),
        ),
    ];
    refused_before_serving(&cases[1], &[]).await;

    let mut live = Live::start(&["--access-log", "off"]).await;
    let pid = live.proxy.pid();
    for case in &cases {
        let before = memory_kb(pid);
        let failures = reload_failures(&live.proxy).await;
        live.refuse(case).await;
        // The watcher's attempt and the admin one: measure after both.
        support::eventually(&format!("{}: both attempts done", case.name), || async {
            (reload_failures(&live.proxy).await >= failures + 2.0).then_some(())
        })
        .await;
        let after = memory_kb(pid);
        live.recover().await;
        let recovered = memory_kb(pid);
        eprintln!(
            "memory, {}: before RSS {} kB (peak {} kB); after the refused reload RSS {} kB (peak {} kB); after recovery RSS {} kB (peak {} kB)",
            case.name, before.0, before.1, after.0, after.1, recovered.0, recovered.1
        );
        for (when, (_, peak)) in [
            ("before", before),
            ("after", after),
            ("recovered", recovered),
        ] {
            assert!(
                peak < POD_LIMIT_KB,
                "{}: peak {peak} kB {when}, over the pod limit",
                case.name
            );
        }
        assert!(
            recovered.0.abs_diff(before.0) <= 8 * 1024,
            "{}: RSS {} kB before, {} kB after recovery",
            case.name,
            before.0,
            recovered.0
        );
    }
}
