"""The dossier package's public names are sorted and complete, and the domain stays pure."""

from __future__ import annotations

import importlib
import subprocess
import sys

import protocol.dossier as dossier

INTERNAL = {"effect", "body_fields"}


def test_all_is_sorted_and_unique() -> None:
    assert dossier.__all__ == sorted(set(dossier.__all__))


def test_all_re_exports_every_public_name_of_the_modules() -> None:
    names = ("builders", "citizen_id", "codes", "events", "fold", "model", "state", "status", "transitions")
    modules = [importlib.import_module(f"protocol.dossier.{name}") for name in names]
    public = {name for module in modules for name in module.__all__} - INTERNAL
    assert set(dossier.__all__) == public
    for name in dossier.__all__:
        assert getattr(dossier, name) is not None


def test_domain_imports_no_io_frameworks() -> None:
    code = (
        "import sys, protocol.dossier, protocol.calendar, protocol.catalog, protocol.deadline;"
        "protocol.calendar.default_calendar(); protocol.catalog.default_catalog();"
        "bad = {'asyncio', 'sqlite3', 'aiohttp', 'aiosqlite'} & set(sys.modules);"
        "print(sorted(bad)); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
