"""Node key rotation approved by hub admins (SPEC §7.11, ``motcua-node rotate-key``).

1. With the node stopped and the hub holding its whole current epoch, ``rotate-key`` makes a new key
   (``node.key.next``), signs a ``RotationRequest`` with the old key and the new one, naming the final head
   of the current epoch, records it in ``rotation-pending.json`` (``serve`` refuses to start while it
   exists: nothing may be appended with the old key after the head the request names) and posts it to
   ``POST /v1/rotation``. A refusal removes both files: nothing changed, the old key stays.
2. It then polls ``GET /v1/rotation/<id>`` (bounded by ``--wait``) while hub admins approve it (two by
   default, each checking the new key's fingerprint the command prints). Still pending at the end: the
   command says so and may be run again to keep waiting (the request is not sent twice).
3. Accepted: the answer carries the hub's ``Enrollment`` of the new epoch, checked against the pinned hub
   key and the request (node, new key, new epoch, sealed head = the final head). The new key replaces
   the old one (which never signs again) and the genesis of the new epoch is written naming the final
   head (``start_next_epoch``, with the enrollment kept as the hub link of the new epoch).
   Refused (revoked node, expired, superseded, head moved...): both files are removed, the reason shown.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from node.backup import KEY_NAME, write_atomically
from node.blobs import fsync_dir
from node.config import NodeConfig
from node.hublink import current_link
from node.journal import Journal
from node.reprovision import (
    ROTATION_FILE,
    EpochStarted,
    HubView,
    ReprovisionError,
    hub_state,
    start_next_epoch,
)
from node.store import Store
from protocol import (
    BadSignature,
    Enrollment,
    Entry,
    ErrorReply,
    PublicKey,
    RotationRequest,
    RotationStatus,
    b64url_decode,
    canonical,
    decode,
    fingerprint,
    parse_public_key,
)
from protocol.errors import ProtocolError
from protocol.keys import generate_private_key, load_private_key, public_key_text, save_private_key

__all__ = ["ROTATION_FILE", "RotationPending", "RotationRefused", "rotate_key", "rotation_pending"]

NEXT_KEY = KEY_NAME + ".next"


class RotationRefused(ReprovisionError):
    """The hub refused the rotation (the message says why); the old key stays in force."""


@dataclass(frozen=True, slots=True)
class RotationPending:
    """The request is waiting for approvals: run ``rotate-key`` again to keep waiting."""

    id: str
    fingerprint: str
    approvals: int
    threshold: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def rotation_pending(data_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((Path(data_dir) / ROTATION_FILE).read_text("utf-8")))
    except FileNotFoundError:
        return None


def _clear(config: NodeConfig) -> None:
    for name in (NEXT_KEY, ROTATION_FILE):
        try:
            (config.data_dir / name).unlink()
        except FileNotFoundError:
            pass
    fsync_dir(config.data_dir)


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} if body is not None else None
    try:
        async with session.request(method, url, data=body, headers=headers) as resp:
            status, payload = resp.status, await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise ReprovisionError(f"không kết nối được trung tâm ({url}): {exc!r}; chạy lại sau") from None
    try:
        return status, decode(payload, max_bytes=None)
    except ProtocolError:
        return status, {"error": f"http_{status}", "reason": payload[:200].decode("utf-8", "replace")}


def _refusal(status: int, value: Any) -> tuple[str, str]:
    try:
        reply = ErrorReply.from_wire(value)
        return reply.error, reply.reason
    except (ProtocolError, ValueError, TypeError, AttributeError):
        return f"http_{status}", str(value)[:200]


async def _submit(config: NodeConfig) -> dict[str, Any]:
    """Check the hub holds the whole epoch, make the new key, sign and record the request (not sent)."""
    old_key = load_private_key(config.key_path)
    store = await Store.open(config.db_path)
    try:
        async with store.read() as db:
            journal = await Journal.open(db, config.node_id, old_key)
            head = await journal.head(db)
            linked = await current_link(db, journal.epoch)
    finally:
        await store.close()
    hub_url = config.hub_url or (linked.hub_url if linked is not None else None)
    if hub_url is None or linked is None:
        raise ReprovisionError("máy trạm chưa nối với trung tâm: xoay khóa cần trung tâm duyệt")
    state = await hub_state(hub_url, config.node_id, journal.epoch, old_key)
    held = state.log_head(config.node_id, journal.epoch)
    if held.seq != head.seq or held.head != head.hash:
        raise ReprovisionError(
            f"trung tâm giữ {config.node_id}/{journal.epoch} đến seq {held.seq}, "
            f"máy trạm đến {head.seq}: đồng bộ hết trước khi xoay khóa (motcua-node sync --once)"
        )
    new_key = generate_private_key()
    request = RotationRequest.make(
        node=config.node_id,
        epoch=journal.epoch,
        old_key=old_key,
        new_key=new_key,
        final=head,
        time=state.hub_time,
    )
    save_private_key(new_key, config.data_dir / NEXT_KEY)
    record = {
        "node": config.node_id,
        "reason": "rotation",
        "hub_url": hub_url.rstrip("/"),
        "hub_key": linked.hub_key.text,
        "id": request.id,
        "request": request.to_wire(),
    }
    payload = json.dumps(record).encode()
    write_atomically(config.data_dir / ROTATION_FILE, lambda h: h.write(payload))
    fsync_dir(config.data_dir)
    return record


async def rotate_key(
    config: NodeConfig, *, wait_s: float = 900.0, poll_s: float = 2.0
) -> EpochStarted | RotationPending:
    """Ask (or keep waiting) for a rotation; start the new epoch once the hub accepted it."""
    record = rotation_pending(config.data_dir) or await _submit(config)
    request = RotationRequest.from_wire(record["request"])
    base = str(record["hub_url"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        status, value = await _call(session, "GET", f"{base}/v1/rotation/{request.id}")
        if status == 404:  # not sent yet (or the answer to the first post was lost before it was stored)
            status, value = await _call(session, "POST", f"{base}/v1/rotation", canonical(request.to_wire()))
            if status != 202:
                _clear(config)
                code, reason = _refusal(status, value)
                raise RotationRefused(f"trung tâm từ chối yêu cầu xoay khóa ({code}): {reason}")
        deadline = time.monotonic() + wait_s
        while True:
            if status not in (200, 202):
                code, reason = _refusal(status, value)
                raise ReprovisionError(f"trung tâm trả lời lỗi {status} ({code}): {reason}; chạy lại sau")
            try:
                answer = RotationStatus.from_wire(value)
            except ProtocolError as exc:
                raise ReprovisionError(f"trả lời của trung tâm không hợp lệ: {exc.reason}") from None
            if answer.status == "refused":
                _clear(config)
                raise RotationRefused(f"trung tâm từ chối xoay khóa: {answer.reason}")
            if answer.status == "accepted":
                assert answer.enrollment is not None
                return await _finish(config, record, request, answer.enrollment)
            if time.monotonic() >= deadline:
                return RotationPending(request.id, answer.fingerprint, answer.approvals, answer.threshold)
            await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            status, value = await _call(session, "GET", f"{base}/v1/rotation/{request.id}")


async def _finish(
    config: NodeConfig, record: dict[str, Any], request: RotationRequest, wire: dict[str, Any]
) -> EpochStarted:
    store = await Store.open(config.db_path)
    try:
        async with store.read() as db:
            linked = await current_link(db)
        pinned = linked.hub_key.text if linked is not None else str(record["hub_key"])
        try:
            enrollment = Enrollment.from_wire(wire)
            hub_key = _verify(enrollment, request, pinned)
        except ProtocolError as exc:
            raise ReprovisionError(
                f"trung tâm báo đã duyệt nhưng bản ghi danh không hợp lệ: {exc.reason}; không ghi gì"
            ) from None
        next_path = config.data_dir / NEXT_KEY
        if next_path.exists():
            if public_key_text(load_private_key(next_path)) != request.new_key:
                raise ReprovisionError(f"{NEXT_KEY} không phải khóa trong yêu cầu; không tiếp tục")
            os.replace(next_path, config.key_path)  # the old key never signs again
            fsync_dir(config.data_dir)
        new_key = load_private_key(config.key_path)
        if public_key_text(new_key) != request.new_key:
            raise ReprovisionError(f"{KEY_NAME} không phải khóa trong yêu cầu xoay khóa; không tiếp tục")
        view = HubView(
            config.hub_url or str(record["hub_url"]),
            enrollment.epoch,
            enrollment.previous,
            hub_key,
            enrollment,
            enrollment.hub_time - _now_ms(),
        )
        async with store.read() as db:
            async with db.execute(
                "SELECT raw FROM entries WHERE log = ? AND epoch = ? AND seq = 1",
                (config.node_id, view.epoch),
            ) as cursor:
                written = await cursor.fetchone()
        if written is not None:  # the genesis was written before a crash: only the record is left
            started = EpochStarted(view.epoch, view.previous, 0, 0, Entry.parse(bytes(written[0])))
        else:
            started = await start_next_epoch(
                store, config.node_id, new_key, epoch=view.epoch, previous=view.previous, link=view
            )
    finally:
        await store.close()
    (config.data_dir / ROTATION_FILE).unlink()
    fsync_dir(config.data_dir)
    return started


def _verify(enrollment: Enrollment, request: RotationRequest, pinned: str) -> PublicKey:
    if enrollment.hub_key != pinned:
        raise BadSignature(
            f"the enrollment is signed by hub key {fingerprint(enrollment.hub_key)}, "
            f"the node pins {fingerprint(pinned)}: sync with the hub first"
        )
    hub_key = parse_public_key(pinned)
    if not hub_key.verify(b64url_decode(enrollment.sig, length=64), enrollment.signable()):
        raise BadSignature("the enrollment is not signed by the pinned hub key")
    if (
        enrollment.node != request.node
        or enrollment.key != request.new_key
        or enrollment.epoch != request.new_epoch
        or enrollment.previous != request.final
    ):
        raise BadSignature("the enrollment binds another node, key, epoch or sealed head than requested")
    return hub_key
