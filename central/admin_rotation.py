"""Node key rotations awaiting the hub admins' approval (SPEC §7.11): the list, and one request's page where
an approver checks the new key's fingerprint with the branch, re-enters their password (step-up) and
approves. The rotation is accepted when ``rotation_threshold`` distinct admins approved it (central.
noderotation); every approval is recorded (who, when, node, fingerprint) and written to the access log.
"""

from __future__ import annotations

from aiohttp import web

from central.errors import CentralError
from central.noderotation import NodeRotations, RotationView
from central.web import WEB, PageError, need, render
from protocol.entry import HASH_RE

__all__ = ["routes"]

routes = web.RouteTableDef()

_REFUSALS = {
    "node_revoked": "Nút đã bị thu hồi: không thể xoay khóa bằng khóa cũ (cần ghi danh lại bằng mã mới).",
    "node_quarantined": "Nút đang bị cách ly: gỡ cách ly trước.",
    "epoch_sealed": "Nút đã sang kỷ nguyên khác: yêu cầu này không còn hiệu lực.",
    "head_mismatch": "Trung tâm giữ nhật ký khác với điểm kết thúc trong yêu cầu: nút phải gửi yêu cầu mới.",
    "rotation_closed": "Yêu cầu này đã được quyết định hoặc đã hết hạn.",
    "not_an_approver": "Tài khoản của bạn không nằm trong danh sách người duyệt xoay khóa.",
    "fingerprint_mismatch": "Dấu vân tay không khớp với khóa mới trong yêu cầu.",
}


@routes.get("/admin/rotations")
async def rotations(request: web.Request) -> web.Response:
    session = need(request, "admin", "viewer")
    ctx = request.app[WEB]
    domain = NodeRotations(ctx.hub)
    context = {
        "requests": await domain.listing(),
        "threshold": domain.threshold,
        "can_approve": await domain.may_approve(session.user.username),
    }
    return render(request, "rotations.html", context)


async def _view(request: web.Request) -> tuple[NodeRotations, RotationView]:
    request_id = request.match_info["id"]
    domain = NodeRotations(request.app[WEB].hub)
    view = await domain.get(request_id) if HASH_RE.fullmatch(request_id) else None
    if view is None:
        raise PageError(404, "Không có yêu cầu xoay khóa này.")
    return domain, view


@routes.get("/admin/rotations/{id}")
async def rotation_page(request: web.Request) -> web.Response:
    session = need(request, "admin")
    domain, view = await _view(request)
    context = {
        "r": view,
        "threshold": domain.threshold,
        "mine": any(a.admin == session.user.username for a in view.approvals),
        "can_approve": await domain.may_approve(session.user.username),
    }
    return render(request, "rotation.html", context)


@routes.post("/admin/rotations/{id}/approve")
async def approve(request: web.Request) -> web.StreamResponse:
    session = need(request, "admin")
    ctx = request.app[WEB]
    domain, view = await _view(request)
    form = await request.post()
    if form.get("confirm") != view.node:
        raise PageError(400, "Gõ đúng mã nút để xác nhận duyệt.")
    seen = str(form.get("fingerprint", "")).strip().lower()
    if not seen:
        raise PageError(400, "Nhập dấu vân tay khóa mới mà chi nhánh đọc cho bạn.")
    username = session.user.username
    ip = request.remote or "?"
    wait = await ctx.throttle.retry_after(username, ip)
    if wait:
        raise PageError(429, f"Nhập sai mật khẩu quá nhiều lần. Thử lại sau {wait} giây.", retry_after=wait)
    if await ctx.users.authenticate(username, str(form.get("password", ""))[:256]) is None:
        await ctx.throttle.failed(username, ip)
        raise PageError(403, "Mật khẩu không đúng: nhập lại mật khẩu của bạn để duyệt.")
    await ctx.throttle.succeeded(username)
    try:
        after, added = await domain.approve(view.id, username, fingerprint_seen=seen)
    except CentralError as exc:
        message = _REFUSALS.get(exc.code, "Không duyệt được.")
        raise PageError(
            409 if exc.status == 409 else exc.status, f"{message} ({exc.code}: {exc.reason})"
        ) from None
    what = f"{after.node} {after.fingerprint} {after.status}"
    await ctx.audit(username, "approve_rotation" if added else "approve_rotation_again", what)
    raise web.HTTPSeeOther(f"/admin/rotations/{after.id}")
