#!/usr/bin/env python3
"""Memory per open client connection of the Switchyard proxy.

    cargo build --release
    python3 benches/conn_memory.py [--binary target/release/switchyard]
                                   [--connections 1000] [--kinds idle,websocket,slowbody]
                                   [--payload BYTES]

Builds nothing: give it a built binary (default target/release/switchyard,
from `cargo build --release`). It runs its own upstream (an asyncio server
in this process) and, for each kind of connection, a fresh `switchyard
serve --threads 2 --access-log off` routing `/` to it (`--max-connections`
2N + 256, `--keepalive-timeout 0` so nothing is closed under the script),
then opens N client connections of that kind through the proxy and holds
them:

- idle       a keep-alive connection after one GET answered 200 (the
             proxy also keeps the upstream connection in its pool);
- websocket  an `Upgrade: websocket` handshake (Sec-WebSocket-Key and
             -Version, answered 101 by the upstream), then one small masked
             frame (5 bytes) sent and echoed back through the proxy;
- slowbody   a POST with `Content-Length: 1000000` of which the head and
             100 bytes are sent, then nothing (the upstream has received
             the 100 bytes and waits for the rest, never answering).

`--payload 60000` sends that much instead (the WebSocket message, the
slow body's first bytes): buffers the proxy allocated but never wrote are
not resident on a fresh heap, and filling them once shows what they cost
after real traffic.

The proxy's memory is read before (after a short warm-up of the same
kind), with all N open, and after all N are closed and the proxy reports 0
open connections: VmRSS from /proc/PID/status, and Pss and Private
(Private_Clean + Private_Dirty) from /proc/PID/smaps_rollup. The table
gives those and (open - before) / N in KiB per connection; "kept" is
(after - before) / N, what the allocator did not give back.

Everything is on 127.0.0.1, on ports the kernel picked (the upstream
binds :0; the proxy's two ports are picked by binding :0, reading the port
and closing, then passed to it); every wait is bounded in count and time; the proxy is stopped
on exit (normal end, exception, Ctrl-C, SIGTERM). Raises this process's
open-file limit to the hard limit (it holds both ends of every connection:
the client side and the upstream side). Linux, Python 3 standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS = ("idle", "websocket", "slowbody")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SLOW_LENGTH = 1_000_000
PAYLOAD = {"idle": 0, "websocket": 5, "slowbody": 100}  # bytes, --payload changes the last two
OPEN_CONCURRENCY = 64  # handshakes in flight at once
STEP_TIMEOUT = 15.0  # seconds for one connection's handshake, at most


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# /proc


@dataclass
class Mem:
    rss: int  # KiB, VmRSS
    pss: int  # KiB
    private: int  # KiB, Private_Clean + Private_Dirty


def _field(text: str, name: str) -> int:
    m = re.search(rf"^{name}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def memory(pid: int) -> Mem:
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/smaps_rollup") as f:
            rollup = f.read()
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}: {e}")
    return Mem(
        rss=_field(status, "VmRSS"),
        pss=_field(rollup, "Pss"),
        private=_field(rollup, "Private_Clean") + _field(rollup, "Private_Dirty"),
    )


def free_port() -> int:
    """A port the kernel picked (bound to :0, read back, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# The upstream: answers GETs, upgrades, and swallows slow bodies


@dataclass
class UpstreamStats:
    open: int = 0
    upgraded: int = 0
    bodies_waiting: int = 0  # POSTs of which `body_mark` bytes arrived
    writers: set = field(default_factory=set)


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method = lines[0].split(" ", 1)[0]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return method, headers


class Upstream:
    def __init__(self, body_mark: int) -> None:
        self.body_mark = body_mark  # a slow body counts as arrived with this many bytes
        self.stats = UpstreamStats()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, backlog=4096, limit=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        st = self.stats
        st.open += 1
        st.writers.add(writer)
        try:
            for _ in range(1_000_000):  # requests on one connection, bounded
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                method, headers = parse_head(head)
                if "upgrade" in headers:
                    await self.upgrade(reader, writer, headers)
                    return
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    if not await self.body(reader, length, counted=method == "POST"):
                        return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n")
                await writer.drain()
        except ConnectionError:
            return
        finally:
            st.open -= 1
            st.writers.discard(writer)
            writer.close()

    async def upgrade(self, reader, writer, headers) -> None:
        accept = base64.b64encode(hashlib.sha1(headers.get("sec-websocket-key", "").encode() + WS_GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await writer.drain()
        self.stats.upgraded += 1
        for _ in range(1_000_000):  # echo, bounded
            data = await reader.read(65536)
            if not data:
                return
            writer.write(data)
            await writer.drain()

    async def body(self, reader, length: int, counted: bool) -> bool:
        """Reads a whole body as it comes; False if the client went away."""
        got = 0
        marked = False
        for _ in range(length + 1):  # at least one byte per read
            if got >= length:
                break
            data = await reader.read(min(65536, length - got))
            if not data:
                break
            got += len(data)
            if counted and not marked and got >= min(self.body_mark, length):
                self.stats.bodies_waiting += 1
                marked = True
        if marked:
            self.stats.bodies_waiting -= 1
        return got >= length

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            for w in list(self.stats.writers):
                w.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass


# --------------------------------------------------------------------------
# The proxy


class Proxy:
    def __init__(self, binary: str, workdir: Path, upstream_port: int, threads: int, max_conns: int) -> None:
        self.binary, self.workdir, self.threads, self.max_conns = binary, workdir, threads, max_conns
        self.routes = workdir / "routes.yaml"
        self.routes.write_text(
            "version: 1\nroutes:\n"
            f"  - path: /\n    upstream: 127.0.0.1:{upstream_port}\n    read_timeout: 10m\n")
        self.log_path = workdir / "switchyard.log"
        self.proc: subprocess.Popen | None = None
        self.port = self.admin = 0

    async def start(self, timeout: float = 30.0) -> None:
        self.port, self.admin = free_port(), free_port()
        argv = [self.binary, "serve", "--config", str(self.routes),
                "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin}",
                "--threads", str(self.threads), "--access-log", "off",
                "--max-connections", str(self.max_conns), "--keepalive-timeout", "0",
                "--drain-delay", "0", "--drain-timeout", "2"]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)
        atexit.register(self.stop)  # however this script ends
        end = time.monotonic() + timeout
        for _ in range(int(timeout / 0.02) + 1):
            if self.proc.poll() is not None:
                raise BenchError(f"switchyard exited ({self.proc.returncode}):\n{self.logs()}")
            if (await admin_get(self.admin, "/ready"))[0] == 200:
                return
            if time.monotonic() > end:
                break
            await asyncio.sleep(0.02)
        raise BenchError(f"switchyard not ready in {timeout:g}s:\n{self.logs()}")

    async def open_connections(self) -> int:
        status, body = await admin_get(self.admin, "/metrics")
        m = re.search(rb"^switchyard_connections_open (\d+)", body, re.M)
        if status != 200 or not m:
            raise BenchError(f"/metrics answered {status} without switchyard_connections_open")
        return int(m.group(1))

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if not self.proc:
            return
        for sig, wait in ((signal.SIGTERM, 8), (signal.SIGKILL, 3)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None


async def admin_get(port: int, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """One GET with Connection: close; (0, b"") when nothing answered."""
    try:
        async def go():
            r, w = await asyncio.open_connection("127.0.0.1", port)
            try:
                w.write(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
                await w.drain()
                data = await r.read(1 << 22)
                for _ in range(1000):
                    more = await r.read(1 << 22)
                    if not more:
                        break
                    data += more
                return data
            finally:
                w.close()
        data = await asyncio.wait_for(go(), timeout)
    except (OSError, asyncio.TimeoutError):
        return 0, b""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(m.group(1)), data.split(b"\r\n\r\n", 1)[-1]) if m else (0, b"")


# --------------------------------------------------------------------------
# Client connections of each kind


async def read_response_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, _ = head.partition(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", status_line)
    if not m:
        raise BenchError(f"bad status line {status_line!r}")
    return int(m.group(1)), parse_head(head)[1]


async def open_idle(port: int, _payload: int):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /idle HTTP/1.1\r\nHost: bench\r\n\r\n")
    await w.drain()
    status, headers = await read_response_head(r)
    await r.readexactly(int(headers.get("content-length", "0")))
    if status != 200 or headers.get("connection", "").lower() == "close":
        raise BenchError(f"idle GET answered {status} {headers}")
    return r, w


def ws_frame(payload: bytes) -> bytes:
    """A masked, final binary frame (what a browser sends)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + n.to_bytes(8, "big")
    whole = (mask * (n // 4 + 1))[:n]
    return head + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(whole, "big")).to_bytes(n, "big")


async def open_websocket(port: int, payload: int):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    w.write(b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
            b"Origin: http://bench\r\n\r\n")
    await w.drain()
    status, headers = await read_response_head(r)
    want = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
    if status != 101 or headers.get("sec-websocket-accept") != want:
        raise BenchError(f"upgrade answered {status} {headers}")
    frame = ws_frame(b"hello"[:payload] + b"x" * max(0, payload - 5))
    w.write(frame)
    await w.drain()
    if await r.readexactly(len(frame)) != frame:
        raise BenchError("websocket echo differs")
    return r, w


async def open_slowbody(port: int, payload: int):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {SLOW_LENGTH}\r\n\r\n".encode() + b"x" * payload)
    await w.drain()
    return r, w


OPENERS = {"idle": open_idle, "websocket": open_websocket, "slowbody": open_slowbody}


async def open_many(kind: str, port: int, n: int, payload: dict) -> tuple[list, int]:
    """Opens n connections of `kind`; returns (the open ones, failures)."""
    sem = asyncio.Semaphore(OPEN_CONCURRENCY)
    opener = OPENERS[kind]

    async def one():
        async with sem:
            return await asyncio.wait_for(opener(port, payload[kind]), STEP_TIMEOUT)

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    conns = [c for c in results if not isinstance(c, BaseException)]
    errors = [e for e in results if isinstance(e, BaseException)]
    if errors:
        log(f"{kind}: {len(errors)} of {n} failed, first: {errors[0]!r}")
    return conns, len(errors)


async def close_all(conns: list) -> None:
    for _, w in conns:
        w.close()
    await asyncio.gather(*(asyncio.wait_for(w.wait_closed(), 5) for _, w in conns), return_exceptions=True)


async def wait_until(what: str, cond, timeout: float, interval: float = 0.05) -> None:
    end = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        if await cond():
            return
        if time.monotonic() > end:
            break
        await asyncio.sleep(interval)
    raise BenchError(f"timed out after {timeout:g}s waiting for {what}")


# --------------------------------------------------------------------------
# One measurement


@dataclass
class Result:
    kind: str
    n: int
    failed: int
    before: Mem
    peak: Mem
    after: Mem


async def measure(kind: str, args, upstream: Upstream, tmp: Path) -> Result:
    workdir = tmp / kind
    workdir.mkdir()
    proxy = Proxy(args.binary, workdir, upstream.port, args.threads, args.connections * 2 + 256)
    try:
        await proxy.start()
        # Warm-up: the same kind, opened and closed, so one-time allocations
        # (route metrics, pools, runtime structures) are in "before".
        warm, _ = await open_many(kind, proxy.port, args.warmup, args.payload)
        await close_all(warm)
        await wait_until("warm-up connections to close", lambda: _none_open(proxy, upstream, kind), 30)
        await asyncio.sleep(args.settle)
        before = memory(proxy.proc.pid)

        t0 = time.monotonic()
        conns, failed = await open_many(kind, proxy.port, args.connections, args.payload)
        if kind == "slowbody":  # established when the upstream holds the first bytes
            async def arrived():
                return upstream.stats.bodies_waiting >= len(conns)
            await wait_until(f"{len(conns)} slow bodies at the upstream", arrived, 30)
        log(f"{kind}: {len(conns)} open in {time.monotonic() - t0:.1f}s")
        await asyncio.sleep(args.settle)
        peak = memory(proxy.proc.pid)
        if proxy.proc.poll() is not None:
            raise BenchError(f"switchyard died:\n{proxy.logs()}")

        await close_all(conns)
        await wait_until("the proxy to close every connection", lambda: _none_open(proxy, upstream, kind), 30)
        await asyncio.sleep(args.settle)
        after = memory(proxy.proc.pid)
        return Result(kind, len(conns), failed, before, peak, after)
    finally:
        proxy.stop()


async def _none_open(proxy: Proxy, upstream: Upstream, kind: str) -> bool:
    if await proxy.open_connections() != 0:
        return False
    # Idle upstream connections stay pooled by design; the others must end.
    return kind == "idle" or upstream.stats.open == 0


# --------------------------------------------------------------------------
# Report


def per_conn(a: int, b: int, n: int) -> str:
    return f"{(b - a) / n:.1f}" if n else "?"


def mib(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def table(results: list[Result], label: str) -> str:
    out = [f"### {label}" if label else "", "",
           "| kind | conns | VmRSS before → open → after (MiB) | KiB/conn VmRSS | KiB/conn Pss | "
           "KiB/conn Private | kept after close, KiB/conn VmRSS |",
           "|---|---|---|---|---|---|---|"]
    for r in results:
        n = r.n
        conns = f"{n}" + (f" ({r.failed} failed)" if r.failed else "")
        out.append(f"| {r.kind} | {conns} | {mib(r.before.rss)} → {mib(r.peak.rss)} → {mib(r.after.rss)} | "
                   f"{per_conn(r.before.rss, r.peak.rss, n)} | {per_conn(r.before.pss, r.peak.pss, n)} | "
                   f"{per_conn(r.before.private, r.peak.private, n)} | {per_conn(r.before.rss, r.after.rss, n)} |")
    return "\n".join(out).lstrip("\n") + "\n"


# --------------------------------------------------------------------------


def raise_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log(f"open-file limit {target} is below the {needed} this run needs; expect failures")
    return target


async def run(args) -> str:
    upstream = Upstream(args.payload["slowbody"])
    await upstream.start()
    tmp = Path(tempfile.mkdtemp(prefix="switchyard-conn-memory-"))
    results = []
    try:
        for kind in args.kinds:
            upstream.stats.bodies_waiting = 0
            results.append(await measure(kind, args, upstream, tmp))
            r = results[-1]
            log(f"{kind}: {per_conn(r.before.rss, r.peak.rss, r.n)} KiB/conn VmRSS, "
                f"{per_conn(r.before.private, r.peak.private, r.n)} KiB/conn Private")
    finally:
        await upstream.stop()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return table(results, args.label)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "switchyard"),
                    help="switchyard binary (default target/release/switchyard)")
    ap.add_argument("--connections", "-n", type=int, default=1000, metavar="N", help="connections of each kind (default 1000)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)} (default all)")
    ap.add_argument("--threads", type=int, default=2, help="switchyard --threads (default 2)")
    ap.add_argument("--warmup", type=int, default=50, help="connections opened and closed before 'before' (default 50)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait before each reading (default 1)")
    ap.add_argument("--payload", type=int, dest="payload_arg", metavar="BYTES",
                    help="bytes of the WebSocket message echoed and of the slow body sent "
                         "(default 5 and 100); e.g. 60000 fills the proxy's buffers once, as real traffic would")
    ap.add_argument("--label", default="", help="a heading for the table")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (routes file, proxy log)")
    args = ap.parse_args()
    args.payload = dict(PAYLOAD)
    if args.payload_arg is not None:
        if not 1 <= args.payload_arg <= SLOW_LENGTH:
            ap.error(f"--payload 1..{SLOW_LENGTH}")
        args.payload.update(websocket=args.payload_arg, slowbody=args.payload_arg)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in args.kinds if k not in KINDS]
    if bad or not args.kinds:
        ap.error(f"unknown kind(s) {bad}; choose from {', '.join(KINDS)}")
    if not 1 <= args.connections <= 100_000 or args.warmup < 0 or not 0 <= args.settle <= 60:
        ap.error("--connections 1..100000, --warmup >= 0, --settle 0..60")
    if not os.access(args.binary, os.X_OK):
        ap.error(f"{args.binary} is not an executable file (cargo build --release)")
    # Both ends of every connection are in this process, plus the warm-up.
    raise_nofile(2 * (args.connections + args.warmup) + 256)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        report = asyncio.run(run(args))
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
