"""``motcua-node verify``: the whole local log, then the projections against a refold of it.

1. Every epoch of this node's log is verified from genesis as the hub would (canonical bytes, seq,
   prev, time, signature by that epoch's key, genesis) and every local body is validated; what was
   pulled from the hub is verified under the pinned hub key (node.mailbox_apply.verify_hub_logs).
2. The projection tables are compared with a fresh refold: the entries are copied into an in-memory
   database with the same schema and ``projection.rebuild`` runs there; the stored rows must be equal.
Both read one consistent snapshot (the reader connection), so a running node can be verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from node import projection
from node.dbcipher import aconnect
from node.hublink import current_link
from node.journal import JOURNAL_SQL, verify_log
from node.mailbox_apply import verify_hub_logs
from node.migrations import split_sql
from node.projection import PROJECTION_SQL, PROJECTION_TABLES
from node.store import Store
from protocol.position import Head

__all__ = ["Report", "verify_node"]


@dataclass(slots=True)
class Report:
    """What verification found: heads per epoch, entries checked, and projection differences."""

    heads: list[Head] = field(default_factory=list)
    entries: int = 0
    dossiers: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _diff(table: str, stored: list[tuple[object, ...]], fresh: list[tuple[object, ...]]) -> list[str]:
    if stored == fresh:
        return []
    out = [f"{table}: {len(stored)} stored rows, {len(fresh)} after refold"]
    stored_set, fresh_set = set(stored), set(fresh)
    for row in sorted(stored_set - fresh_set, key=repr)[:3]:
        out.append(f"{table}: stored only: {str(row)[:200]}")
    for row in sorted(fresh_set - stored_set, key=repr)[:3]:
        out.append(f"{table}: refold only: {str(row)[:200]}")
    return out


async def verify_node(store: Store, node_id: str, *, progress: Callable[[int], None] | None = None) -> Report:
    """Verify the chain (raises the precise ProtocolError) and compare projections with a refold."""
    report = Report()
    async with store.read() as db:
        report.heads = await verify_log(db, node_id, progress=progress)
        link = await current_link(db)
        if link is not None:  # what was pulled from the hub: chains under the pinned key, forwards
            report.heads += await verify_hub_logs(db, node_id, link.hub_key, progress=progress)
        report.entries = sum(h.seq for h in report.heads)
        stored = await projection.snapshot(db)
        scratch = await aconnect(":memory:", None)  # temp_store=MEMORY: nothing spills to disk
        try:
            for statement in split_sql(JOURNAL_SQL + PROJECTION_SQL):
                await scratch.execute(statement)
            await scratch.execute("BEGIN")
            async with db.execute(
                "SELECT log, epoch, seq, hash, prev, time_ms, time_n, kind, dossier, actor, raw, recorded_at"
                " FROM entries"
            ) as cursor:
                async for row in cursor:
                    await scratch.execute("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", tuple(row))
            report.dossiers = await projection.rebuild(scratch)
            fresh = await projection.snapshot(scratch)
            await scratch.execute("COMMIT")
        finally:
            await scratch.close()
    for table in PROJECTION_TABLES:
        report.differences += _diff(table, stored[table], fresh[table])
    return report
