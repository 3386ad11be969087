"""Storage fault tools: a small tmpfs (real ENOSPC) and a libfiu-like LD_PRELOAD shim (EIO on fsync).

``syncfault.c`` (next to this file) wraps ``fsync``/``fdatasync``: while the control file exists, a
call on a file whose path contains ``SYNCFAULT_MATCH`` fails with EIO ('p' in the control file:
every call, 't': once). SQLite calls ``fdatasync`` at every WAL commit, so this reaches the database
path that no Python seam covers. It is compiled on first use (needs ``gcc``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.tools import in_ci, require

__all__ = ["build_shim", "tmpfs"]

HERE = Path(__file__).resolve().parent


def build_shim(out_dir: Path) -> Path:
    gcc = require("gcc")
    target = out_dir / "syncfault.so"
    done = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-o", str(target), str(HERE / "syncfault.c"), "-ldl"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return target


@contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (root only; skipped locally, failed under CI, when impossible)."""
    import pytest

    require("mount")
    mount_point.mkdir(parents=True, exist_ok=True)
    why = "needs root to mount a tmpfs" if os.geteuid() != 0 else ""
    if not why:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
            capture_output=True,
        )
        why = done.stderr.decode(errors="replace").strip() if done.returncode else ""
    if why:
        (pytest.fail if in_ci() else pytest.skip)(f"cannot mount a tmpfs: {why}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
