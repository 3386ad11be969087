"""Node key rotation as a threshold decision (SPEC §7.11).

A node asks with a ``RotationRequest`` signed by its current key and by the new one (``POST /v1/rotation``):
the hub checks both signatures, that the old key is the one in force for the node's current epoch, that
the node is neither revoked nor quarantined, that the request is fresh and new (a request is single-use:
the same bytes again are ``rotation_replayed``), that the new key was never bound, and that the final head
it names is exactly the head the hub holds. The request then waits, ``pending``, for approvals.

Approvals come from hub admins (``rotation_approvers`` if set, else every web user with role admin), through
the admin page or the CLI, each after re-entering their password. One row per (request, admin): the same
admin approving twice still counts once. An approval counts for ``rotation_approval_ttl_s``; a request
stays open as long as an invite (``invite_ttl_h``). When ``rotation_threshold`` distinct valid approvals
are present the hub, in **one** transaction, re-checks everything (status, epoch, key, head), seals the
old epoch at the final head, binds the new key to the new epoch, marks the request accepted with the
hub-signed ``Enrollment`` of the new epoch, and writes the signed ``hub.node_key_rotation`` entry (request +
approvals) in the broadcast log. A revoked node's pending requests are refused (``node_revoked``), even
with approvals obtained before the revocation; re-enrolling a revoked site needs a fresh invite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiosqlite

from central.errors import (
    BadRequest,
    CentralError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from central.mailbox import BROADCAST, Post
from protocol import (
    NODE_KEY_ROTATION,
    ProtocolError,
    RotationRequest,
    RotationStatus,
    canonical,
    decode,
    sign_enrollment,
)

if TYPE_CHECKING:
    from central.hub import Hub

__all__ = ["Approval", "NodeRotations", "RotationView", "refuse_pending"]


@dataclass(frozen=True, slots=True)
class Approval:
    admin: str
    at: int
    valid: bool  # not expired, and the admin may still approve


@dataclass(frozen=True, slots=True)
class RotationView:
    """One request as the hub holds it, with its approvals."""

    id: str
    request: RotationRequest
    fingerprint: str
    created_ms: int
    expires_ms: int
    status: str
    reason: str
    decided_ms: int | None
    approvals: tuple[Approval, ...]
    enrollment: dict[str, Any] | None

    @property
    def node(self) -> str:
        return self.request.node

    @property
    def valid_approvals(self) -> int:
        return sum(1 for a in self.approvals if a.valid)

    def to_status(self, threshold: int) -> RotationStatus:
        return RotationStatus(
            id=self.id,
            node=self.node,
            status=self.status,
            reason=self.reason,
            fingerprint=self.fingerprint,
            approvals=self.valid_approvals,
            threshold=threshold,
            enrollment=self.enrollment,
        )


class _Refused(Exception):
    def __init__(self, error: CentralError) -> None:
        super().__init__(error.reason)
        self.error = error


_COLUMNS = "id, raw, fingerprint, created_ms, status, reason, decided_ms, enrollment"


async def refuse_pending(db: aiosqlite.Connection, node: str, reason: str, now: int) -> None:
    """Refuse every pending rotation request of ``node`` (in the caller's transaction: revocation)."""
    await db.execute(
        "UPDATE rotation_requests SET status = 'refused', reason = ?, decided_ms = ? "
        "WHERE node = ? AND status = 'pending'",
        (reason[:500], now, node),
    )


class NodeRotations:
    """Reads and changes ``rotation_requests`` and ``rotation_approvals``; accepts at the threshold."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def threshold(self) -> int:
        return self.hub.config.rotation_threshold

    # -- the node's side ---------------------------------------------------------------------------

    async def submit(self, request: RotationRequest) -> RotationStatus:
        """Check and record a new request (pending); refusals change nothing."""
        hub = self.hub
        now = hub.clock()
        try:
            request.verify()
        except ProtocolError as exc:
            raise Unprocessable(exc.code, exc.reason) from None
        async with hub.store.write() as db:
            seen = await db.execute_fetchall(
                "SELECT status, reason FROM rotation_requests WHERE id = ?", (request.id,)
            )
            if seen:
                status, reason = seen[0]
                raise Conflict(
                    "rotation_replayed",
                    f"this rotation request was already submitted ({status} {reason}".rstrip()
                    + "); a new rotation needs a new request",
                )
            rows = await db.execute_fetchall(
                "SELECT status, status_reason, epoch FROM nodes WHERE node = ?", (request.node,)
            )
            if not rows or rows[0][2] < 1:
                raise NotFound("unknown_node", f"no enrolled node {request.node}")
            status, status_reason, epoch = rows[0]
            _check_node(request, status, status_reason, epoch)
            keys = await db.execute_fetchall(
                "SELECT key FROM node_epochs WHERE node = ? AND epoch = ?", (request.node, epoch)
            )
            if not keys or keys[0][0] != request.key:
                raise Unauthorized(
                    "key_mismatch", f"the old key is not the key in force for {request.node}/{epoch}"
                )
            window = hub.config.auth_window_s * 1000
            if abs(request.time - now) > window:
                raise Unauthorized("stale", f"request time is more than {window // 1000} s from hub time")
            used = await db.execute_fetchall(
                "SELECT 1 FROM node_epochs WHERE key = ? "
                "UNION ALL SELECT 1 FROM rotation_requests WHERE new_key = ?",
                (request.new_key, request.new_key),
            )
            if used:
                raise Forbidden("key_reused", "the new key was already bound or requested; make a new key")
            await _check_head(db, request)
            await db.execute(
                "UPDATE rotation_requests SET status = 'refused', reason = ?, decided_ms = ? "
                "WHERE node = ? AND status = 'pending'",
                ("superseded: the node sent a newer rotation request", now, request.node),
            )
            await db.execute(
                "INSERT INTO rotation_requests "
                "(id, node, epoch, new_key, fingerprint, raw, created_ms, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
                (
                    request.id,
                    request.node,
                    request.epoch,
                    request.new_key,
                    request.new_fingerprint,
                    canonical(request.to_wire()),
                    now,
                ),
            )
        view = await self.get(request.id)
        assert view is not None
        return view.to_status(self.threshold)

    async def status(self, request_id: str) -> RotationStatus:
        view = await self.get(request_id)
        if view is None:
            raise NotFound("not_found", "no rotation request with this id")
        return view.to_status(self.threshold)

    # -- the admins' side --------------------------------------------------------------------------

    async def may_approve(self, username: str) -> bool:
        """An active web admin, listed in ``rotation_approvers`` when that is set."""
        approvers = self.hub.config.approvers
        if approvers and username not in approvers:
            return False
        row = await self.hub.store.fetchone(
            "SELECT 1 FROM web_users WHERE username = ? AND role = 'admin' AND disabled_ms IS NULL",
            (username,),
        )
        return row is not None

    async def get(self, request_id: str) -> RotationView | None:
        row = await self.hub.store.fetchone(
            f"SELECT {_COLUMNS} FROM rotation_requests WHERE id = ?", (request_id,)
        )
        return None if row is None else await self._view(row)

    async def listing(self, *, pending_only: bool = False, limit: int = 50) -> list[RotationView]:
        where = "WHERE status = 'pending'" if pending_only else ""
        rows = await self.hub.store.fetchall(
            f"SELECT {_COLUMNS} FROM rotation_requests {where} ORDER BY created_ms DESC LIMIT ?", (limit,)
        )
        return [await self._view(row) for row in rows]

    async def _view(self, row: Any) -> RotationView:
        request_id, raw, fp, created, status, reason, decided, enrollment = row
        now = self.hub.clock()
        ttl = self.hub.config.rotation_approval_ttl_s * 1000
        approvers = self.hub.config.approvers
        admins = {
            r[0]
            for r in await self.hub.store.fetchall(
                "SELECT username FROM web_users WHERE role = 'admin' AND disabled_ms IS NULL"
            )
        }
        approvals = tuple(
            Approval(admin, at, at + ttl >= now and admin in admins and (not approvers or admin in approvers))
            for admin, at in await self.hub.store.fetchall(
                "SELECT admin, approved_ms FROM rotation_approvals WHERE request = ? "
                "ORDER BY approved_ms, admin",
                (request_id,),
            )
        )
        expires = created + self.hub.config.invite_ttl_h * 3600 * 1000
        if status == "pending" and expires < now:
            status, reason = "refused", "expired: the request was not approved in time; send a new one"
        return RotationView(
            id=request_id,
            request=RotationRequest.from_wire(decode(bytes(raw), max_bytes=None)),
            fingerprint=fp,
            created_ms=created,
            expires_ms=expires,
            status=status,
            reason=reason,
            decided_ms=decided,
            approvals=approvals,
            enrollment=None if enrollment is None else json.loads(bytes(enrollment)),
        )

    async def approve(
        self, request_id: str, admin: str, *, fingerprint_seen: str
    ) -> tuple[RotationView, bool]:
        """Record ``admin``'s approval of the request (naming the new key's fingerprint they checked);
        accept the rotation when the threshold is reached. Returns (the request now, whether this
        approval was new). The caller has checked the admin's password (step-up)."""
        hub = self.hub
        now = hub.clock()
        view = await self.get(request_id)
        if view is None:
            raise NotFound("not_found", "no rotation request with this id")
        if not await self.may_approve(admin):
            raise Forbidden("not_an_approver", f"{admin} may not approve node key rotations")
        if fingerprint_seen.strip().lower() != view.fingerprint:
            raise BadRequest(
                "fingerprint_mismatch",
                f"the request's new key is {view.fingerprint}, not {fingerprint_seen.strip()}",
            )
        info = await hub.registry.node(view.node)
        if info is not None and info.status == "revoked":  # even with approvals given before it
            error = Forbidden(
                "node_revoked",
                f"{view.node} is revoked ({info.reason}): its old key cannot rotate; "
                "re-enrol it with a fresh invite",
            )
            await self._refuse(request_id, f"{error.code}: {error.reason}", now)
            raise error
        if view.status != "pending":
            await self._close(view, now)
            raise Conflict("rotation_closed", f"the request is {view.status}: {view.reason}")
        added = False
        try:
            async with hub.store.write() as db:
                rows = await db.execute_fetchall(
                    "SELECT status, status_reason, epoch FROM nodes WHERE node = ?", (view.node,)
                )
                try:
                    _check_node(view.request, *rows[0])
                except CentralError as exc:
                    raise _Refused(exc) from None
                cursor = await db.execute(
                    "INSERT OR IGNORE INTO rotation_approvals "
                    "(request, admin, node, fingerprint, approved_ms) VALUES (?, ?, ?, ?, ?)",
                    (request_id, admin, view.node, view.fingerprint, now),
                )
                added = cursor.rowcount == 1
        except _Refused as refused:
            await self._refuse(request_id, f"{refused.error.code}: {refused.error.reason}", now)
            raise refused.error from None
        view = await self.get(request_id)
        assert view is not None
        if view.valid_approvals >= self.threshold:
            await self._accept(view, now)
            view = await self.get(request_id)
            assert view is not None
        return view, added

    async def _close(self, view: RotationView, now: int) -> None:
        if view.reason.startswith("expired"):
            await self._refuse(view.id, view.reason, now)

    async def _refuse(self, request_id: str, reason: str, now: int) -> None:
        async with self.hub.store.write() as db:
            await db.execute(
                "UPDATE rotation_requests SET status = 'refused', reason = ?, decided_ms = ? "
                "WHERE id = ? AND status = 'pending'",
                (reason[:500], now, request_id),
            )

    async def _accept(self, view: RotationView, now: int) -> None:
        """Seal, bind, record and announce in one transaction, after checking everything again."""
        hub = self.hub
        request = view.request
        info = await hub.registry.node(request.node)
        assert info is not None
        enrollment = sign_enrollment(
            hub.hub_key,
            node=request.node,
            epoch=request.new_epoch,
            key=request.new_key,
            kind=info.kind,
            name=info.name,
            hub_time=now,
            previous=request.final,
        )
        valid = [a for a in view.approvals if a.valid]
        body = {
            "request": request.to_wire(),
            "approvals": [{"admin": a.admin, "at": a.at} for a in valid],
            "effective": now,
        }

        async def apply(db: aiosqlite.Connection) -> None:
            rows = await db.execute_fetchall("SELECT status FROM rotation_requests WHERE id = ?", (view.id,))
            if rows[0][0] != "pending":
                raise _Refused(Conflict("rotation_closed", f"the request is {rows[0][0]}"))
            nodes = await db.execute_fetchall(
                "SELECT status, status_reason, epoch FROM nodes WHERE node = ?", (request.node,)
            )
            try:
                _check_node(request, *nodes[0])
                await _check_head(db, request)
            except CentralError as exc:
                raise _Refused(exc) from None
            used = await db.execute_fetchall("SELECT 1 FROM node_epochs WHERE key = ?", (request.new_key,))
            if used:
                raise _Refused(Forbidden("key_reused", "the new key is already bound"))
            await db.execute(
                "UPDATE node_epochs SET sealed_ms = ? WHERE node = ? AND epoch = ?",
                (now, request.node, request.epoch),
            )
            await db.execute(
                "INSERT INTO node_epochs (node, epoch, key, enrolled_ms, prev_epoch, prev_seq, prev_head) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    request.node,
                    request.new_epoch,
                    request.new_key,
                    now,
                    request.epoch,
                    request.final_seq,
                    request.final_head,
                ),
            )
            await db.execute("UPDATE nodes SET epoch = ? WHERE node = ?", (request.new_epoch, request.node))
            await db.execute(
                "UPDATE rotation_requests SET status = 'accepted', reason = '', decided_ms = ?, "
                "enrollment = ? WHERE id = ?",
                (now, canonical(enrollment.to_wire()), view.id),
            )

        try:
            await hub.mailbox.post([Post(BROADCAST, NODE_KEY_ROTATION, body)], also=[apply])
        except _Refused as refused:
            await self._refuse(view.id, f"{refused.error.code}: {refused.error.reason}", now)
            raise refused.error from None


def _check_node(request: RotationRequest, status: str, reason: str, epoch: int) -> None:
    if status == "revoked":
        raise Forbidden(
            "node_revoked",
            f"{request.node} is revoked ({reason}): its old key cannot rotate; "
            "re-enrol it with a fresh invite",
        )
    if status == "quarantined":
        raise Forbidden("node_quarantined", f"{request.node} is quarantined ({reason}): release it first")
    if request.epoch != epoch:
        raise Forbidden(
            "epoch_sealed", f"{request.node} is at epoch {epoch}; the request is for epoch {request.epoch}"
        )


async def _check_head(db: aiosqlite.Connection, request: RotationRequest) -> None:
    heads = await db.execute_fetchall(
        "SELECT seq, hash FROM heads WHERE log = ? AND epoch = ?", (request.node, request.epoch)
    )
    seq, head = heads[0] if heads else (0, None)
    if (seq, head) != (request.final_seq, request.final_head):
        raise Conflict(
            "head_mismatch",
            f"the hub holds {request.node}/{request.epoch} up to seq {seq}, the request ends it at seq "
            f"{request.final_seq}: sync everything first, then ask again",
        )
