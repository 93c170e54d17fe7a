//! The container image, built offline by `deploy/build-image.sh` and run
//! with podman the way `deploy/kubernetes/base/deployment.yaml` runs it: the
//! manifest's args (with the test's own ephemeral listener ports), its user
//! and group, a read-only root with no tmpfs added, no capabilities, no
//! privilege escalation, its memory limit (and no swap), host networking,
//! and the ConfigMap volume mounted read-only as a directory and updated the
//! kubelet's way. The manifest is read, not copied: a change to it changes
//! what is tested.
//!
//! Both tests need podman (and runc); they are `#[ignore]`d so plain
//! `cargo test` passes without it. `./scripts/test.sh` installs both and runs
//! them (`-- --include-ignored`); run without podman they fail, never skip.
//! podman reads a containers.conf of the test's own (`CONTAINERS_CONF`):
//! runc with cgroupfs, and nofile/nproc ulimits root may set here.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_yaml::Value;

use crate::support::kubelet::{ConfigMapDir, KubeletOrder};
use crate::support::upstream::Echo;
use crate::support::{client, eventually, patience, refused_addr, routes_yaml, Upstream};

const DEPLOYMENT: &str = "deploy/kubernetes/base/deployment.yaml";
/// What the test builds, so that it never moves the script's default tag.
const IMAGE: &str = "localhost/switchyard:image-test";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// podman's configuration for these tests: runc (crun refuses a hybrid
/// cgroup mount), cgroupfs, events in a file, and ulimits within root's
/// hard limits on this kind of machine. Written once per test binary into
/// cargo's scratch directory for integration tests.
fn containers_conf() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-test");
        std::fs::create_dir_all(&dir).expect("create the containers.conf dir");
        let path = dir.join("containers.conf");
        let tmp = dir.join(format!("containers.conf.{}", std::process::id()));
        std::fs::write(
            &tmp,
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .expect("write containers.conf");
        std::fs::rename(&tmp, &path).expect("install containers.conf");
        path
    })
}

/// `podman ARGS` with the test's containers.conf; fails the test when podman
/// is missing.
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", containers_conf())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run podman ({e}): install podman and runc (scripts/bootstrap.sh does)")
        })
}

/// `podman ARGS`, which must succeed; its stdout, trimmed.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Builds [`IMAGE`] once per test binary with `deploy/build-image.sh`
/// (which builds the release binary first).
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let started = Instant::now();
        let out = Command::new(repo().join("deploy/build-image.sh"))
            .args(["--tag", IMAGE])
            .env("CONTAINERS_CONF", containers_conf())
            .env("CARGO", env!("CARGO"))
            .output()
            .expect("run deploy/build-image.sh");
        assert!(
            out.status.success(),
            "deploy/build-image.sh failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "built in {:.1?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    });
    IMAGE
}

// --- the manifest ------------------------------------------------------------

/// What the Deployment says about running its one container.
#[derive(Debug)]
struct Manifest {
    args: Vec<String>,
    user: u64,
    group: u64,
    memory_limit: u64,
    grace: Duration,
    mount_path: String,
    /// containerPort by port name.
    ports: Vec<(String, u16)>,
    /// (probe kind, path, port name) of every HTTP probe.
    probes: Vec<(String, String, String)>,
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A Kubernetes quantity (`320Mi`, `1G`, `1048576`) in bytes.
fn quantity_bytes(q: &str) -> u64 {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (digits, unit) = units
        .iter()
        .find_map(|(suffix, unit)| q.strip_suffix(suffix).map(|d| (d, *unit)))
        .unwrap_or((q, 1));
    let n: u64 = digits.parse().unwrap_or_else(|_| {
        panic!("memory quantity {q:?} is not an integer with a unit this test knows")
    });
    n * unit
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(repo().join(DEPLOYMENT)).expect("read the Deployment");
    let doc: Value = serde_yaml::from_str(&text).expect("the Deployment parses");
    let pod = &doc["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1, "one container in {DEPLOYMENT}");
    let c = &containers[0];
    let sc = &c["securityContext"];
    // The hardening this test reproduces with podman flags; a manifest that
    // says otherwise needs the flags changed too.
    assert_eq!(
        sc["readOnlyRootFilesystem"],
        Value::Bool(true),
        "{DEPLOYMENT}"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"],
        Value::Bool(false),
        "{DEPLOYMENT}"
    );
    let dropped: Vec<&str> = sc["capabilities"]["drop"]
        .as_sequence()
        .map(|s| s.iter().map(str_of).collect())
        .unwrap_or_default();
    assert_eq!(dropped, ["ALL"], "{DEPLOYMENT}: capabilities dropped");
    assert!(
        sc["capabilities"]["add"].is_null(),
        "{DEPLOYMENT}: no capability added"
    );
    let id = |key: &str| {
        sc[key]
            .as_u64()
            .or_else(|| pod["securityContext"][key].as_u64())
            .unwrap_or_else(|| panic!("{DEPLOYMENT}: no {key}"))
    };
    let mounts = c["volumeMounts"].as_sequence().expect("volumeMounts");
    assert_eq!(mounts.len(), 1, "{DEPLOYMENT}: one volume mount");
    assert_eq!(mounts[0]["readOnly"], Value::Bool(true), "{DEPLOYMENT}");
    assert!(mounts[0]["subPath"].is_null(), "{DEPLOYMENT}: no subPath");
    let probes = ["startupProbe", "readinessProbe", "livenessProbe"]
        .iter()
        .filter(|kind| !c[**kind].is_null())
        .map(|kind| {
            let get = &c[*kind]["httpGet"];
            (
                (*kind).to_owned(),
                str_of(&get["path"]).to_owned(),
                str_of(&get["port"]).to_owned(),
            )
        })
        .collect();
    Manifest {
        args: c["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| str_of(a).to_owned())
            .collect(),
        user: id("runAsUser"),
        group: id("runAsGroup"),
        memory_limit: quantity_bytes(str_of(&c["resources"]["limits"]["memory"])),
        grace: Duration::from_secs(
            pod["terminationGracePeriodSeconds"]
                .as_u64()
                .expect("terminationGracePeriodSeconds"),
        ),
        mount_path: str_of(&mounts[0]["mountPath"]).to_owned(),
        ports: c["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .map(|p| {
                let port = p["containerPort"].as_u64().expect("containerPort");
                (
                    str_of(&p["name"]).to_owned(),
                    u16::try_from(port).expect("port fits"),
                )
            })
            .collect(),
        probes,
    }
}

impl Manifest {
    fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("{DEPLOYMENT}: no port named {name}"))
    }

    /// The value after `flag` in the args.
    fn arg(&self, flag: &str) -> &str {
        self.args
            .windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .unwrap_or_else(|| panic!("{DEPLOYMENT}: no {flag} in args {:?}", self.args))
    }

    /// The args with the listener addresses replaced by the test's.
    fn args_with(&self, listen: &str, admin: &str) -> Vec<String> {
        let mut out = self.args.clone();
        for (flag, value) in [("--listen", listen), ("--admin-listen", admin)] {
            let i = out
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("{DEPLOYMENT}: no {flag} in args"));
            out[i + 1] = value.to_owned();
        }
        out
    }
}

// --- a running container -----------------------------------------------------

/// A container started by the test, removed (killed if need be) when
/// dropped, whether the test passed or not.
struct Container {
    name: String,
    main: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--ignore", "--time", "0", &self.name]);
    }
}

impl Container {
    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.main)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// `http://<listener named port><path>`, for a manifest port name.
    fn port_url(&self, m: &Manifest, port: &str, path: &str) -> String {
        if m.port(port) == m.port("admin") {
            self.admin_url(path)
        } else if m.port(port) == m.port("http") {
            self.url(path)
        } else {
            panic!("{DEPLOYMENT}: port {port} is neither the proxy's nor the admin listener")
        }
    }
}

/// Runs the image as the Deployment runs it, on fresh ephemeral ports
/// (another process can take a port between the test's probe and the
/// container's bind: a failed bind is retried with new ones), and waits
/// until the readiness probe's endpoint answers 200.
async fn run_like_the_deployment(m: &Manifest, volume: &Path) -> Container {
    let image = tokio::task::spawn_blocking(image).await.expect("build");
    let memory = m.memory_limit.to_string();
    let user = format!("{}:{}", m.user, m.group);
    let mount = format!("{}:{}:ro", volume.display(), m.mount_path);
    for attempt in 0..5 {
        let (main, admin) = (refused_addr(), refused_addr());
        // The guard exists before `podman run`, so that even a container
        // whose start failed half-way is removed.
        let container = Container {
            name: format!("switchyard-image-test-{}-{attempt}", std::process::id()),
            main,
            admin,
        };
        let args = m.args_with(&main.to_string(), &admin.to_string());
        let mut run: Vec<&str> = vec![
            "run",
            "--detach",
            "--name",
            &container.name,
            "--pull=never",
            "--read-only",
            "--read-only-tmpfs=false",
            "--user",
            &user,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--memory",
            &memory,
            // The kubelet runs containers without swap.
            "--memory-swap",
            &memory,
            "--network",
            "host",
            "--volume",
            &mount,
            image,
        ];
        run.extend(args.iter().map(String::as_str));
        podman_ok(&run);

        let ready = m
            .probes
            .iter()
            .find(|(kind, _, _)| kind == "readinessProbe")
            .expect("a readiness probe");
        let url = container.port_url(m, &ready.2, &ready.1);
        let deadline = Instant::now() + patience();
        loop {
            if let Ok(r) = client().get(&url).send().await {
                if r.status() == 200 {
                    return container;
                }
            }
            if container.inspect("{{.State.Running}}") != "true" {
                let logs = container.logs();
                if logs.contains("cannot listen") {
                    eprintln!("the container lost a port race; retrying:\n{logs}");
                    break;
                }
                panic!(
                    "the container exited early ({}):\n{logs}",
                    container.inspect("{{.State.ExitCode}} {{.State.Error}}")
                );
            }
            assert!(
                Instant::now() < deadline,
                "not ready at {url}:\n{}",
                container.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("could not start the container on free ports after 5 tries");
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = client().get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

async fn echo_of(url: &str) -> Echo {
    let (status, body) = get(url)
        .await
        .unwrap_or_else(|| panic!("GET {url}: no answer"));
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not an echo ({e}): {body}"))
}

// --- the tests -----------------------------------------------------------------

/// The image is the runtime base plus one layer holding only the binary,
/// and its user, entrypoint, command and ports are the ones the Deployment
/// relies on.
#[test]
#[ignore = "needs podman and runc; ./scripts/test.sh installs them and runs it"]
fn image_is_the_base_plus_the_binary_as_the_deployment_expects() {
    let m = manifest();
    let image = image();
    let field = |format: &str, of: &str| podman_ok(&["image", "inspect", "--format", format, of]);

    assert_eq!(
        field("{{.Config.User}}", image),
        format!("{}:{}", m.user, m.group),
        "the image's user is the Deployment's runAsUser:runAsGroup"
    );
    assert_eq!(
        field("{{json .Config.Entrypoint}}", image),
        r#"["/usr/local/bin/switchyard"]"#
    );
    // The Deployment's args replace CMD; both start `serve --config` on the
    // file in the mounted ConfigMap.
    let config = format!("{}/routes.yaml", m.mount_path);
    assert_eq!(
        field("{{json .Config.Cmd}}", image),
        format!(r#"["serve","--config","{config}"]"#)
    );
    assert_eq!(m.arg("--config"), config);
    let exposed = field("{{json .Config.ExposedPorts}}", image);
    for (name, port) in &m.ports {
        assert!(
            exposed.contains(&format!("\"{port}/tcp\"")),
            "port {name} ({port}) is not exposed: {exposed}"
        );
    }

    // Nothing but the binary on top of the base.
    let base = "localhost/switchyard-base:cc-debian12-nonroot";
    let layers = |of: &str| -> usize {
        field("{{len .RootFS.Layers}}", of)
            .parse()
            .expect("layer count")
    };
    assert_eq!(layers(image), layers(base) + 1, "one layer over the base");
    let size = |of: &str| -> u64 { field("{{.Size}}", of).parse().expect("size") };
    // CARGO_TARGET_TMPDIR is <target dir>/tmp.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir");
    let binary = std::fs::metadata(target.join("release/switchyard"))
        .expect("the release binary the script built")
        .len();
    let added = size(image) - size(base);
    assert!(
        (binary..binary + 64 * 1024).contains(&added),
        "the image adds {added} bytes to the base; the binary is {binary}"
    );
    eprintln!(
        "{image}: {} bytes ({} base + {added})",
        size(image),
        size(base)
    );
}

/// Runs the image as the Deployment does: it starts and its probes answer;
/// it proxies to a real upstream; a kubelet-style ConfigMap update is
/// picked up inside the container by the watcher (the new route answers,
/// the removed one 404s); and `podman stop` with the grace period drains a
/// request in flight to completion and the container exits 0 within it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs podman and runc; ./scripts/test.sh installs them and runs it"]
async fn image_runs_as_the_deployment_runs_it() {
    let started = Instant::now();
    let m = manifest();
    let app1 = Upstream::start("app1").await;
    let app2 = Upstream::start("app2").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let v1 = routes_yaml(&[("/app1", &app1.host_port())]);
    // The volume directory, holding `..data` and the `routes.yaml` symlink,
    // is what is mounted, as the kubelet mounts a ConfigMap volume.
    let mut volume = ConfigMapDir::create(
        &dir.path().join("routes"),
        &[("routes.yaml", v1.as_bytes())],
    )
    .expect("ConfigMap volume");
    let c = run_like_the_deployment(&m, volume.path()).await;
    eprintln!("ready after {:.1?}", started.elapsed());

    // The limits podman applied are the manifest's.
    assert_eq!(
        c.inspect("{{.HostConfig.Memory}}"),
        m.memory_limit.to_string()
    );
    assert_eq!(
        c.inspect("{{.Config.User}}"),
        format!("{}:{}", m.user, m.group)
    );
    assert_eq!(c.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");

    // Every HTTP probe of the manifest, at the port it names, and the main
    // listener's /health.
    for (kind, path, port) in &m.probes {
        let url = c.port_url(&m, port, path);
        let answer = get(&url).await;
        assert_eq!(
            answer.as_ref().map(|a| a.0),
            Some(200),
            "{kind} GET {url}: {answer:?}\n{}",
            c.logs()
        );
    }
    let health = get(&c.url("/health")).await;
    assert_eq!(
        health.as_ref().map(|a| a.0),
        Some(200),
        "main /health: {health:?}"
    );

    // Proxied to the upstream on the host's loopback.
    let echo = echo_of(&c.url("/app1/hello?x=1")).await;
    assert_eq!(echo.upstream, "app1");
    assert_eq!(echo.uri, "/app1/hello?x=1");
    assert_eq!(app1.hits(), 1);
    assert_eq!(
        get(&c.url("/app2/x")).await.map(|a| a.0),
        Some(404),
        "no /app2 route yet"
    );

    // The kubelet's update: new timestamped dir, `..data` swapped by rename,
    // old dir removed. /app1 goes, /app2 comes.
    let v2 = routes_yaml(&[("/app2", &app2.host_port())]);
    let swapped = Instant::now();
    assert!(volume
        .update(&[("routes.yaml", v2.as_bytes())], KubeletOrder::Current)
        .expect("ConfigMap update"));
    let echo = eventually(
        "the new route /app2 answers from inside the container",
        || async {
            let (status, body) = get(&c.url("/app2/x")).await?;
            (status == 200).then(|| serde_json::from_str::<Echo>(&body).expect("echo"))
        },
    )
    .await;
    eprintln!("ConfigMap update served after {:.1?}", swapped.elapsed());
    assert_eq!(echo.upstream, "app2");
    let gone = get(&c.url("/app1/hello")).await;
    assert_eq!(
        gone.as_ref().map(|a| a.0),
        Some(404),
        "the removed route: {gone:?}"
    );
    let routes: serde_json::Value = client()
        .get(c.admin_url("/routes"))
        .send()
        .await
        .expect("GET /routes")
        .json()
        .await
        .expect("routes JSON");
    assert_eq!(routes["generation"], 2, "{routes}");
    assert!(routes["last_error"].is_null(), "{routes}");
    let logs = c.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"trigger\":\"watch\"") && l.contains("\"generation\":2")),
        "the directory watcher, not the poll, applied the update:\n{logs}"
    );

    // A slow response in flight when the container is stopped.
    let tx = app2.arm_stream().await;
    tx.send("one\n".into()).await.expect("first chunk");
    let slow = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(patience())
        .read_timeout(m.grace)
        .build()
        .expect("client");
    let resp = slow
        .get(c.url("/app2/stream"))
        .send()
        .await
        .expect("GET /app2/stream");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body
        .next()
        .await
        .expect("a first chunk")
        .expect("first chunk");
    assert_eq!(&first[..], b"one\n");

    let grace = m.grace.as_secs().to_string();
    let stop_started = Instant::now();
    let mut stop = tokio::process::Command::new("podman")
        .args(["stop", "--time", &grace, &c.name])
        .env("CONTAINERS_CONF", containers_conf())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn podman stop");

    // Draining: readiness turns 503 while liveness stays 200 ...
    let ready = m
        .probes
        .iter()
        .find(|(kind, _, _)| kind == "readinessProbe")
        .expect("a readiness probe");
    let ready_url = c.port_url(&m, &ready.2, &ready.1);
    eventually("readiness 503 after podman stop", || async {
        (get(&ready_url).await?.0 == 503).then_some(())
    })
    .await;
    if let Some((_, path, port)) = m.probes.iter().find(|(k, _, _)| k == "livenessProbe") {
        let url = c.port_url(&m, port, path);
        assert_eq!(
            get(&url).await.map(|a| a.0),
            Some(200),
            "liveness while draining"
        );
    }
    // ... then the listener closes ...
    let main = c.main;
    eventually("the main listener closes", || async move {
        tokio::net::TcpStream::connect(main)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // ... and the response in flight still completes.
    tx.send("two\n".into()).await.expect("second chunk");
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(
            &chunk.unwrap_or_else(|e| panic!("the in-flight response was cut: {e}\n{}", c.logs())),
        );
    }
    assert_eq!(rest, b"two\n", "the rest of the in-flight response");

    let stopped = tokio::time::timeout(m.grace + patience(), stop.wait())
        .await
        .expect("podman stop did not return")
        .expect("podman stop");
    let took = stop_started.elapsed();
    let mut stop_err = String::new();
    if let Some(mut e) = stop.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut stop_err).await;
    }
    assert!(stopped.success(), "podman stop: {stopped}: {stop_err}");
    assert!(
        took < m.grace,
        "stopped after {took:?}, not within the grace period {:?}: {stop_err}",
        m.grace
    );
    assert_eq!(
        c.inspect("{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0",
        "{}",
        c.logs()
    );
    eprintln!(
        "drained and exited 0 {took:.1?} after podman stop; whole test {:.1?}",
        started.elapsed()
    );
}
