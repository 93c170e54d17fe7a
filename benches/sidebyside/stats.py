"""Results aggregated over rounds: medians over the quiet runs, those during
which other processes left the CPUs (nearly) alone, since on a shared machine
one disturbed run would otherwise move the result."""

from __future__ import annotations

import statistics

QUIET = 0.25  # cores other processes may use during a run for it to count as quiet


def is_quiet(r: dict) -> bool:
    return r["cores"]["other"] < QUIET


def quiet_runs(rs: list[dict]) -> list[dict]:
    """The quiet runs; all runs when there is none."""
    q = [r for r in rs if is_quiet(r)]
    return q or rs


def used(rs: list[dict]) -> str:
    """'k/n': how many of the runs were quiet (and used for the median)."""
    k = sum(is_quiet(r) for r in rs)
    return f"{k}/{len(rs)}"


def med(xs):
    """The median, NaNs (unparsed values) left out."""
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def summarize(rs: list[dict]) -> dict:
    """One proxy's throughput runs at one connection count: medians of the
    quiet runs, error sums of all of them."""
    q = quiet_runs(rs)
    return {
        "used": used(rs),
        "rps": med([r["rps"] for r in q]),
        "p50": med([r["p50"] for r in q]),
        "p99": med([r["p99"] for r in q]),
        "cpu": med([r["cpu_us_per_req"] for r in q]),
        "errors": sum(r["errors"] for r in rs),
        "non2xx": sum(r["non2xx"] for r in rs),
    }
