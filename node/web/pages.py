"""Staff pages: login/logout, today, new dossier, dossier detail and its actions, search.

Handlers parse the request, call the domain (``Desk``, ``actions``, ``dossiers``) and render; they hold
no rules of their own. Every POST answers with a redirect after the commit (post/redirect/get), or
re-renders its form with the field errors (422) and nothing written.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from node import actions, dossiers
from node.errors import DUMPS, AuthRequired, InvalidInput, NodeError, Throttled
from node.hubdata import calendar_warning
from node.inputs import ID_TYPES
from node.sync_service import dossier_hub, sync_banner
from node.syncstate import sync_summary
from node.web.format import date_long, datetime_short
from node.web.keys import LOGIN_NAME, NODE
from node.web.security import PRELOGIN_COOKIE, SESSION_COOKIE, check_same_origin, principal, session_of
from protocol.calendar import local_date
from protocol.dossier.codes import format_lookup_code, is_dossier_code
from protocol.errors import UnknownProcedure

__all__ = ["render", "render_error", "routes"]

routes = web.RouteTableDef()


def _now() -> int:
    return time.time_ns() // 1_000_000


async def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    node = request.app[NODE]
    session = session_of(request)
    summary = None
    hub_sync = None
    if not request.path.startswith("/dang-nhap") and not node.store.closed:
        async with node.store.read() as db:
            summary = await sync_summary(db, node.config.node_id)
            hub_sync = await sync_banner(db, node.config.node_id, node.config.hub_url)
    base = {
        "config": node.config,
        "session": session,
        "user": session.principal if session else None,
        "csrf": session.csrf if session else "",
        "sync": summary,
        "hub_sync": hub_sync,
        "now": _now(),
        "path": request.path,
        "calendar_warning": calendar_warning(node.desk.calendar, local_date(_now())),
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


async def render_error(request: web.Request, error: NodeError) -> web.StreamResponse:
    """The HTML face of an error (used by the error middleware)."""
    return await render(request, "error.html", {"error": error}, status=error.status)


def _see_other(location: str) -> web.Response:
    """A 303 we can still set cookies on (raising HTTPSeeOther is for redirects without cookies)."""
    return web.Response(status=303, headers={"Location": location})


def _cookie_secure(request: web.Request) -> bool:
    return bool(request.app[NODE].config.secure_cookies or request.secure)


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/hom-nay"
    return target


# -- login / logout -------------------------------------------------------------------------------------


async def _login_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = await render(
        request,
        "login.html",
        {
            "prelogin": token,
            "error": error,
            "next": _safe_next(request.query.get("next")),
            "username": request.get(LOGIN_NAME, ""),
        },
        status=status,
    )
    response.set_cookie(
        PRELOGIN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=_cookie_secure(request),
        path="/dang-nhap",
    )
    return response


@routes.get("/dang-nhap")
async def login_form(request: web.Request) -> web.StreamResponse:
    if session_of(request) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    return await _login_page(request)


@routes.post("/dang-nhap")
async def login(request: web.Request) -> web.StreamResponse:
    check_same_origin(request)
    form = await request.post()
    cookie = request.cookies.get(PRELOGIN_COOKIE, "")
    given = str(form.get("csrf", ""))
    if not cookie or not secrets.compare_digest(cookie.encode(), given.encode()):
        return await _login_page(
            request, error="Biểu mẫu đăng nhập đã hết hạn. Vui lòng đăng nhập lại.", status=403
        )
    node = request.app[NODE]
    username = str(form.get("username", ""))
    request[LOGIN_NAME] = username[:64]
    try:
        token, _ = await node.auth.login(username, str(form.get("password", "")), request.remote or "-")
    except Throttled as exc:
        response = await _login_page(request, error=exc.message, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except AuthRequired as exc:
        return await _login_page(request, error=exc.message, status=401)
    await node.auth.logout(request.cookies.get(SESSION_COOKIE))  # never keep a pre-login session
    response = _see_other(_safe_next(str(form.get("next", ""))))
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="Strict", secure=_cookie_secure(request), path="/"
    )
    response.del_cookie(PRELOGIN_COOKIE, path="/dang-nhap")
    return response


@routes.post("/dang-xuat")
async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[NODE].auth.logout(request.cookies.get(SESSION_COOKIE))
    response = _see_other("/dang-nhap")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# -- pages ----------------------------------------------------------------------------------------------


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/hom-nay")


@routes.get("/hom-nay")
async def today_page(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    now = _now()
    lists = await dossiers.today(node.store, now, local_date(now), node.config.due_soon_hours * 3_600_000)
    return await render(request, "today.html", {"today": lists, "day": now})


def _new_context(request: web.Request, procedure_code: str | None) -> dict[str, Any]:
    node = request.app[NODE]
    now = _now()
    catalog = node.desk.catalog
    procedures = []
    for code in catalog.codes:
        try:  # a procedure whose first version takes effect later is not offered yet
            procedures.append(catalog.lookup(code, local_date(now)))
        except UnknownProcedure:
            continue
    selected, preview = None, None
    if procedure_code:
        try:
            preview = node.desk.preview(procedure_code, now)
            selected = preview.procedure
        except InvalidInput:
            selected = None
    return {
        "procedures": procedures,
        "selected": selected,
        "preview": preview,
        "id_types": ID_TYPES,
        "idempotency_key": secrets.token_urlsafe(18),
    }


@routes.get("/ho-so/moi")
async def new_form(request: web.Request) -> web.StreamResponse:
    context = _new_context(request, request.query.get("procedure"))
    return await render(request, "new.html", {**context, "values": {}, "errors": {}})


def _form_to_input(form: Any, procedure: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "procedure": form.get("procedure", ""),
        "applicant": {
            k: form.get(f"applicant.{k}", "")
            for k in ("name", "id_type", "id_number", "phone", "email", "address")
        },
        "note": form.get("note", ""),
        "pages": form.get("pages", ""),
        "copies": form.get("copies", ""),
        "fee_paid": form.get("fee_paid", "") != "",  # the checkbox: fee collected at reception
        "reason": form.get("reason", ""),
    }
    if procedure is not None:
        ticked = set(form.getall("doc", []))
        data["documents"] = [
            {
                "name": d.name,
                "form": form.get(f"doc_form_{i}", d.form),
                "count": form.get(f"doc_count_{i}", d.count),
            }
            for i, d in enumerate(procedure.documents)
            if str(i) in ticked
        ]
    return data


@routes.post("/ho-so/moi")
async def new_submit(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    form = await request.post()
    who = principal(request)
    context = _new_context(request, str(form.get("procedure", "")))
    data = _form_to_input(form, context["selected"])
    refuse = form.get("action") == "refuse"
    key = str(form.get("idempotency_key", "")) or None
    try:
        if refuse:
            result = await node.desk.refuse(data, actor=who.actor, idempotency_key=key)
        else:
            desk = request.cookies.get("motcua_desk") or None  # the receipt prints at this desk
            result = await node.desk.receive(data, actor=who.actor, idempotency_key=key, desk=desk)
    except InvalidInput as exc:
        errors = dict(exc.fields)
        if refuse and "reason" not in errors and not data["reason"]:
            errors["reason"] = "Vui lòng nhập lý do từ chối."
        context["idempotency_key"] = key or context["idempotency_key"]
        return await render(request, "new.html", {**context, "values": form, "errors": errors}, status=422)
    raise web.HTTPSeeOther(f"/ho-so/{result.code}?moi=1")


@routes.get("/ho-so/han-tra")
async def due_preview(request: web.Request) -> web.StreamResponse:
    """JSON: the due date a dossier of ``?procedure=`` received now would get."""
    preview = request.app[NODE].desk.preview(request.query.get("procedure", ""), _now())
    return web.json_response(
        {
            "procedure": preview.procedure.code,
            "received_at": preview.received_at,
            "due_at": preview.due_at,
            "due_text": datetime_short(preview.due_at),
            "due_long": date_long(preview.due_at),
        },
        dumps=DUMPS,
    )


@routes.get("/ho-so/{code}")
async def detail_page(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    who = principal(request)
    code = request.match_info["code"]
    found = await dossiers.detail(node.store, node.config.node_id, code, actor=who.actor, now=_now())
    lookup = await _fresh_lookup(request, code, who.actor) if request.query.get("moi") else None
    async with node.store.read() as db:
        hub = await dossier_hub(db, node.config.node_id, code)
    return await render(
        request,
        "detail.html",
        {
            "d": found,
            "actions": actions.available_actions(found.state.value, supervisor=who.supervisor),
            "just_created": bool(request.query.get("moi")),
            "lookup_code": lookup,
            "errors": {},
            "failed_action": None,
            "id_types": ID_TYPES,
            "hub": hub,
        },
    )


async def _fresh_lookup(request: web.Request, code: str, actor: str) -> str | None:
    """The receipt's lookup code, shown to the clerk who received the dossier, within 15 minutes."""
    row = await request.app[NODE].store.fetchone(
        "SELECT l.code, l.created_at FROM lookup_codes l JOIN dossiers d ON d.code = l.dossier"
        " WHERE l.dossier = ? AND d.created_by = ?",
        (code, actor),
    )
    if row is None or _now() - int(row[1]) > 15 * 60_000:
        return None
    return format_lookup_code(str(row[0]))


def _action_input(action: str, form: Any) -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in form.items() if k not in ("csrf", "idempotency_key")}
    if action == "supplement_request":
        names = [n for n in form.getall("item_name", []) if str(n).strip()]
        data = {
            "items": [{"name": n} for n in names],
            "contact": form.get("contact", ""),
            "note": form.get("note", ""),
        }
    if action == "return":
        data["recipient"] = {k: form.get(f"recipient.{k}", "") for k in ("name", "id_type", "id_number")}
        data["proxy"] = form.get("proxy", "")
    return data


@routes.post("/ho-so/{code}/{action}")
async def action_submit(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    who = principal(request)
    code, name = request.match_info["code"], request.match_info["action"]
    if not is_dossier_code(code) or name not in actions.ACTIONS:
        raise web.HTTPNotFound()
    form = await request.post()
    try:
        await actions.perform(
            node.desk,
            code,
            name,
            _action_input(name, form),
            actor=who.actor,
            supervisor=who.supervisor,
            idempotency_key=str(form.get("idempotency_key", "")) or None,
        )
    except InvalidInput as exc:
        found = await dossiers.detail(node.store, node.config.node_id, code, actor=who.actor, now=_now())
        return await render(
            request,
            "detail.html",
            {
                "d": found,
                "actions": actions.available_actions(found.state.value, supervisor=who.supervisor),
                "just_created": False,
                "lookup_code": None,
                "errors": exc.fields,
                "failed_action": name,
                "values": form,
                "id_types": ID_TYPES,
            },
            status=422,
        )
    raise web.HTTPSeeOther(f"/ho-so/{code}?da-ghi={name}")


@routes.get("/tim-kiem")
async def search_page(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    query = request.query.get("q", "")[:200]
    rows = await dossiers.search(node.store, query) if query.strip() else []
    return await render(request, "search.html", {"q": query, "rows": rows})
