"""HTTP endpoints the nodes call (SPEC.md §7): ``/v1/enroll`` and ``/v1/sync/...``.

Each handler authenticates (except enrollment, which carries its token), reads the body with a streamed
byte count, then calls the domain (registry, receive, mailbox, blobs, heartbeat). Errors are turned into
HTTP answers by ``central.errors.error_middleware`` only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from aiohttp import web

from central.errors import BadRequest, Forbidden, NotFound, TooLarge, Unauthorized
from central.hub import HUB, Hub
from central.leases import Leases
from central.mailbox import BROADCAST, HUB_EPOCH
from central.registry import NodeInfo
from protocol import (
    AuthError,
    EnrollmentRequest,
    Heartbeat,
    HubState,
    LogHead,
    ProtocolError,
    RotationRequest,
    canonical,
    decode,
    mailbox_log,
    parse_auth_headers,
    verify_request,
)
from protocol.blobs import CHUNK_SIZE
from protocol.entry import HASH_RE, LOG_RE

__all__ = ["NDJSON", "routes"]

NDJSON = "application/x-ndjson"
MAX_JSON_BYTES = 256 * 1024
MAX_PAGE = 1000
routes = web.RouteTableDef()
_INT_RE = re.compile(r"0|[1-9][0-9]{0,15}")


@dataclass(frozen=True, slots=True)
class Caller:
    info: NodeInfo
    epoch: int
    body: bytes | bytearray  # bytearray for streamed chunk uploads
    digest: str  # hex SHA-256 of body, checked against the signed one


def json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=canonical(value), content_type="application/json")


async def read_body(request: web.Request, cap: int) -> bytes:
    """The whole body, counted while streaming (Content-Length is not trusted)."""
    buf = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        if len(buf) + len(chunk) > cap:
            raise TooLarge("too_large", f"request body over {cap} bytes")
        buf += chunk
    return bytes(buf)


async def read_hashed(request: web.Request, cap: int) -> tuple[bytearray, str]:
    """The whole body and its hex SHA-256, hashed piece by piece as it streams in (while the rest is still
    on the wire) and kept in one buffer, sized from Content-Length when that is within ``cap`` (never
    trusted: the count is checked while reading). For chunk uploads: no copy, no second pass."""
    hasher = hashlib.sha256()
    length = request.content_length
    buf = bytearray(length if length is not None and 0 < length <= cap else 0)
    size = 0
    async for piece in request.content.iter_any():  # the pieces as received, not joined
        end = size + len(piece)
        if end > cap:
            raise TooLarge("too_large", f"request body over {cap} bytes")
        if end <= len(buf):
            buf[size:end] = piece
        else:
            del buf[size:]
            buf += piece
        size = end
        hasher.update(piece)
    del buf[size:]
    return buf, hasher.hexdigest()


async def authenticate(
    request: web.Request, hub: Hub, cap: int, *, allow_revoked: bool = False, stream: bool = False
) -> Caller:
    """Headers, key, freshness, signature, replay; then the body, checked against its signed digest."""
    node = request.headers.get("X-Motcua-Node", "?")
    try:
        claims = parse_auth_headers(request.headers, method=request.method, target=request.raw_path)
        info = await hub.registry.node(claims.node)
        key = await hub.registry.key(claims.node, claims.epoch)
        if info is None or key is None:
            raise Unauthorized("unknown_node", f"no key is enrolled for {claims.node}/{claims.epoch}")
        now = hub.clock()
        verify_request(claims, key, now_ms=now, replay=hub.replay, window_ms=hub.config.auth_window_s * 1000)
    except AuthError as exc:
        hub.metrics.refused.labels(node[:32], exc.code).inc()
        raise Unauthorized(exc.code, exc.reason) from None
    except Unauthorized as exc:
        hub.metrics.refused.labels(node[:32], exc.code).inc()
        raise
    hub.registry.last_seen[info.node] = now
    hub.metrics.last_seen.labels(info.node).set(now / 1000)
    if abs(claims.time - now) > hub.config.skew_warn_s * 1000:
        hub.metrics.skewed.labels(info.node).inc()
    if claims.epoch != info.epoch:
        raise Forbidden(
            "epoch_sealed", f"{info.node} is at epoch {info.epoch}; the key of {claims.epoch} is retired"
        )
    if info.status == "revoked" and not allow_revoked:
        raise Forbidden("node_revoked", f"{info.node} is revoked: {info.reason}")
    if stream:  # large bodies: hashed as they arrive, in one buffer
        body, digest = await read_hashed(request, cap)
    else:
        body = await read_body(request, cap)
        digest = hashlib.sha256(body).hexdigest()
    if digest != claims.body:
        raise BadRequest("body_hash_mismatch", "the body is not the one the signature covers")
    return Caller(info, claims.epoch, body, digest)


def _int_param(request: web.Request, name: str, default: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not _INT_RE.fullmatch(text) or int(text) > high:
        raise BadRequest("bad_request", f"{name} must be an integer 0..{high}")
    return int(text)


def _path_int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not _INT_RE.fullmatch(text):
        raise NotFound("not_found", f"{name} must be a decimal integer")
    return int(text)


@routes.post("/v1/enroll")
async def enroll(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    body = await read_body(request, 4096)
    try:
        enrollment_request = EnrollmentRequest.from_wire(decode(body, max_bytes=4096))
    except ProtocolError as exc:
        raise BadRequest(exc.code, exc.reason) from None
    enrollment = await hub.registry.enroll(enrollment_request, hub_key=hub.hub_key, now=hub.clock())
    return json_response(enrollment.to_wire())


@routes.post("/v1/rotation")
async def rotation_request(request: web.Request) -> web.Response:
    """A node asks to rotate its key (SPEC §7.11): signed by its old and new keys; answered 202 pending."""
    from central.noderotation import NodeRotations

    hub = request.app[HUB]
    body = await read_body(request, 4096)
    try:
        rotation = RotationRequest.from_wire(decode(body, max_bytes=4096))
    except ProtocolError as exc:
        raise BadRequest(exc.code, exc.reason) from None
    status = await NodeRotations(hub).submit(rotation)
    return json_response(status.to_wire(), status=202)


@routes.get("/v1/rotation/{id}")
async def rotation_status(request: web.Request) -> web.Response:
    """Where a rotation request stands; accepted: with the hub-signed enrollment of the new epoch."""
    from central.noderotation import NodeRotations

    request_id = request.match_info["id"]
    if not HASH_RE.fullmatch(request_id):
        raise NotFound("not_found", "a rotation request is named by the lower-case hex SHA-256 of its body")
    status = await NodeRotations(request.app[HUB]).status(request_id)
    return json_response(status.to_wire())


@routes.get("/v1/sync/state")
async def state(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await authenticate(request, hub, 0, allow_revoked=True)
    node = caller.info.node
    mailboxes = [BROADCAST, mailbox_log(node)]
    heads = {(h.log, h.epoch): h for h in await hub.store.heads([node, *mailboxes])}
    logs = tuple(
        LogHead(node, epoch, heads[(node, epoch)].seq, heads[(node, epoch)].hash)
        if (node, epoch) in heads
        else LogHead(node, epoch, 0, None)
        for epoch, *_ in await hub.registry.epochs(node)
    )
    boxes = tuple(
        LogHead(log, HUB_EPOCH, heads[(log, HUB_EPOCH)].seq, heads[(log, HUB_EPOCH)].hash)
        if (log, HUB_EPOCH) in heads
        else LogHead(log, HUB_EPOCH, 0, None)
        for log in mailboxes
    )
    status = "active" if caller.info.status == "invited" else caller.info.status
    return json_response(HubState(hub.clock(), node, caller.info.epoch, status, logs, boxes).to_wire())


@routes.post("/v1/sync/logs/{log}/{epoch}")
async def push(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await authenticate(request, hub, hub.config.max_push_bytes)
    log, epoch = request.match_info["log"], _path_int(request, "epoch")
    with hub.metrics.push_seconds.time():
        try:
            result = await hub.receiver.push(caller.info, log, epoch, caller.body)
        except Exception as exc:
            hub.metrics.refused.labels(caller.info.node, getattr(exc, "code", "internal")).inc()
            raise
    return json_response(result.to_wire())


async def _ndjson(entries: list[bytes]) -> web.Response:
    return web.Response(body=b"".join(e + b"\n" for e in entries), content_type=NDJSON)


@routes.get("/v1/sync/logs/{log}/{epoch}")
async def export_log(request: web.Request) -> web.Response:
    """A node fetches its own log (any epoch) back from the hub: restore."""
    hub = request.app[HUB]
    caller = await authenticate(request, hub, 0)
    log, epoch = request.match_info["log"], _path_int(request, "epoch")
    if log != caller.info.node:
        raise Forbidden("cross_node", f"{caller.info.node} may read only its own log")
    after = _int_param(request, "after", 0, 2**53)
    limit = _int_param(request, "limit", MAX_PAGE, MAX_PAGE)
    return await _ndjson(await hub.store.entries(log, epoch, after, limit))


@routes.get("/v1/sync/mailbox/{log}")
async def pull_mailbox(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await authenticate(request, hub, 0)
    log = request.match_info["log"]
    if not LOG_RE.fullmatch(log) or log not in (BROADCAST, mailbox_log(caller.info.node)):
        raise Forbidden(
            "cross_node", f"{caller.info.node} may read only hub and {mailbox_log(caller.info.node)}"
        )
    after = _int_param(request, "after", 0, 2**53)
    limit = _int_param(request, "limit", MAX_PAGE, MAX_PAGE)
    return await _ndjson(await hub.store.entries(log, HUB_EPOCH, after, limit))


@routes.post("/v1/sync/blobs/need")
async def blobs_need(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await authenticate(request, hub, MAX_JSON_BYTES)
    try:
        value = decode(caller.body, max_bytes=MAX_JSON_BYTES)
    except ProtocolError as exc:
        raise BadRequest(exc.code, exc.reason) from None
    shas = value.get("blobs") if isinstance(value, dict) and value.keys() == {"blobs"} else None
    if not isinstance(shas, list) or len(shas) > 1000 or not all(isinstance(s, str) for s in shas):
        raise BadRequest("bad_request", 'body must be {"blobs": [sha256, ...]} (at most 1000)')
    needs = await hub.blobs.need(caller.info.node, shas)
    return json_response({"blobs": [n.to_wire() for n in needs]})


def _blob_target(request: web.Request) -> tuple[str, int]:
    sha = request.match_info["sha256"]
    if not HASH_RE.fullmatch(sha):
        raise NotFound("blob_unknown", "a blob is named by its lower-case hex SHA-256")
    return sha, _path_int(request, "index")


@routes.put("/v1/sync/blobs/{sha256}/{index}")
async def put_chunk(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await authenticate(request, hub, CHUNK_SIZE, stream=True)
    sha, index = _blob_target(request)
    ack = request.query.get("ack")
    if ack not in (None, "later"):
        raise BadRequest("bad_request", "ack must be 'later' (or absent)")
    complete = await hub.blobs.put_chunk(
        caller.info.node, sha, index, caller.body, caller.digest, wait=ack is None
    )
    hub.metrics.blob_bytes.labels(caller.info.node).inc(len(caller.body))
    return json_response({"sha256": sha, "index": index, "complete": complete})


@routes.get("/v1/sync/blobs/{sha256}/{index}")
async def get_chunk(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await authenticate(request, hub, 0)
    sha, index = _blob_target(request)
    data = await hub.blobs.get_chunk(caller.info.node, sha, index)
    return web.Response(body=data, content_type="application/octet-stream")


@routes.post("/v1/sync/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await authenticate(request, hub, 64 * 1024)
    try:
        beat = Heartbeat.from_wire(decode(caller.body, max_bytes=64 * 1024))
    except ProtocolError as exc:
        raise BadRequest(exc.code, exc.reason) from None
    now = hub.clock()
    skew = await hub.heartbeats.record(caller.info.node, beat, now=now)
    answer: dict[str, object] = {"hub_time": now, "skew_ms": skew}
    if caller.info.status != "revoked":  # the offline lease (SPEC §7.12); a revoked node never gets one
        leases = Leases(hub.store, hub.config.lease_hours)
        lease = await leases.issue(caller.info.node, caller.epoch, hub.hub_key, now)
        answer["lease"] = lease.to_wire()
    return json_response(answer)
