"""Node status heartbeats (DESIGN.md §4 step 5), kept per node with history for the dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from central.store import SqliteStore
from protocol import Heartbeat, canonical, decode

__all__ = ["Heartbeats"]


@dataclass
class Heartbeats:
    store: SqliteStore
    keep: int = 2000

    async def record(self, node: str, beat: Heartbeat, *, now: int) -> int:
        """Store one heartbeat; returns the node's clock skew (node clock minus hub time, ms)."""
        skew = beat.clock_ms - now
        async with self.store.write() as db:
            await db.execute(
                "INSERT OR REPLACE INTO heartbeats (node, received_ms, skew_ms, body) VALUES (?, ?, ?, ?)",
                (node, now, skew, canonical(beat.to_wire())),
            )
            await db.execute("UPDATE nodes SET last_seen_ms = ? WHERE node = ?", (now, node))
            await db.execute(
                "DELETE FROM heartbeats WHERE node = ? AND received_ms < (SELECT received_ms FROM heartbeats "
                "WHERE node = ? ORDER BY received_ms DESC LIMIT 1 OFFSET ?)",
                (node, node, self.keep - 1),
            )
        return skew

    async def history(self, node: str, limit: int = 100) -> list[tuple[int, int, Heartbeat]]:
        rows = await self.store.fetchall(
            "SELECT received_ms, skew_ms, body FROM heartbeats WHERE node = ? "
            "ORDER BY received_ms DESC LIMIT ?",
            (node, limit),
        )
        return [(r[0], r[1], Heartbeat.from_wire(decode(bytes(r[2])))) for r in rows]
