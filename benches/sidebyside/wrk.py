"""Load generation with wrk: one run against one proxy, wrk's output parsed,
and the CPU that the proxy, the upstream, wrk and everyone else used during
it, so that a run disturbed by someone else's work can be told apart."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import time

from .common import BenchError
from .procfs import CLK_TCK, Sampler, cpu_busy_ticks, cpu_ticks, wait_quiet
from .procs import PROCS
from .proxies import Proxy

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(out: str) -> dict:
    """rps, requests, p50 and p99 (ms), socket errors and non-2xx of one run."""
    r: dict = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise BenchError(f"wrk output without Requests/sec:\n{out}")
    r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    r["requests"] = int(m.group(1)) if m else 0
    for q in ("50", "99"):
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
    """wrk runs of one benchmark, and what they saw of the machine."""

    def __init__(self, binary: str, threads: int, quiet_budget: float) -> None:
        self.binary, self.threads = binary, threads
        self.upstream: Proxy | None = None  # its CPU is reported per run too
        self.quiet_budget = quiet_budget  # seconds left to wait for a quiet machine before runs
        self.quiet_per_run = min(20.0, quiet_budget)
        self.quiet_waited = 0.0
        self.others: list[float] = []  # cores used by other processes during each measured run
        self.ends: list[float] = []  # wall-clock end of every run, to place proxy log lines

    def quiet(self) -> float:
        """Before a measured run: waits, within the budget, for a quiet
        machine; returns the seconds waited."""
        if self.quiet_budget <= 0:
            return 0.0
        waited = wait_quiet(min(self.quiet_per_run, self.quiet_budget))
        self.quiet_budget -= waited
        self.quiet_waited += waited
        return waited

    def start(self, port: int, conns: int, secs: float) -> subprocess.Popen:
        argv = [self.binary, f"-t{min(self.threads, conns)}", f"-c{conns}", f"-d{max(1, round(secs))}s",
                "--latency", f"http://127.0.0.1:{port}/app1/x"]
        return PROCS.spawn(argv, None, stdout=subprocess.PIPE)

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
        """One run; `sample` adds the RSS peak, `measure` (not a warm-up)
        waits for a quiet machine first and counts the run's disturbance."""
        pids0 = proxy.pids()
        before = cpu_ticks(pids0)
        up_pids = self.upstream.pids() if self.upstream else []
        up_before = cpu_ticks(up_pids)
        waited = self.quiet() if measure else 0.0
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
        r["quiet_wait"] = waited
        if measure:
            self.others.append(r["cores"]["other"])
        r["cpu_us_per_req"] = r["cpu_s"] * 1e6 / r["requests"] if r["requests"] else float("nan")
        if sampler:
            r["max_rss_kb"], r["max_pss_kb"] = sampler.max_rss, sampler.max_pss
        return r
