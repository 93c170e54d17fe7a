"""Swap-to-serving: --swaps times, a config adding /newNNN is applied and the
time until the new route first answers 200 is taken; for Switchyard from the
rename of `..data`, polled over one keep-alive connection; for nginx from
issuing `nginx -s reload`, polled over a fresh connection per poll."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .common import BenchError, deadline_loop, log
from .net import KeepAlive, try_get
from .stats import med

if TYPE_CHECKING:
    from .bench import Bench


def _poll_until_200(get, t0: float, timeout: float = 10.0) -> float:
    for _ in deadline_loop(timeout, 0.0005, "the new route to answer 200"):
        if get() == 200:
            return time.perf_counter() - t0
    return float("nan")


def _switchyard(b: Bench) -> None:
    """Time from rename(..data_tmp, ..data) to the first 200."""
    g = b.sy.generation()
    ka = KeepAlive(b.sy.port)
    samples, extra = [], []
    for i in range(1, b.args.swaps + 1):
        extra.append((f"/new{i:03d}", b.cfg.up_addr))
        if ka.get(f"/new{i:03d}") != 404:
            raise BenchError(f"switchyard /new{i} answered before the swap")
        swap = b.sy.vol.begin(b.cfg.sy_routes(extra))
        swap.prepare()
        t0 = time.perf_counter()
        swap.switch()
        dt = _poll_until_200(lambda: ka.get(f"/new{i:03d}"), t0)
        samples.append(dt)
        swap.finish()
        g = b.sy.wait_generation(g + 1, timeout=5)
    ka.close()
    b.res["switchyard.s2s"] = samples
    b.res["switchyard.s2s_reconnects"] = ka.reconnects
    log(f"switchyard swap-to-serving: median {med(samples) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms "
        f"(keep-alive reconnects: {ka.reconnects})")


def _nginx(b: Bench) -> None:
    """Time from issuing `nginx -s reload` to the first 200, fresh connection per poll."""
    samples, extra, unsettled = [], [], 0
    for i in range(1, b.args.swaps + 1):
        extra.append((f"/new{i:03d}", b.cfg.up_addr))
        if try_get(b.ng.port, f"/new{i:03d}")[0] != 404:
            raise BenchError(f"nginx /new{i} answered before the reload")
        b.ng.write(b.cfg.ng_conf(b.ng.port, extra))
        old = set(b.ng.workers())
        t0 = time.perf_counter()
        rc, out = b.ng.reload()
        if rc != 0:
            raise BenchError(f"nginx -s reload failed: {out}")
        dt = _poll_until_200(lambda: try_get(b.ng.port, f"/new{i:03d}")[0], t0)
        samples.append(dt)
        if not b.ng.wait_settled(old, b.args.workers):
            unsettled += 1
    b.res["nginx.s2s"] = samples
    b.res["nginx.s2s_unsettled"] = unsettled
    log(f"nginx swap-to-serving: median {med(samples) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms")


def _nginx_back_to_base(b: Bench) -> None:
    """Back to the base config for what follows."""
    b.ng.write(b.cfg.ng_conf(b.ng.port))
    old = set(b.ng.workers())
    b.ng.reload()
    b.ng.wait_settled(old, b.args.workers)


def run(b: Bench) -> None:
    _switchyard(b)
    _nginx(b)
    _nginx_back_to_base(b)
