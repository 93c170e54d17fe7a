# Shared by the shell benches (allocs.sh, instructions.sh, ab.sh); sourced,
# after `set -euo pipefail` and a cd to the repository root.
#
# bench_args NAME ARG...      the options of allocs.sh and instructions.sh:
#                             --fast-path and --access-log (into $fast and
#                             $log, on and off by default), then the binary
#                             ($bin, target/release/switchyard by default).
# bench_require NAME TOOL...  exits 2 naming the first missing tool.
# bench_start                 a temp dir ($tmp), removed on exit with every
#                             process whose pid is added to `pids` (and
#                             `bench_on_exit` called first, if defined).
# port                        a free port on 127.0.0.1 (bound, then freed).
# bench_upstream              the upstream every bench uses, as
#                             benches/compare.py's: nginx, 1 worker, a fixed
#                             20-byte text body, on $up; and
#                             $tmp/config/routes.yaml routing /app1 to it.

bench_args() {
    local name=$1
    shift
    fast=on
    log=off
    while [[ ${1:-} == --* ]]; do
        case $1 in
            --fast-path) fast=$2 ;;
            --access-log) log=$2 ;;
            *) echo "$name: unknown option $1" >&2; exit 2 ;;
        esac
        shift 2
    done
    bin=${1:-target/release/switchyard}
    [[ -x $bin ]] || { echo "$name: no binary at $bin (cargo build --release)" >&2; exit 2; }
}

bench_require() {
    local name=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$name: $tool is missing" >&2; exit 2; }
    done
}

bench_start() {
    tmp=$(mktemp -d)
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if declare -F bench_on_exit >/dev/null; then bench_on_exit; fi
    rm -rf "$tmp"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Temp-path directives that keep nginx out of its system directories.
bench_nginx_paths() {
    echo "client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;"
}

bench_upstream() {
    up=$(port)
    mkdir -p "$tmp/config" "$tmp/upstream"
    cat > "$tmp/upstream/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/upstream/nginx.pid;
error_log $tmp/upstream/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    $(bench_nginx_paths "$tmp/upstream")
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$up backlog=4096;
        location / { default_type text/plain; return 200 "hello from upstream\n"; }
    }
}
CONF
    printf 'routes:\n  - path: /app1\n    upstream: 127.0.0.1:%s\n' "$up" > "$tmp/config/routes.yaml"
    nginx -c "$tmp/upstream/nginx.conf" -p "$tmp/upstream" &
    pids+=($!)
    upstream_pid=$!
}
