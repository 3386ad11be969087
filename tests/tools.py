"""External tools for tests: skip locally when missing, fail under CI (CI=true)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(tool: str) -> str:
    """Return the path of ``tool``; skip if missing, or fail when running under CI."""
    path = shutil.which(tool) or (tool if os.path.isabs(tool) and os.access(tool, os.X_OK) else None)
    if path:
        return path
    message = f"required tool {tool!r} is not installed (.ci/run installs it)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def artifact_dir(name: str) -> Path:
    """A folder under test-artifacts/ for screenshots and rendered files."""
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def keyring(folder: Path, node: str = "CN01") -> Any:
    """The data keyring of a bare test folder (created with the 'file' source on first use)."""
    from node import atrest

    folder = Path(folder)
    if (folder / atrest.DATAKEY_FILE).exists():
        return atrest.unlock(folder)
    return atrest.create_keyring(folder, node)


def node_db(path: Path, *, readonly: bool = False) -> Any:
    """A blocking connection to a node's encrypted database (node.dbcipher), keyed from its folder."""
    from node import atrest
    from node.dbcipher import connect

    path = Path(path)
    key = atrest.unlock(path.parent).db_key
    if readonly:
        return connect(f"file:{path}?mode=ro", key, uri=True)
    return connect(path, key)
