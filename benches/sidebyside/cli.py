"""The command line of benches/compare.py: options and their defaults (full
run or --quick), then one run with everything it started stopped at the end,
the report printed and written to --out."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from .bench import Bench
from .common import REPO, BenchError, log
from .procs import cleanup, install_cleanup
from .proxies import WIRING, wiring_in
from .tools import Tools, ensure_binary, ensure_tools, raise_nofile

DESCRIPTION = "Switchyard vs nginx, side by side, on this machine."
RESERVED_NAMES = ("nginx", "switchyard", "upstream")  # the columns and processes already there


def parse_variant(text: str) -> tuple[str, list[str]]:
    """NAME=ARGS: a column name, and the serve arguments (split as a shell would)."""
    name, sep, args = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=ARGS, NAME of letters, digits, '_', '.', '-'")
    if name.lower() in RESERVED_NAMES:
        raise argparse.ArgumentTypeError(f"{text!r}: the name {name} is taken")
    try:
        return name, shlex.split(args)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~1-2 minute smoke run (1 round, 3 s runs)")
    ap.add_argument("--rounds", type=int, help="rounds of A/B throughput runs (default 3, quick 1)")
    ap.add_argument("--duration", type=float, help="seconds per wrk run (default 8, quick 3)")
    ap.add_argument("--out", default=str(REPO / "benches" / "results" / "latest.md"),
                    help="markdown results file (default benches/results/latest.md)")
    ap.add_argument("--binary", help="switchyard binary (default target/release/switchyard, built if missing)")
    ap.add_argument("--workers", type=int, default=2, help="nginx workers and Switchyard threads (default 2)")
    ap.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    ap.add_argument("--reloads", type=int, default=100, help="reloads under load (default 100)")
    ap.add_argument("--reload-duration", type=float, help="seconds of load during the reloads (default 12, quick 6)")
    ap.add_argument("--swaps", type=int, help="swap-to-serving samples (default 30, quick 10)")
    ap.add_argument("--churn", type=int, default=1000, help="swaps for the RSS flatness check (default 1000)")
    ap.add_argument("--big-routes", type=int, default=10000, help="routes in the big table (default 10000)")
    ap.add_argument("--quiet-wait", type=float,
                    help="seconds in all to wait, before measured runs, for other processes to leave the CPUs "
                         "idle (default 180, quick 20; 0 = never wait)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--access-log-on", action="store_true",
                    help="the default configuration: access logs on for both proxies, so that both pay for "
                         "logging (nginx: 'access_log access.log combined buffer=64k flush=1s' in its temp dir; "
                         "Switchyard: --access-log on, its stderr to a file in the temp dir, as its process "
                         "log); default: off for both")
    ap.add_argument("--nginx-cpu-affinity", action="store_true",
                    help="nginx with 'worker_cpu_affinity auto' (each worker held to a CPU), as Switchyard "
                         "holds its threads with --cpu-affinity auto on a machine whose CPUs number its "
                         "threads; default: nginx's own default, unpinned")
    ap.add_argument("--switchyard-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for every run of the Switchyard under test, after the script's own; "
                         "repeatable; write it with '=' (--switchyard-arg=--access-log=on); an option the script "
                         "sets itself (--threads, --access-log, --drain-delay) is then left to it")
    ap.add_argument("--variant", action="append", default=[], type=parse_variant, metavar="NAME=ARGS",
                    help="also run a Switchyard NAME started with ARGS (split as by a shell) instead of the "
                         "--switchyard-arg ones, e.g. --variant 'nolog=--access-log off'; measured with nginx and "
                         "Switchyard in the warm-up and every throughput round and reported as columns NAME and "
                         "NAME / nginx; the later scenarios run without it; repeatable")
    return ap


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed options with the defaults of a full or --quick run filled in."""
    ap = parser()
    a = ap.parse_args(argv)
    q = a.quick
    a.rounds = a.rounds or (1 if q else 3)
    a.duration = a.duration or (3.0 if q else 8.0)
    a.warmup = 1.0 if q else 2.0
    a.reload_duration = a.reload_duration or (6.0 if q else 12.0)
    a.swaps = a.swaps or (10 if q else 30)
    a.quiet_wait = (20.0 if q else 180.0) if a.quiet_wait is None else a.quiet_wait
    if a.rounds < 1 or a.duration < 1 or a.reloads < 1 or a.swaps < 1 or a.workers < 1 or a.churn < 1:
        ap.error("counts and durations must be positive")
    names = [name for name, _ in a.variant]
    if len(set(names)) != len(names):
        ap.error("--variant names must differ")
    for args in [a.switchyard_arg] + [extra for _, extra in a.variant]:
        if wiring_in(args):
            ap.error(f"{', '.join(wiring_in(args))}: the script sets {', '.join(WIRING)} itself")
    return a


def main() -> int:
    a = options()
    install_cleanup()
    try:
        nginx, wrk = ensure_tools()
        tools = Tools(nginx, wrk, ensure_binary(a.binary), raise_nofile())
        report = Bench(a, tools).run()
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    except SystemExit as e:
        log(f"interrupted (exit {e.code}): stopping everything this script started")
        raise
    finally:
        cleanup()
    print(report)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    log(f"wrote {out}")
    return 0
