"""Public tracking page (``/tra-cuu``): a citizen enters the dossier code and the lookup code printed on the
receipt (or scans the receipt's QR: ``/tra-cuu?ma=<code>&tra_cuu=<lookup code>``) and sees the national
status, the timeline, the due date and where to collect the result.

No personal data beyond the applicant's initials. A wrong code and a wrong lookup code get the same 404
page, and lookups are limited per client IP (the same limiter as the JSON API), so codes cannot be
enumerated. The page is in Vietnamese and fits a 390 px wide phone.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from central import dossier_index as index
from central.dossiers import DOSSIERS, TRACK_LIMIT
from central.errors import NotFound
from central.web import WEB, render

__all__ = ["routes"]

routes = web.RouteTableDef()
NOT_FOUND = "Không tìm thấy hồ sơ với mã hồ sơ và mã tra cứu này. Kiểm tra lại hai mã in trên giấy tiếp nhận."


async def _lookup(request: web.Request, code: str, key: str) -> web.Response:
    request.app[TRACK_LIMIT].check(request.remote or "?")
    code = code.strip().upper()[:40]
    key = key.strip().upper().replace("-", "").replace(" ", "")[:32]
    context: dict[str, Any] = {"code": code, "error": None, "view": None}
    try:
        view = await request.app[DOSSIERS].track(code, key)
    except NotFound:
        context["error"] = NOT_FOUND
        return render(request, "track.html", context, status=404)
    ctx = request.app[WEB]
    row = await index.get(ctx.hub.store, code)
    pickup = await ctx.hub.registry.node(row.pickup_node) if row is not None else None
    context.update(
        view=view,
        masked=row.applicant_masked if row is not None else "",
        procedure=(row.procedure_name or row.procedure_code) if row is not None else None,
        pickup=pickup.name if pickup is not None else (row.pickup_node if row is not None else None),
    )
    return render(request, "track.html", context)


@routes.get("/tra-cuu")
async def track_get(request: web.Request) -> web.Response:
    code, key = request.query.get("ma", ""), request.query.get("tra_cuu", "")
    if code and key:
        return await _lookup(request, code, key)
    return render(request, "track.html", {"code": code[:40], "error": None, "view": None})


@routes.post("/tra-cuu")
async def track_post(request: web.Request) -> web.Response:
    form = await request.post()
    return await _lookup(request, str(form.get("ma", "")), str(form.get("tra_cuu", "")))
