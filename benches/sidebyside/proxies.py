"""The processes under test: an nginx instance (the proxy, or the shared
upstream) in its own prefix dir, and a Switchyard serving a ConfigMap volume;
each knows how to start, tell when it is ready, reload and stop."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .common import BenchError, deadline_loop
from .configmap import ConfigMapVolume
from .net import http_get, try_get
from .procfs import children_of
from .procs import PROCS

# How the script wires each Switchyard up; extra arguments may not change these.
WIRING = ("--config", "--listen", "--admin-listen")


def option_names(args: list[str]) -> set[str]:
    """The long options named in `args` (`--x value` or `--x=value`)."""
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def wiring_in(args: list[str]) -> list[str]:
    """The script's own wiring options that `args` would override (an error)."""
    return sorted(option_names(args) & set(WIRING))


class Proxy:
    """What wrk and the samplers need of any proxy: a name for the report, the
    port to load, and the pids whose CPU and memory count as the proxy's."""

    name = "?"
    port = 0

    def pids(self) -> list[int]:
        raise NotImplementedError


class Nginx(Proxy):
    """One nginx master (and its workers) under `prefix`, its config at
    prefix/nginx.conf, never daemonized, so that the script owns it."""

    def __init__(self, binary: str, name: str, prefix: Path, port: int) -> None:
        self.binary, self.name, self.prefix, self.port = binary, name, prefix, port
        self.conf = prefix / "nginx.conf"
        self.proc: subprocess.Popen | None = None
        prefix.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf), "-e", str(self.prefix / "startup.log")]

    def write(self, text: str) -> None:
        """Replaces the config atomically: a reload never reads half a file."""
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf)

    def start(self, ready_path: str, timeout: float = 30.0) -> None:
        """Starts nginx and waits until `ready_path` answers 200."""
        self.proc = PROCS.spawn(self.argv(), self.prefix / "stderr.log")
        for _ in deadline_loop(timeout, 0.005, f"{self.name} on :{self.port}"):
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}):\n{self.logs()}")
            if try_get(self.port, ready_path)[0] == 200:
                return

    def reload(self) -> tuple[int, str]:
        r = subprocess.run(self.argv() + ["-s", "reload"], capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL)
        return r.returncode, (r.stdout + r.stderr).strip()

    def workers(self) -> list[int]:
        return children_of(self.proc.pid) if self.proc else []

    def pids(self) -> list[int]:
        return [self.proc.pid] + self.workers() if self.proc else []

    def wait_settled(self, old: set[int], n: int, timeout: float = 15.0) -> bool:
        """After a reload: only `n` workers left, none of them from `old`."""
        try:
            for _ in deadline_loop(timeout, 0.002, f"{self.name} old workers to exit"):
                w = set(self.workers())
                if len(w) == n and not (w & old):
                    return True
        except BenchError:
            return False
        return False

    def logs(self) -> str:
        out = []
        for f in ("startup.log", "stderr.log", "error.log"):
            p = self.prefix / f
            if p.exists():
                out.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(out)

    def stop(self) -> None:
        if self.proc:
            PROCS.stop(self.proc)
            self.proc = None


class Switchyard(Proxy):
    """One `switchyard serve` on a ConfigMap volume in `workdir`, its stderr
    (process log and, when on, access log) in workdir/switchyard.log.

    `options` are the script's own serve options in order (--threads,
    --access-log, --drain-delay); an option also named in `extra` is left to
    `extra`, which goes last: the binary refuses an option given twice."""

    def __init__(self, binary: str, name: str, workdir: Path, port: int, admin: int,
                 options: dict[str, str], extra: list[str]) -> None:
        self.binary, self.name, self.port, self.admin = binary, name, port, admin
        self.options, self.extra = options, extra
        self.workdir = workdir
        self.vol = ConfigMapVolume(workdir / "routes")
        self.log_path = workdir / "switchyard.log"
        self.proc: subprocess.Popen | None = None

    def tuning(self) -> list[str]:
        """The serve arguments after the wiring: what differs between runs."""
        given = option_names(self.extra)
        out: list[str] = []
        for flag, value in self.options.items():
            if flag not in given:
                out += [flag, value]
        return out + self.extra

    def argv(self) -> list[str]:
        return [self.binary, "serve", "--config", str(self.vol.file),
                "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin}",
                *self.tuning()]

    def start(self, routes: bytes, timeout: float = 60.0) -> None:
        """Starts it on `routes` and waits until the admin listener says ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.vol.create(routes)
        self.proc = PROCS.spawn(self.argv(), self.log_path)
        for _ in deadline_loop(timeout, 0.005, f"{self.name} admin /ready"):
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}):\n{self.logs()}")
            if try_get(self.admin, "/ready")[0] == 200:
                return

    def routes(self) -> dict:
        status, body = http_get(self.admin, "/routes", timeout=5)
        if status != 200:
            raise BenchError(f"{self.name} /routes answered {status}")
        return json.loads(body)

    def generation(self) -> int:
        return int(self.routes()["generation"])

    def wait_generation(self, gen: int, timeout: float = 5.0, interval: float = 0.001) -> int:
        """Polls /routes until generation >= gen; returns the last one seen."""
        g = -1
        try:
            for _ in deadline_loop(timeout, interval, f"{self.name} generation {gen}"):
                g = self.generation()
                if g >= gen:
                    return g
        except BenchError:
            pass
        return g

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc:
            PROCS.stop(self.proc)
            self.proc = None
