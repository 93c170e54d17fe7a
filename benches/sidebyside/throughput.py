"""The warm-up with idle memory, and the throughput rounds: wrk at 64 and 256
connections, nginx, Switchyard and each variant in turn within every round
(A B A B), so that a slow spell of the machine hits them alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .common import CONNECTIONS, log
from .fmt import fmt_mib, fmt_ms
from .procfs import pss_kb, rss_kb
from .stats import summarize

if TYPE_CHECKING:
    from .bench import Bench


def warmup_and_idle(b: Bench) -> None:
    """A short unmeasured load first (pools filled, code paged in), then the
    idle memory of each proxy."""
    for p in b.proxies:
        b.wrk.run(p, 64, b.args.warmup, measure=False)
    for p in b.proxies:
        b.res[f"{p.name}.idle_rss"] = rss_kb(p.pids())
        b.res[f"{p.name}.idle_pss"] = pss_kb(p.pids())
        b.res[f"{p.name}.nprocs"] = len(p.pids())
    log("idle RSS: nginx {} ({} processes), switchyard {}".format(
        fmt_mib(b.res["nginx.idle_rss"]), b.res["nginx.nprocs"], fmt_mib(b.res["switchyard.idle_rss"]))
        + "".join(f", {v.name} {fmt_mib(b.res[f'{v.name}.idle_rss'])}" for v in b.variants))


def run(b: Bench) -> None:
    """The rounds; `b.runs` keeps every run for the report's details."""
    a = b.args
    runs: dict = {}
    for rnd in range(a.rounds):
        for c in CONNECTIONS:
            for p in b.proxies:  # A B A B
                r = b.wrk.run(p, c, a.duration, sample=True)
                runs.setdefault((p.name, c), []).append(r)
                log(f"round {rnd + 1}/{a.rounds} {p.name:10} c={c:3}: {r['rps']:9.0f} req/s  "
                    f"p50 {fmt_ms(r['p50'])}  p99 {fmt_ms(r['p99'])}  "
                    f"cpu {r['cpu_us_per_req']:.1f} µs/req  errors {r['errors']} non2xx {r['non2xx']}  "
                    f"others {r['cores']['other']:.2f} cores (waited {r['quiet_wait']:.1f}s)")
    b.runs = runs
    for (name, c), rs in runs.items():
        for metric, value in summarize(rs).items():
            b.res[f"{name}.c{c}.{metric}"] = value
        if c == 64:
            # The first round's 64-connection run comes before any
            # 256-connection run, whose buffers an allocator may keep.
            b.res[f"{name}.load_rss"] = rs[0]["max_rss_kb"]
            b.res[f"{name}.load_pss"] = rs[0]["max_pss_kb"]
    for p in b.proxies:
        allr = [r for c in CONNECTIONS for r in runs[(p.name, c)]]
        b.res[f"{p.name}.peak_rss"] = max(r["max_rss_kb"] for r in allr)
        b.res[f"{p.name}.peak_pss"] = max(r["max_pss_kb"] for r in allr)
