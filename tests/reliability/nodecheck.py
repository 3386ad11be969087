"""After-crash checks of a node's state directory (the process is dead; nothing else has it open).

``NodeChecker.check()`` runs after every kill: ``PRAGMA integrity_check``, the chain verified
incrementally from the last verified head (the earlier head must still be there, byte for byte), and
every registered blob whole. ``full=True`` adds what ``motcua-node verify`` does (whole chain from
genesis, projections equal to a refold); soaks run it every N cycles so a cycle stays cheap.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from node.blobs import BlobStore
from node.errors import BlobCorrupt
from node.journal import validate_local_body
from node.store import Store
from node.verify import verify_node
from protocol.chain import ChainState, verify_next
from protocol.entry import Entry
from protocol.keys import parse_public_key
from tests.tools import node_db

__all__ = ["NodeChecker", "NodeState", "check_blobs"]


@dataclass(frozen=True, slots=True)
class NodeState:
    dossiers: set[str]
    by_key: dict[str, str]  # idempotency key -> dossier code
    head_seq: int


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _blobs(data: Path) -> BlobStore:
    from node import atrest

    return BlobStore(data, keyring=atrest.unlock(data), low_disk_bytes=0)


def check_blobs(db: sqlite3.Connection, data: Path) -> int:
    """Every registered blob has its complete file (hash checked): none is half-registered."""
    if "blobs" not in _tables(db):
        return 0
    count = 0
    for sha, size in db.execute("SELECT sha256, size FROM blobs"):
        path = data / "blobs" / "sha256" / sha[:2] / sha
        assert path.is_file(), f"blob {sha} registered without its file (half-registered)"
        try:  # blobs are AES-GCM at rest: read through the node's decrypting, authenticating reader
            blob = _blobs(data).read_bytes(sha)
        except BlobCorrupt as exc:
            raise AssertionError(f"blob {sha} is torn: {exc}") from None
        assert len(blob) == size and hashlib.sha256(blob).hexdigest() == sha, f"blob {sha} is torn"
        count += 1
    return count


@dataclass
class NodeChecker:
    data: Path
    node_id: str
    _states: dict[int, ChainState] = field(default_factory=dict)
    _verified: dict[int, tuple[int, str]] = field(default_factory=dict)  # epoch -> (seq, hash)

    def _chain(self, db: sqlite3.Connection) -> int:
        total = 0
        for epoch, key_text in db.execute("SELECT epoch, public_key FROM epochs ORDER BY epoch").fetchall():
            state = self._states.get(epoch) or ChainState.start(
                self.node_id, epoch, parse_public_key(key_text)
            )
            seq0, hash0 = self._verified.get(epoch, (0, None))
            if seq0:
                row = db.execute(
                    "SELECT hash FROM entries WHERE log = ? AND epoch = ? AND seq = ?",
                    (self.node_id, epoch, seq0),
                ).fetchone()
                assert row is not None and row[0] == hash0, (
                    f"verified entry {epoch}:{seq0} changed or vanished"
                )
            for raw, stored_hash, seq in db.execute(
                "SELECT raw, hash, seq FROM entries WHERE log = ? AND epoch = ? AND seq > ? ORDER BY seq",
                (self.node_id, epoch, seq0),
            ):
                entry = Entry.parse(bytes(raw))
                state = verify_next(state, entry)
                assert (entry.hash, entry.seq) == (stored_hash, seq), (
                    f"row {epoch}:{seq} does not match its bytes"
                )
                validate_local_body(entry.kind, entry.body)
            self._states[epoch] = state
            self._verified[epoch] = (state.seq, state.head) if state.seq else (0, None)  # type: ignore[assignment]
            total += state.seq
        return total

    async def check(self, *, full: bool = False) -> NodeState:
        db = node_db(self.data / "node.sqlite3")
        try:
            (result,) = db.execute("PRAGMA integrity_check").fetchone()
            assert result == "ok", f"integrity_check: {result}"
            self._chain(db)
            dossiers = {r[0] for r in db.execute("SELECT code FROM dossiers")}
            by_key = dict(db.execute("SELECT key, dossier FROM idempotency"))
            (seq,) = db.execute(
                "SELECT coalesce(max(seq), 0) FROM entries WHERE log = ?", (self.node_id,)
            ).fetchone()
            check_blobs(db, self.data)
        finally:
            db.close()
        if full:
            store = await Store.open(self.data / "node.sqlite3")
            try:
                report = await verify_node(store, self.node_id)
            finally:
                await store.close()
            assert report.ok, report.differences
        return NodeState(dossiers, by_key, int(seq))
