"""A kubelet-style ConfigMap volume (as tests/support/kubelet.rs replays the
AtomicWriter): Switchyard is reloaded here the way Kubernetes reloads it in
production, not by rewriting the file in place."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

from .common import BenchError


class ConfigMapVolume:
    """A ConfigMap volume as the kubelet's AtomicWriter lays it out: the data
    in `..<timestamp>.<digits>/`, `..data -> that dir`, and the key symlink
    `routes.yaml -> ..data/routes.yaml`. An update writes a new timestamped
    dir, links `..data_tmp` to it, renames `..data_tmp` over `..data` (the
    one atomic switch), links new keys, and removes the old dir (the 1.23+
    order)."""

    def __init__(self, path: Path, key: str = "routes.yaml") -> None:
        self.dir, self.key = path, key

    @property
    def file(self) -> Path:
        return self.dir / self.key

    def create(self, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o777)
        if os.path.lexists(self.dir / "..data"):
            raise BenchError(f"{self.dir} already holds a ConfigMap volume")
        self.update(data)

    def current(self) -> bytes | None:
        try:
            return (self.dir / os.readlink(self.dir / "..data") / self.key).read_bytes()
        except OSError:
            return None

    def begin(self, data: bytes) -> "PendingSwap | None":
        """A swap to `data`, or None when the volume already holds it."""
        if os.path.lexists(self.dir / "..data") and self.current() == data:
            return None  # the kubelet writes nothing when the payload is equal
        return PendingSwap(self, data)

    def update(self, data: bytes) -> bool:
        swap = self.begin(data)
        if swap is None:
            return False
        swap.prepare()
        swap.switch()
        swap.finish()
        return True


class PendingSwap:
    """One update in its three steps, so a measurement can start its clock at
    the atomic switch itself."""

    def __init__(self, vol: ConfigMapVolume, data: bytes) -> None:
        self.vol, self.data = vol, data
        try:
            self.old_ts: str | None = os.readlink(vol.dir / "..data")
        except OSError:
            self.old_ts = None
        self.new_ts: str | None = None

    def prepare(self) -> None:
        """WriteNewDir + LinkDataTmp: nothing user-visible changes yet."""
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
        for _ in range(1000):
            name = f"..{stamp}.{random.randrange(2**32)}"
            try:
                os.mkdir(self.vol.dir / name, 0o700)
            except FileExistsError:
                continue
            os.chmod(self.vol.dir / name, 0o755)
            self.new_ts = name
            break
        else:
            raise BenchError("no free timestamped dir name")
        path = self.vol.dir / self.new_ts / self.vol.key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, self.data)  # small file: one write
        finally:
            os.close(fd)
        os.chmod(path, 0o644)
        tmp = self.vol.dir / "..data_tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.new_ts, tmp)

    def switch(self) -> None:
        """rename(..data_tmp, ..data): the atomic switch."""
        os.rename(self.vol.dir / "..data_tmp", self.vol.dir / "..data")

    def finish(self) -> None:
        """LinkNewKeys (only if missing) + RemoveOldDir."""
        visible = self.vol.file
        if not os.path.lexists(visible):
            os.symlink(f"..data/{self.vol.key}", visible)
        if self.old_ts:
            shutil.rmtree(self.vol.dir / self.old_ts)
