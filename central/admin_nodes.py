"""Enrollment and keys: the node list with every epoch's key, invite tokens (shown once, with a QR code
for a van's laptop), and revocation behind a confirmation step.

Viewers see the list; admins invite and revoke. A revocation refuses the node's key from now on, keeps
what the hub holds up to the cut (by default all of it) and quarantines the rest for review; it is
announced to every node by a signed ``hub.revocation`` entry in the broadcast log.
"""

from __future__ import annotations

import segno
from aiohttp import web
from markupsafe import Markup

from central.mailbox import BROADCAST, Post
from central.web import WEB, PageError, need, render
from protocol import fingerprint, nfc
from protocol.enrollment import NODE_KINDS
from protocol.entry import NODE_ID_RE

__all__ = ["invite_qr", "routes"]

routes = web.RouteTableDef()


def invite_qr(token: str) -> Markup:
    """The token as an inline SVG QR code (segno; no image file, no network)."""
    svg = segno.make(token, error="m").svg_inline(scale=3, dark="#000", light="#fff", title="Mã ghi danh")
    return Markup(svg)


@routes.get("/admin/nodes")
async def nodes(request: web.Request) -> web.Response:
    session = need(request, "admin", "viewer")
    ctx = request.app[WEB]
    registry = ctx.hub.registry
    listing = []
    for info in await registry.nodes():
        epochs = [
            {"epoch": e, "fp": fingerprint(k), "sealed": s, "revoked_after": r}
            for e, k, s, r in await registry.epochs(info.node)
        ]
        listing.append({"info": info, "epochs": epochs})
    invites = await ctx.hub.store.fetchall(
        "SELECT node, kind, name, created_ms, expires_ms FROM invites "
        "WHERE used_ms IS NULL AND expires_ms > ? ORDER BY created_ms DESC LIMIT 50",
        (ctx.hub.clock(),),
    )
    context = {
        "nodes": listing,
        "invites": invites,
        "kinds": NODE_KINDS,
        "can_act": session.user.role == "admin",
    }
    return render(request, "nodes.html", context)


@routes.post("/admin/nodes/invite")
async def invite(request: web.Request) -> web.Response:
    session = need(request, "admin")
    ctx = request.app[WEB]
    form = await request.post()
    node = str(form.get("node", "")).strip().upper()
    kind = str(form.get("kind", ""))
    name = nfc(str(form.get("name", ""))).strip()[:200]
    if not NODE_ID_RE.fullmatch(node):
        raise PageError(400, "Mã nút gồm 2–32 ký tự A–Z, 0–9 và '-', bắt đầu bằng chữ hoặc số.")
    if kind not in NODE_KINDS or not name:
        raise PageError(400, "Chọn loại nút và nhập tên.")
    existing = await ctx.hub.registry.node(node)
    if existing is not None and existing.status == "revoked":
        raise PageError(409, f"Nút {node} đã bị thu hồi; dùng mã nút mới.")
    hub = ctx.hub
    token = await hub.registry.invite(
        node,
        kind,
        name,
        hub_url=ctx.config.public_url,
        hub_key=hub.public_key,
        now=hub.clock(),
        ttl_ms=ctx.config.invite_ttl_h * 3600 * 1000,
    )
    await ctx.audit(session.user.username, "invite", node)
    text = token.encode()
    context = {
        "node": node,
        "name": name,
        "token": text,
        "qr": invite_qr(text),
        "fp": token.fp,
        "reenroll": existing is not None and existing.epoch >= 1,
        "ttl_h": ctx.config.invite_ttl_h,
    }
    return render(request, "invite.html", context)


@routes.get("/admin/nodes/{node}/revoke")
async def revoke_page(request: web.Request) -> web.Response:
    need(request, "admin")
    ctx = request.app[WEB]
    info = await ctx.hub.registry.node(request.match_info["node"])
    if info is None or info.epoch < 1 or info.status == "revoked":
        raise PageError(404, "Không có nút đang hoạt động với mã này.")
    head = await ctx.hub.store.head(info.node, info.epoch)
    return render(request, "revoke.html", {"node": info, "held": head.seq if head else 0})


@routes.post("/admin/nodes/{node}/revoke")
async def revoke(request: web.Request) -> web.StreamResponse:
    session = need(request, "admin")
    ctx = request.app[WEB]
    node = request.match_info["node"]
    form = await request.post()
    if form.get("confirm") != node:
        raise PageError(400, "Gõ đúng mã nút để xác nhận thu hồi.")
    reason = nfc(str(form.get("reason", ""))).strip()
    if not reason or len(reason) > 500:
        raise PageError(400, "Cần ghi lý do thu hồi (tối đa 500 ký tự).")
    cut_text = str(form.get("after", "")).strip()
    if cut_text and not cut_text.isdigit():
        raise PageError(400, "Điểm cắt là một số thứ tự (để trống: giữ mọi bản ghi hub đang có).")
    info = await ctx.hub.registry.node(node)
    if info is None or info.status == "revoked" or info.epoch < 1:
        raise PageError(404, "Không có nút đang hoạt động với mã này.")
    hub = ctx.hub
    epoch, cut = await hub.registry.revoke(
        node, after=int(cut_text) if cut_text else None, reason=reason, now=hub.clock()
    )
    body = {"node": node, "epoch": epoch, "after_seq": cut, "reason": reason}
    await hub.mailbox.post([Post(BROADCAST, "hub.revocation", body)])
    await ctx.audit(session.user.username, "revoke", f"{node}/{epoch} after {cut}")
    raise web.HTTPSeeOther(f"/admin/nodes/{node}")
