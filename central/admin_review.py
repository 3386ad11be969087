"""Review queues: quarantined entries, dossier conflicts, and releasing a node quarantined after a fork.

Every decision is a signed hub entry, and the change it makes is written by ``decision_hook`` in the same
transaction as the entry (a mailbox hook), so the tables never say more or less than the signed log:

- ``hub.quarantine_decision`` (node's mailbox): ``accepted`` lets an entry held after a revocation cut into
  the fold, ``rejected`` keeps it out; a body-invalid entry stays a conflict of its dossier either way.
  A second decision on the same entry is refused.
- ``dossier.conflict_resolved`` (mailbox of the receiving node, forwarded to the pickup node and to the
  node whose entry conflicts): ``dismiss`` or ``apply``, optionally setting the state.
- ``hub.node_released`` (node's mailbox): pushes are accepted again and the node's alarms are closed.

Viewers see the queues; only admins decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite
from aiohttp import web

from central.errors import Conflict, NotFound
from central.mailbox import Post
from central.officers import order_after_dossier
from central.store import Extra, SqliteStore
from central.web import WEB, PageError, need, render
from protocol import Entry, is_hub_log, mailbox_log, nfc
from protocol.dossier import DossierState, EventRecord, InternalState, conflict_resolved_body, fold

__all__ = ["decision_hook", "fold_dossier", "routes"]

routes = web.RouteTableDef()
DECISIONS = {"accepted": "Chấp nhận vào hồ sơ", "rejected": "Giữ loại trừ"}


def decision_hook(
    log: str, epoch: int, entries: Sequence[Entry], _quarantined: frozenset[int]
) -> Extra | None:
    """Mailbox hook: apply quarantine decisions and node releases in the transaction of their entry."""
    found = [e for e in entries if e.kind in ("hub.quarantine_decision", "hub.node_released")]
    if not found:
        return None

    async def extra(db: aiosqlite.Connection) -> None:
        for entry in found:
            b = entry.body
            if entry.kind == "hub.quarantine_decision":
                cur = await db.execute(
                    "UPDATE quarantine SET decision = ?, decided_ms = ? "
                    "WHERE log = ? AND epoch = ? AND seq = ? AND hash = ? AND decision IS NULL",
                    (b["decision"], entry.time[0], b["log"], b["epoch"], b["seq"], b["hash"]),
                )
                if cur.rowcount != 1:
                    raise Conflict("already_decided", "this entry is not awaiting a decision")
            else:
                cur = await db.execute(
                    "UPDATE nodes SET status = 'active', status_reason = '' "
                    "WHERE node = ? AND status = 'quarantined'",
                    (b["node"],),
                )
                if cur.rowcount != 1:
                    raise NotFound("not_found", f"{b['node']} is not quarantined")
                await db.execute(
                    "UPDATE alarms SET cleared_ms = ? WHERE node = ? AND cleared_ms IS NULL",
                    (entry.time[0], b["node"]),
                )

    return extra


async def fold_dossier(store: SqliteStore, code: str) -> DossierState | None:
    """The dossier as the hub folds it (entries held after a revocation cut only once accepted); read only."""
    rows = await store.fetchall(
        "SELECT e.log, e.epoch, e.seq, e.raw FROM entries e WHERE e.dossier = ? AND NOT EXISTS "
        "(SELECT 1 FROM quarantine q WHERE q.log = e.log AND q.epoch = e.epoch AND q.seq = e.seq "
        "AND q.code = 'revoked' AND q.decision IS NOT 'accepted')",
        (code,),
    )
    records = []
    for log, epoch, seq, raw in rows:
        entry = Entry.parse(bytes(raw))
        records.append(EventRecord(log, epoch, seq, entry.time, entry.kind, entry.body, entry.hash))
    return fold(records).dossiers.get(code)


async def _conflicts(store: SqliteStore) -> list[dict[str, Any]]:
    codes = [
        r[0]
        for r in await store.fetchall("SELECT DISTINCT code FROM dossier_conflicts ORDER BY code LIMIT 100")
    ]
    found = []
    for code in codes:
        state = await fold_dossier(store, code)
        if state is None:
            continue
        applied = {t.hash: t for t in state.timeline}
        for c in state.open_conflicts:
            before = applied.get(c.after) if c.after else None
            found.append({"code": code, "conflict": c, "before": before, "current": state.state})
    return found


@routes.get("/admin/review")
async def review(request: web.Request) -> web.Response:
    session = need(request, "admin", "viewer")
    ctx = request.app[WEB]
    store = ctx.hub.store
    quarantined = await store.fetchall(
        "SELECT q.log, q.epoch, q.seq, q.hash, q.code, q.reason, q.created_ms, e.kind, e.dossier, e.raw "
        "FROM quarantine q JOIN entries e ON e.log = q.log AND e.epoch = q.epoch AND e.seq = q.seq "
        "WHERE q.decision IS NULL ORDER BY q.created_ms, q.log, q.seq LIMIT 200"
    )
    from central.admin_pages import pretty_entry

    items = [
        {
            "log": r[0],
            "epoch": r[1],
            "seq": r[2],
            "hash": r[3],
            "code": r[4],
            "reason": r[5],
            "created": r[6],
            "kind": r[7],
            "dossier": r[8],
            "entry": pretty_entry(bytes(r[9])),
        }
        for r in quarantined
    ]
    context = {
        "items": items,
        "conflicts": await _conflicts(store),
        "decisions": DECISIONS,
        "states": [(s.value, s.label) for s in InternalState],
        "can_act": session.user.role == "admin",
    }
    return render(request, "review.html", context)


def _note(form: Any, name: str = "note") -> str:
    text = nfc(str(form.get(name, ""))).strip()
    if not text:
        raise PageError(400, "Cần ghi lý do cho quyết định.")
    if len(text) > 2000:
        raise PageError(400, "Lý do dài quá 2000 ký tự.")
    return text


@routes.post("/admin/review/quarantine/{log}/{epoch:[0-9]+}/{seq:[0-9]+}")
async def decide(request: web.Request) -> web.StreamResponse:
    session = need(request, "admin")
    ctx = request.app[WEB]
    log, epoch, seq = (
        request.match_info["log"],
        int(request.match_info["epoch"]),
        int(request.match_info["seq"]),
    )
    form = await request.post()
    decision = str(form.get("decision", ""))
    if decision not in DECISIONS:
        raise PageError(400, "Chọn chấp nhận hoặc giữ loại trừ.")
    note = _note(form)
    row = await ctx.hub.store.fetchone(
        "SELECT q.hash, e.dossier FROM quarantine q JOIN entries e ON e.log = q.log AND e.epoch = q.epoch "
        "AND e.seq = q.seq WHERE q.log = ? AND q.epoch = ? AND q.seq = ? AND q.decision IS NULL",
        (log, epoch, seq),
    )
    if row is None or is_hub_log(log):
        raise PageError(404, "Bản ghi này không còn chờ xem xét.")
    body = {"log": log, "epoch": epoch, "seq": seq, "hash": row[0], "decision": decision, "note": note}
    await ctx.hub.mailbox.post([Post(mailbox_log(log), "hub.quarantine_decision", body)])
    await ctx.audit(session.user.username, f"quarantine_{decision}", f"{log}/{epoch}:{seq}")
    if row[1] is not None:
        await ctx.dossiers.refresh(row[1])
    raise web.HTTPSeeOther("/admin/review?done=quarantine")


@routes.post("/admin/review/conflicts/{code}/{hash:[0-9a-f]{64}}")
async def resolve(request: web.Request) -> web.StreamResponse:
    session = need(request, "admin")
    ctx = request.app[WEB]
    code, target = request.match_info["code"], request.match_info["hash"]
    form = await request.post()
    decision = str(form.get("decision", ""))
    if decision not in ("dismiss", "apply"):
        raise PageError(400, "Chọn bỏ qua hoặc áp dụng sự kiện.")
    state = str(form.get("state", "")) or None
    if state is not None and state not in {s.value for s in InternalState}:
        raise PageError(400, "Trạng thái không hợp lệ.")
    folded = await fold_dossier(ctx.hub.store, code)
    conflict = next((c for c in folded.open_conflicts if c.record.hash == target), None) if folded else None
    routing = await ctx.dossiers.routing(code)
    if conflict is None or routing is None:
        raise PageError(404, "Xung đột này không còn mở.")
    body = conflict_resolved_body(
        dossier=code,
        actor=f"admin:{session.user.username}",
        conflict=target,
        decision=decision,  # type: ignore[arg-type]
        note=_note(form),
        state=state,
    )
    involved = {mailbox_log(routing.pickup_node)}
    if not is_hub_log(conflict.record.log):
        involved.add(mailbox_log(conflict.record.log))
    target_box = mailbox_log(routing.receiving_node)
    forward = tuple(sorted(involved - {target_box}))
    await order_after_dossier(ctx.hub, code)
    await ctx.hub.mailbox.post([Post(target_box, "dossier.conflict_resolved", body, forward)])
    await ctx.audit(session.user.username, f"conflict_{decision}", f"{code} {target[:16]}")
    await ctx.dossiers.refresh(code)
    raise web.HTTPSeeOther("/admin/review?done=conflict")


@routes.get("/admin/nodes/{node}/release")
async def release_page(request: web.Request) -> web.Response:
    need(request, "admin")
    node = await request.app[WEB].hub.registry.node(request.match_info["node"])
    if node is None or node.status != "quarantined":
        raise PageError(404, "Nút này không bị cách ly.")
    return render(request, "release.html", {"node": node})


@routes.post("/admin/nodes/{node}/release")
async def release(request: web.Request) -> web.StreamResponse:
    session = need(request, "admin")
    ctx = request.app[WEB]
    node = request.match_info["node"]
    form = await request.post()
    if form.get("confirm") != node:
        raise PageError(400, "Gõ đúng mã nút để xác nhận.")
    info = await ctx.hub.registry.node(node)
    if info is None or info.status != "quarantined":
        raise PageError(404, "Nút này không bị cách ly.")
    body = {"node": node, "reason": _note(form, "reason")}
    await ctx.hub.mailbox.post([Post(mailbox_log(node), "hub.node_released", body)])
    await ctx.audit(session.user.username, "node_released", node)
    raise web.HTTPSeeOther(f"/admin/nodes/{node}")
