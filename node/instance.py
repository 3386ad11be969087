"""One ``serve`` per data directory: an exclusive ``flock`` held for the life of the process.

Two node processes on one database would each keep their own in-memory code reservations and group
commits; SQLite keeps the file consistent, but the second one could pick a dossier number the first has
reserved. The kernel drops the lock when the process ends, however it ends (SIGKILL included), so a
restart after a crash is never blocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from node.errors import NodeError

__all__ = ["AlreadyRunning", "instance_lock"]

LOCK_NAME = "serve.lock"


class AlreadyRunning(NodeError):
    """Another ``motcua-node serve`` holds this data directory."""

    code = "already_running"
    status = 503
    default_message = "Máy trạm này đang chạy ở một tiến trình khác; không khởi động lần thứ hai."


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
            raise AlreadyRunning(
                f"Máy trạm ở {data_dir} đang chạy (tiến trình {holder}); không khởi động lần thứ hai.",
                detail=f"{path} is held by pid {holder}",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)
