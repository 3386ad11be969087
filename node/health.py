"""The node's readiness check, shared by ``GET /readyz`` and the systemd watchdog.

Ready means: the database takes a real committed write, every migration is applied and the data
directory has free space. The check is
cheap (one write transaction on the single writer), so a wedged writer or event loop stops both the
``/readyz`` 200s and the ``WATCHDOG=1`` pings.
"""

from __future__ import annotations

import shutil

from node.migrations import MIGRATIONS, applied
from node.provision import Node

__all__ = ["MIN_FREE_BYTES", "WARNINGS", "readiness_checks", "readiness_problems", "watchdog_problems"]


MIN_FREE_BYTES = 1024 * 1024
"""Below this the database itself can no longer grow safely: not ready. The configured low-disk
watermark (``low_disk_mb``, which stops scan intake) only adds a warning: intake still works."""


WARNINGS = frozenset({"low_disk_warning", "clock_skew_warning"})
"""Checks reported by /readyz that do not make the node unready."""


async def readiness_checks(node: Node) -> dict[str, str]:
    """Each readiness check by name: "ok" or what is wrong (the same checks as the hub's /readyz)."""
    checks: dict[str, str] = {}
    try:
        async with node.store.write() as db:
            missing = [name for name, _ in MIGRATIONS if name not in await applied(db)]
            # a real write to the main database (same value), committed: proves the file takes writes
            await db.execute(
                "UPDATE epochs SET started_at = started_at WHERE epoch = (SELECT max(epoch) FROM epochs)"
            )
        checks["db_writable"] = "ok"
        checks["migrations"] = "ok" if not missing else "migrations not applied: " + ", ".join(missing)
    except Exception as exc:  # any failure means "not ready", reported as such
        checks["db_writable"] = f"database not writable: {exc}"[:200]
    try:
        free = shutil.disk_usage(node.config.data_dir).free
        checks["disk_free"] = "ok" if free >= MIN_FREE_BYTES else f"only {free} bytes free"
        if free < node.config.low_disk_mb * 1024 * 1024:
            checks["low_disk_warning"] = f"{free // (1024 * 1024)} MiB free, below low_disk_mb"
    except OSError as exc:
        checks["disk_free"] = f"OSError: {exc}"[:200]
    try:  # the clock as the hub saw it at the last hello (S9): a warning, sync goes on
        from node.sync_service import CLOCK_SKEW_WARN_MS

        row = await node.store.fetchone("SELECT value FROM sync_state WHERE key = 'clock_offset_ms'")
        offset = int(row[0]) if row is not None else 0
        if abs(offset) > CLOCK_SKEW_WARN_MS:
            way = "behind" if offset > 0 else "ahead of"
            checks["clock_skew_warning"] = f"node clock {abs(offset) // 1000} s {way} the hub's"
    except Exception:  # noqa: BLE001 - a node without sync tables has no clock to compare
        pass
    return checks


async def readiness_problems(node: Node) -> list[str]:
    """What keeps the node from being ready (empty when ready): used by /readyz and the systemd watchdog."""
    checks = await readiness_checks(node)
    return [checks[name] for name in sorted(checks) if checks[name] != "ok" and name not in WARNINGS]


async def watchdog_problems(node: Node) -> list[str]:
    """The readiness problems that stop the systemd watchdog pings: all but free disk space, which
    ``/readyz`` and ``STATUS=`` report but a restart would not cure (it would only add restart loops)."""
    checks = await readiness_checks(node)
    return [
        checks[name]
        for name in sorted(checks)
        if checks[name] != "ok" and name != "disk_free" and name not in WARNINGS
    ]
