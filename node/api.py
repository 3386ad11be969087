"""The local JSON API under ``/api/v1/`` (bearer tokens), plus ``/healthz`` and ``/readyz``.

Every write answers 201 only after its transaction committed. Invalid input is 422 with ``fields``
(dotted paths) and nothing written; a state that does not allow the action is 409. The description is
``GET /api/v1/openapi.json`` (``node.openapi``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from node import actions, dossiers
from node.errors import DUMPS, InvalidInput
from node.health import WARNINGS, readiness_checks
from node.openapi import openapi
from node.sync_service import dossier_hub, sync_banner
from node.syncstate import sync_summary
from node.web.keys import NODE
from node.web.security import principal
from protocol.calendar import local_date

__all__ = ["routes"]

routes = web.RouteTableDef()
MAX_BODY = 256 * 1024


def _now() -> int:
    return time.time_ns() // 1_000_000


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise InvalidInput({"body": f"Nội dung yêu cầu quá lớn (tối đa {MAX_BODY // 1024} KiB)."})
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"), parse_float=_no_float) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise InvalidInput({"body": f"Nội dung không phải JSON UTF-8 hợp lệ: {exc}"}) from None
    if not isinstance(data, dict):
        raise InvalidInput({"body": "Nội dung phải là một đối tượng JSON."})
    return data


def _no_float(text: str) -> float:
    raise ValueError(f"số thực {text} không được dùng (số tiền là số nguyên đồng)")


def _key(request: web.Request) -> str | None:
    return request.headers.get("Idempotency-Key") or None


@routes.get("/api/v1/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi(), dumps=DUMPS)


@routes.get("/api/v1/procedures")
async def procedures(request: web.Request) -> web.Response:
    node = request.app[NODE]
    today = local_date(_now())
    catalog = node.desk.catalog
    listed = []
    for code in catalog.codes:
        p = catalog.lookup(code, today)
        listed.append(
            {
                "code": p.code,
                "version": p.version,
                "name": p.name,
                "agency": p.agency,
                "time": {"value": p.time.value, "unit": p.time.unit.value},
                "documents": [
                    {"name": d.name, "form": d.form, "count": d.count, "required": d.required}
                    for d in p.documents
                ],
            }
        )
    return web.json_response({"catalog": catalog.version, "procedures": listed}, dumps=DUMPS)


@routes.post("/api/v1/due-date")
async def due_date(request: web.Request) -> web.Response:
    data = await _json_body(request)
    code = data.get("procedure")
    if not isinstance(code, str):
        raise InvalidInput({"procedure": "Vui lòng nhập mã thủ tục."})
    preview = request.app[NODE].desk.preview(code)
    return web.json_response(
        {
            "procedure": preview.procedure.code,
            "version": preview.procedure.version,
            "received_at": preview.received_at,
            "due_at": preview.due_at,
        },
        dumps=DUMPS,
    )


@routes.post("/api/v1/dossiers")
async def create_dossier(request: web.Request) -> web.Response:
    who = principal(request)
    data = await _json_body(request)
    result = await request.app[NODE].desk.receive(data, actor=who.actor, idempotency_key=_key(request))
    return web.json_response(result.to_json(), status=200 if result.replayed else 201, dumps=DUMPS)


@routes.post("/api/v1/refusals")
async def refuse_dossier(request: web.Request) -> web.Response:
    who = principal(request)
    data = await _json_body(request)
    result = await request.app[NODE].desk.refuse(data, actor=who.actor, idempotency_key=_key(request))
    return web.json_response(result.to_json(), status=200 if result.replayed else 201, dumps=DUMPS)


@routes.get("/api/v1/dossiers")
async def list_dossiers(request: web.Request) -> web.Response:
    node = request.app[NODE]
    query = request.query.get("q", "")
    if len(query) > 200:
        raise InvalidInput({"q": "Chuỗi tìm kiếm dài tối đa 200 ký tự."})
    if query.strip():
        rows = await dossiers.search(node.store, query)
    else:
        now = _now()
        rows = (
            await dossiers.today(node.store, now, local_date(now), node.config.due_soon_hours * 3_600_000)
        ).received
    return web.json_response({"dossiers": [r.to_json() for r in rows]}, dumps=DUMPS)


@routes.get("/api/v1/dossiers/{code}")
async def get_dossier(request: web.Request) -> web.Response:
    node = request.app[NODE]
    who = principal(request)
    found = await dossiers.detail(
        node.store, node.config.node_id, request.match_info["code"], actor=who.actor, now=_now()
    )
    body = found.to_json()
    async with node.store.read() as db:
        hub = await dossier_hub(db, node.config.node_id, found.code)
    body["hub"] = None if hub is None else hub.to_json()
    body["actions"] = [
        a.name for a in actions.available_actions(found.state.value, supervisor=who.supervisor)
    ]
    return web.json_response(body, dumps=DUMPS)


@routes.post("/api/v1/dossiers/{code}/events")
async def dossier_event(request: web.Request) -> web.Response:
    who = principal(request)
    data = await _json_body(request)
    name = data.pop("action", None)
    if not isinstance(name, str) or name not in actions.ACTIONS:
        raise InvalidInput({"action": "Thao tác phải là một trong: " + ", ".join(actions.ACTIONS) + "."})
    result = await actions.perform(
        request.app[NODE].desk,
        request.match_info["code"],
        name,
        data,
        actor=who.actor,
        supervisor=who.supervisor,
        idempotency_key=_key(request),
    )
    return web.json_response(result.to_json(), status=200 if result.replayed else 201, dumps=DUMPS)


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    node = request.app[NODE]
    async with node.store.read() as db:
        head = await node.journal.head(db)
        summary = await sync_summary(db, node.config.node_id)
        banner = await sync_banner(db, node.config.node_id, node.config.hub_url)
    return web.json_response(
        {
            "node": node.config.node_id,
            "name": node.config.name,
            "head": {"log": head.log, "epoch": head.epoch, "seq": head.seq, "hash": head.hash},
            "unsent": summary.unsent,
            "last_ack": summary.last_ack_ms,
            "offline_since": None if summary.synced else summary.since_ms,
            "sync": banner.to_json(),
        },
        dumps=DUMPS,
    )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer (no I/O), as on the hub."""
    return web.json_response({"status": "ok"}, dumps=DUMPS)


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when the database is open and takes a write, every migration is applied and the data
    directory has free space (as on the hub): 200 ``{"status": "ready", "failed": [], "checks"}``, else 503
    ``{"status": "not_ready", "failed": [check...], "checks", "problems": [message...]}``."""
    node = request.app.get(NODE)
    if node is None:
        return web.json_response(
            {"status": "not_ready", "failed": ["starting"], "checks": {}, "problems": ["starting"]},
            status=503,
            dumps=DUMPS,
        )
    checks = await readiness_checks(node)
    failed = sorted(name for name, result in checks.items() if result != "ok" and name not in WARNINGS)
    body: dict[str, Any] = {
        "status": "ready" if not failed else "not_ready",
        "failed": failed,
        "checks": checks,
    }
    if failed:
        body["problems"] = [checks[name] for name in failed]
        return web.json_response(body, status=503, dumps=DUMPS, headers={"Cache-Control": "no-store"})
    return web.json_response(body, dumps=DUMPS, headers={"Cache-Control": "no-store"})
