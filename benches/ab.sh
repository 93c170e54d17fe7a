#!/usr/bin/env bash
# A/B of Switchyard builds against nginx, in alternating rounds: per round
# nginx (2 workers, upstream keep-alive) and then each binary in turn, each
# binary started afresh, a 1 s wrk warm-up and then a measured wrk run.
# Prints the medians per contender: req/s (and its ratio to nginx's), CPU
# per request of the proxy and of the upstream, and the machine's busy and
# idle time per request (from /proc/stat). Quicker and less thorough than
# benches/compare.py, for comparing builds in the same rounds.
#
#   benches/ab.sh [-c CONNS] [-r ROUNDS] [-d SECS] BINARY...
#
# Needs nginx, wrk, curl and python3; everything runs on 127.0.0.1 ports
# the kernel picks, and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

conns=64 rounds=5 secs=4
while getopts c:r:d: opt; do
    case $opt in
        c) conns=$OPTARG ;;
        r) rounds=$OPTARG ;;
        d) secs=$OPTARG ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
(($# > 0)) || { echo "usage: benches/ab.sh [-c CONNS] [-r ROUNDS] [-d SECS] BINARY..." >&2; exit 2; }
source benches/lib.sh
bench_require ab.sh nginx wrk curl python3
bench_start
bench_upstream
ngport=$(port)
mkdir -p "$tmp/ng"
cat > "$tmp/ng/nginx.conf" <<CONF
worker_processes 2; daemon off; pid $tmp/ng/nginx.pid; error_log $tmp/ng/error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; $(bench_nginx_paths "$tmp/ng")
    upstream up { server 127.0.0.1:$up; keepalive 1024; }
    server { listen 127.0.0.1:$ngport backlog=4096;
        location /app1 { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header Host \$host; } } }
CONF
nginx -c "$tmp/ng/nginx.conf" -p "$tmp/ng" & pids+=($!)
ng_master=$!
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$ngport/app1/x" && break; sleep 0.05; done
up_workers=$(pgrep -P "$upstream_pid" | tr '\n' ' ')
ng_workers=$(pgrep -P "$ng_master" | tr '\n' ' ')

ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }
# measure NAME PORT PID...: one line: name req/s proxy-µs upstream-µs busy-µs idle-µs
measure() {
    local name=$1 port=$2 p0 p1 u0 u1 b0 i0 b1 i1 req rps
    shift 2
    wrk -t2 -c"$conns" -d1s "http://127.0.0.1:$port/app1/x" >/dev/null
    p0=$(ticks "$@"); u0=$(ticks $up_workers); read -r b0 i0 < <(machine)
    wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$port/app1/x" > "$tmp/wrk.txt"
    p1=$(ticks "$@"); u1=$(ticks $up_workers); read -r b1 i1 < <(machine)
    req=$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")
    rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")
    python3 -c "import os; t = 1e6 / os.sysconf('SC_CLK_TCK') / $req
print('$name', $rps, ($p1 - $p0) * t, ($u1 - $u0) * t, ($b1 - $b0) * t, ($i1 - $i0) * t)"
}
for _ in $(seq "$rounds"); do
    measure nginx "$ngport" $ng_workers
    for bin in "$@"; do
        listen=$(port); admin=$(port)
        "$bin" serve --config "$tmp/config/routes.yaml" --listen "127.0.0.1:$listen" \
            --admin-listen "127.0.0.1:$admin" --threads 2 --access-log off 2>"$tmp/switchyard.log" &
        sy=$!
        for _ in $(seq 200); do curl -fs -o /dev/null "http://127.0.0.1:$listen/app1/x" && break; sleep 0.05; done
        measure "$bin" "$listen" "$sy"
        kill "$sy"; wait "$sy" 2>/dev/null || true
    done
done > "$tmp/rounds.txt"
python3 - "$tmp/rounds.txt" "$conns" "$rounds" "$secs" <<'PY'
import statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
print(f"{sys.argv[3]} rounds, wrk -t2 -c{sys.argv[2]} -d{sys.argv[4]}s; medians; µs per request")
nginx = st.median(r[0] for r in rows["nginx"])
for name, rs in rows.items():
    rps, proxy, up, busy, idle = (st.median(r[k] for r in rs) for k in range(5))
    print(f"{name}: {rps:,.0f} req/s ({rps / nginx:.3f}x nginx), proxy {proxy:.2f}, upstream {up:.2f}, "
          f"machine busy {busy:.2f}, idle {idle:.2f}")
PY
