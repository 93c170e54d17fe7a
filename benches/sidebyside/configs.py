"""The two proxies' configs, built from one list of routes so that they stay
equivalent: /app1 to the shared upstream, /app2../app10 to a dead port, plus
whatever routes a scenario adds (reloads, swap-to-serving, the big table)."""

from __future__ import annotations

import re
import subprocess

from .common import NGINX_TEMPLATES, BenchError

# nginx's access log in --access-log-on: buffered, as a tuned production nginx logs.
NGINX_ACCESS_LOG = "access_log access.log combined buffer=64k flush=1s;"


def routes_yaml(routes: list[tuple[str, str]]) -> bytes:
    lines = ["version: 1", "routes:"]
    for path, upstream in routes:
        lines += [f"  - path: {path}", f"    upstream: {upstream}"]
    return ("\n".join(lines) + "\n").encode()


def temp_paths_block(nginx: str) -> str:
    """Temp dirs inside the instance's prefix, for the modules this nginx has:
    nginx would otherwise use (and need write access to) the system's."""
    try:
        v = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10).stderr
    except Exception:
        v = ""
    lines = ["    client_body_temp_path body_temp;", "    proxy_temp_path proxy_temp;"]
    for mod in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{mod}_module" not in v:
            lines.append(f"    {mod}_temp_path {mod}_temp;")
    return "\n".join(lines)


def fill(template: str, nofile: int, **values: str) -> str:
    """A template of benches/nginx with its @NAME@ slots filled; a slot left
    over is an error, not a broken config found later."""
    text = (NGINX_TEMPLATES / template).read_text()
    values.setdefault("RLIMIT_NOFILE", str(nofile))
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BenchError(f"{template}: unfilled {left}")
    return text


def nginx_location(path: str, target: str) -> str:
    return f"        location {path} {{ proxy_pass http://{target}; }}\n"


class Configs:
    """Configs for one run: the upstream's and dead port's addresses, the
    worker count, and whether access logs are on, fixed once."""

    def __init__(self, up_port: int, dead_port: int, workers: int, temp_paths: str, nofile: int,
                 access_log: bool, cpu_affinity: bool = False) -> None:
        self.up_port, self.dead_port = up_port, dead_port
        self.up_addr, self.dead_addr = f"127.0.0.1:{up_port}", f"127.0.0.1:{dead_port}"
        self.workers, self.temp_paths, self.nofile = workers, temp_paths, nofile
        self.access_log = NGINX_ACCESS_LOG if access_log else "access_log off;"
        self.cpu_affinity = "worker_cpu_affinity auto;" if cpu_affinity else ""

    def base_routes(self) -> list[tuple[str, str]]:
        return [("/app1", self.up_addr)] + [(f"/app{i}", self.dead_addr) for i in range(2, 11)]

    def big_routes(self, n: int) -> list[tuple[str, str]]:
        """n more routes, all to the dead port, for the big-table scenario."""
        return [(f"/r{i}", self.dead_addr) for i in range(n)]

    def sy_routes(self, extra: list[tuple[str, str]] = ()) -> bytes:
        return routes_yaml(self.base_routes() + list(extra))

    def sy_big(self, n: int) -> bytes:
        return routes_yaml([("/app1", self.up_addr)] + self.big_routes(n))

    def ng_conf(self, port: int, extra: list[tuple[str, str]] = ()) -> str:
        locs = "".join(nginx_location(p, "dead" if u == self.dead_addr else "app1")
                       for p, u in self.base_routes()[1:] + list(extra))
        return self._ng(port, locs)

    def ng_big(self, port: int, n: int) -> str:
        return self._ng(port, "".join(nginx_location(p, "dead") for p, _ in self.big_routes(n)))

    def _ng(self, port: int, locations: str) -> str:
        return fill("proxy.conf.tmpl", self.nofile, WORKERS=str(self.workers), TEMP_PATHS=self.temp_paths,
                    UPSTREAM_PORT=str(self.up_port), DEAD_PORT=str(self.dead_port), PORT=str(port),
                    ACCESS_LOG=self.access_log, CPU_AFFINITY=self.cpu_affinity, LOCATIONS=locations)
