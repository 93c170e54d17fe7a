"""The programs a run needs: nginx and wrk (installed with apt-get when
missing), the Switchyard binary (built when missing, then run from a private
copy), the fd limit nginx may raise itself to, and the versions the report
names."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import procfs
from .common import REPO, BenchError, log


@dataclass
class Tools:
    nginx: str
    wrk: str
    binary: str  # the private copy once Bench has made it
    nofile: int  # worker_rlimit_nofile: this process's hard limit (nginx cannot go above it), at most 65535


def find_tool(name: str) -> str | None:
    """On PATH, or in the sbin dirs a non-root PATH often lacks."""
    return shutil.which(name) or next((f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin", "/sbin")
                                       if os.access(f"{d}/{name}", os.X_OK)), None)


def ensure_tools() -> tuple[str, str]:
    """(nginx, wrk), installing what is missing; no system nginx service is
    ever started by it."""
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
    if nginx and wrk:
        return nginx, wrk
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("nginx and wrk are needed: run as root with apt-get, or install them "
                         "(apt-get install nginx-light wrk)")
    log("installing nginx and wrk with apt-get (no service is started or touched)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Keep the package's postinst from starting a system nginx where an init
    # system runs: a policy-rc.d that denies, only if none exists, removed after.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\n# temporary, from switchyard benches/compare.py\nexit 101\n")
        policy.chmod(0o755)
        made_policy = True
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        pkgs = ["wrk"] if nginx else ["nginx-light", "wrk"]
        r = subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], env=env, timeout=900)
        if r.returncode != 0 and not nginx:
            subprocess.run(["apt-get", "install", "-y", "-qq", "nginx", "wrk"], check=True, env=env, timeout=900)
    finally:
        if made_policy:
            policy.unlink()
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
    if not (nginx and wrk):
        raise BenchError("nginx or wrk still missing after apt-get install")
    return nginx, wrk


def ensure_binary(arg: str | None) -> str:
    """--binary as given, else target/release/switchyard, built if missing."""
    if arg:
        if not os.access(arg, os.X_OK):
            raise BenchError(f"--binary {arg} is not an executable file")
        return str(Path(arg).resolve())
    path = REPO / "target" / "release" / "switchyard"
    if not path.exists():
        if not shutil.which("cmake") and (REPO / "scripts" / "bootstrap.sh").exists():
            subprocess.run(["bash", str(REPO / "scripts" / "bootstrap.sh")], check=True,
                           env=dict(os.environ, SWITCHYARD_BOOTSTRAP="build"), cwd=REPO)
        log("building target/release/switchyard (cargo build --release -p switchyard)")
        subprocess.run(["cargo", "build", "--release", "-p", "switchyard"], check=True, cwd=REPO)
    return str(path)


def raise_nofile() -> int:
    """Raises this process's soft fd limit (inherited by every proxy) and
    returns the value nginx's worker_rlimit_nofile gets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = 65535 if hard == resource.RLIM_INFINITY else min(hard, 65535)
    if soft < nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    return nofile


def snapshot_binary(path: str, tmp: Path) -> tuple[str, str]:
    """Runs a private copy: others may rebuild target/release while this
    runs, and every Switchyard instance here must be the same build. Returns
    (the copy's path, the report's description of the original)."""
    src = Path(path)
    st = src.stat()
    dst = tmp / "bin" / "switchyard"
    dst.parent.mkdir()
    shutil.copy2(src, dst)
    digest = hashlib.sha256(dst.read_bytes()).hexdigest()
    info = (f"`{src}` (built {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))}, "
            f"sha256 {digest[:16]}…), run from a private copy")
    return str(dst), info


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]
    except Exception as e:
        return f"? ({e})"


def machine_info(tools: Tools) -> dict:
    """What the report says about where it ran."""
    mem = procfs.mem_total_kb()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": procfs.cpu_model(),
        "mem": f"{mem / 1024 / 1024:.1f} GiB" if mem else "?",
        "kernel": platform.release(),
        "nginx": tool_version([tools.nginx, "-v"]),
        "wrk": re.sub(r"\s*Copyright.*", "", tool_version([tools.wrk, "-v"])),
        "switchyard": tool_version([tools.binary, "--version"]),
        "python": platform.python_version(),
    }
