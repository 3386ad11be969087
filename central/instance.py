"""One ``serve`` per hub data directory: an exclusive ``flock`` held for the life of the process.

Two hub processes on one database would each run their own projector, relay and replay cache. The kernel
drops the lock when the process ends, however it ends (SIGKILL included), so a restart is never blocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["AlreadyRunning", "instance_lock"]

LOCK_NAME = "serve.lock"


class AlreadyRunning(RuntimeError):
    """Another ``motcua-central serve`` holds this data directory."""


@contextlib.contextmanager
def instance_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``<data_dir>/serve.lock`` exclusively; raise AlreadyRunning naming the holder's pid."""
    path = Path(data_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise AlreadyRunning(f"the hub in {data_dir} is already running (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)
