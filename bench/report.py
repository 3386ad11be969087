"""One line per figure, machine-readable: ``<figure>: <value> <unit> ratio=<r> goal=<g> ok|SHORT``."""

from __future__ import annotations


def figure(
    name: str, value: float, unit: str, ratio: float, goal: float, *, lower_is_better: bool = False
) -> str:
    ok = ratio <= goal if lower_is_better else ratio >= goal
    line = f"{name}: {value:.6g} {unit} ratio={ratio:.3f} goal={goal:g} {'ok' if ok else 'SHORT'}"
    print(line, flush=True)
    return line
