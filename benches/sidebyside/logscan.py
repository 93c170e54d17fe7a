"""The proxies' own logs after the run: Switchyard's reload results and
WARN/ERROR lines (grouped by pattern and by phase, and placed relative to the
ends of wrk runs), nginx's warn-or-worse error.log lines. Files are read line
by line: with the access log on they hold a line per request."""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from .bench import Bench

WARN_ERROR = re.compile(r"\b(WARN|ERROR)\b")
NGINX_BAD = re.compile(r"\[(warn|error|crit|alert|emerg)\]")
ACCESS = "switchyard::access"  # the access log's target, in text and JSON lines alike


def log_lines(path: Path) -> Iterator[str]:
    """The file's lines without their newline; none for a missing file."""
    if not path.exists():
        return
    with open(path, errors="replace") as f:
        for line in f:
            yield line.rstrip("\n")


def log_time(line: str) -> float | None:
    """Wall-clock time of a Switchyard (tracing, RFC 3339 UTC) log line."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", line)
    if not m:
        return None
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)


def patterns(lines: list[str]) -> list[tuple[int, str]]:
    """Log lines with times, pids, addresses and ports masked, counted."""
    counts: dict[str, int] = {}
    for line in lines:
        k = re.sub(r"^\S+\s+(\S+\s+)?", "", line) if re.match(r"\d{4}[-/]", line) else line
        k = re.sub(r"\d+#\d+", "PID#TID", k)
        k = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "ADDR", k)
        k = re.sub(r"\*\d+", "*N", k)
        counts[k] = counts.get(k, 0) + 1
    return sorted(((n, k) for k, n in counts.items()), reverse=True)


def reload_counts(path: Path) -> dict:
    """Successful and failed reloads and WARN/ERROR lines of one Switchyard log."""
    out = {"log_success": 0, "log_failure": 0, "log_warn_error": 0}
    for line in log_lines(path):
        out["log_success"] += 'result="success"' in line
        out["log_failure"] += 'result="failure"' in line
        out["log_warn_error"] += bool(WARN_ERROR.search(line))
    return out


def _phase_of(b: Bench, t: float) -> str:
    name = "?"
    for start, ph in b.phases:
        if t >= start:
            name = ph
    return name


def _switchyard(b: Bench) -> dict:
    counts = {"lines": 0, "access": 0, "reload_success": 0, "reload_failure": 0, "reload_unchanged": 0}
    bad = []
    for line in log_lines(b.sy.log_path):
        if ACCESS in line:  # INFO, one per request: counted apart
            counts["access"] += 1
            continue
        counts["lines"] += 1
        counts["reload_success"] += 'result="success"' in line
        counts["reload_failure"] += 'result="failure"' in line
        counts["reload_unchanged"] += 'result="unchanged"' in line
        if WARN_ERROR.search(line):
            bad.append(line)
    by_phase: dict[str, int] = {}
    near_end = 0
    for line in bad:
        t = log_time(line)
        if t is None:
            continue
        name = _phase_of(b, t)
        by_phase[name] = by_phase.get(name, 0) + 1
        if any(e - 1.5 <= t <= e + 0.5 for e in b.wrk.ends):
            near_end += 1
    return {**counts, "warn_error": bad, "patterns": patterns(bad), "by_phase": by_phase, "near_wrk_end": near_end}


def scan(b: Bench) -> None:
    b.res["switchyard.log"] = _switchyard(b)
    bad = [line for line in log_lines(b.ng.prefix / "error.log") if NGINX_BAD.search(line)]
    b.res["nginx.log"] = {"lines": bad, "patterns": patterns(bad)}
