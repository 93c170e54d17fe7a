"""The cost of a big routing table: the same process alternates between its
10-route config and one with --big-routes more routes (all to the dead
port), switched the way each one is reloaded in production; 64-connection
throughput after a warm-up, the two tables in ABBA order across rounds."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .common import BenchError, log
from .procfs import rss_kb
from .stats import med, quiet_runs, used

if TYPE_CHECKING:
    from .bench import Bench


def _set_switchyard(b: Bench, cfgs: dict[str, bytes], which: str) -> float:
    """A ConfigMap swap to `which` ("10" or "big"), checked by its route count."""
    g = b.sy.generation()
    t0 = time.monotonic()
    if b.sy.vol.update(cfgs[which]):
        if b.sy.wait_generation(g + 1, timeout=30) < g + 1:
            raise BenchError(f"switchyard did not apply the {which}-route config within 30 s")
    dt = time.monotonic() - t0
    want = b.args.big_routes + 1 if which == "big" else len(b.cfg.base_routes())
    got = len(b.sy.routes()["routes"])
    if got != want:
        raise BenchError(f"switchyard serves {got} routes, expected {want}")
    return dt


def _set_nginx(b: Bench, cfgs: dict[str, str], which: str) -> float:
    """`nginx -s reload` into `which`, until only new workers serve."""
    old = set(b.ng.workers())
    b.ng.write(cfgs[which])
    t0 = time.monotonic()
    rc, out = b.ng.reload()
    if rc != 0:
        raise BenchError(f"nginx -s reload ({which}) failed: {out}")
    if not b.ng.wait_settled(old, b.args.workers, timeout=30):
        raise BenchError(f"nginx did not settle on the {which}-route config within 30 s")
    return time.monotonic() - t0


def _setters(b: Bench) -> list:
    """(proxy, set(which)) for Switchyard, and for nginx unless the big
    table does not load in reasonable time; the load times go into res."""
    n = b.args.big_routes
    sy_cfg = {"10": b.cfg.sy_routes(), "big": b.cfg.sy_big(n)}
    ng_cfg = {"10": b.cfg.ng_conf(b.ng.port), "big": b.cfg.ng_big(b.ng.port, n)}

    def set_sy(which: str) -> float:
        return _set_switchyard(b, sy_cfg, which)

    def set_ng(which: str) -> float:
        return _set_nginx(b, ng_cfg, which)

    try:
        b.res["ng10k.load_s"] = set_ng("big")
        log(f"nginx reloaded into {n} locations in {b.res['ng10k.load_s']:.2f}s")
    except BenchError as e:
        b.res["ng10k.skipped"] = f"{n} locations did not load in reasonable time ({e})"
        log(f"nginx big table skipped: {e}")
    set_ng("10")
    b.res["sy10k.load_s"] = set_sy("big")
    log(f"switchyard swapped to {n} routes in {b.res['sy10k.load_s']:.2f}s")
    set_sy("10")
    return [(b.sy, set_sy)] + ([] if "ng10k.skipped" in b.res else [(b.ng, set_ng)])


def run(b: Bench) -> None:
    a = b.args
    setters = _setters(b)
    runs: dict = {}
    for rnd in range(a.rounds):
        order = ("10", "big") if rnd % 2 == 0 else ("big", "10")  # ABBA across rounds
        for proxy, setter in setters:
            for which in order:
                setter(which)
                b.wrk.run(proxy, 64, a.warmup, measure=False)
                if which == "big":
                    b.res[f"{proxy.name}.big_rss"] = rss_kb(proxy.pids())
                r = b.wrk.run(proxy, 64, a.duration)
                runs.setdefault((proxy.name, which), []).append(r)
                log(f"round {rnd + 1}/{a.rounds} {proxy.name:10} {which:>3} routes c= 64: {r['rps']:9.0f} req/s "
                    f"errors {r['errors']} non2xx {r['non2xx']} others {r['cores']['other']:.2f} cores")
                if r["errors"] or r["non2xx"]:
                    b.problems.append(f"{proxy.name} with the {which}-route table: {r['errors']} socket "
                                      f"errors, {r['non2xx']} non-2xx")
        for _, setter in setters:
            setter("10")
    for proxy, _ in setters:
        _summarize(b, proxy.name, runs[(proxy.name, "10")], runs[(proxy.name, "big")])


def _summarize(b: Bench, name: str, small: list[dict], large: list[dict]) -> None:
    """Throughput with the big table as a fraction of that with 10 routes."""
    qs, ql = quiet_runs(small), quiet_runs(large)
    s_, l_ = med([r["rps"] for r in qs]), med([r["rps"] for r in ql])
    b.res[f"{name}.big_ratio"] = l_ / s_ if s_ else float("nan")
    b.res[f"{name}.big_used"] = (used(small), used(large))
    b.res[f"{name}.big_runs"] = ([r["rps"] for r in small], [r["rps"] for r in large],
                                 [r["cores"]["other"] for r in small], [r["cores"]["other"] for r in large])
