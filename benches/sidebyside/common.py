"""What every module needs: the repository's paths, the progress log, the one
error type that stops a run, and the bounded wait every readiness check uses."""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCHES = Path(__file__).resolve().parent.parent
REPO = BENCHES.parent
NGINX_TEMPLATES = BENCHES / "nginx"
UPSTREAM_BODY = b"hello from upstream\n"
CONNECTIONS = (64, 256)


def log(msg: str) -> None:
    """Progress goes to stderr, so stdout carries the report alone."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A run that cannot go on: it stops, everything started is cleaned up,
    and the script exits with status 1."""


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
