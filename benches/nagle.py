#!/usr/bin/env python3
"""Keep-alive upstreams that Nagle, through Switchyard and nginx.

    python3 benches/nagle.py [--binary [NAME=]PATH ...] [--requests N] [--rounds R]
                             [--duration SECS] [--connections C] [--no-nginx] [--no-strace]
                             [--quick] [--out FILE]

The upstream is tests/fixtures/nagle_upstream.py: Python's http.server
with `protocol_version = "HTTP/1.1"`, the head and the body of every
response in two writes, Nagle on. On a reused connection its body waits
for the ACK of its head, so a peer that delays its ACKs pays ~40 ms per
response. Two parts:

1. Latency, one request at a time (N of them after one unmeasured warm-up
   request, each timed from the request's write to the response's last
   byte, on one keep-alive client connection unless the row says
   otherwise): straight to the upstream (keep-alive, and a new connection
   per request), then for each binary its fast path (pooled upstream
   connection; a Content-Length body and a chunked one) and `--fast-path
   off`, then nginx with an upstream keep-alive pool and without one (a
   new upstream connection per request). Median, p99 (nearest rank) and
   max, and how many upstream connections the upstream accepted during
   the N requests (read from its `GET /connections`).

2. The common case, an upstream that does not Nagle (nginx answering a
   fixed 20-byte body, as in compare.py): each binary's fast path under
   `wrk -t1 -cC -dSECS --latency`, rounds alternating the binaries
   (req/s, p50, p99, the proxy's CPU per request, and the cores other
   processes used meanwhile); then, with each binary run under `strace -f
   --seccomp-bpf -e trace=setsockopt`, how many setsockopt calls, and of
   them TCP_QUICKACK, it made during a short wrk run against that
   upstream, during N sequential requests to the Nagling one, and during
   20 sequential 1 MiB responses from nginx (a body that takes many
   reads).

Each binary is run from a private copy (others may rebuild target/ while
this runs); the default is target/release/switchyard, built when missing.
`--binary before=/tmp/a --binary after=/tmp/b` compares two builds in the
same run. Every Switchyard runs `--threads 2 --access-log off
--drain-delay 0`. nginx (2 workers) and wrk are installed with apt-get
when missing (as root), strace too; `--no-nginx` skips nginx as a proxy
(it is still the common case's upstream), `--no-strace` the counts.

Everything listens on 127.0.0.1 on ports the kernel picked; every process
the script starts lives in its own temp dir and is stopped on exit
(normal end, exception, Ctrl-C, SIGTERM, SIGHUP); every wait is bounded.
About 2 minutes for one binary with the defaults, ~20 s with --quick.
Prints a markdown report (and writes it to --out when given). Python 3
standard library only; uses the sidebyside package next to this file.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sidebyside.common import REPO, UPSTREAM_BODY, BenchError, log
from sidebyside.configs import fill, routes_yaml, temp_paths_block
from sidebyside.net import free_port, http_get
from sidebyside.procfs import children_of
from sidebyside.procs import CLEANUP, PROCS, cleanup, install_cleanup
from sidebyside.proxies import Nginx, Switchyard
from sidebyside.tools import ensure_binary, ensure_tools, find_tool, raise_nofile, snapshot_binary, tool_version
from sidebyside.wrk import Wrk

FIXTURE = REPO / "tests" / "fixtures" / "nagle_upstream.py"
TIMEOUT = 5.0  # seconds for any one socket operation of the client
BIG = 1 << 20  # bytes of the large body in the setsockopt counts
BIG_REQUESTS = 20
SERVE = {"--threads": "2", "--access-log": "off", "--drain-delay": "0"}


# --- the client -------------------------------------------------------------


class Conn:
    """One client connection speaking HTTP/1.1, TCP_NODELAY on, reading
    Content-Length and chunked bodies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise BenchError("the server closed the connection mid-response")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: nagle.bench\r\n\r\n".encode())
        status = int(self._line().split()[1])
        length, chunked = 0, False
        while line := self._line():
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.strip().lower() == b"chunked"
        if not chunked:
            return status, self._exact(length)
        body = b""
        while size := int(self._line().split(b";")[0], 16):
            body += self._exact(size + 2)[:size]
        self._exact(2)  # the empty trailer's CRLF
        return status, body


def timed_requests(port: int, path: str, n: int, fresh: bool, after_warmup=lambda: None) -> list[float]:
    """n GETs after one warm-up GET (which opens the pooled upstream
    connection; `after_warmup` is called then); seconds each."""
    conn = Conn(port)
    out = []
    try:
        status, body = conn.get(path)
        if status != 200:
            raise BenchError(f":{port}{path} answered {status} {body!r}")
        after_warmup()
        for _ in range(n):
            if fresh:
                conn.close()
                conn = Conn(port)
            t0 = time.perf_counter()
            status, body = conn.get(path)
            out.append(time.perf_counter() - t0)
            if status != 200:
                raise BenchError(f":{port}{path} answered {status} {body!r}")
    finally:
        conn.close()
    return out


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def ms(x: float) -> str:
    return f"{x * 1e3:.2f} ms"


# --- the processes ----------------------------------------------------------


class NaglingUpstream:
    """tests/fixtures/nagle_upstream.py on a port it reports."""

    def __init__(self, tmp: Path) -> None:
        self.proc = PROCS.spawn([sys.executable, str(FIXTURE)], tmp / "nagle-upstream.log",
                                stdout=subprocess.PIPE)
        CLEANUP.append(self.stop)
        ready, _, _ = select.select([self.proc.stdout], [], [], 15.0)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening "):
            raise BenchError(f"the Nagling upstream did not report its port: {line!r}")
        self.port = int(line.split()[1])

    def connections(self) -> int:
        """Connections it has accepted so far, not counting the one asking."""
        status, body = http_get(self.port, "/connections")
        if status != 200:
            raise BenchError(f"upstream /connections answered {status}")
        return int(body) - 1

    def stop(self) -> None:
        PROCS.stop(self.proc)


class TracedSwitchyard(Switchyard):
    """A Switchyard started under `strace -f -e trace=setsockopt`."""

    def __init__(self, strace: str, trace: Path, *args) -> None:
        super().__init__(*args)
        self.strace, self.trace = strace, trace

    def argv(self) -> list[str]:
        # --seccomp-bpf: only setsockopt stops the process, so the load runs
        # at nearly full speed.
        return [self.strace, "-f", "--seccomp-bpf", "-qq", "-e", "trace=setsockopt", "-o", str(self.trace),
                *super().argv()]

    def finish(self) -> list[str]:
        """Stops the proxy (not strace, so that it writes everything out),
        waits for strace to exit, and returns the traced calls."""
        if self.proc:
            for pid in children_of(self.proc.pid):
                os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            self.stop()
        return [line for line in self.trace.read_text(errors="replace").splitlines() if "setsockopt(" in line]


@dataclass
class Binary:
    name: str
    path: str  # the private copy
    info: str


# --- the run ----------------------------------------------------------------


class Run:
    def __init__(self, a, tmp: Path, nginx: str, wrk: str, binaries: list[Binary], strace: str | None) -> None:
        self.a, self.tmp, self.nginx, self.binaries, self.strace = a, tmp, nginx, binaries, strace
        self.wrk = Wrk(wrk, 1, a.quiet_wait)
        self.ports: set[int] = set()
        self.temp_paths = temp_paths_block(nginx)
        self.nofile = raise_nofile()
        self.latency: list[tuple[str, str, list[float], int]] = []  # (row, binary, samples, upstream conns)
        self.load: dict[str, list[dict]] = {}
        self.counts: list[tuple[str, str, int, int, int]] = []  # (binary, load, requests, setsockopt, quickack)

    def switchyard(self, name: str, binary: Binary, extra: list[str], routes: bytes,
                   traced: Path | None = None) -> Switchyard:
        args = (binary.path, name, self.tmp / name, free_port(self.ports), free_port(self.ports), SERVE, extra)
        sy = TracedSwitchyard(self.strace, traced, *args) if traced else Switchyard(*args)
        CLEANUP.append(sy.stop)
        sy.start(routes)
        return sy

    def setup(self) -> None:
        self.py = NaglingUpstream(self.tmp)
        log(f"Nagling upstream (python http.server) on :{self.py.port}")
        self.up = Nginx(self.nginx, "upstream", self.tmp / "upstream", free_port(self.ports))
        CLEANUP.append(self.up.stop)
        # nginx's workers (nobody, when run as root) must reach the file.
        self.tmp.chmod(0o711)
        (self.tmp / "upstream" / "www" / "app1").mkdir(parents=True)
        (self.tmp / "upstream" / "www" / "app1" / "big").write_bytes(os.urandom(BIG))
        conf = fill("upstream.conf.tmpl", self.nofile, TEMP_PATHS=self.temp_paths, PORT=str(self.up.port))
        # One more location beside its fixed answer: a 1 MiB file.
        conf = conf.replace("        location / {", "        location = /app1/big { root www; }\n        location / {", 1)
        self.up.write(conf)
        self.up.start("/x")
        if http_get(self.up.port, "/app1/big")[0] != 200:
            raise BenchError(f"the nginx upstream does not serve /app1/big:\n{self.up.logs()}")
        self.wrk.upstream = self.up
        log(f"TCP_NODELAY upstream (nginx) on :{self.up.port}")
        # /app1 (wrk's path) to the nginx upstream, everything else to Python.
        self.routes = routes_yaml([("/app1", f"127.0.0.1:{self.up.port}"), ("/", f"127.0.0.1:{self.py.port}")])

    def nginx_proxy(self) -> Nginx:
        ng = Nginx(self.nginx, "nginx", self.tmp / "nginx", free_port(self.ports))
        CLEANUP.append(ng.stop)
        ng.write(f"""worker_processes 2;
daemon off;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{self.temp_paths}
    keepalive_requests 100000;
    keepalive_timeout 75s;
    upstream pooled {{
        server 127.0.0.1:{self.py.port};
        keepalive 16;
        keepalive_requests 100000;
        keepalive_timeout 60s;
    }}
    upstream fresh {{
        server 127.0.0.1:{self.py.port};
    }}
    server {{
        listen 127.0.0.1:{ng.port};
        location /fresh/ {{
            proxy_pass http://fresh/;
        }}
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://pooled;
        }}
    }}
}}
""")
        ng.start("/x")
        return ng

    def case(self, row: str, binary: str, port: int, path: str, fresh: bool = False) -> None:
        before = []
        samples = timed_requests(port, path, self.a.requests, fresh,
                                 lambda: before.append(self.py.connections()))
        opened = self.py.connections() - before[0] - 1  # not the one that asked before
        self.latency.append((row, binary, samples, opened))
        log(f"{row:58} {binary:12} median {ms(statistics.median(samples))}  p99 {ms(percentile(samples, 0.99))}  "
            f"upstream connections {opened}")

    def latency_part(self) -> None:
        self.case("straight to the upstream, one keep-alive connection", "—", self.py.port, "/x")
        self.case("straight to the upstream, a new connection per request", "—", self.py.port, "/x", fresh=True)
        for b in self.binaries:
            on = self.switchyard(f"{b.name}-fast", b, ["--fast-path", "on"], self.routes)
            self.case("Switchyard fast path, pooled upstream connection", b.name, on.port, "/x")
            self.case("Switchyard fast path, pooled, chunked body", b.name, on.port, "/x/chunked")
            on.stop()
            off = self.switchyard(f"{b.name}-pingora", b, ["--fast-path", "off"], self.routes)
            self.case("Switchyard --fast-path off, pooled upstream connection", b.name, off.port, "/x")
            off.stop()
        if not self.a.no_nginx:
            ng = self.nginx_proxy()
            self.case("nginx, upstream keepalive pool", "—", ng.port, "/x")
            self.case("nginx, no upstream keepalive (a new connection per request)", "—", ng.port, "/fresh/x")
            ng.stop()

    def load_part(self) -> None:
        proxies = {b.name: self.switchyard(f"{b.name}-load", b, ["--fast-path", "on"], self.routes)
                   for b in self.binaries}
        for p in proxies.values():
            status, body = http_get(p.port, "/app1/x")
            if status != 200 or body != UPSTREAM_BODY:
                raise BenchError(f"{p.name} /app1/x answered {status} {body!r}")
            self.wrk.run(p, self.a.connections, 1, measure=False)  # warm-up
        for rnd in range(self.a.rounds):
            for b in self.binaries:  # A B A B
                r = self.wrk.run(proxies[b.name], self.a.connections, self.a.duration)
                self.load.setdefault(b.name, []).append(r)
                log(f"round {rnd + 1}/{self.a.rounds} {b.name:12} {r['rps']:9.0f} req/s  p50 {ms(r['p50'] / 1e3)}  "
                    f"p99 {ms(r['p99'] / 1e3)}  cpu {r['cpu_us_per_req']:.1f} µs/req  errors {r['errors']} "
                    f"non2xx {r['non2xx']}  others {r['cores']['other']:.2f} cores")
        for p in proxies.values():
            p.stop()

    def traced(self, b: Binary, tag: str) -> TracedSwitchyard:
        trace = self.tmp / f"{b.name}-{tag}.strace"
        sy = self.switchyard(f"{b.name}-strace-{tag}", b, ["--fast-path", "on"], self.routes, traced=trace)
        return sy

    def count_part(self) -> None:
        secs = max(1, round(min(self.a.duration, 3)))
        for b in self.binaries:
            sy = self.traced(b, "nodelay")
            p = self.wrk.start(sy.port, self.a.connections, secs)
            r = self.wrk.finish(p, secs)
            calls = sy.finish()
            quick = sum("TCP_QUICKACK" in c for c in calls)
            self.counts.append((b.name, f"wrk -t1 -c{self.a.connections} -d{secs}s, nginx upstream "
                                        f"(TCP_NODELAY, one write)", r["requests"], len(calls), quick))
            log(f"{b.name}: {len(calls)} setsockopt, {quick} TCP_QUICKACK over {r['requests']} requests "
                f"to the nginx upstream")
            sy = self.traced(b, "nagle")
            timed_requests(sy.port, "/x", self.a.requests, False)
            calls = sy.finish()
            quick = sum("TCP_QUICKACK" in c for c in calls)
            n = self.a.requests + 1
            self.counts.append((b.name, f"{n} sequential requests, Nagling upstream", n, len(calls), quick))
            log(f"{b.name}: {len(calls)} setsockopt, {quick} TCP_QUICKACK over {n} requests to the Nagling upstream")
            sy = self.traced(b, "big")
            n = BIG_REQUESTS
            timed_requests(sy.port, "/app1/big", n - 1, False)
            calls = sy.finish()
            quick = sum("TCP_QUICKACK" in c for c in calls)
            self.counts.append((b.name, f"{n} sequential 1 MiB responses, nginx upstream", n, len(calls), quick))
            log(f"{b.name}: {len(calls)} setsockopt, {quick} TCP_QUICKACK over {n} 1 MiB responses")

    def report(self, started: float, elapsed: float, argv: list[str]) -> str:
        a = self.a
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        lines = [
            "# Keep-alive upstreams that Nagle",
            "",
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, `python3 benches/nagle.py"
            f"{(' ' + ' '.join(argv)) if argv else ''}` ({elapsed:.0f} s), tree at {commit}"
            f"{' (with uncommitted changes)' if dirty else ''}; {os.cpu_count()} cores, kernel "
            f"{platform.release()}, {tool_version([self.nginx, '-v'])}, Python {platform.python_version()}.",
            "",
        ]
        lines += [f"- `{b.name}`: {b.info}" for b in self.binaries]
        lines += [
            "",
            f"Latency, {a.requests} sequential requests per row after one warm-up request (from the "
            "request's write to the response's last byte):",
            "",
            "| path to the Nagling upstream | binary | median | p99 | max | upstream connections opened |",
            "|---|---|---|---|---|---|",
        ]
        for row, binary, s, opened in self.latency:
            lines.append(f"| {row} | {binary} | {ms(statistics.median(s))} | {ms(percentile(s, 0.99))} | "
                         f"{ms(max(s))} | {opened} |")
        if self.load:
            lines += [
                "",
                f"The common case: the fast path in front of nginx (TCP_NODELAY, head and body in one write), "
                f"`wrk -t1 -c{a.connections} -d{a.duration:g}s`, {a.rounds} rounds alternating the binaries, "
                "medians:",
                "",
                "| binary | req/s | p50 | p99 | proxy CPU per request | other processes (cores, max) |",
                "|---|---|---|---|---|---|",
            ]
            for b in self.binaries:
                rs = self.load[b.name]
                med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
                lines.append(f"| {b.name} | {med('rps'):,.0f} | {ms(med('p50') / 1e3)} | {ms(med('p99') / 1e3)} | "
                             f"{med('cpu_us_per_req'):.1f} µs | {max(r['cores']['other'] for r in rs):.2f} |")
        if self.counts:
            lines += [
                "",
                "setsockopt calls of the proxy process (`strace -f --seccomp-bpf -e trace=setsockopt`), "
                "a fresh proxy per row:",
                "",
                "| binary | load | requests | setsockopt | of them TCP_QUICKACK | TCP_QUICKACK per request |",
                "|---|---|---|---|---|---|",
            ]
            for name, load, n, calls, quick in self.counts:
                lines.append(f"| {name} | {load} | {n:,} | {calls:,} | {quick:,} | {quick / n if n else 0:.3f} |")
        return "\n".join(lines) + "\n"


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return "?"


def ensure_strace() -> str | None:
    found = find_tool("strace")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    log("installing strace with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "strace"], env=env, timeout=600,
                   stdout=subprocess.DEVNULL)
    return find_tool("strace")


def parse_binary(text: str, i: int) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep:
        name, path = ("switchyard" if i == 0 else f"switchyard{i + 1}"), text
    return name, path


def options(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Keep-alive upstreams that Nagle, through Switchyard and nginx.")
    ap.add_argument("--binary", action="append", default=[], metavar="[NAME=]PATH",
                    help="a switchyard binary to measure (repeatable; default target/release/switchyard, "
                         "built if missing)")
    ap.add_argument("--requests", type=int, help="sequential requests per latency row (default 200, quick 50)")
    ap.add_argument("--rounds", type=int, help="wrk rounds per binary (default 3, quick 1)")
    ap.add_argument("--duration", type=float, help="seconds per wrk run (default 5, quick 2)")
    ap.add_argument("--connections", type=int, default=16, help="wrk -c (default 16)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="seconds in all to wait, before wrk runs, for other processes to leave the CPUs idle "
                         "(default 30; 0 = never wait)")
    ap.add_argument("--no-nginx", action="store_true", help="no nginx proxy rows")
    ap.add_argument("--no-strace", action="store_true", help="no setsockopt counts")
    ap.add_argument("--quick", action="store_true", help="a ~20 s smoke run")
    ap.add_argument("--out", help="also write the report here")
    a = ap.parse_args(argv)
    a.requests = a.requests or (50 if a.quick else 200)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (2.0 if a.quick else 5.0)
    if min(a.requests, a.rounds, a.duration, a.connections) <= 0:
        ap.error("counts and durations must be positive")
    return a


def main() -> int:
    argv = sys.argv[1:]
    a = options(argv)
    install_cleanup()
    tmp = Path(tempfile.mkdtemp(prefix="switchyard-nagle-"))
    CLEANUP.insert(0, lambda: shutil.rmtree(tmp, ignore_errors=True))  # last: after every process
    t0, started = time.monotonic(), time.time()
    try:
        nginx, wrk = ensure_tools()
        strace = None if a.no_strace else ensure_strace()
        if not a.no_strace and not strace:
            log("strace not found: no setsockopt counts")
        binaries = []
        for i, spec in enumerate(a.binary or [""]):
            name, path = parse_binary(spec, i) if spec else ("switchyard", "")
            if any(b.name == name for b in binaries):
                raise BenchError(f"--binary names must differ: {name}")
            (tmp / name).mkdir()
            copy, info = snapshot_binary(ensure_binary(path or None), tmp / name)
            binaries.append(Binary(name, copy, info))
        run = Run(a, tmp, nginx, wrk, binaries, strace)
        run.setup()
        log("--- latency, one request at a time")
        run.latency_part()
        log("--- the common case under wrk")
        run.load_part()
        if strace:
            log("--- setsockopt counts")
            run.count_part()
        report = run.report(started, time.monotonic() - t0, argv)
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        cleanup()
    print(report)
    if a.out:
        Path(a.out).write_text(report)
        log(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
