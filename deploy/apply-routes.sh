#!/usr/bin/env bash
# Validates a routes file, puts it into the dev proxy's ConfigMap, and waits
# until every proxy pod serves it. Replaces "edit the ConfigMap, restart the
# pod": no pod restarts, no dropped connections. Run with --help for usage.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/apply-routes.sh ROUTES_FILE [options]

Validate ROUTES_FILE with `switchyard check`, store it as key routes.yaml of
the proxy's ConfigMap, nudge every proxy pod to pick it up now, and wait until
each pod's admin /routes reports the file's sha256.

Options:
  -n, --namespace NS      namespace (default: dev)
  --configmap NAME        ConfigMap holding routes.yaml (default: dev-proxy-routes)
  -l, --selector SEL      label selector of the proxy pods
                          (default: app.kubernetes.io/name=dev-proxy)
  --admin-port PORT       the pods' admin port (default: 9901)
  --timeout SECS          how long to wait for every pod (default: 120)
  -h, --help              this text

Environment:
  SWITCHYARD   the switchyard binary for the local check (default: switchyard;
               e.g. SWITCHYARD=target/release/switchyard)
  KUBECTL      the kubectl binary (default: kubectl); its current context is used

Needs: kubectl, sha256sum (or shasum), jq or python3. RBAC: get and patch on
the ConfigMap, list, get and patch on pods, get on pods/proxy.

Exit status: 0 every pod serves the file (or no pod runs); 1 a pod rejected
it or did not converge in time; `switchyard check`'s status (1 invalid,
2 unreadable) when the file fails the check; 2 usage errors or a missing
tool; a failing kubectl command's own status.
EOF
}

die() {
  echo "apply-routes: $*" >&2
  exit 2
}

have() { command -v "$1" >/dev/null 2>&1; }

namespace=dev
configmap=dev-proxy-routes
selector=app.kubernetes.io/name=dev-proxy
admin_port=9901
timeout=120
file=

while [ "$#" -gt 0 ]; do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    -n | --namespace | --configmap | -l | --selector | --admin-port | --timeout)
      [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"
      case "$1" in
        -n | --namespace) namespace=$2 ;;
        --configmap) configmap=$2 ;;
        -l | --selector) selector=$2 ;;
        --admin-port) admin_port=$2 ;;
        --timeout) timeout=$2 ;;
      esac
      shift 2
      ;;
    --namespace=* | --configmap=* | --selector=* | --admin-port=* | --timeout=*)
      value=${1#*=}
      case "$1" in
        --namespace=*) namespace=$value ;;
        --configmap=*) configmap=$value ;;
        --selector=*) selector=$value ;;
        --admin-port=*) admin_port=$value ;;
        --timeout=*) timeout=$value ;;
      esac
      shift
      ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *)
      [ -z "$file" ] || die "only one ROUTES_FILE, got '$file' and '$1'"
      file=$1
      shift
      ;;
  esac
done

[ -n "$file" ] || {
  usage >&2
  exit 2
}
[ -f "$file" ] || die "not a file: $file"
case "$timeout" in '' | *[!0-9]*) die "--timeout wants whole seconds, got '$timeout'" ;; esac
case "$admin_port" in '' | *[!0-9]*) die "--admin-port wants a number, got '$admin_port'" ;; esac

switchyard=${SWITCHYARD:-switchyard}
kubectl=${KUBECTL:-kubectl}
have "$switchyard" || die "switchyard not found (set SWITCHYARD=path/to/switchyard)"
have "$kubectl" || die "kubectl not found (set KUBECTL=path/to/kubectl)"

# --- small helpers ----------------------------------------------------------

sha256_of() {
  if have sha256sum; then
    sha256sum "$1" | cut -d' ' -f1
  elif have shasum; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die "neither sha256sum nor shasum found"
  fi
}

if have jq; then
  # json_get KEY < JSON: the top-level field as text; null -> empty.
  json_get() { jq -r --arg k "$1" '.[$k] // "" | tostring'; }
  # running_pods < pod list JSON: names of pods that run and are not leaving.
  running_pods() {
    jq -r '.items[] | select(.status.phase == "Running" and .metadata.deletionTimestamp == null) | .metadata.name'
  }
elif have python3; then
  json_get() {
    python3 -c 'import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else v)' "$1"
  }
  running_pods() {
    python3 -c 'import json, sys
for p in json.load(sys.stdin)["items"]:
    if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"):
        print(p["metadata"]["name"])'
  }
else
  die "need jq or python3 to read JSON"
fi

# Seconds since the epoch, with a fraction where bash offers one (bash 5);
# some locales write EPOCHREALTIME with a comma.
now() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    echo "${EPOCHREALTIME/,/.}"
  else
    date +%s
  fi
}
indent() { sed "s/^/$1/"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# GET the admin /routes of one pod through the API server's pod proxy, so
# this works from a laptop without port-forwards or reaching pod IPs.
pod_routes() {
  "$kubectl" get --raw "/api/v1/namespaces/$namespace/pods/$1:$admin_port/proxy/routes" \
    --request-timeout=5s
}

# --- 1. validate locally, exactly as a reload would -------------------------

status=0
"$switchyard" check "$file" || status=$?
if [ "$status" -ne 0 ]; then
  echo "apply-routes: $file is not valid; nothing applied" >&2
  exit "$status"
fi
want=$(sha256_of "$file")

# Refuse to create a ConfigMap that is not there: a wrong --namespace or
# --configmap would otherwise "succeed" where no proxy reads it.
"$kubectl" get configmap -n "$namespace" "$configmap" -o name >/dev/null ||
  die "ConfigMap $namespace/$configmap not found: install deploy/kubernetes first, or check --namespace/--configmap"

# --- 2. the pods, and what each reports before the change -------------------

pods=()
while IFS= read -r pod; do
  [ -n "$pod" ] && pods+=("$pod")
done < <("$kubectl" get pods -n "$namespace" -l "$selector" -o json | running_pods)
# A pod's last_error may predate this change (an earlier rejected file).
# Only an error that differs from the one seen now counts as rejecting the
# new file; an unchanged one still shows if the pod times out.
before_error=()
for i in "${!pods[@]}"; do
  before_error[i]=$({ pod_routes "${pods[i]}" | json_get last_error; } 2>/dev/null || true)
done

# --- 3. apply the ConfigMap -------------------------------------------------

# `kubectl label --local` re-adds the labels the kustomize base gives the
# ConfigMap; without them this client-side apply would remove them.
"$kubectl" create configmap "$configmap" --from-file=routes.yaml="$file" \
  -n "$namespace" --dry-run=client -o yaml |
  "$kubectl" label --local -f - -o yaml \
    app.kubernetes.io/name=dev-proxy app.kubernetes.io/part-of=switchyard |
  "$kubectl" apply -f -
start=$(now)

if [ "${#pods[@]}" -eq 0 ]; then
  echo "apply-routes: warning: no running pods match $selector in $namespace;" \
    "the ConfigMap is updated and a proxy reads it when it starts" >&2
  exit 0
fi

# --- 4. nudge the kubelet ---------------------------------------------------

# The kubelet refreshes ConfigMap volumes on its periodic pod sync, every
# 60-90 s; a change to any pod annotation makes it sync that pod now. The
# timestamp changes even when the sha256 does not (re-applying a file that
# someone had overwritten by hand). Pods are not restarted: annotations on a
# pod are not the Deployment's pod template.
"$kubectl" annotate pod -n "$namespace" -l "$selector" --overwrite \
  "switchyard.dev/routes-sha256=$want" \
  "switchyard.dev/routes-applied-at=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >/dev/null ||
  echo "apply-routes: warning: could not annotate the pods; they pick the file up within ~90 s" >&2

# --- 5. wait for every pod --------------------------------------------------

echo "apply-routes: waiting for ${#pods[@]} pod(s) to serve sha256 $want (timeout ${timeout}s)"
deadline=$((SECONDS + timeout))
pending=("${!pods[@]}")
failed=0
while [ "${#pending[@]}" -gt 0 ]; do
  still=()
  for i in "${pending[@]}"; do
    pod=${pods[i]}
    if ! json=$(pod_routes "$pod" 2>/dev/null); then
      # Gone (replaced by a rollout) or not answering yet.
      if ! "$kubectl" get pod -n "$namespace" "$pod" -o name >/dev/null 2>&1; then
        echo "$pod: gone; skipped (a new pod reads the file when it starts)"
        continue
      fi
      still+=("$i")
      continue
    fi
    sha=$(json_get sha256 <<<"$json")
    generation=$(json_get generation <<<"$json")
    last_error=$(json_get last_error <<<"$json")
    if [ "$sha" = "$want" ]; then
      echo "$pod: applied generation $generation in $(elapsed "$start")s"
    elif [ -n "$last_error" ] && [ "$last_error" != "${before_error[i]}" ]; then
      echo "$pod: REJECTED the file; still serving generation $generation (sha256 $sha):" >&2
      indent '    ' <<<"$last_error" >&2
      failed=1
    else
      still+=("$i")
    fi
  done
  pending=(${still[@]+"${still[@]}"})
  [ "${#pending[@]}" -gt 0 ] || break
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "apply-routes: timed out after ${timeout}s; not converged:" >&2
    for i in "${pending[@]}"; do
      pod=${pods[i]}
      json=$(pod_routes "$pod" 2>/dev/null || echo '{}')
      echo "  $pod: sha256 $(json_get sha256 <<<"$json") generation $(json_get generation <<<"$json")" >&2
      last_error=$(json_get last_error <<<"$json")
      [ -z "$last_error" ] || indent '    last_error: ' <<<"$last_error" >&2
    done
    exit 1
  fi
  sleep 0.5
done

if [ "$failed" -ne 0 ]; then
  echo "apply-routes: the ConfigMap holds the new file, but some pods rejected it (see above)" >&2
  exit 1
fi
echo "apply-routes: all ${#pods[@]} pod(s) serve $file"
