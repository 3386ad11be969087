"""``/admin/mfa``: a hub web user enrols a TOTP second factor (central.mfa).

GET shows the state; POST ``action=begin`` makes a pending secret and shows it once (``otpauth://`` URI and
an inline QR code); POST ``action=confirm`` with a first code activates it and shows the ten recovery codes
once. From then on login asks for a code after the password. Lockout: ``motcua-central user mfa-reset``.
"""

from __future__ import annotations

import segno
from aiohttp import web
from markupsafe import Markup

from central.mfa import MfaError
from central.web import WEB, PageError, need, render

routes = web.RouteTableDef()
ROLES = ("admin", "officer", "viewer")


@routes.get("/admin/mfa")
async def mfa_page(request: web.Request) -> web.Response:
    session = need(request, *ROLES)
    ctx = request.app[WEB]
    assert ctx.mfa is not None
    state = await ctx.mfa.status(session.user.username)
    return render(
        request, "mfa.html", {"state": state, "uri": None, "qr": None, "codes": None, "error": None}
    )


@routes.post("/admin/mfa")
async def mfa_post(request: web.Request) -> web.Response:
    session = need(request, *ROLES)
    ctx = request.app[WEB]
    assert ctx.mfa is not None
    form = await request.post()
    name = session.user.username
    if form.get("action") == "begin":
        try:
            uri, _ = await ctx.mfa.begin(name, now_ms=ctx.hub.clock())
        except MfaError as exc:
            raise PageError(409, "Tài khoản đã có xác thực hai bước.") from exc
        svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff", title="Mã TOTP")
        context = {"state": "pending", "uri": uri, "qr": Markup(svg), "codes": None, "error": None}
        return render(request, "mfa.html", context)
    try:
        codes = await ctx.mfa.confirm(name, str(form.get("code", ""))[:32], now_ms=ctx.hub.clock())
    except MfaError:
        context = {"state": "pending", "uri": None, "qr": None, "codes": None, "error": "Mã không đúng."}
        return render(request, "mfa.html", context, status=400)
    return render(
        request, "mfa.html", {"state": "active", "uri": None, "qr": None, "codes": codes, "error": None}
    )
