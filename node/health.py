"""The node's readiness check, shared by ``GET /readyz`` and the systemd watchdog.

Ready means: the database takes a real committed write and every migration is applied. The check is
cheap (one write transaction on the single writer), so a wedged writer or event loop stops both the
``/readyz`` 200s and the ``WATCHDOG=1`` pings.
"""

from __future__ import annotations

from node.migrations import MIGRATIONS, applied
from node.provision import Node

__all__ = ["readiness_problems"]


async def readiness_problems(node: Node) -> list[str]:
    """What keeps the node from being ready (empty when ready)."""
    problems: list[str] = []
    try:
        async with node.store.write() as db:
            missing = [name for name, _ in MIGRATIONS if name not in await applied(db)]
            # a real write to the main database (same value), committed: proves the file takes writes
            await db.execute(
                "UPDATE epochs SET started_at = started_at WHERE epoch = (SELECT max(epoch) FROM epochs)"
            )
        if missing:
            problems.append("migrations not applied: " + ", ".join(missing))
    except Exception as exc:  # any failure means "not ready", reported as such
        problems.append(f"database not writable: {exc}")
    return problems
