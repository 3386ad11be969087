"""``make bench``: run every benchmark and print one table of figures.

Each benchmark module prints lines ``<figure>: <value> <unit> ratio=<r> goal=<g> ok|SHORT``; this runner
runs them one after another (never in parallel: they measure ceilings in the same run) and repeats
the figure lines at the end as one table.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

MODULES = [
    "bench.chain",
    "bench.forms_and_scans",
    "bench.intake",
    "bench.hub_ingest",
    "bench.sync",
    "bench.scale",
]
FIGURE = re.compile(r"^[a-z0-9_]+: \S+ .* ratio=\S+ goal=\S+ (ok|SHORT)$")


def main() -> int:
    table: list[str] = []
    failed = False
    for module in MODULES:
        if importlib.util.find_spec(module) is None:
            continue
        print(f"== {module}", flush=True)
        done = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True, timeout=1800)
        sys.stdout.write(done.stdout)
        if done.returncode != 0:
            failed = True
            sys.stdout.write(done.stderr)
        table.extend(line for line in done.stdout.splitlines() if FIGURE.match(line))
    print("\n== figures")
    for line in table:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
