"""What the hub has acknowledged of this node's log, as far as the node knows (the sync banner).

The sync client stores each verified hub receipt here (``record_receipt``); the UI and ``status`` read
``sync_summary``: entries not yet acknowledged, the oldest of them, and since when the node has had no
acknowledgement ("Ngoại tuyến từ …"). Until a receipt exists, every entry counts as not yet sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from protocol.encoding import canonical
from protocol.messages import Receipt

__all__ = ["SYNC_SQL", "SyncSummary", "record_receipt", "sync_summary"]

SYNC_SQL = """
CREATE TABLE hub_receipts (
    log         TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,             -- the hub durably holds entries 1..seq of (log, epoch)
    head        TEXT NOT NULL,
    hub_time    INTEGER NOT NULL,
    receipt     BLOB NOT NULL,                -- canonical bytes of the signed receipt
    received_at INTEGER NOT NULL,             -- node wall clock, unix ms
    PRIMARY KEY (log, epoch)
) STRICT;
"""


@dataclass(frozen=True, slots=True)
class SyncSummary:
    """Entries of this node's log the hub has not acknowledged, and the last acknowledgement."""

    unsent: int
    oldest_unsent_ms: int | None
    last_ack_ms: int | None
    since_ms: int | None  # offline since: the last acknowledgement, or the first entry if none

    @property
    def synced(self) -> bool:
        return self.unsent == 0 and self.last_ack_ms is not None


async def record_receipt(db: aiosqlite.Connection, receipt: Receipt, received_at: int) -> None:
    """Keep the newest verified receipt per (log, epoch); older or equal ones change nothing."""
    await db.execute(
        "INSERT INTO hub_receipts VALUES (?,?,?,?,?,?,?) ON CONFLICT (log, epoch) DO UPDATE SET"
        " seq = excluded.seq, head = excluded.head, hub_time = excluded.hub_time,"
        " receipt = excluded.receipt, received_at = excluded.received_at"
        " WHERE excluded.seq > hub_receipts.seq",
        (
            receipt.log,
            receipt.epoch,
            receipt.seq,
            receipt.head,
            receipt.hub_time,
            canonical(receipt.to_wire()),
            received_at,
        ),
    )


async def sync_summary(db: aiosqlite.Connection, log: str) -> SyncSummary:
    async with db.execute(
        "SELECT count(*), min(e.recorded_at) FROM entries e LEFT JOIN hub_receipts r"
        " ON r.log = e.log AND r.epoch = e.epoch WHERE e.log = ? AND e.seq > coalesce(r.seq, 0)"
        # a sealed epoch (restored from the hub, or re-provisioned) can never be sent again
        " AND e.epoch NOT IN (SELECT epoch FROM epochs WHERE sealed_seq IS NOT NULL)",
        (log,),
    ) as cursor:
        row = await cursor.fetchone()
    unsent, oldest = (int(row[0]), row[1]) if row else (0, None)
    async with db.execute("SELECT max(received_at) FROM hub_receipts WHERE log = ?", (log,)) as cursor:
        ack = await cursor.fetchone()
    last_ack = int(ack[0]) if ack and ack[0] is not None else None
    async with db.execute("SELECT min(recorded_at) FROM entries WHERE log = ?", (log,)) as cursor:
        first = await cursor.fetchone()
    since = last_ack if last_ack is not None else (int(first[0]) if first and first[0] is not None else None)
    return SyncSummary(unsent, int(oldest) if oldest is not None else None, last_ack, since)
