"""Reliability suite plumbing: slow soaks only with ``-m slow`` (``make soak``), figures in the summary.

Tests call ``figures(name, **values)`` (a fixture): the values are printed at the end of the run (also
under xdist, through ``user_properties``) and appended to ``test-artifacts/reliability/figures.jsonl``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.tools import artifact_dir

_HERE = __file__.rsplit("/", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The full-length soaks of this folder run only when selected (``-m slow``)."""
    if "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="soak: run with `make soak` (pytest -m slow)")
    for item in items:
        if str(item.path).startswith(_HERE) and item.get_closest_marker("slow"):
            item.add_marker(skip)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    def record(name: str, **values: Any) -> None:
        line = {"test": name, "at": time.strftime("%Y-%m-%d %H:%M:%S"), **values}
        request.node.user_properties.append(("figures", json.dumps(line, ensure_ascii=False)))
        with (artifact_dir("reliability") / "figures.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
        print(f"FIGURES {json.dumps(line, ensure_ascii=False)}")

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            for key, value in getattr(report, "user_properties", ()):
                if key == "figures" and getattr(report, "when", "call") == "call":
                    lines.append(value)
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)
