"""Late-dossier control (``/admin/late``): overdue and due-soon dossiers by branch and procedure, the 766
on-time ratios and the satisfaction ratio per branch against the 95% target, and the apology slip.

The apology (``dossier.apology``: a new promised date and its reason; the statutory due date is kept and
the dossier still counts as late) is a signed hub entry in the receiving branch's mailbox, forwarded to
the pickup branch, which prints the letter for the applicant. Viewers see the page; admins send apologies.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from aiohttp import web

from central import dossier_index as index
from central.mailbox import Post
from central.officers import order_after_dossier
from central.web import WEB, PageError, need, render
from protocol import mailbox_log, nfc
from protocol.calendar import from_local
from protocol.dossier import apology_body

__all__ = ["routes"]

routes = web.RouteTableDef()
DUE_SOON_MS = 2 * 24 * 3600 * 1000
OPEN_STATUSES = {2, 4, 5, 6}


@routes.get("/admin/late")
async def late(request: web.Request) -> web.Response:
    session = need(request, "admin", "viewer")
    ctx = request.app[WEB]
    store, now = ctx.hub.store, ctx.hub.clock()
    overdue = await index.overdue(store, now)
    soon = await index.due_soon(store, now, DUE_SOON_MS)
    groups: Counter[tuple[str, str, str]] = Counter()
    for row in overdue:
        groups[(row.receiving_node, row.procedure_name or row.procedure_code or "—", "overdue")] += 1
    for row in soon:
        groups[(row.receiving_node, row.procedure_name or row.procedure_code or "—", "soon")] += 1
    by_group: dict[tuple[str, str], dict[str, int]] = {}
    for (branch, procedure, which), count in groups.items():
        by_group.setdefault((branch, procedure), {"overdue": 0, "soon": 0})[which] = count
    context = {
        "now": now,
        "overdue": overdue,
        "soon": soon,
        "groups": sorted(by_group.items(), key=lambda kv: (-kv[1]["overdue"], -kv[1]["soon"], kv[0])),
        "ratios": await index.branch_ratios(store, now),
        "target": index.SATISFACTION_TARGET,
        "can_act": session.user.role == "admin",
        "done": request.query.get("done") == "apology",
    }
    return render(request, "late.html", context)


@routes.post("/admin/late/{code}/apology")
async def apology(request: web.Request) -> web.StreamResponse:
    session = need(request, "admin")
    ctx = request.app[WEB]
    code = request.match_info["code"]
    row = await index.get(ctx.hub.store, code)
    if row is None or row.ended_at is not None or row.status not in OPEN_STATUSES:
        raise PageError(404, "Không có hồ sơ đang giải quyết với mã này.")
    form = await request.post()
    try:
        day = date.fromisoformat(str(form.get("new_due", "")))
    except ValueError:
        raise PageError(400, "Chọn ngày hẹn trả mới.") from None
    new_due_at = from_local(day, 17, 0)  # end of that day's office hours, Vietnam time
    if new_due_at <= ctx.hub.clock():
        raise PageError(400, "Ngày hẹn trả mới phải sau hôm nay.")
    reason = nfc(str(form.get("reason", ""))).strip()
    if not reason or len(reason) > 2000:
        raise PageError(400, "Cần ghi lý do chậm trả (tối đa 2000 ký tự).")
    approved = nfc(str(form.get("approved_by", ""))).strip()[:200] or None
    body = apology_body(
        dossier=code,
        actor=f"admin:{session.user.username}",
        new_due_at=new_due_at,
        reason=reason,
        approved_by=approved,
    )
    forward = () if row.pickup_node == row.receiving_node else (mailbox_log(row.pickup_node),)
    await order_after_dossier(ctx.hub, code)
    await ctx.hub.mailbox.post([Post(mailbox_log(row.receiving_node), "dossier.apology", body, forward)])
    await ctx.audit(session.user.username, "apology", code)
    await ctx.dossiers.refresh(code)
    raise web.HTTPSeeOther("/admin/late?done=apology")
