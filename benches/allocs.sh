#!/usr/bin/env bash
# Heap allocations per request of a running Switchyard, counted with
# uprobes on glibc's malloc, calloc, realloc, posix_memalign and free
# (perf probe), under a steady keep-alive load: the fast path's goal is
# none in steady state. (Frees can outnumber allocations: a free releases
# memory allocated before the count began.)
#
#   benches/allocs.sh [--fast-path on|off] [--access-log on|off] [BINARY]
#
# Needs root (uprobes), perf (Debian: linux-perf), nginx (the upstream) and
# wrk; everything runs on 127.0.0.1 ports the kernel picks, and is stopped
# on exit. Prints requests, allocating calls (malloc + calloc + realloc) and
# free calls during a 2 s wrk run after a 1 s warm-up, and their ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

source benches/lib.sh
bench_args allocs.sh "$@"
bench_require allocs.sh perf nginx wrk curl python3
libc=$(ldd "$bin" | awk '/libc\.so/ {print $3}')
[[ -n $libc ]] || { echo "allocs.sh: cannot find the libc $bin uses" >&2; exit 2; }

bench_on_exit() { perf probe -q -d 'probe_libc:*' 2>/dev/null || true; }
bench_start
bench_upstream
listen=$(port); admin=$(port)
"$bin" serve --config "$tmp/config/routes.yaml" --listen "127.0.0.1:$listen" \
    --admin-listen "127.0.0.1:$admin" --threads 2 --access-log "$log" \
    --fast-path "$fast" 2>"$tmp/switchyard.log" &
proxy=$!
pids+=("$proxy")
for _ in $(seq 200); do
    curl -fs -o /dev/null "http://127.0.0.1:$listen/app1/x" && break
    sleep 0.05
done
curl -fs -o /dev/null "http://127.0.0.1:$listen/app1/x" || { echo "allocs.sh: the proxy did not come up" >&2; exit 1; }

perf probe -q -d 'probe_libc:*' 2>/dev/null || true
perf probe -q -x "$libc" --add malloc --add calloc --add realloc --add posix_memalign --add free
url="http://127.0.0.1:$listen/app1/x"
wrk -t2 -c64 -d1s "$url" >/dev/null
perf stat -e probe_libc:malloc,probe_libc:calloc,probe_libc:realloc,probe_libc:posix_memalign,probe_libc:free -p "$proxy" -o "$tmp/perf.txt" -- sleep 3 &
stat=$!
wrk -t2 -c64 -d2s "$url" > "$tmp/wrk.txt"
wait "$stat"
requests=$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")
mallocs=$(awk '/probe_libc:(malloc|calloc|realloc|posix_memalign)/ {gsub(",", "", $1); n += $1} END {print n}' "$tmp/perf.txt")
frees=$(awk '/probe_libc:free/ {gsub(",", "", $1); print $1}' "$tmp/perf.txt")
python3 - "$fast $log" "$requests" "$mallocs" "$frees" <<'PY'
import sys
fast, req, m, f = sys.argv[1].split()[0], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
log = sys.argv[1].split()[1]
print(f"--fast-path {fast} --access-log {log}: {req} requests, {m} allocating calls, {f} free: "
      f"{m / req:.3f} allocations and {f / req:.3f} frees per request")
PY
