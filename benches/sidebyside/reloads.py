"""Reloads under load: --reloads reloads spread over one 64-connection wrk
run, nginx by `nginx -s reload` (alternating two configs), Switchyard by
kubelet-style ConfigMap swaps (alternating two files); what wrk saw (socket
errors, non-2xx) and whether the last file written is the one serving."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

from .common import BenchError, deadline_loop, log
from .procfs import rss_kb
from .stats import med

if TYPE_CHECKING:
    from .bench import Bench

START_AT = 0.5  # seconds into the wrk run of the first reload


def _pace(at: float) -> None:
    # Spreads the reloads over the run (a schedule, not a readiness wait).
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _spread(secs: float) -> float:
    """Seconds over which the reloads are spread, ending before wrk does."""
    return max(secs - 1.5, 1.0)


def _nginx(b: Bench) -> None:
    a = b.args
    secs, n = a.reload_duration, a.reloads
    variants = [b.cfg.ng_conf(b.ng.port), b.cfg.ng_conf(b.ng.port, [("/extra", b.cfg.up_addr)])]
    b.ng.write(variants[0])  # it already serves this one
    old = set(b.ng.workers())
    b.wrk.quiet()
    p = b.wrk.start(b.ng.port, 64, secs)
    t0 = time.monotonic()
    failures, took = [], []
    for i in range(n):
        _pace(t0 + START_AT + _spread(secs) * i / n)
        b.ng.write(variants[(i + 1) % 2])
        ts = time.monotonic()
        rc, out = b.ng.reload()
        took.append(time.monotonic() - ts)
        if rc != 0:
            failures.append(out)
    r = b.wrk.finish(p, secs)
    b.res["nginx.reload_rss_end"] = rss_kb(b.ng.pids())
    b.res["nginx.reload_nprocs_end"] = len(b.ng.pids())
    settled = b.ng.wait_settled(old, a.workers)
    b.res["nginx.reload"] = r
    b.res["nginx.reload_failures"] = failures
    b.res["nginx.reload_cmd_ms"] = med(took) * 1000
    log(f"nginx under {n} reloads: {r['rps']:.0f} req/s, socket errors {r['sock']}, non-2xx {r['non2xx']}, "
        f"reload command failures {len(failures)}, settled {settled}")


def _serving_sha(b: Bench, want: str) -> str:
    """The sha256 /routes reports once it is `want` (or after 15 s)."""
    applied = ""
    try:
        for _ in deadline_loop(15, 0.01, "switchyard serving the last swapped file"):
            applied = b.sy.routes()["sha256"]
            if applied == want:
                break
    except BenchError:
        pass
    return applied


def _switchyard(b: Bench) -> None:
    a = b.args
    secs, n = a.reload_duration, a.reloads
    variants = [b.cfg.sy_routes(), b.cfg.sy_routes([("/extra", b.cfg.up_addr)])]
    g0 = b.sy.generation()
    b.wrk.quiet()
    p = b.wrk.start(b.sy.port, 64, secs)
    t0 = time.monotonic()
    swaps = 0
    last = b""
    for i in range(n):
        _pace(t0 + START_AT + _spread(secs) * i / n)
        last = variants[(i + 1) % 2]
        if b.sy.vol.update(last):
            swaps += 1
    r = b.wrk.finish(p, secs)
    # Swaps that land while the reload task waits for a CPU are read
    # together: the proxy applies the newest file and skips the versions
    # in between (two alternating swaps may even net out to "unchanged").
    # What must hold: the last file written is the one serving.
    want = hashlib.sha256(last).hexdigest()
    applied = _serving_sha(b, want)
    g1 = b.sy.generation()
    b.res["switchyard.reload"] = r
    b.res["switchyard.reload_gen"] = (g0, g1, swaps, applied == want)
    log(f"switchyard under {swaps} swaps: {r['rps']:.0f} req/s, socket errors {r['sock']}, "
        f"non-2xx {r['non2xx']}, generation {g0} -> {g1} (+{g1 - g0})")


def run(b: Bench) -> None:
    _nginx(b)
    _switchyard(b)
