"""Every process a run starts is tracked here and stopped on exit (normal end,
exception, Ctrl-C, SIGTERM, SIGHUP; after a SIGKILL of the script the
parent-death signal does it), so nothing outlives the script."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from pathlib import Path

from .common import REPO, log

try:  # resolved once here: nothing may be imported between fork and exec
    import ctypes

    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except Exception:  # not glibc/Linux: no parent-death signal, cleanup still runs
    _PRCTL = None
_SIGTERM = int(signal.SIGTERM)


def _pdeathsig() -> None:
    # Runs in the child between fork and exec: if this script dies hard
    # (SIGKILL), the kernel sends SIGTERM to the child, so nothing is left.
    if _PRCTL is not None:
        _PRCTL(1, _SIGTERM)  # PR_SET_PDEATHSIG


class Procs:
    """The processes started and not yet stopped, each in its own process
    group so that stopping one reaches its workers too."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def spawn(self, argv: list[str], log_path: Path | None, stdout=None) -> subprocess.Popen:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else out,
                stderr=out,
                start_new_session=True,  # own process group: killpg(pid) reaches workers too
                preexec_fn=_pdeathsig,
                cwd=str(REPO),
            )
        finally:
            if log_path:
                out.close()
        with self.lock:
            self.items.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 8.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # The group may outlive its leader (nginx workers): make sure.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        with self.lock:
            self.items = [q for q in self.items if q is not p]

    def stop_all(self) -> None:
        with self.lock:
            items = list(reversed(self.items))
        for p in items:
            self.stop(p, timeout=5.0)


PROCS = Procs()
CLEANUP: list = []  # run last-in first-out; insert at 0 what must run after everything


def cleanup() -> None:
    """Runs every cleanup step once, even when one of them fails."""
    while CLEANUP:
        fn = CLEANUP.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning
            log(f"cleanup: {e}")


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Signals become SystemExit, so the `finally` blocks and the cleanup run
    for them as for a normal end. Registered first, the stop of every process
    left runs after each proxy's own stop; only the temp dir's removal, which
    is inserted before it, comes later."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    atexit.register(cleanup)
    CLEANUP.append(PROCS.stop_all)
