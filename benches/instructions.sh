#!/usr/bin/env bash
# Instructions Switchyard executes per request, counted by callgrind
# (valgrind) under a fixed load: user-space work only (the kernel's share of
# each system call is not counted), but exact and repeatable to a few
# instructions, where wall-clock CPU per request on a shared 2-core machine
# moves by several per cent between runs. Use it to judge a change to the
# request path; benches/compare.py judges the whole.
#
#   benches/instructions.sh [--fast-path on|off] [--access-log on|off] [BINARY]
#
# The proxy runs under callgrind twice, serving 4,000 and then 24,000
# requests; the difference of the two totals over 20,000 is the per-request
# figure, without start-up and shutdown. The load is
# benches/instructions_load.py: 32 keep-alive connections, one request on
# each in turn and then every answer, so the proxy handles bursts as under
# wrk. Needs valgrind, nginx (the upstream), curl and python3; everything
# runs on 127.0.0.1 ports the kernel picks and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

source benches/lib.sh
bench_args instructions.sh "$@"
bench_require instructions.sh valgrind callgrind_annotate nginx curl python3
bench_start
bench_upstream

# Total instructions of one run of the proxy serving $1 requests.
run() {
    local listen admin proxy
    listen=$(port); admin=$(port)
    valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" \
        "$bin" serve --config "$tmp/config/routes.yaml" --listen "127.0.0.1:$listen" \
        --admin-listen "127.0.0.1:$admin" --threads 2 --access-log "$log" \
        --fast-path "$fast" 2>"$tmp/valgrind.log" &
    proxy=$!
    for _ in $(seq 600); do
        curl -fs -o /dev/null "http://127.0.0.1:$listen/app1/x" && break
        sleep 0.1
    done
    python3 benches/instructions_load.py "$listen" "$1" 32 >/dev/null
    kill -INT "$proxy"
    wait "$proxy" 2>/dev/null || true
    callgrind_annotate "$tmp/callgrind.out" 2>/dev/null |
        awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}'
}

small=$(run 4000)
large=$(run 24000)
python3 - "$fast" "$log" "$small" "$large" <<'PY'
import sys
fast, log, small, large = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print(f"--fast-path {fast} --access-log {log}: {(large - small) / 20000:.0f} instructions per request "
      f"(callgrind totals {small:,} for 4,000 requests, {large:,} for 24,000)")
PY
