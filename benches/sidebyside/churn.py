"""Memory flatness over many reloads: --churn ConfigMap swaps without load on
a fresh Switchyard, each waited for via /routes, RSS before, after and every
tenth of the way."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .common import log
from .fmt import fmt_mib
from .logscan import reload_counts
from .net import http_get
from .procfs import rss_kb

if TYPE_CHECKING:
    from .bench import Bench

BUDGET = 60.0  # seconds the swaps may take in all


def _swap(b: Bench, sy, variants: list[bytes]) -> dict:
    """The swaps themselves; a stop short of --churn is a problem in the report."""
    n = b.args.churn
    pids = sy.pids()
    before = rss_kb(pids)
    g0 = sy.generation()
    trend = [(0, before)]
    t0 = time.monotonic()
    done = 0
    for i in range(n):
        if time.monotonic() - t0 > BUDGET:
            b.problems.append(f"churn: stopped after {done} swaps, the {BUDGET:.0f} s budget ran out")
            break
        if sy.vol.update(variants[(g0 + i) % 2]):
            done += 1
        g = sy.wait_generation(g0 + done, timeout=min(5.0, max(0.1, BUDGET - (time.monotonic() - t0))))
        if g != g0 + done:
            b.problems.append(f"churn: after swap {done} generation is {g}, expected {g0 + done}")
            break
        if done % max(1, n // 10) == 0:
            trend.append((done, rss_kb(pids)))
    elapsed = time.monotonic() - t0
    after = rss_kb(pids)
    return {"n": done, "before": before, "after": after, "gen": (g0, sy.generation()), "secs": elapsed,
            "trend": trend}


def run(b: Bench) -> None:
    # A fresh process, so what the earlier phases (the 10k table) left in
    # the allocator cannot hide growth; warmed up with load first.
    sy = b.switchyard("switchyard-churn", b.tmp / "switchyard-churn", b.args.switchyard_arg)
    sy.start(b.cfg.sy_routes())
    b.wrk.run(sy, 64, b.args.warmup, measure=False)
    b.res["switchyard.main_rss_end"] = rss_kb(b.sy.pids())
    ch = _swap(b, sy, [b.cfg.sy_routes(), b.cfg.sy_routes([("/extra", b.cfg.up_addr)])])
    if http_get(sy.port, "/app1/x")[0] != 200:
        b.problems.append("churn: /app1/x does not answer 200 after the swaps")
    sy.stop()
    ch.update(reload_counts(sy.log_path))
    b.res["switchyard.churn"] = ch
    log(f"switchyard {ch['n']} swaps in {ch['secs']:.1f}s: RSS {fmt_mib(ch['before'])} -> {fmt_mib(ch['after'])}, "
        f"generation {ch['gen'][0]} -> {ch['gen'][1]}")
