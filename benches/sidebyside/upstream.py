"""The one shared, fast upstream both proxies forward to (an nginx with one
worker answering a fixed body), and the dead port the other routes point at:
the proxies are compared in front of the same backend."""

from __future__ import annotations

from pathlib import Path

from .common import log
from .configs import fill
from .net import free_port
from .procs import CLEANUP
from .proxies import Nginx
from .tools import Tools


def start_upstream(tools: Tools, tmp: Path, ports: set[int], temp_paths: str) -> tuple[Nginx, int]:
    """(the running upstream, the dead port nothing ever listens on)."""
    up_port = free_port(ports)
    dead_port = free_port(ports)  # nothing ever listens here
    upstream = Nginx(tools.nginx, "upstream", tmp / "upstream", up_port)
    CLEANUP.append(upstream.stop)
    upstream.write(fill("upstream.conf.tmpl", tools.nofile, TEMP_PATHS=temp_paths, PORT=str(up_port)))
    upstream.start("/x")
    log(f"upstream nginx on :{up_port}")
    return upstream, dead_port
