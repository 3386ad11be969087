"""The sync-health dashboard (``/admin``, its auto-refreshed table) and the page of one node.

Read only: admins and viewers. The table is ``central.nodehealth``'s assessment of every node, most
severe first, filtered by kind; htmx fetches the fragment every 5 s and swaps it in place. The node page
draws 7 days of heartbeat history (backlog, lag, contacts) with ``central.charts``, lists the node's
events, and shows each alarm with its evidence (a fork: the stored and the offered entry side by side).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from markupsafe import Markup

from central.charts import Point, bar_chart, line_chart
from central.leases import MAX_HOURS, Leases
from central.nodehealth import KIND_LABELS, assess, read_facts
from central.web import WEB, PageError, WebContext, need, render
from protocol import Entry, Heartbeat, decode, fingerprint

__all__ = ["pretty_entry", "routes"]

routes = web.RouteTableDef()
DAY_MS = 24 * 3600 * 1000
HISTORY_MS = 7 * DAY_MS
HOUR_MS = 3600 * 1000
VIEW = ("admin", "viewer")


def _kind_filter(request: web.Request) -> str | None:
    kind = request.query.get("kind")
    return kind if kind in KIND_LABELS else None


async def _table_context(request: web.Request) -> dict[str, Any]:
    ctx = request.app[WEB]
    kind = _kind_filter(request)
    rows = await ctx.health()
    shown = [h for h in rows if kind is None or h.facts.kind == kind]
    counts = {level: sum(1 for h in rows if h.severity == level) for level in range(5)}
    now = ctx.hub.clock()
    leases = await Leases(ctx.hub.store, ctx.config.lease_hours).views(now)
    return {"rows": shown, "kind": kind, "kinds": KIND_LABELS, "now": now, "counts": counts, "leases": leases}


@routes.get("/admin")
async def dashboard(request: web.Request) -> web.Response:
    need(request, *VIEW)
    return render(request, "admin.html", await _table_context(request))


@routes.get("/admin/table")
async def table(request: web.Request) -> web.Response:
    need(request, *VIEW)
    return render(request, "_nodes_table.html", await _table_context(request))


def pretty_entry(raw: bytes) -> dict[str, Any]:
    """An entry for display: its hash, position, kind and pretty-printed JSON."""
    entry = Entry.parse(raw)
    text = json.dumps(decode(raw), ensure_ascii=False, indent=2, sort_keys=True)
    return {"hash": entry.hash, "seq": entry.seq, "kind": entry.kind, "time": entry.time[0], "json": text}


@dataclass(frozen=True, slots=True)
class Event:
    at: int
    label: str
    detail: str


async def _history(ctx: WebContext, node: str, now: int) -> dict[str, Markup]:
    start = now - HISTORY_MS
    rows = await ctx.hub.store.fetchall(
        "SELECT received_ms, body FROM heartbeats WHERE node = ? AND received_ms >= ? ORDER BY received_ms "
        "LIMIT 5000",
        (node, start),
    )
    backlog: list[Point] = []
    lag: list[Point] = []
    contacts: dict[int, int] = {}
    previous = None
    gap = ctx.limits.online_window_ms
    for received, body in rows:
        beat = Heartbeat.from_wire(decode(bytes(body)))
        if previous is not None and received - previous > gap:  # silence: break the lines
            backlog.append(Point(previous + gap, None))
            lag.append(Point(previous + gap, None))
        backlog.append(Point(received, float(beat.unacked_entries)))
        waited = 0 if beat.oldest_unacked_ms is None else max(0, received - beat.oldest_unacked_ms)
        lag.append(Point(received, waited / 60000))
        bucket = received - received % HOUR_MS
        contacts[bucket] = contacts.get(bucket, 0) + 1
        previous = received
    window = {"start_ms": start, "end_ms": now}
    return {
        "backlog": Markup(line_chart(backlog, title="Bản ghi chưa xác nhận", unit="bản ghi", **window)),
        "lag": Markup(line_chart(lag, title="Độ trễ (bản ghi cũ nhất chưa xác nhận)", unit="phút", **window)),
        "contacts": Markup(
            bar_chart(sorted(contacts.items()), title="Số lần liên lạc mỗi giờ", bucket_ms=HOUR_MS, **window)
        ),
    }


async def _events(ctx: WebContext, node: str) -> list[Event]:
    store = ctx.hub.store
    events: list[Event] = []
    for at, first, last, count in await store.fetchall(
        "SELECT received_ms, MIN(seq), MAX(seq), COUNT(*) FROM entries WHERE log = ? "
        "GROUP BY epoch, received_ms ORDER BY received_ms DESC LIMIT 30",
        (node,),
    ):
        events.append(Event(at, "Nhận bản ghi", f"{count} bản ghi, số {first}–{last}"))
    for at, seq, code, reason, decision in await store.fetchall(
        "SELECT created_ms, seq, code, reason, decision FROM quarantine WHERE log = ? "
        "ORDER BY created_ms DESC LIMIT 30",
        (node,),
    ):
        state = {"accepted": "đã chấp nhận", "rejected": "giữ loại trừ"}.get(decision or "", "chờ xem xét")
        events.append(Event(at, "Cách ly bản ghi", f"số {seq}: {code} — {reason} ({state})"))
    for at, kind, message, cleared in await store.fetchall(
        "SELECT created_ms, kind, message, cleared_ms FROM alarms WHERE node = ? ORDER BY id DESC LIMIT 30",
        (node,),
    ):
        events.append(Event(at, f"Báo động {kind}", message + (" (đã đóng)" if cleared else "")))
    for epoch, enrolled, sealed in await store.fetchall(
        "SELECT epoch, enrolled_ms, sealed_ms FROM node_epochs WHERE node = ?", (node,)
    ):
        events.append(Event(enrolled, "Ghi danh", f"kỷ nguyên {epoch}"))
        if sealed is not None:
            events.append(Event(sealed, "Niêm phong kỷ nguyên", f"kỷ nguyên {epoch}"))
    for refusal in ctx.monitor.refusals.recent(node, 0):
        events.append(Event(refusal.at_ms, "Từ chối yêu cầu", f"{refusal.op}: {refusal.code}"))
    events.sort(key=lambda e: -e.at)
    return events[:80]


async def _forks(ctx: WebContext, node: str) -> list[dict[str, Any]]:
    store = ctx.hub.store
    evidence = []
    for log, epoch, seq, offered_raw, detected in await store.fetchall(
        "SELECT log, epoch, seq, offered_raw, detected_ms FROM forks WHERE log = ? ORDER BY id DESC LIMIT 10",
        (node,),
    ):
        stored = await store.raw_entry(log, epoch, seq)
        evidence.append(
            {
                "position": f"{log}/{epoch}:{seq}",
                "detected": detected,
                "stored": pretty_entry(stored) if stored is not None else None,
                "offered": pretty_entry(bytes(offered_raw)),
            }
        )
    return evidence


@routes.post("/admin/nodes/{node}/lease")
async def set_lease(request: web.Request) -> web.StreamResponse:
    """An admin sets the node's offline lease (hours; empty = the hub default). Applies at its next sync."""
    session = need(request, "admin")
    ctx = request.app[WEB]
    node = request.match_info["node"]
    if await ctx.hub.registry.node(node) is None:
        raise PageError(404, f"Không có nút {node}.")
    form = await request.post()
    text = str(form.get("hours", "")).strip()
    if text and (not text.isdigit() or not 1 <= int(text) <= MAX_HOURS):
        raise PageError(
            400, f"Thời hạn giấy phép ngoại tuyến là số giờ từ 1 đến {MAX_HOURS} (để trống: mặc định)."
        )
    await Leases(ctx.hub.store, ctx.config.lease_hours).set_hours(node, int(text) if text else None)
    await ctx.audit(session.user.username, "lease", f"{node} {text or 'default'} h")
    raise web.HTTPSeeOther(f"/admin/nodes/{node}")


@routes.get("/admin/nodes/{node}")
async def node_page(request: web.Request) -> web.Response:
    session = need(request, *VIEW)
    ctx = request.app[WEB]
    node = request.match_info["node"]
    now = ctx.hub.clock()
    facts = await read_facts(ctx.hub.store, ctx.hub.registry, node, ctx.monitor.refusals, now)
    if facts is None:
        raise PageError(404, f"Không có nút {node}.")
    health = assess(facts, now, ctx.limits)
    epochs = [
        {"epoch": e, "key": k, "fp": fingerprint(k), "sealed": s, "revoked_after": r}
        for e, k, s, r in await ctx.hub.registry.epochs(node)
    ]
    quarantined = await ctx.hub.store.fetchall(
        "SELECT epoch, seq, code, reason, created_ms FROM quarantine WHERE log = ? AND decision IS NULL "
        "ORDER BY epoch, seq LIMIT 50",
        (node,),
    )
    alarms = await ctx.hub.store.fetchall(
        "SELECT kind, message, created_ms, cleared_ms FROM alarms WHERE node = ? ORDER BY id DESC LIMIT 50",
        (node,),
    )
    context = {
        "h": health,
        "now": now,
        "charts": await _history(ctx, node, now),
        "events": await _events(ctx, node),
        "forks": await _forks(ctx, node),
        "epochs": epochs,
        "lease": (await Leases(ctx.hub.store, ctx.config.lease_hours).views(now)).get(node),
        "quarantined": quarantined,
        "alarms": alarms,
        "can_act": session.user.role == "admin",
    }
    return render(request, "node.html", context)
