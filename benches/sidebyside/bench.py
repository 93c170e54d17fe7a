"""What every scenario shares (the options, the tools, the configs, the
running proxies, the results) and the order the scenarios run in."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from . import bigtable, churn, logscan, reloads, report, swap_to_serving, throughput
from .common import UPSTREAM_BODY, BenchError, log
from .configs import Configs, temp_paths_block
from .net import free_port, http_get
from .procs import CLEANUP
from .proxies import Nginx, Switchyard
from .tools import Tools, machine_info, snapshot_binary
from .upstream import start_upstream
from .wrk import Wrk


class Bench:
    """One run. Scenarios write their results into `res`, keyed
    "<proxy name>.<metric>", and the report reads them from there."""

    def __init__(self, args, tools: Tools) -> None:
        self.args, self.tools = args, tools
        self.wrk = Wrk(tools.wrk, args.wrk_threads, args.quiet_wait)
        self.res: dict = {}
        self.problems: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="switchyard-compare-"))
        CLEANUP.insert(0, self.remove_tmp)  # last: after every process is gone
        self.ports: set[int] = set()
        self.temp_paths = temp_paths_block(tools.nginx)
        self.phases: list[tuple[float, str]] = []  # (wall-clock start, name)
        tools.binary, self.binary_info = snapshot_binary(tools.binary, self.tmp)

    def phase(self, name: str) -> None:
        """Marks where a scenario starts, to place the proxy's log lines."""
        self.phases.append((time.time(), name))
        log(f"--- {name}")

    def remove_tmp(self) -> None:
        if self.args.keep_tmp:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def serve_options(self) -> dict[str, str]:
        """The serve options every Switchyard gets unless its extra arguments
        name them: the same threads as nginx's workers, the access log as the
        mode says, no drain delay (stopping it is not measured)."""
        return {"--threads": str(self.args.workers), "--access-log": "on" if self.args.access_log_on else "off",
                "--drain-delay": "0"}

    def switchyard(self, name: str, workdir: Path, extra: list[str]) -> Switchyard:
        """A Switchyard on fresh ports, not started yet, stopped at cleanup."""
        sy = Switchyard(self.tools.binary, name, workdir, free_port(self.ports), free_port(self.ports),
                        self.serve_options(), extra)
        CLEANUP.append(sy.stop)
        return sy

    def setup(self) -> None:
        """The upstream, then nginx, Switchyard and the variants in front of
        it, each checked to answer /app1/x from the upstream and 404 else."""
        a = self.args
        self.upstream, dead_port = start_upstream(self.tools, self.tmp, self.ports, self.temp_paths)
        self.wrk.upstream = self.upstream
        self.cfg = Configs(self.upstream.port, dead_port, a.workers, self.temp_paths, self.tools.nofile,
                           a.access_log_on, a.nginx_cpu_affinity)

        self.ng = Nginx(self.tools.nginx, "nginx", self.tmp / "nginx", free_port(self.ports))
        CLEANUP.append(self.ng.stop)
        self.ng.write(self.cfg.ng_conf(self.ng.port))
        self.ng.start("/app1/x")
        self.sy = self.switchyard("switchyard", self.tmp / "switchyard", a.switchyard_arg)
        self.sy.start(self.cfg.sy_routes())
        log(f"nginx on :{self.ng.port} (pid {self.ng.proc.pid}), switchyard on :{self.sy.port} "
            f"admin :{self.sy.admin} (pid {self.sy.proc.pid})")
        self.variants = []
        for name, extra in a.variant:
            v = self.switchyard(name, self.tmp / f"variant-{name}", extra)
            v.start(self.cfg.sy_routes())
            log(f"variant {name} on :{v.port} admin :{v.admin} (pid {v.proc.pid}): {' '.join(v.tuning())}")
            self.variants.append(v)
        self.proxies = [self.ng, self.sy, *self.variants]
        for p in self.proxies:
            status, body = http_get(p.port, "/app1/x")
            if status != 200 or body != UPSTREAM_BODY:
                raise BenchError(f"{p.name} /app1/x answered {status} {body!r}")
            status, _ = http_get(p.port, "/nope")
            if status != 404:
                raise BenchError(f"{p.name} /nope answered {status}, not 404")

    def stop_variants(self) -> None:
        """The variants are compared on throughput only: the scenarios after
        it run with nginx and Switchyard alone, as without variants."""
        for v in self.variants:
            v.stop()
        self.proxies = [self.ng, self.sy]

    def run(self) -> str:
        """Every scenario in turn; returns the report."""
        self.t_start = time.monotonic()
        started = time.time()
        self.phase("setup")
        info = machine_info(self.tools)
        self.setup()
        self.phase("warm-up")
        throughput.warmup_and_idle(self)
        self.phase("throughput")
        throughput.run(self)
        self.stop_variants()
        self.phase("10k routes")
        bigtable.run(self)
        self.phase("reloads under load")
        reloads.run(self)
        self.phase("swap-to-serving")
        swap_to_serving.run(self)
        self.phase(f"{self.args.churn} swaps")
        churn.run(self)
        self.phase("end")
        logscan.scan(self)
        return report.render(self, info, started)
