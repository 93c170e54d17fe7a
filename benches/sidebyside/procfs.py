"""CPU and memory of processes and of the whole machine, read from /proc:
RSS/PSS of a proxy's processes, CPU ticks per process, machine-wide busy
time (to tell when someone else's build shares the cores)."""

from __future__ import annotations

import os
import re
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read(path: str) -> str | None:
    """A /proc file's text, or None when the process is gone."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(stat: str) -> list[str]:
    # The command name in parentheses may hold spaces: fields start after it.
    return stat[stat.rindex(")") + 2:].split()


def children_of(ppid: int) -> list[int]:
    """Pids whose parent is `ppid` (nginx's workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = read(f"/proc/{entry}/stat")
        if not stat:
            continue
        if int(_stat_fields(stat)[1]) == ppid:
            out.append(int(entry))
    return out


def _status_kb(pid: int, field: str) -> int:
    text = read(f"/proc/{pid}/status") or ""
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def rss_kb(pids: list[int]) -> int:
    return sum(_status_kb(p, "VmRSS") for p in pids)


def pss_kb(pids: list[int]) -> int:
    """Proportional set size: shared pages split between nginx's master and
    workers, so it does not count them once per process as RSS does."""
    total = 0
    for p in pids:
        text = read(f"/proc/{p}/smaps_rollup") or ""
        m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        total += int(m.group(1)) if m else 0
    return total


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime + stime per pid, in clock ticks."""
    out = {}
    for p in pids:
        stat = read(f"/proc/{p}/stat")
        if not stat:
            continue
        rest = _stat_fields(stat)
        out[p] = int(rest[11]) + int(rest[12])  # utime + stime
    return out


def cpu_busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    f = [int(x) for x in (read("/proc/stat") or "cpu 0 0 0 0").splitlines()[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    total = sum(f[:8])  # guest time is already in user
    return total - idle, total


def wait_quiet(max_wait: float, threshold: float = 0.25, window: float = 0.5) -> float:
    """Waits (at most max_wait s) until the machine is quiet: less than
    `threshold` cores busy over a `window`. Nothing of ours runs then, so what
    is busy is someone else (a build on a shared box). Returns the seconds
    waited."""
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
    return time.monotonic() - t0


def mem_total_kb() -> int:
    m = re.search(r"^MemTotal:\s+(\d+) kB", read("/proc/meminfo") or "", re.M)
    return int(m.group(1)) if m else 0


def cpu_model() -> str:
    for line in (read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


class Sampler(threading.Thread):
    """Samples RSS (and PSS) of a proxy's processes every 200 ms during a run:
    the peak under load is what a memory limit has to allow for."""

    def __init__(self, proxy, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.proxy, self.interval = proxy, interval
        self.stop_evt = threading.Event()
        self.max_rss = 0
        self.max_pss = 0

    def run(self) -> None:
        for _ in range(100000):  # bounded: stopped long before
            pids = self.proxy.pids()
            self.max_rss = max(self.max_rss, rss_kb(pids))
            self.max_pss = max(self.max_pss, pss_kb(pids))
            if self.stop_evt.wait(self.interval):
                return

    def stop(self) -> None:
        self.stop_evt.set()
        self.join(timeout=5)
