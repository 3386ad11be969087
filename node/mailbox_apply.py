"""Applying what the node pulls from the hub (``hub`` and ``hub.<NODE>``) to its projections, and checking
it again in ``motcua-node verify``.

The sync client verifies a pulled run (chain and signatures under the pinned hub key, and every forwarded
entry) before the sync store inserts it; ``project`` then runs for each entry inside that same
transaction:

- a ``dossier.*`` entry of the hub (an officer's decision) refolds its dossier, exactly as a local entry
  does, so "Đã xử lý xong" shows at the branch as soon as the decision is stored;
- a ``hub.forward`` stores the entry it carries under its *own* position (``hub.CN01/1:7`` or, for a
  dossier received at another branch and handed back here, ``CN01/1:3``), once, and refolds its
  dossier: the fold sees each event once, wherever it was read;
- every entry's time (and a forwarded entry's) is observed, so local events after it order after it.

``verify_hub_logs`` re-checks the stored hub logs: each mailbox log as a contiguous chain under the
pinned key, and every row of another log as the exact bytes of a verified forward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import aiosqlite

from node import projection
from node.errors import JournalError
from node.journal import Projector, insert_entry
from protocol import (
    ChainState,
    Entry,
    ProtocolError,
    PublicKey,
    canonical,
    mailbox_log,
    open_forward,
    parse_public_key,
    rotated_key,
)
from protocol.chain import verify_next
from protocol.hlc import Timestamp
from protocol.position import Head

__all__ = ["make_projector", "observe", "project", "verify_hub_logs"]


async def observe(db: aiosqlite.Connection, time: Timestamp) -> None:
    """Remember the largest hub-side time seen (string compare works: fixed-width digits)."""
    await db.execute(
        "INSERT INTO sync_state (key, value) VALUES ('observed_hlc', ?) ON CONFLICT (key) DO UPDATE "
        "SET value = max(value, excluded.value)",
        (f"{time[0]:016d}:{time[1]:010d}",),
    )


def make_projector(node_id: str, wall: Callable[[], int]) -> Projector:
    """The projector the sync store calls for each pulled hub entry (see ``project``)."""

    async def apply(db: aiosqlite.Connection, entry: Entry) -> None:
        await project(db, entry, node_id=node_id, now=wall())

    return apply


async def project(db: aiosqlite.Connection, entry: Entry, *, node_id: str, now: int) -> None:
    """Apply one stored hub entry to the projections (inside the caller's write transaction)."""
    await observe(db, entry.time)
    if entry.kind != "hub.forward":
        await projection.apply(db, entry)
        return
    inner = Entry.parse(canonical(entry.body["entry"]))  # verified by the sync client before storing
    if inner.log == node_id:
        return  # this node's own entry: it has it already
    async with db.execute(
        "SELECT hash FROM entries WHERE log = ? AND epoch = ? AND seq = ?",
        (inner.log, inner.epoch, inner.seq),
    ) as cursor:
        row = await cursor.fetchone()
    if row is not None:
        if row[0] != inner.hash:
            raise JournalError(
                "Trung tâm chuyển đến hai bản ghi khác nhau ở cùng một vị trí; đã dừng áp dụng.",
                detail=f"{entry.position} forwards {inner.position} {inner.hash}, held {row[0]}",
            )
        return
    await insert_entry(db, inner, recorded_at=now)
    await observe(db, inner.time)
    await projection.apply(db, inner)


async def verify_hub_logs(
    db: aiosqlite.Connection,
    node_id: str,
    hub_key: PublicKey,
    *,
    progress: Callable[[int], None] | None = None,
) -> list[Head]:
    """Verify the stored mailboxes (``hub``, ``hub.<NODE>``) as chains under ``hub_key`` and every other
    foreign row as a forwarded entry; return the mailbox heads. Raises the first ``ProtocolError`` /
    ``JournalError`` with ``.position``."""
    heads: list[Head] = []
    forwarded: set[bytes] = set()
    keys = [hub_key]  # the pinned key, then the earlier ones it rotated from (SPEC §7.10)
    async with db.execute(
        "SELECT raw FROM entries WHERE log = 'hub' AND epoch = 1 AND kind = 'hub.key_rotation' ORDER BY seq"
    ) as cursor:
        async for (raw,) in cursor:
            keys.append(parse_public_key(str(Entry.parse(bytes(raw)).body["previous"])))
    for log in ("hub", mailbox_log(node_id)):
        async with db.execute("SELECT raw FROM entries WHERE log = ? AND epoch = 1 AND seq = 1", (log,)) as c:
            first = await c.fetchone()
        named = None if first is None else Entry.parse(bytes(first[0])).body.get("key")
        state = ChainState.start(log, 1, next((k for k in keys if k.text == named), hub_key))
        async with db.execute(
            "SELECT raw, hash, seq, epoch FROM entries WHERE log = ? ORDER BY epoch, seq", (log,)
        ) as cursor:
            async for raw, stored_hash, seq, epoch in cursor:
                try:
                    if epoch != 1:
                        raise JournalError(detail=f"mailbox {log} has an entry in epoch {epoch}")
                    entry = Entry.parse(bytes(raw))
                    state = verify_next(state, entry)
                    new_key = rotated_key(entry, state.key)
                    if new_key is not None:
                        state = dataclasses.replace(state, key=new_key)
                    if entry.hash != stored_hash or entry.seq != seq:
                        raise JournalError(detail=f"row {log}/1:{seq} does not match its bytes")
                    if entry.kind == "hub.forward":
                        forwarded.add(_open_forward(entry, keys))
                except (ProtocolError, JournalError) as exc:
                    exc.position = f"{log}/{epoch}:{seq}"  # type: ignore[attr-defined]
                    raise
                if progress is not None:
                    progress(1)
        if state.seq:
            heads.append(state.as_head)
    async with db.execute(
        "SELECT log, epoch, seq, raw FROM entries WHERE log NOT IN (?, ?, ?) ORDER BY log, epoch, seq",
        (node_id, "hub", mailbox_log(node_id)),
    ) as cursor:
        async for log, epoch, seq, raw in cursor:
            if bytes(raw) not in forwarded:
                exc = JournalError(detail=f"{log}/{epoch}:{seq} is not carried by a verified hub.forward")
                exc.position = f"{log}/{epoch}:{seq}"  # type: ignore[attr-defined]
                raise exc
            if progress is not None:
                progress(1)
    return heads


def _open_forward(entry: Entry, keys: list[PublicKey]) -> bytes:
    failure: ProtocolError | None = None
    for key in keys:
        try:
            return open_forward(entry.body, key).raw
        except ProtocolError as exc:
            failure = exc
    assert failure is not None
    raise failure
