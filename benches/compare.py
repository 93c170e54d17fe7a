#!/usr/bin/env python3
"""Switchyard vs nginx, side by side, on this machine.

    python3 benches/compare.py [--quick] [--rounds N] [--duration SECS] [--out FILE]

Starts one shared fast upstream (an nginx answering "hello from upstream"),
then nginx and Switchyard as the proxy under test with equivalent configs
(2 workers / threads each, access logs off, /app1 -> upstream plus a few
dead routes), and measures with wrk: throughput and latency at 64 and 256
connections (rounds alternate nginx, Switchyard), memory (idle, under load,
after 1000 ConfigMap swaps), CPU per request, errors during 100 reloads
under load, swap-to-serving latency of a new route, and the cost of a
10 000-route table. Prints a markdown table with the goals and writes it to
--out (default benches/results/latest.md).

Everything listens on 127.0.0.1 on ports the kernel picked; every process
the script starts lives in its own temp dir and is stopped on exit (normal
end, exception, Ctrl-C, SIGTERM, SIGHUP). A system nginx service is never
touched. Installs nginx and wrk with apt-get (as root) and builds the
release binary with cargo when they are missing.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import http.client
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NGINX_TEMPLATES = Path(__file__).resolve().parent / "nginx"
UPSTREAM_BODY = b"hello from upstream\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = (64, 256)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def deadline_loop(seconds: float, interval: float, what: str):
    """Yields until `seconds` have passed (then raises), sleeping `interval`
    between iterations: every readiness wait in this script is one of these,
    bounded in time and count."""
    end = time.monotonic() + seconds
    max_iter = int(seconds / max(interval, 1e-4)) + 10
    for _ in range(max_iter):
        yield
        if time.monotonic() >= end:
            break
        time.sleep(interval)
    raise BenchError(f"timed out after {seconds:g}s waiting for {what}")


# --------------------------------------------------------------------------
# Processes: everything started is tracked and stopped on exit.


try:  # resolved once here: nothing may be imported between fork and exec
    import ctypes

    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except Exception:  # not glibc/Linux: no parent-death signal, cleanup still runs
    _PRCTL = None
_SIGTERM = int(signal.SIGTERM)


def _pdeathsig() -> None:
    # Runs in the child between fork and exec: if this script dies hard
    # (SIGKILL), the kernel sends SIGTERM to the child, so nothing is left.
    if _PRCTL is not None:
        _PRCTL(1, _SIGTERM)  # PR_SET_PDEATHSIG


class Procs:
    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen]] = []
        self.lock = threading.Lock()

    def spawn(self, name: str, argv: list[str], log_path: Path | None, long_lived: bool = True,
              stdout=None) -> subprocess.Popen:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else out,
                stderr=out,
                start_new_session=True,  # own process group: killpg(pid) reaches workers too
                preexec_fn=_pdeathsig if long_lived else None,
                cwd=str(REPO),
            )
        finally:
            if log_path:
                out.close()
        with self.lock:
            self.items.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 8.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # The group may outlive its leader (nginx workers): make sure.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        with self.lock:
            self.items = [(n, q) for (n, q) in self.items if q is not p]

    def stop_all(self) -> None:
        with self.lock:
            items = list(reversed(self.items))
        for _, p in items:
            self.stop(p, timeout=5.0)


PROCS = Procs()
_CLEANUP: list = []


def cleanup() -> None:
    while _CLEANUP:
        fn = _CLEANUP.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning
            log(f"cleanup: {e}")


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------
# /proc helpers


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def children_of(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == ppid:
            out.append(int(entry))
    return out


def _status_kb(pid: int, field: str) -> int:
    text = _read(f"/proc/{pid}/status") or ""
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def rss_kb(pids: list[int]) -> int:
    return sum(_status_kb(p, "VmRSS") for p in pids)


def pss_kb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        text = _read(f"/proc/{p}/smaps_rollup") or ""
        m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        total += int(m.group(1)) if m else 0
    return total


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    out = {}
    for p in pids:
        stat = _read(f"/proc/{p}/stat")
        if not stat:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        out[p] = int(rest[11]) + int(rest[12])  # utime + stime
    return out


def cpu_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    f = [int(x) for x in (_read("/proc/stat") or "cpu 0 0 0 0").splitlines()[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    total = sum(f[:8])  # guest time is already in user
    return total - idle, total


def wait_quiet(max_wait: float, threshold: float = 0.25, window: float = 0.5) -> tuple[float, float]:
    """Waits (at most max_wait s) until the machine is quiet: less than
    `threshold` cores busy over a `window`. Nothing of ours runs then, so what
    is busy is someone else (a build on a shared box). Returns (seconds
    waited, last busy cores seen)."""
    t0 = time.monotonic()
    busy = 0.0
    for _ in range(int(max_wait / window) + 1):
        b0, _ = cpu_busy_ticks()
        w0 = time.monotonic()
        time.sleep(window)
        b1, _ = cpu_busy_ticks()
        busy = (b1 - b0) / CLK_TCK / (time.monotonic() - w0)
        if busy < threshold or time.monotonic() - t0 >= max_wait:
            break
    return time.monotonic() - t0, busy


class Sampler(threading.Thread):
    """Samples RSS (and PSS) of a proxy's processes every 200 ms."""

    def __init__(self, proxy: "Proxy", interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.proxy, self.interval = proxy, interval
        self.stop_evt = threading.Event()
        self.max_rss = 0
        self.max_pss = 0
        self.samples = 0

    def run(self) -> None:
        for _ in range(100000):  # bounded: stopped long before
            pids = self.proxy.pids()
            self.max_rss = max(self.max_rss, rss_kb(pids))
            self.max_pss = max(self.max_pss, pss_kb(pids))
            self.samples += 1
            if self.stop_evt.wait(self.interval):
                return

    def stop(self) -> None:
        self.stop_evt.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------
# HTTP helpers (keep-alive capable, loopback only)


def free_port(taken: set[int]) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise BenchError("no free port")


def http_get(port: int, path: str, method: str = "GET", timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers={"Connection": "close"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def try_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        return http_get(port, path)
    except (OSError, http.client.HTTPException):
        return 0, b""


class KeepAlive:
    """One keep-alive client connection, reopened only if the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        self.reconnects = 0

    def get(self, path: str) -> int:
        for attempt in range(2):
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                r.read()
                if r.will_close:
                    self.conn.close()
                    self.reconnects += 1
                return r.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.reconnects += 1
                if attempt:
                    raise
        return 0

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------
# Kubelet-style ConfigMap volume (tests/support/kubelet.rs, AtomicWriter)


class ConfigMapVolume:
    """A ConfigMap volume as the kubelet's AtomicWriter lays it out: the data
    in `..<timestamp>.<digits>/`, `..data -> that dir`, and the key symlink
    `routes.yaml -> ..data/routes.yaml`. An update writes a new timestamped
    dir, links `..data_tmp` to it, renames `..data_tmp` over `..data` (the
    one atomic switch), links new keys, and removes the old dir (the 1.23+
    order)."""

    def __init__(self, path: Path, key: str = "routes.yaml") -> None:
        self.dir, self.key = path, key

    @property
    def file(self) -> Path:
        return self.dir / self.key

    def create(self, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o777)
        if os.path.lexists(self.dir / "..data"):
            raise BenchError(f"{self.dir} already holds a ConfigMap volume")
        self.update(data)

    def current(self) -> bytes | None:
        try:
            return (self.dir / os.readlink(self.dir / "..data") / self.key).read_bytes()
        except OSError:
            return None

    def begin(self, data: bytes) -> "PendingSwap | None":
        if os.path.lexists(self.dir / "..data") and self.current() == data:
            return None  # the kubelet writes nothing when the payload is equal
        return PendingSwap(self, data)

    def update(self, data: bytes) -> bool:
        swap = self.begin(data)
        if swap is None:
            return False
        swap.prepare()
        swap.switch()
        swap.finish()
        return True


class PendingSwap:
    def __init__(self, vol: ConfigMapVolume, data: bytes) -> None:
        self.vol, self.data = vol, data
        try:
            self.old_ts: str | None = os.readlink(vol.dir / "..data")
        except OSError:
            self.old_ts = None
        self.new_ts: str | None = None

    def prepare(self) -> None:
        """WriteNewDir + LinkDataTmp: nothing user-visible changes yet."""
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        for _ in range(1000):
            name = f"..{stamp}.{random.randrange(2**32)}"
            try:
                os.mkdir(self.vol.dir / name, 0o700)
            except FileExistsError:
                continue
            os.chmod(self.vol.dir / name, 0o755)
            self.new_ts = name
            break
        else:
            raise BenchError("no free timestamped dir name")
        path = self.vol.dir / self.new_ts / self.vol.key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, self.data)  # small file: one write
        finally:
            os.close(fd)
        os.chmod(path, 0o644)
        tmp = self.vol.dir / "..data_tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.new_ts, tmp)

    def switch(self) -> None:
        """rename(..data_tmp, ..data): the atomic switch."""
        os.rename(self.vol.dir / "..data_tmp", self.vol.dir / "..data")

    def finish(self) -> None:
        """LinkNewKeys (only if missing) + RemoveOldDir."""
        visible = self.vol.file
        if not os.path.lexists(visible):
            os.symlink(f"..data/{self.vol.key}", visible)
        if self.old_ts:
            shutil.rmtree(self.vol.dir / self.old_ts)


# --------------------------------------------------------------------------
# Configs


def routes_yaml(routes: list[tuple[str, str]]) -> bytes:
    lines = ["version: 1", "routes:"]
    for path, upstream in routes:
        lines += [f"  - path: {path}", f"    upstream: {upstream}"]
    return ("\n".join(lines) + "\n").encode()


def temp_paths_block() -> str:
    """Temp dirs inside the instance's prefix, for the modules this nginx has."""
    try:
        v = subprocess.run([NGINX, "-V"], capture_output=True, text=True, timeout=10).stderr
    except Exception:
        v = ""
    lines = ["    client_body_temp_path body_temp;", "    proxy_temp_path proxy_temp;"]
    for mod in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{mod}_module" not in v:
            lines.append(f"    {mod}_temp_path {mod}_temp;")
    return "\n".join(lines)


def fill(template: str, **values: str) -> str:
    text = (NGINX_TEMPLATES / template).read_text()
    values.setdefault("RLIMIT_NOFILE", str(NOFILE))
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BenchError(f"{template}: unfilled {left}")
    return text


def nginx_location(path: str, target: str) -> str:
    return f"        location {path} {{ proxy_pass http://{target}; }}\n"


# --------------------------------------------------------------------------
# The processes under test


class Proxy:
    name = "?"
    port = 0

    def pids(self) -> list[int]:
        raise NotImplementedError


class Nginx(Proxy):
    def __init__(self, name: str, prefix: Path, port: int) -> None:
        self.name, self.prefix, self.port = name, prefix, port
        self.conf = prefix / "nginx.conf"
        self.proc: subprocess.Popen | None = None
        prefix.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [NGINX, "-p", f"{self.prefix}/", "-c", str(self.conf), "-e", str(self.prefix / "startup.log")]

    def write(self, text: str) -> None:
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf)

    def start(self, ready_path: str, timeout: float = 30.0) -> float:
        t0 = time.monotonic()
        self.proc = PROCS.spawn(self.name, self.argv(), self.prefix / "stderr.log")
        for _ in deadline_loop(timeout, 0.005, f"{self.name} on :{self.port}"):
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}):\n{self.logs()}")
            if try_get(self.port, ready_path)[0] == 200:
                return time.monotonic() - t0
        return 0.0

    def reload(self) -> tuple[int, str]:
        r = subprocess.run(self.argv() + ["-s", "reload"], capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        return r.returncode, (r.stdout + r.stderr).strip()

    def workers(self) -> list[int]:
        return children_of(self.proc.pid) if self.proc else []

    def pids(self) -> list[int]:
        return [self.proc.pid] + self.workers() if self.proc else []

    def wait_settled(self, old: set[int], n: int, timeout: float = 15.0) -> bool:
        """After a reload: only `n` workers left, none of them from `old`."""
        try:
            for _ in deadline_loop(timeout, 0.002, f"{self.name} old workers to exit"):
                w = set(self.workers())
                if len(w) == n and not (w & old):
                    return True
        except BenchError:
            return False
        return False

    def logs(self) -> str:
        out = []
        for f in ("startup.log", "stderr.log", "error.log"):
            p = self.prefix / f
            if p.exists():
                out.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(out)

    def stop(self) -> None:
        if self.proc:
            PROCS.stop(self.proc)
            self.proc = None


class Switchyard(Proxy):
    def __init__(self, name: str, workdir: Path, port: int, admin: int, threads: int) -> None:
        self.name, self.port, self.admin, self.threads = name, port, admin, threads
        self.workdir = workdir
        self.vol = ConfigMapVolume(workdir / "routes")
        self.log_path = workdir / "switchyard.log"
        self.proc: subprocess.Popen | None = None

    def start(self, routes: bytes, timeout: float = 60.0) -> float:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.vol.create(routes)
        argv = [BINARY, "serve", "--config", str(self.vol.file),
                "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin}",
                "--threads", str(self.threads), "--access-log", "off", "--drain-delay", "0"]
        t0 = time.monotonic()
        self.proc = PROCS.spawn(self.name, argv, self.log_path)
        for _ in deadline_loop(timeout, 0.005, f"{self.name} admin /ready"):
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}):\n{self.logs()}")
            if try_get(self.admin, "/ready")[0] == 200:
                return time.monotonic() - t0
        return 0.0

    def routes(self) -> dict:
        status, body = http_get(self.admin, "/routes", timeout=5)
        if status != 200:
            raise BenchError(f"{self.name} /routes answered {status}")
        return json.loads(body)

    def generation(self) -> int:
        return int(self.routes()["generation"])

    def wait_generation(self, gen: int, timeout: float = 5.0, interval: float = 0.001) -> int:
        """Polls /routes until generation >= gen; returns the last one seen."""
        g = -1
        try:
            for _ in deadline_loop(timeout, interval, f"{self.name} generation {gen}"):
                g = self.generation()
                if g >= gen:
                    return g
        except BenchError:
            pass
        return g

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc:
            PROCS.stop(self.proc)
            self.proc = None


# --------------------------------------------------------------------------
# wrk


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(out: str) -> dict:
    r: dict = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise BenchError(f"wrk output without Requests/sec:\n{out}")
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    r["requests"] = int(m.group(1)) if m else 0
    for q in ("50", "75", "90", "99"):
        m = re.search(rf"^\s*{q}%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
        r[f"p{q}"] = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")  # ms
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["sock"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else \
        {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    r["errors"] = sum(r["sock"].values())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


class Wrk:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.upstream: Proxy | None = None  # its CPU is reported per run too
        self.quiet_budget = 0.0  # seconds left to wait for a quiet machine before runs
        self.quiet_per_run = 0.0
        self.quiet_waited = 0.0
        self.others: list[float] = []  # cores used by other processes during each measured run
        self.ends: list[float] = []  # wall-clock end of every run, to place proxy log lines

    def quiet(self) -> tuple[float, float]:
        """Before a measured run: waits, within the budget, for a quiet machine."""
        if self.quiet_budget <= 0:
            return 0.0, float("nan")
        waited, busy = wait_quiet(min(self.quiet_per_run, self.quiet_budget))
        self.quiet_budget -= waited
        self.quiet_waited += waited
        return waited, busy

    def start(self, port: int, conns: int, secs: float) -> subprocess.Popen:
        argv = [WRK, f"-t{min(self.threads, conns)}", f"-c{conns}", f"-d{max(1, round(secs))}s", "--latency",
                f"http://127.0.0.1:{port}/app1/x"]
        return PROCS.spawn("wrk", argv, None, stdout=subprocess.PIPE)

    def finish(self, p: subprocess.Popen, secs: float) -> dict:
        try:
            out, _ = p.communicate(timeout=secs + 30)
        except subprocess.TimeoutExpired:
            PROCS.stop(p, signal.SIGKILL)
            raise BenchError("wrk did not finish in time")
        self.ends.append(time.time())
        PROCS.stop(p)
        out = out.decode(errors="replace")
        if p.returncode != 0:
            raise BenchError(f"wrk failed ({p.returncode}):\n{out}")
        return parse_wrk(out)

    def run(self, proxy: Proxy, conns: int, secs: float, sample: bool = False, measure: bool = True) -> dict:
        pids0 = proxy.pids()
        before = cpu_ticks(pids0)
        up_pids = self.upstream.pids() if self.upstream else []
        up_before = cpu_ticks(up_pids)
        waited, bg_before = self.quiet() if measure else (0.0, 0.0)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0, _ = cpu_busy_ticks()
        t0 = time.monotonic()
        p = self.start(proxy.port, conns, secs)
        sampler = None
        if sample:
            sampler = Sampler(proxy)
            sampler.start()
        try:
            r = self.finish(p, secs)
        finally:
            if sampler:
                sampler.stop()
        wall = time.monotonic() - t0
        busy1, _ = cpu_busy_ticks()
        after = cpu_ticks(set(pids0) | set(proxy.pids()))
        ticks = sum(t - before.get(pid, 0) for pid, t in after.items())
        r["cpu_s"] = ticks / CLK_TCK
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk has been reaped: its CPU is in here
        r["cores"] = {
            "proxy": r["cpu_s"] / wall,
            "upstream": sum(t - up_before.get(pid, 0) for pid, t in cpu_ticks(up_pids).items()) / CLK_TCK / wall,
            "wrk": (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall,
        }
        # Everything else busy on the machine meanwhile (other people's builds...).
        r["cores"]["other"] = max(0.0, (busy1 - busy0) / CLK_TCK / wall - sum(r["cores"].values()))
        r["quiet_wait"], r["bg_before"] = waited, bg_before
        if measure:
            self.others.append(r["cores"]["other"])
        r["cpu_us_per_req"] = r["cpu_s"] * 1e6 / r["requests"] if r["requests"] else float("nan")
        if sampler:
            r["max_rss_kb"], r["max_pss_kb"], r["samples"] = sampler.max_rss, sampler.max_pss, sampler.samples
        return r


# --------------------------------------------------------------------------
# Setup: tools and binary


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next((f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin", "/sbin")
                                       if os.access(f"{d}/{name}", os.X_OK)), None)


def ensure_tools() -> tuple[str, str]:
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
    if nginx and wrk:
        return nginx, wrk
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("nginx and wrk are needed: run as root with apt-get, or install them "
                         "(apt-get install nginx-light wrk)")
    log("installing nginx and wrk with apt-get (no service is started or touched)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Keep the package's postinst from starting a system nginx where an init
    # system runs: a policy-rc.d that denies, only if none exists, removed after.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# temporary, from switchyard benches/compare.py\nexit 101\n")
        policy.chmod(0o755)
        made_policy = True
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        pkgs = ["wrk"] if nginx else ["nginx-light", "wrk"]
        r = subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], env=env, timeout=900)
        if r.returncode != 0 and not nginx:
            subprocess.run(["apt-get", "install", "-y", "-qq", "nginx", "wrk"], check=True, env=env, timeout=900)
    finally:
        if made_policy:
            policy.unlink()
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
    if not (nginx and wrk):
        raise BenchError("nginx or wrk still missing after apt-get install")
    return nginx, wrk


def ensure_binary(arg: str | None) -> str:
    if arg:
        if not os.access(arg, os.X_OK):
            raise BenchError(f"--binary {arg} is not an executable file")
        return str(Path(arg).resolve())
    path = REPO / "target" / "release" / "switchyard"
    if not path.exists():
        if not shutil.which("cmake") and (REPO / "scripts" / "bootstrap.sh").exists():
            subprocess.run(["bash", str(REPO / "scripts" / "bootstrap.sh")], check=True,
                           env=dict(os.environ, SWITCHYARD_BOOTSTRAP="build"), cwd=REPO)
        log("building target/release/switchyard (cargo build --release -p switchyard)")
        subprocess.run(["cargo", "build", "--release", "-p", "switchyard"], check=True, cwd=REPO)
    return str(path)


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]
    except Exception as e:
        return f"? ({e})"


def machine_info() -> dict:
    cpu = "?"
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = _status_kb_meminfo()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "mem": f"{mem / 1024 / 1024:.1f} GiB" if mem else "?",
        "kernel": platform.release(),
        "nginx": tool_version([NGINX, "-v"]),
        "wrk": re.sub(r"\s*Copyright.*", "", tool_version([WRK, "-v"])),
        "switchyard": tool_version([BINARY, "--version"]),
        "python": platform.python_version(),
    }


def log_time(line: str) -> float | None:
    """Wall-clock time of a Switchyard (tracing, RFC 3339 UTC) log line."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", line)
    if not m:
        return None
    import calendar

    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)


def patterns(lines: list[str]) -> list[tuple[int, str]]:
    """Log lines with times, pids, addresses and ports masked, counted."""
    counts: dict[str, int] = {}
    for l in lines:
        k = re.sub(r"^\S+\s+(\S+\s+)?", "", l) if re.match(r"\d{4}[-/]", l) else l
        k = re.sub(r"\d+#\d+", "PID#TID", k)
        k = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "ADDR", k)
        k = re.sub(r"\*\d+", "*N", k)
        counts[k] = counts.get(k, 0) + 1
    return sorted(((n, k) for k, n in counts.items()), reverse=True)


def _status_kb_meminfo() -> int:
    m = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo") or "", re.M)
    return int(m.group(1)) if m else 0


# --------------------------------------------------------------------------
# Formatting


QUIET = 0.25  # cores other processes may use during a run for it to count as quiet


def quiet_runs(rs: list[dict]) -> list[dict]:
    """The runs during which other processes left the CPUs (nearly) alone;
    all runs when there is none."""
    q = [r for r in rs if r["cores"]["other"] < QUIET]
    return q or rs


def used(q: list[dict], rs: list[dict]) -> str:
    """'k/n': how many of the runs were quiet (and used for the median)."""
    k = sum(r["cores"]["other"] < QUIET for r in rs)
    return f"{k}/{len(rs)}"


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt_rps(x: float) -> str:
    return f"{x:,.0f} req/s"


def fmt_ms(x: float) -> str:
    if x != x:
        return "?"
    return f"{x * 1000:.0f} µs" if x < 1 else f"{x:.2f} ms"


def fmt_mib(kb: float) -> str:
    return f"{kb / 1024:.1f} MiB"


def ratio(a: float, b: float) -> str:
    if not b or a != a or b != b:
        return "—"
    return f"{a / b:.2f}×"


def met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**NO**")


# --------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.wrk = Wrk(args.wrk_threads)
        self.wrk.quiet_budget = args.quiet_wait
        self.wrk.quiet_per_run = min(20.0, args.quiet_wait)
        self.res: dict = {}
        self.notes: list[str] = []
        self.problems: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="switchyard-compare-"))
        _CLEANUP.insert(0, self.remove_tmp)  # last: after every process is gone
        self.ports: set[int] = set()
        self.temp_paths = temp_paths_block()
        self.phases: list[tuple[float, str]] = []  # (wall-clock start, name)

    def phase(self, name: str) -> None:
        self.phases.append((time.time(), name))
        log(f"--- {name}")

    def snapshot_binary(self, path: str) -> str:
        """Runs a private copy: others may rebuild target/release while this
        runs, and every Switchyard instance here must be the same build."""
        src = Path(path)
        st = src.stat()
        dst = self.tmp / "bin" / "switchyard"
        dst.parent.mkdir()
        shutil.copy2(src, dst)
        digest = hashlib.sha256(dst.read_bytes()).hexdigest()
        self.binary_info = (f"`{src}` (built {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))}, "
                            f"sha256 {digest[:16]}…), run from a private copy")
        return str(dst)

    def remove_tmp(self) -> None:
        if self.args.keep_tmp:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- configs --------------------------------------------------------------

    def base_routes(self) -> list[tuple[str, str]]:
        return [("/app1", self.up_addr)] + [(f"/app{i}", self.dead_addr) for i in range(2, 11)]

    def sy_routes(self, extra: list[tuple[str, str]] = ()) -> bytes:
        return routes_yaml(self.base_routes() + list(extra))

    def ng_conf(self, port: int, extra: list[tuple[str, str]] = ()) -> str:
        locs = "".join(nginx_location(p, "dead" if u == self.dead_addr else "app1")
                       for p, u in self.base_routes()[1:] + list(extra))
        return fill("proxy.conf.tmpl", WORKERS=str(self.args.workers), TEMP_PATHS=self.temp_paths,
                    UPSTREAM_PORT=str(self.up_port), DEAD_PORT=str(self.dead_port), PORT=str(port),
                    LOCATIONS=locs)

    # -- phases ---------------------------------------------------------------

    def setup(self) -> None:
        a = self.args
        self.up_port = free_port(self.ports)
        self.dead_port = free_port(self.ports)  # nothing ever listens here
        self.up_addr, self.dead_addr = f"127.0.0.1:{self.up_port}", f"127.0.0.1:{self.dead_port}"

        self.upstream = Nginx("upstream", self.tmp / "upstream", self.up_port)
        _CLEANUP.append(self.upstream.stop)
        self.upstream.write(fill("upstream.conf.tmpl", TEMP_PATHS=self.temp_paths, PORT=str(self.up_port)))
        self.upstream.start("/x")
        self.wrk.upstream = self.upstream
        log(f"upstream nginx on :{self.up_port}")

        self.ng = Nginx("nginx", self.tmp / "nginx", free_port(self.ports))
        _CLEANUP.append(self.ng.stop)
        self.ng.write(self.ng_conf(self.ng.port))
        self.ng.start("/app1/x")
        self.sy = Switchyard("switchyard", self.tmp / "switchyard", free_port(self.ports),
                             free_port(self.ports), a.workers)
        _CLEANUP.append(self.sy.stop)
        self.sy.start(self.sy_routes())
        log(f"nginx on :{self.ng.port} (pid {self.ng.proc.pid}), switchyard on :{self.sy.port} "
            f"admin :{self.sy.admin} (pid {self.sy.proc.pid})")
        for p in (self.ng, self.sy):
            status, body = http_get(p.port, "/app1/x")
            if status != 200 or body != UPSTREAM_BODY:
                raise BenchError(f"{p.name} /app1/x answered {status} {body!r}")
            status, _ = http_get(p.port, "/nope")
            if status != 404:
                raise BenchError(f"{p.name} /nope answered {status}, not 404")
        self.proxies = [self.ng, self.sy]

    def warmup_and_idle(self) -> None:
        for p in self.proxies:
            self.wrk.run(p, 64, self.args.warmup, measure=False)
        for p in self.proxies:
            self.res[f"{p.name}.idle_rss"] = rss_kb(p.pids())
            self.res[f"{p.name}.idle_pss"] = pss_kb(p.pids())
            self.res[f"{p.name}.nprocs"] = len(p.pids())
        log("idle RSS: nginx {} ({} processes), switchyard {}".format(
            fmt_mib(self.res["nginx.idle_rss"]), self.res["nginx.nprocs"], fmt_mib(self.res["switchyard.idle_rss"])))

    def throughput(self) -> None:
        a = self.args
        runs: dict = {}
        for rnd in range(a.rounds):
            for c in CONNECTIONS:
                for p in self.proxies:  # A B A B
                    r = self.wrk.run(p, c, a.duration, sample=True)
                    runs.setdefault((p.name, c), []).append(r)
                    log(f"round {rnd + 1}/{a.rounds} {p.name:10} c={c:3}: {r['rps']:9.0f} req/s  "
                        f"p50 {fmt_ms(r['p50'])}  p99 {fmt_ms(r['p99'])}  "
                        f"cpu {r['cpu_us_per_req']:.1f} µs/req  errors {r['errors']} non2xx {r['non2xx']}  "
                        f"others {r['cores']['other']:.2f} cores (waited {r['quiet_wait']:.1f}s)")
        self.runs = runs
        for (name, c), rs in runs.items():
            k = f"{name}.c{c}"
            q = quiet_runs(rs)
            self.res[k + ".used"] = used(q, rs)
            self.res[k + ".rps"] = med([r["rps"] for r in q])
            self.res[k + ".p50"] = med([r["p50"] for r in q])
            self.res[k + ".p99"] = med([r["p99"] for r in q])
            self.res[k + ".cpu"] = med([r["cpu_us_per_req"] for r in q])
            self.res[k + ".errors"] = sum(r["errors"] for r in rs)
            self.res[k + ".non2xx"] = sum(r["non2xx"] for r in rs)
            self.res[k + ".all_rps"] = [r["rps"] for r in rs]
            if c == 64:
                # The first round's 64-connection run comes before any
                # 256-connection run, whose buffers an allocator may keep.
                self.res[f"{name}.load_rss"] = rs[0]["max_rss_kb"]
                self.res[f"{name}.load_pss"] = rs[0]["max_pss_kb"]
        for name in ("nginx", "switchyard"):
            allr = [r for c in CONNECTIONS for r in runs[(name, c)]]
            self.res[f"{name}.peak_rss"] = max(r["max_rss_kb"] for r in allr)
            self.res[f"{name}.peak_pss"] = max(r["max_pss_kb"] for r in allr)

    def big_table(self) -> None:
        """The same process alternates between its 10-route config and one with
        10 000 more routes (all to a dead port), switched the way each one is
        reloaded in production; 64-connection throughput after a warm-up."""
        a = self.args
        n = a.big_routes
        big = [(f"/r{i}", self.dead_addr) for i in range(n)]
        sy_cfg = {"10": self.sy_routes(), "big": routes_yaml([("/app1", self.up_addr)] + big)}
        ng_cfg = {"10": self.ng_conf(self.ng.port), "big": fill(
            "proxy.conf.tmpl", WORKERS=str(a.workers), TEMP_PATHS=self.temp_paths, UPSTREAM_PORT=str(self.up_port),
            DEAD_PORT=str(self.dead_port), PORT=str(self.ng.port),
            LOCATIONS="".join(nginx_location(p, "dead") for p, _ in big))}

        def set_sy(which: str) -> float:
            g = self.sy.generation()
            t0 = time.monotonic()
            if self.sy.vol.update(sy_cfg[which]):
                if self.sy.wait_generation(g + 1, timeout=30) < g + 1:
                    raise BenchError(f"switchyard did not apply the {which}-route config within 30 s")
            dt = time.monotonic() - t0
            want = n + 1 if which == "big" else len(self.base_routes())
            got = len(self.sy.routes()["routes"])
            if got != want:
                raise BenchError(f"switchyard serves {got} routes, expected {want}")
            return dt

        def set_ng(which: str) -> float:
            old = set(self.ng.workers())
            self.ng.write(ng_cfg[which])
            t0 = time.monotonic()
            rc, out = self.ng.reload()
            if rc != 0:
                raise BenchError(f"nginx -s reload ({which}) failed: {out}")
            if not self.ng.wait_settled(old, a.workers, timeout=30):
                raise BenchError(f"nginx did not settle on the {which}-route config within 30 s")
            return time.monotonic() - t0

        try:
            self.res["ng10k.load_s"] = set_ng("big")
            log(f"nginx reloaded into {n} locations in {self.res['ng10k.load_s']:.2f}s")
        except BenchError as e:
            self.res["ng10k.skipped"] = f"{n} locations did not load in reasonable time ({e})"
            log(f"nginx big table skipped: {e}")
        set_ng("10")
        self.res["sy10k.load_s"] = set_sy("big")
        log(f"switchyard swapped to {n} routes in {self.res['sy10k.load_s']:.2f}s")
        set_sy("10")

        setters = [(self.sy, set_sy)] + ([] if "ng10k.skipped" in self.res else [(self.ng, set_ng)])
        runs: dict = {}
        for rnd in range(a.rounds):
            order = ("10", "big") if rnd % 2 == 0 else ("big", "10")  # ABBA across rounds
            for proxy, setter in setters:
                for which in order:
                    setter(which)
                    self.wrk.run(proxy, 64, a.warmup, measure=False)
                    if which == "big":
                        self.res[f"{proxy.name}.big_rss"] = rss_kb(proxy.pids())
                    r = self.wrk.run(proxy, 64, a.duration)
                    runs.setdefault((proxy.name, which), []).append(r)
                    log(f"round {rnd + 1}/{a.rounds} {proxy.name:10} {which:>3} routes c= 64: {r['rps']:9.0f} req/s "
                        f"errors {r['errors']} non2xx {r['non2xx']} others {r['cores']['other']:.2f} cores")
                    if r["errors"] or r["non2xx"]:
                        self.problems.append(f"{proxy.name} with the {which}-route table: {r['errors']} socket "
                                             f"errors, {r['non2xx']} non-2xx")
            for _, setter in setters:
                setter("10")
        for proxy, _ in setters:
            small, large = runs[(proxy.name, "10")], runs[(proxy.name, "big")]
            qs, ql = quiet_runs(small), quiet_runs(large)
            s_, l_ = med([r["rps"] for r in qs]), med([r["rps"] for r in ql])
            self.res[f"{proxy.name}.big_ratio"] = l_ / s_ if s_ else float("nan")
            self.res[f"{proxy.name}.big_used"] = (used(qs, small), used(ql, large))
            self.res[f"{proxy.name}.big_runs"] = ([r["rps"] for r in small], [r["rps"] for r in large],
                                                  [r["cores"]["other"] for r in small],
                                                  [r["cores"]["other"] for r in large])

    def reload_under_load(self) -> None:
        a = self.args
        secs, n = a.reload_duration, a.reloads
        start_at, spread = 0.5, max(secs - 1.5, 1.0)
        variants_ng = [self.ng_conf(self.ng.port), self.ng_conf(self.ng.port, [("/extra", self.up_addr)])]
        variants_sy = [self.sy_routes(), self.sy_routes([("/extra", self.up_addr)])]

        # nginx: nginx -s reload, alternating two configs.
        self.ng.write(variants_ng[0])  # it already serves this one
        old = set(self.ng.workers())
        self.wrk.quiet()
        p = self.wrk.start(self.ng.port, 64, secs)
        t0 = time.monotonic()
        failures, took = [], []
        for i in range(n):
            self._pace(t0 + start_at + spread * i / n)
            self.ng.write(variants_ng[(i + 1) % 2])
            ts = time.monotonic()
            rc, out = self.ng.reload()
            took.append(time.monotonic() - ts)
            if rc != 0:
                failures.append(out)
        r = self.wrk.finish(p, secs)
        self.res["nginx.reload_rss_end"] = rss_kb(self.ng.pids())
        self.res["nginx.reload_nprocs_end"] = len(self.ng.pids())
        settled = self.ng.wait_settled(old, a.workers)
        self.res["nginx.reload"] = r
        self.res["nginx.reload_failures"] = failures
        self.res["nginx.reload_cmd_ms"] = med(took) * 1000
        log(f"nginx under {n} reloads: {r['rps']:.0f} req/s, socket errors {r['sock']}, non-2xx {r['non2xx']}, "
            f"reload command failures {len(failures)}, settled {settled}")

        # Switchyard: kubelet-style ConfigMap swaps, alternating two variants.
        g0 = self.sy.generation()
        self.wrk.quiet()
        p = self.wrk.start(self.sy.port, 64, secs)
        t0 = time.monotonic()
        swaps = 0
        last = b""
        for i in range(n):
            self._pace(t0 + start_at + spread * i / n)
            last = variants_sy[(i + 1) % 2]
            if self.sy.vol.update(last):
                swaps += 1
        r = self.wrk.finish(p, secs)
        # Swaps that land while the reload task waits for a CPU are read
        # together: the proxy applies the newest file and skips the versions
        # in between (two alternating swaps may even net out to "unchanged").
        # What must hold: the last file written is the one serving.
        want = hashlib.sha256(last).hexdigest()
        applied = ""
        try:
            for _ in deadline_loop(15, 0.01, "switchyard serving the last swapped file"):
                applied = self.sy.routes()["sha256"]
                if applied == want:
                    break
        except BenchError:
            pass
        g1 = self.sy.generation()
        self.res["switchyard.reload"] = r
        self.res["switchyard.reload_gen"] = (g0, g1, swaps, applied == want)
        log(f"switchyard under {swaps} swaps: {r['rps']:.0f} req/s, socket errors {r['sock']}, "
            f"non-2xx {r['non2xx']}, generation {g0} -> {g1} (+{g1 - g0})")

    @staticmethod
    def _pace(at: float) -> None:
        # Spreads the reloads over the run (a schedule, not a readiness wait).
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def swap_to_serving(self) -> None:
        a = self.args
        n = a.swaps
        # Switchyard: time from rename(..data_tmp, ..data) to the first 200.
        g = self.sy.generation()
        ka = KeepAlive(self.sy.port)
        samples, extra = [], []
        for i in range(1, n + 1):
            extra.append((f"/new{i:03d}", self.up_addr))
            if ka.get(f"/new{i:03d}") != 404:
                raise BenchError(f"switchyard /new{i} answered before the swap")
            swap = self.sy.vol.begin(self.sy_routes(extra))
            swap.prepare()
            t0 = time.perf_counter()
            swap.switch()
            dt = self._poll_until_200(lambda: ka.get(f"/new{i:03d}"), t0)
            samples.append(dt)
            swap.finish()
            g = self.sy.wait_generation(g + 1, timeout=5)
        ka.close()
        self.res["switchyard.s2s"] = samples
        self.res["switchyard.s2s_reconnects"] = ka.reconnects
        log(f"switchyard swap-to-serving: median {med(samples) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms "
            f"(keep-alive reconnects: {ka.reconnects})")

        # nginx: time from issuing `nginx -s reload` to the first 200, fresh connection per poll.
        samples, extra, unsettled = [], [], 0
        for i in range(1, n + 1):
            extra.append((f"/new{i:03d}", self.up_addr))
            if try_get(self.ng.port, f"/new{i:03d}")[0] != 404:
                raise BenchError(f"nginx /new{i} answered before the reload")
            self.ng.write(self.ng_conf(self.ng.port, extra))
            old = set(self.ng.workers())
            t0 = time.perf_counter()
            rc, out = self.ng.reload()
            if rc != 0:
                raise BenchError(f"nginx -s reload failed: {out}")
            dt = self._poll_until_200(lambda: try_get(self.ng.port, f"/new{i:03d}")[0], t0)
            samples.append(dt)
            if not self.ng.wait_settled(old, a.workers):
                unsettled += 1
        self.res["nginx.s2s"] = samples
        self.res["nginx.s2s_unsettled"] = unsettled
        log(f"nginx swap-to-serving: median {med(samples) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms")
        # Back to the base config for what follows.
        self.ng.write(self.ng_conf(self.ng.port))
        old = set(self.ng.workers())
        self.ng.reload()
        self.ng.wait_settled(old, a.workers)

    @staticmethod
    def _poll_until_200(get, t0: float, timeout: float = 10.0) -> float:
        for _ in deadline_loop(timeout, 0.0005, "the new route to answer 200"):
            if get() == 200:
                return time.perf_counter() - t0
        return float("nan")

    def churn(self) -> None:
        """1000 swaps without load, each waited for via /routes; RSS before/after."""
        a = self.args
        n, budget = a.churn, 60.0
        # A fresh process, so what the earlier phases (the 10k table) left in
        # the allocator cannot hide growth; warmed up with load first.
        sy = Switchyard("switchyard-churn", self.tmp / "switchyard-churn", free_port(self.ports),
                        free_port(self.ports), a.workers)
        _CLEANUP.append(sy.stop)
        sy.start(self.sy_routes())
        self.wrk.run(sy, 64, a.warmup, measure=False)
        self.res["switchyard.main_rss_end"] = rss_kb(self.sy.pids())
        variants = [self.sy_routes(), self.sy_routes([("/extra", self.up_addr)])]
        pids = sy.pids()
        before = rss_kb(pids)
        g0 = sy.generation()
        trend = [(0, before)]
        t0 = time.monotonic()
        done = 0
        for i in range(n):
            if time.monotonic() - t0 > budget:
                self.problems.append(f"churn: stopped after {done} swaps, the {budget:.0f} s budget ran out")
                break
            if sy.vol.update(variants[(g0 + i) % 2]):
                done += 1
            g = sy.wait_generation(g0 + done, timeout=min(5.0, max(0.1, budget - (time.monotonic() - t0))))
            if g != g0 + done:
                self.problems.append(f"churn: after swap {done} generation is {g}, expected {g0 + done}")
                break
            if done % max(1, n // 10) == 0:
                trend.append((done, rss_kb(pids)))
        elapsed = time.monotonic() - t0
        after = rss_kb(pids)
        g1 = sy.generation()
        if http_get(sy.port, "/app1/x")[0] != 200:
            self.problems.append("churn: /app1/x does not answer 200 after the swaps")
        sy.stop()
        lines = sy.log_path.read_text(errors="replace").splitlines() if sy.log_path.exists() else []
        self.res["switchyard.churn"] = {"n": done, "before": before, "after": after, "gen": (g0, g1),
                                        "secs": elapsed, "trend": trend,
                                        "log_success": sum('result="success"' in l for l in lines),
                                        "log_failure": sum('result="failure"' in l for l in lines),
                                        "log_warn_error": sum(bool(re.search(r"\b(WARN|ERROR)\b", l)) for l in lines)}
        log(f"switchyard {done} swaps in {elapsed:.1f}s: RSS {fmt_mib(before)} -> {fmt_mib(after)}, "
            f"generation {g0} -> {g1}")

    def scan_logs(self) -> None:
        text = self.sy.log_path.read_text(errors="replace") if self.sy.log_path.exists() else ""
        lines = text.splitlines()
        bad = [l for l in lines if re.search(r"\b(WARN|ERROR)\b", l)]
        by_phase: dict[str, int] = {}
        near_end = 0
        for l in bad:
            t = log_time(l)
            if t is None:
                continue
            name = "?"
            for start, ph in self.phases:
                if t >= start:
                    name = ph
            by_phase[name] = by_phase.get(name, 0) + 1
            if any(e - 1.5 <= t <= e + 0.5 for e in self.wrk.ends):
                near_end += 1
        self.res["switchyard.log"] = {
            "lines": len(lines),
            "reload_success": sum('result="success"' in l for l in lines),
            "reload_failure": sum('result="failure"' in l for l in lines),
            "reload_unchanged": sum('result="unchanged"' in l for l in lines),
            "warn_error": bad,
            "patterns": patterns(bad),
            "by_phase": by_phase,
            "near_wrk_end": near_end,
        }
        el = self.ng.prefix / "error.log"
        text = el.read_text(errors="replace") if el.exists() else ""
        bad = [l for l in text.splitlines() if re.search(r"\[(warn|error|crit|alert|emerg)\]", l)]
        self.res["nginx.log"] = {"lines": bad, "patterns": patterns(bad)}

    # -- report ---------------------------------------------------------------

    def report(self, info: dict, started: float) -> str:
        a, R = self.args, self.res
        rows = []

        def row(metric, ng, sy, rat, goal, ok):
            rows.append(f"| {metric} | {ng} | {sy} | {rat} | {goal} | {met(ok)} |")

        def q(c):
            return f"quiet runs: nginx {R[f'nginx.c{c}.used']}, Switchyard {R[f'switchyard.c{c}.used']}"

        for c in CONNECTIONS:
            n, s = R[f"nginx.c{c}.rps"], R[f"switchyard.c{c}.rps"]
            row(f"Throughput, {c} connections (median; {q(c)})", fmt_rps(n), fmt_rps(s), ratio(s, n), "≥ 1.0× nginx",
                s >= n)
        for c in CONNECTIONS:
            for pq in ("p50", "p99"):
                n, s = R[f"nginx.c{c}.{pq}"], R[f"switchyard.c{c}.{pq}"]
                row(f"Latency {pq}, {c} connections (median; {q(c)})", fmt_ms(n), fmt_ms(s), ratio(s, n),
                    "≤ nginx" if pq == "p99" else "—", (s <= n) if pq == "p99" else None)
        n, s = R["nginx.c64.errors"] + R["nginx.c64.non2xx"] + R["nginx.c256.errors"] + R["nginx.c256.non2xx"], \
            R["switchyard.c64.errors"] + R["switchyard.c64.non2xx"] + R["switchyard.c256.errors"] + \
            R["switchyard.c256.non2xx"]
        row("Socket errors + non-2xx, all throughput runs (sum)", str(n), str(s), "—", "0 (sanity)", s == 0)
        n, s = R["nginx.idle_rss"], R["switchyard.idle_rss"]
        row(f"RSS idle (nginx: master + {R['nginx.nprocs'] - 1} workers)", fmt_mib(n), fmt_mib(s), ratio(s, n),
            "—", None)
        n, s = R["nginx.load_rss"], R["switchyard.load_rss"]
        row("RSS under load (max of 200 ms samples, first 64-conn run)", fmt_mib(n), fmt_mib(s), ratio(s, n),
            "≤ nginx", s <= n)
        n, s = R["nginx.peak_rss"], R["switchyard.peak_rss"]
        row("RSS peak over all throughput runs (incl. 256 conns)", fmt_mib(n), fmt_mib(s), ratio(s, n), "—", None)
        ch = R["switchyard.churn"]
        growth = (ch["after"] - ch["before"]) / ch["before"] if ch["before"] else float("nan")
        row(f"RSS before → after {ch['n']} swaps (no load)", "not measured",
            f"{fmt_mib(ch['before'])} → {fmt_mib(ch['after'])} ({growth * 100:+.1f} %)", "—",
            "flat (growth ≤ 10 %)", ch["n"] == a.churn and growth <= 0.10)
        for c in CONNECTIONS:
            n, s = R[f"nginx.c{c}.cpu"], R[f"switchyard.c{c}.cpu"]
            row(f"CPU per request, {c} connections (median; {q(c)})", f"{n:.1f} µs", f"{s:.1f} µs", ratio(s, n), "—", None)
        rn, rs = R["nginx.reload"], R["switchyard.reload"]
        g0, g1, swaps, last_applied = R["switchyard.reload_gen"]

        def errs(r):
            sk = r["sock"]
            return (f"{r['errors']} socket errors (connect {sk['connect']}, read {sk['read']}, write {sk['write']}, "
                    f"timeout {sk['timeout']}), {r['non2xx']} non-2xx")

        row(f"{a.reloads} reloads under load (wrk -c64 -d{a.reload_duration:g}s)",
            f"{errs(rn)}; {rn['rps']:,.0f} req/s", f"{errs(rs)}; {rs['rps']:,.0f} req/s", "—",
            "0 errors, 0 non-2xx", rs["errors"] == 0 and rs["non2xx"] == 0)
        row(f"After {swaps} ConfigMap swaps under load: the last file serving; generations applied", "—",
            f"{'last file serving' if last_applied else 'LAST FILE NOT SERVING'}; generation {g0} → {g1} "
            f"(+{g1 - g0}; swaps landing together are applied as one)", "—",
            "the last file serving", last_applied and 0 < g1 - g0 <= swaps)
        n, s = R["nginx.s2s"], R["switchyard.s2s"]
        row(f"Swap-to-serving, median of {len(s)} (new route answers 200)", fmt_ms(med(n) * 1000),
            fmt_ms(med(s) * 1000), ratio(med(s), med(n)), "< 20 ms", med(s) * 1000 < 20)
        row(f"Swap-to-serving, max of {len(s)}", fmt_ms(max(n) * 1000), fmt_ms(max(s) * 1000),
            ratio(max(s), max(n)), "< 250 ms (benches/README.md)", max(s) * 1000 < 250)
        sr = R["switchyard.big_ratio"]
        if "nginx.big_ratio" in R:
            nr = R["nginx.big_ratio"]
            ncell = f"{nr * 100:.1f} % of 10 routes ({(1 - nr) * 100:+.1f} % cost)"
        else:
            ncell = f"skipped: {R.get('ng10k.skipped', '?')}"
        bq = "; ".join(f"{nm} {R[k][0]} vs {R[k][1]}" for nm, k in (("Switchyard", "switchyard.big_used"),
                                                                     ("nginx", "nginx.big_used")) if k in R)
        row(f"Throughput with {a.big_routes} routes vs 10 routes (64 conns, median; quiet runs: {bq})", ncell,
            f"{sr * 100:.1f} % of 10 routes ({(1 - sr) * 100:+.1f} % cost)", "—", "cost < 5 %", 1 - sr < 0.05)

        cmd = "python3 " + shlex.join(sys.argv)
        out = [
            "# Switchyard vs nginx",
            "",
            f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(started))}, took "
            f"{(time.monotonic() - self.t_start) / 60:.1f} min.",
            "",
            "```",
            cmd,
            "```",
            "",
            f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['mem']} RAM, kernel {info['kernel']}",
            f"- {info['nginx']}; {info['wrk']}; {info['switchyard']}; python {info['python']}",
            f"- Switchyard binary: {self.binary_info}",
            f"- both proxies: {a.workers} workers/threads, access log off, loopback only; one shared upstream "
            f"(nginx, 1 worker, fixed 20-byte body); load: `wrk -t{a.wrk_threads} -c{{64,256}} -d{a.duration:g}s "
            f"--latency http://127.0.0.1:PORT/app1/x`, {a.rounds} round(s) alternating nginx, Switchyard "
            f"after a {a.warmup:g} s warm-up each",
            f"- wrk, the upstream and the proxy under test all share the same {info['nproc']} CPUs: the numbers "
            "compare the two proxies under identical contention, they are not either one's ceiling",
            f"- medians are over the *quiet* runs, those during which other processes used < {QUIET} cores, or "
            "over all runs when none was quiet; `k/n` says how many were",
            f"- other processes on the machine used a median of {med(self.wrk.others):.2f} and at most "
            f"{max(self.wrk.others, default=0):.2f} cores during the measured runs (waited {self.wrk.quiet_waited:.0f} s "
            f"in all for a quiet machine before runs)"
            + (" — **the machine was not idle: treat the throughput and latency rows with caution**"
               if max(self.wrk.others, default=0) > 0.25 else ""),
            "",
            "| metric | nginx | Switchyard | Switchyard / nginx | goal | met |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "## Details",
            "",
        ]
        for c in CONNECTIONS:
            for name in ("nginx", "switchyard"):
                rs = self.runs[(name, c)]
                out.append(f"- {name} c={c} per round: " + ", ".join(
                    f"{r['rps']:,.0f} req/s p99 {fmt_ms(r['p99'])} ({r['errors']} err, {r['non2xx']} non-2xx, "
                    f"others {r['cores']['other']:.2f} cores)" for r in rs))
        for c in CONNECTIONS:
            for name in ("nginx", "switchyard"):
                rs = self.runs[(name, c)]
                cores = {k: med([r["cores"][k] for r in rs]) for k in ("proxy", "upstream", "wrk")}
                out.append(f"- CPU cores busy during {name} c={c} runs (median): {name} {cores['proxy']:.2f}, "
                           f"upstream {cores['upstream']:.2f}, wrk {cores['wrk']:.2f}")
        out.append(f"- PSS (proportional, shared pages split) idle: nginx {fmt_mib(R['nginx.idle_pss'])}, "
                   f"Switchyard {fmt_mib(R['switchyard.idle_pss'])}; first 64-conn run (max): nginx "
                   f"{fmt_mib(R['nginx.load_pss'])}, Switchyard {fmt_mib(R['switchyard.load_pss'])}; peak: nginx "
                   f"{fmt_mib(R['nginx.peak_pss'])}, Switchyard {fmt_mib(R['switchyard.peak_pss'])}")
        out.append(f"- {ch['n']} swaps: on a fresh Switchyard process warmed up with {a.warmup:g} s of load, each "
                   f"swap waited for via /routes; took {ch['secs']:.1f} s, generation {ch['gen'][0]} → "
                   f"{ch['gen'][1]}; its log: {ch['log_success']} successful reloads, {ch['log_failure']} failed, "
                   f"{ch['log_warn_error']} WARN/ERROR lines")
        out.append("- RSS trend over the swaps (swaps: RSS): " + ", ".join(
            f"{k}: {fmt_mib(v)}" for k, v in ch["trend"]))
        out.append(f"- the main Switchyard process at the end (after every phase, incl. the 10k table): RSS "
                   f"{fmt_mib(R['switchyard.main_rss_end'])}")
        out.append(f"- nginx after {a.reloads} reloads under load: {R['nginx.reload_nprocs_end']} processes, "
                   f"RSS {fmt_mib(R['nginx.reload_rss_end'])} right after the run; `nginx -s reload` command "
                   f"median {R['nginx.reload_cmd_ms']:.1f} ms; failed reload commands: "
                   f"{len(R['nginx.reload_failures'])}")
        out.append(f"- swap-to-serving samples (ms): Switchyard "
                   + ", ".join(f"{x * 1000:.1f}" for x in R["switchyard.s2s"]) + "; nginx "
                   + ", ".join(f"{x * 1000:.1f}" for x in R["nginx.s2s"]))
        out.append(f"- swap-to-serving: Switchyard polled over one keep-alive connection "
                   f"(reconnects: {R['switchyard.s2s_reconnects']}); nginx over a fresh connection per poll; "
                   f"nginx reloads whose old workers were still there 15 s later: {R['nginx.s2s_unsettled']}")
        for name in ("switchyard", "nginx"):
            if f"{name}.big_runs" in R:
                s, l, so, lo = R[f"{name}.big_runs"]
                out.append(f"- {name} 10 routes vs {a.big_routes}, per round (others' cores): "
                           + ", ".join(f"{x:,.0f} ({o:.2f})" for x, o in zip(s, so)) + " vs "
                           + ", ".join(f"{x:,.0f} ({o:.2f})" for x, o in zip(l, lo)) + " req/s")
        out.append(f"- switching to the {a.big_routes}-route table: Switchyard ConfigMap swap applied in "
                   f"{R['sy10k.load_s'] * 1000:.0f} ms, RSS with it {fmt_mib(R['switchyard.big_rss'])}"
                   + (f"; nginx -s reload until the new workers alone served {R['ng10k.load_s'] * 1000:.0f} ms, "
                      f"RSS with it {fmt_mib(R['nginx.big_rss'])}"
                      if "ng10k.load_s" in R else f"; nginx {R.get('ng10k.skipped')}"))
        lg = R["switchyard.log"]
        out.append(f"- Switchyard log: {lg['lines']} lines; reloads success {lg['reload_success']}, "
                   f"failure {lg['reload_failure']}, unchanged {lg['reload_unchanged']}; WARN/ERROR lines: "
                   f"{len(lg['warn_error'])}, by phase: {lg['by_phase'] or 'none'}; "
                   f"{lg['near_wrk_end']} of them within 1.5 s before a wrk run ended (wrk closing its "
                   "connections with requests in flight)")
        for n, k in lg["patterns"][:8]:
            out.append(f"  - {n} × `{k.strip()[:300]}`")
        ng = R["nginx.log"]
        out.append(f"- nginx error.log warn-or-worse lines: {len(ng['lines'])}")
        for n, k in ng["patterns"][:8]:
            out.append(f"  - {n} × `{k.strip()[:300]}`")
        for p in self.problems + self.notes:
            out.append(f"- {p}")
        return "\n".join(out) + "\n"

    def run(self) -> str:
        self.t_start = time.monotonic()
        started = time.time()
        self.phase("setup")
        info = machine_info()
        self.setup()
        self.phase("warm-up")
        self.warmup_and_idle()
        self.phase("throughput")
        self.throughput()
        self.phase("10k routes")
        self.big_table()
        self.phase("reloads under load")
        self.reload_under_load()
        self.phase("swap-to-serving")
        self.swap_to_serving()
        self.phase(f"{self.args.churn} swaps")
        self.churn()
        self.phase("end")
        self.scan_logs()
        return self.report(info, started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~1-2 minute smoke run (1 round, 3 s runs)")
    ap.add_argument("--rounds", type=int, help="rounds of A/B throughput runs (default 3, quick 1)")
    ap.add_argument("--duration", type=float, help="seconds per wrk run (default 8, quick 3)")
    ap.add_argument("--out", default=str(REPO / "benches" / "results" / "latest.md"),
                    help="markdown results file (default benches/results/latest.md)")
    ap.add_argument("--binary", help="switchyard binary (default target/release/switchyard, built if missing)")
    ap.add_argument("--workers", type=int, default=2, help="nginx workers and Switchyard threads (default 2)")
    ap.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    ap.add_argument("--reloads", type=int, default=100, help="reloads under load (default 100)")
    ap.add_argument("--reload-duration", type=float, help="seconds of load during the reloads (default 12, quick 6)")
    ap.add_argument("--swaps", type=int, help="swap-to-serving samples (default 30, quick 10)")
    ap.add_argument("--churn", type=int, default=1000, help="swaps for the RSS flatness check (default 1000)")
    ap.add_argument("--big-routes", type=int, default=10000, help="routes in the big table (default 10000)")
    ap.add_argument("--quiet-wait", type=float,
                    help="seconds in all to wait, before measured runs, for other processes to leave the CPUs "
                         "idle (default 180, quick 20; 0 = never wait)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    a = ap.parse_args()
    q = a.quick
    a.rounds = a.rounds or (1 if q else 3)
    a.duration = a.duration or (3.0 if q else 8.0)
    a.warmup = 1.0 if q else 2.0
    a.reload_duration = a.reload_duration or (6.0 if q else 12.0)
    a.swaps = a.swaps or (10 if q else 30)
    a.quiet_wait = (20.0 if q else 180.0) if a.quiet_wait is None else a.quiet_wait
    if a.rounds < 1 or a.duration < 1 or a.reloads < 1 or a.swaps < 1 or a.workers < 1 or a.churn < 1:
        ap.error("counts and durations must be positive")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    atexit.register(cleanup)
    _CLEANUP.append(PROCS.stop_all)

    global NGINX, WRK, BINARY
    try:
        NGINX, WRK = ensure_tools()
        BINARY = ensure_binary(a.binary)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        global NOFILE
        NOFILE = 65535 if hard == resource.RLIM_INFINITY else min(hard, 65535)
        if soft < NOFILE:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))
        bench = Bench(a)
        BINARY = bench.snapshot_binary(BINARY)
        report = bench.run()
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    except SystemExit as e:
        log(f"interrupted (exit {e.code}): stopping everything this script started")
        raise
    finally:
        cleanup()
    print(report)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    log(f"wrote {out}")
    return 0


NGINX = WRK = BINARY = ""
NOFILE = 4096  # worker_rlimit_nofile: this process's hard limit (nginx cannot go above it), at most 65535

if __name__ == "__main__":
    sys.exit(main())
