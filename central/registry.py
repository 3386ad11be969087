"""Enrolled nodes, their epochs and keys, and their status (active, quarantined, revoked).

A node is created by an invite (status ``invited``); enrolling binds (node, epoch, key): epoch 1 the
first time, the next epoch on every re-provisioning (restore, new disk, new key), which seals the previous
epoch at the head the hub holds and records what the new genesis must name. Revocation refuses the key
from then on and records a cut: entries after it are quarantined for review; those up to it stay valid.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from central.errors import BadRequest, Forbidden, NotFound, Unauthorized
from central.noderotation import refuse_pending
from central.store import SqliteStore
from protocol import (
    Enrollment,
    EnrollmentRequest,
    Head,
    InviteToken,
    ProtocolError,
    PublicKey,
    parse_public_key,
    sign_enrollment,
)
from protocol.enrollment import NODE_KINDS
from protocol.entry import NODE_ID_RE
from protocol.keys import Ed25519PrivateKey

__all__ = ["NodeInfo", "Registry"]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node: str
    kind: str
    name: str
    status: str
    epoch: int
    reason: str
    created_ms: int


_NODE_COLUMNS = "node, kind, name, status, epoch, status_reason, created_ms"


class Registry:
    """Reads and changes the ``nodes``, ``node_epochs`` and ``invites`` tables."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._keys: dict[tuple[str, int], PublicKey] = {}
        self.last_seen: dict[str, int] = {}  # in memory: refused requests must not change the database

    async def node(self, node: str) -> NodeInfo | None:
        row = await self.store.fetchone(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE node = ?", (node,))
        return None if row is None else NodeInfo(*row)

    async def nodes(self) -> list[NodeInfo]:
        rows = await self.store.fetchall(f"SELECT {_NODE_COLUMNS} FROM nodes ORDER BY node")
        return [NodeInfo(*r) for r in rows]

    async def key(self, node: str, epoch: int) -> PublicKey | None:
        cached = self._keys.get((node, epoch))
        if cached is not None:
            return cached
        row = await self.store.fetchone(
            "SELECT key FROM node_epochs WHERE node = ? AND epoch = ?", (node, epoch)
        )
        if row is None:
            return None
        key = parse_public_key(row[0])
        self._keys[(node, epoch)] = key
        return key

    async def epochs(self, node: str) -> list[tuple[int, str, int | None, int | None]]:
        """(epoch, key, sealed_ms, revoked_after) of every epoch of ``node``."""
        rows = await self.store.fetchall(
            "SELECT epoch, key, sealed_ms, revoked_after FROM node_epochs WHERE node = ? ORDER BY epoch",
            (node,),
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def genesis_previous(self, node: str, epoch: int) -> Head | None:
        """What the genesis of (node, epoch) must name as ``previous`` (None at epoch 1)."""
        row = await self.store.fetchone(
            "SELECT prev_epoch, prev_seq, prev_head FROM node_epochs WHERE node = ? AND epoch = ?",
            (node, epoch),
        )
        if row is None or row[0] is None:
            return None
        return Head(node, row[0], row[1], row[2])

    async def invite(
        self, node: str, kind: str, name: str, *, hub_url: str, hub_key: PublicKey, now: int, ttl_ms: int
    ) -> InviteToken:
        """A one-time token; for a node already enrolled it re-provisions it into a new epoch."""
        if not NODE_ID_RE.fullmatch(node):
            raise BadRequest(
                "bad_node_id", "a node id is 2-32 of A-Z, 0-9 and '-', starting with a letter/digit"
            )
        if kind not in NODE_KINDS:
            raise BadRequest("bad_kind", f"kind must be one of {', '.join(NODE_KINDS)}")
        if not name.strip():
            raise BadRequest("bad_name", "a node needs a name")
        token = InviteToken.new(hub_url, hub_key, node)
        async with self.store.write() as db:
            await db.execute(
                "INSERT INTO nodes (node, kind, name, status, created_ms) VALUES (?, ?, ?, 'invited', ?) "
                "ON CONFLICT (node) DO UPDATE SET kind = excluded.kind, name = excluded.name",
                (node, kind, name.strip(), now),
            )
            await db.execute(
                "INSERT INTO invites (secret_sha256, node, kind, name, created_ms, expires_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token.secret_sha256, node, kind, name.strip(), now, now + ttl_ms),
            )
        return token

    async def enroll(self, request: EnrollmentRequest, *, hub_key: Ed25519PrivateKey, now: int) -> Enrollment:
        """Check the token secret and the proof of possession, bind the key to the next epoch, sign."""
        try:
            secret = request.secret_bytes()
            key = request.verify()
        except ProtocolError as exc:
            raise Unauthorized("bad_token", f"enrollment refused: {exc.reason}") from None
        digest = hashlib.sha256(secret).hexdigest()
        async with self.store.write() as db:
            rows = await db.execute_fetchall(
                "SELECT node, kind, name, expires_ms, used_ms FROM invites WHERE secret_sha256 = ?", (digest,)
            )
            if not rows:
                raise Unauthorized("bad_token", "this enrollment token is not known to the hub")
            node, kind, name, expires_ms, used_ms = rows[0]
            if node != request.node:
                raise Unauthorized("bad_token", "this enrollment token is for another node")
            if used_ms is not None:
                raise Unauthorized("bad_token", "this enrollment token was already used")
            if expires_ms < now:
                raise Unauthorized("bad_token", "this enrollment token has expired; ask for a new one")
            used = await db.execute_fetchall("SELECT 1 FROM node_epochs WHERE key = ?", (key.text,))
            if used:
                raise Forbidden("key_reused", "this key is already bound; a new epoch needs a new key")
            (current,) = (await db.execute_fetchall("SELECT epoch FROM nodes WHERE node = ?", (node,)))[0]
            previous: Head | None = None
            if current >= 1:
                heads = await db.execute_fetchall(
                    "SELECT seq, hash FROM heads WHERE log = ? AND epoch = ?", (node, current)
                )
                seq, head = heads[0] if heads else (0, None)
                previous = Head(node, current, seq, head)
                await db.execute(
                    "UPDATE node_epochs SET sealed_ms = ? WHERE node = ? AND epoch = ?", (now, node, current)
                )
            epoch = current + 1
            await db.execute(
                "INSERT INTO node_epochs (node, epoch, key, enrolled_ms, prev_epoch, prev_seq, prev_head) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    node,
                    epoch,
                    key.text,
                    now,
                    None if previous is None else previous.epoch,
                    None if previous is None else previous.seq,
                    None if previous is None else previous.hash,
                ),
            )
            await db.execute(
                "UPDATE nodes SET epoch = ?, status = 'active', status_reason = '' WHERE node = ?",
                (epoch, node),
            )
            await db.execute("UPDATE invites SET used_ms = ? WHERE secret_sha256 = ?", (now, digest))
        return sign_enrollment(
            hub_key,
            node=node,
            epoch=epoch,
            key=key.text,
            kind=kind,
            name=name,
            hub_time=now,
            previous=previous,
        )

    async def revoke(self, node: str, *, after: int | None, reason: str, now: int) -> tuple[int, int]:
        """Refuse the node's key from now on; quarantine held entries after the cut. -> (epoch, cut)."""
        async with self.store.write() as db:
            rows = await db.execute_fetchall("SELECT epoch FROM nodes WHERE node = ?", (node,))
            if not rows or rows[0][0] < 1:
                raise NotFound("not_found", f"no enrolled node {node}")
            epoch = rows[0][0]
            heads = await db.execute_fetchall(
                "SELECT seq FROM heads WHERE log = ? AND epoch = ?", (node, epoch)
            )
            held = heads[0][0] if heads else 0
            cut = held if after is None else min(after, held)
            await db.execute(
                "UPDATE node_epochs SET revoked_after = ? WHERE node = ? AND epoch = ?", (cut, node, epoch)
            )
            await db.execute(
                "UPDATE nodes SET status = 'revoked', status_reason = ? WHERE node = ?", (reason, node)
            )
            await db.execute(
                "INSERT OR IGNORE INTO quarantine (log, epoch, seq, hash, code, reason, created_ms) "
                "SELECT log, epoch, seq, hash, 'revoked', ?, ? FROM entries "
                "WHERE log = ? AND epoch = ? AND seq > ?",
                (f"after the revocation cut at seq {cut}", now, node, epoch, cut),
            )
            await refuse_pending(db, node, f"node_revoked: {node} was revoked ({reason})", now)
            await db.execute(
                "INSERT INTO alarms (node, kind, message, created_ms) VALUES (?, 'revoked', ?, ?)",
                (node, f"key of {node}/{epoch} revoked after seq {cut}: {reason}", now),
            )
        return epoch, cut

    async def release(self, node: str, *, now: int) -> None:
        """A person cleared a quarantined node (fork reviewed): pushes are accepted again."""
        async with self.store.write() as db:
            cur = await db.execute(
                "UPDATE nodes SET status = 'active', status_reason = '' "
                "WHERE node = ? AND status = 'quarantined'",
                (node,),
            )
            if cur.rowcount != 1:
                raise NotFound("not_found", f"{node} is not quarantined")
            await db.execute(
                "UPDATE alarms SET cleared_ms = ? WHERE node = ? AND cleared_ms IS NULL", (now, node)
            )
