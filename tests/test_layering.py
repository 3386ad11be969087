"""Dependency direction and public surface (STYLE.md: protocol is pure; node and central never meet)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import protocol

ROOT = Path(__file__).resolve().parent.parent


def test_importing_protocol_loads_no_io_frameworks() -> None:
    code = (
        "import sys, protocol, protocol.vectors\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(protocol.__path__, 'protocol.'):\n"
        "    if m.name != 'protocol.__main__': importlib.import_module(m.name)\n"
        "bad = [m for m in ('aiohttp', 'aiosqlite', 'asyncio', 'sqlite3') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_node_and_central_never_import_each_other() -> None:
    assert "central" not in _imports("node")
    assert "node" not in _imports("central")
    assert not {"node", "central"} & _imports("protocol")


def test_protocol_all_is_sorted_and_complete() -> None:
    names = protocol.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n)) or names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(protocol, name), name
    public = {
        n for n in vars(protocol) if not n.startswith("_") and not isinstance(getattr(protocol, n), type(sys))
    }
    assert public - set(names) == set()
