"""Loopback ports and the small HTTP clients the script uses to check that a
proxy is ready and to poll for a new route (wrk does the load)."""

from __future__ import annotations

import http.client
import socket

from .common import BenchError


def free_port(taken: set[int]) -> int:
    """A port the kernel just handed out and this run has not used yet."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port
    raise BenchError("no free port")


def http_get(port: int, path: str, method: str = "GET", timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers={"Connection": "close"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def try_get(port: int, path: str) -> tuple[int, bytes]:
    """Like http_get, with status 0 for a server not (yet) listening."""
    try:
        return http_get(port, path)
    except (OSError, http.client.HTTPException):
        return 0, b""


class KeepAlive:
    """One keep-alive client connection, reopened only if the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        self.reconnects = 0

    def get(self, path: str) -> int:
        for attempt in range(2):
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                r.read()
                if r.will_close:
                    self.conn.close()
                    self.reconnects += 1
                return r.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.reconnects += 1
                if attempt:
                    raise
        return 0

    def close(self) -> None:
        self.conn.close()
