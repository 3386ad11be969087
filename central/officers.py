"""Officers' actions on dossiers (JSON API, bearer-token authenticated).

``POST /api/v1/officer/dossiers/<code>/<action>`` with the event's own fields as a JSON object. The hub
adds ``dossier`` and ``actor`` (``officer:<id>``), validates the body with the protocol's validator, and
writes the event in the mailbox of the node that received the dossier, forwarding it to the pickup node
when that is another branch (boundary-free reception). ``result_ready`` may carry the result file
(``file``: ``{"media_type", "pages", "data"}``, data in base64url): the hub stores it as a blob and writes a
``dossier.attachment`` (role ``result``) before the ``dossier.result_ready`` naming its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from aiohttp import web

from central.dossiers import DOSSIERS, Dossiers
from central.errors import BadRequest, NotFound, TooLarge, Unauthorized, Unprocessable
from central.hub import HUB, Hub
from central.mailbox import Post
from central.store import SqliteStore
from protocol import (
    BodyInvalid,
    Entry,
    b64url_decode,
    b64url_encode,
    canonical,
    decode,
    mailbox_log,
    manifest_for_bytes,
    nfc,
)
from protocol.dossier import MEDIA_TYPES, is_dossier_code

__all__ = ["ACTIONS", "add_officer", "officer_routes", "order_after_dossier", "record_action"]

ACTIONS = {
    "transfer": "dossier.transferred",
    "processing": "dossier.processing",
    "request_supplement": "dossier.supplement_requested",
    "financial_obligation": "dossier.financial_obligation",
    "result_ready": "dossier.result_ready",
    "refuse": "dossier.result_ready",
    "stop": "dossier.stopped",
}
MAX_ACTION_BYTES = 12 * 1024 * 1024
officer_routes = web.RouteTableDef()


async def add_officer(store: SqliteStore, officer: str, name: str, *, now: int) -> str:
    """Create an officer; returns the API token (shown once; only its SHA-256 is kept)."""
    token = "mco_" + b64url_encode(os.urandom(32))
    async with store.write() as db:
        await db.execute(
            "INSERT INTO officers (officer, name, token_sha256, created_ms) VALUES (?, ?, ?, ?)",
            (officer, name, hashlib.sha256(token.encode()).hexdigest(), now),
        )
    return token


async def _officer(request: web.Request, store: SqliteStore) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or len(header) > 200:
        raise Unauthorized("officer_unauthorized", "an officer token is required (Authorization: Bearer ...)")
    digest = hashlib.sha256(header[7:].strip().encode()).hexdigest()
    row = await store.fetchone(
        "SELECT officer, token_sha256 FROM officers WHERE token_sha256 = ? AND disabled_ms IS NULL", (digest,)
    )
    if row is None or not hmac.compare_digest(row[1], digest):
        raise Unauthorized("officer_unauthorized", "unknown or disabled officer token")
    return str(row[0])


def _result_file(fields: dict[str, Any]) -> tuple[bytes, str, int] | None:
    spec = fields.pop("file", None)
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.keys() != {"media_type", "pages", "data"}:
        raise BadRequest("bad_action", "file must be {media_type, pages, data}")
    if spec["media_type"] not in MEDIA_TYPES or type(spec["pages"]) is not int or spec["pages"] < 1:
        raise BadRequest("bad_action", f"file media_type must be one of {MEDIA_TYPES}, pages >= 1")
    try:
        data = b64url_decode(spec["data"])
    except ValueError:
        raise BadRequest("bad_action", "file data must be base64url without padding") from None
    if not data:
        raise BadRequest("bad_action", "the result file is empty")
    return data, spec["media_type"], spec["pages"]


async def _entries_for_pickup(hub: Hub, code: str, pickup: str) -> list[Post]:
    """Forwards of the dossier's entries in other nodes' logs that the pickup node's mailbox lacks (its
    reception above all), so the pickup branch can fold the dossier and hand the result back. Entries held
    for review (quarantined and not accepted) are not forwarded."""
    box = mailbox_log(pickup)
    sent = set()
    for (raw,) in await hub.store.fetchall(
        "SELECT raw FROM entries WHERE log = ? AND kind = 'hub.forward' AND dossier = ?", (box, code)
    ):
        sent.add(canonical(decode(bytes(raw))["body"]["entry"]))
    rows = await hub.store.fetchall(
        "SELECT e.log, e.epoch, e.raw FROM entries e WHERE e.dossier = ? AND e.log NOT LIKE 'hub%' "
        "AND e.log != ? AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.log = e.log AND "
        "q.epoch = e.epoch AND q.seq = e.seq AND q.decision IS NOT 'accepted') "
        "ORDER BY e.time_ms, e.time_n, e.log, e.epoch, e.seq",
        (code, pickup),
    )
    posts = []
    for log, epoch, raw in rows:
        if bytes(raw) in sent:
            continue
        key = await hub.registry.key(log, epoch)
        if key is None:  # pragma: no cover - every stored node entry has a registered key
            continue
        posts.append(Post(box, "hub.forward", {"entry": decode(bytes(raw)), "key": key.text}))
    return posts


async def order_after_dossier(hub: Hub, code: str) -> None:
    """Make the hub's next entries order after every event of the dossier the hub holds (within the
    clock's drift bound), so a decision never folds before the events it answers."""
    row = await hub.store.fetchone(
        "SELECT time_ms, time_n FROM entries WHERE dossier = ? ORDER BY time_ms DESC, time_n DESC LIMIT 1",
        (code,),
    )
    if row is not None:
        hub.mailbox.hlc.observe((row[0], row[1]), hub.clock())


async def record_action(
    hub: Hub,
    dossiers: Dossiers,
    code: str,
    action: str,
    fields: dict[str, Any],
    *,
    actor: str,
    result: tuple[bytes, str, int] | None = None,
) -> list[Entry]:
    """Write an officer's decision as signed hub entries: in the mailbox of the node that received the
    dossier, forwarded to the pickup node if another; ``result`` (data, media type, pages) is stored as a
    blob and attached first. Durable when this returns; the dossier is refolded."""
    kind = ACTIONS[action]
    routing = await dossiers.routing(code)
    if routing is None:
        raise NotFound("not_found", "the hub holds no reception of this dossier yet")
    if action == "refuse":
        fields["outcome"] = "refused"
    await order_after_dossier(hub, code)
    body = {**fields, "dossier": code, "actor": actor}
    posts = []
    forward = () if routing.pickup_node == routing.receiving_node else (mailbox_log(routing.pickup_node),)
    target = mailbox_log(routing.receiving_node)
    if result is not None:
        data, media_type, pages = result
        manifest = manifest_for_bytes(data, media_type, pages)
        await hub.blobs.store_local(data, manifest)
        attachment = {
            "dossier": code,
            "actor": actor,
            "document": "Kết quả giải quyết",
            "role": "result",
            "manifest": manifest.to_body(),
        }
        posts.append(Post(target, "dossier.attachment", attachment, forward))
        body["result_sha256"] = manifest.sha256
    posts.append(Post(target, kind, body, forward))
    async with hub.mailbox.route_lock:  # with central.relay: no entry forwarded twice to a mailbox
        if forward:
            posts[:0] = await _entries_for_pickup(hub, code, routing.pickup_node)
        try:
            written = await hub.mailbox.post(posts)
        except BodyInvalid as exc:
            raise Unprocessable("bad_action", exc.reason) from None
    await dossiers.refresh(code)
    return written


@officer_routes.post("/api/v1/officer/dossiers/{code}/{action}")
async def act(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    officer = await _officer(request, hub.store)
    code, action = request.match_info["code"], request.match_info["action"]
    kind = ACTIONS.get(action)
    if kind is None:
        raise NotFound("not_found", f"unknown action {action}; one of {', '.join(ACTIONS)}")
    if not is_dossier_code(code):
        raise NotFound("not_found", "no such dossier")
    raw = await request.content.read(MAX_ACTION_BYTES + 1)
    if len(raw) > MAX_ACTION_BYTES:
        raise TooLarge("too_large", f"an action is at most {MAX_ACTION_BYTES} bytes")
    try:
        fields = nfc(json.loads(raw or b"{}"))
    except ValueError:
        raise BadRequest("bad_action", "the body must be a JSON object") from None
    if not isinstance(fields, dict) or {"dossier", "actor"} & fields.keys():
        raise BadRequest("bad_action", "the body is an object of the event's fields (without dossier, actor)")
    result = _result_file(fields) if action == "result_ready" else None
    written = await record_action(
        request.app[HUB],
        request.app[DOSSIERS],
        code,
        action,
        fields,
        actor=f"officer:{officer}",
        result=result,
    )
    answer = [{"log": e.log, "seq": e.seq, "kind": e.kind, "hash": e.hash} for e in written]
    return web.Response(body=canonical({"entries": answer}), content_type="application/json", status=201)


@officer_routes.get("/api/v1/officer/dossiers/{code}")
async def show(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await _officer(request, hub.store)
    code = request.match_info["code"]
    await request.app[DOSSIERS].refresh(code)
    row = await hub.store.fetchone(
        "SELECT receiving_node, pickup_node, state, conflicts FROM dossiers WHERE code = ?", (code,)
    )
    if row is None:
        raise NotFound("not_found", "no such dossier at the hub")
    view = {"receiving_node": row[0], "pickup_node": row[1], "conflicts": row[3], **decode(bytes(row[2]))}
    return web.Response(body=canonical(view), content_type="application/json")
