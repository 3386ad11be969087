"""The hub's web pages: setup, the session/CSRF middleware, rendering helpers, login and logout.

``install(app, config)`` adds to the hub's app (after the hub itself is built by its cleanup context):
Jinja2 templates (``central/templates``, Vietnamese, no external assets), ``/static``, the monitoring
middleware (outermost) and the web middleware (innermost), the pages of the dashboard, the officers'
workspace and public tracking, and ``/healthz``, ``/readyz``, ``/metrics``.

The web middleware, for page paths only: loads the session from its cookie; refuses a state-changing
request from another site (``Sec-Fetch-Site``/``Origin``) and, for logged-in pages, one without the
session's CSRF token (form field ``csrf``, the first part of a multipart form, or ``X-CSRF-Token``);
turns errors into Vietnamese HTML pages; adds the security headers (a CSP without inline scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from central import webfmt
from central.config import CentralConfig
from central.dossier_index import index_state
from central.dossiers import DOSSIERS, Dossiers
from central.errors import CentralError
from central.hub import HUB, Hub
from central.mfa import MfaError, MfaStore, load_wrap_key
from central.monitoring import MONITOR, Monitor, healthz, metrics, observe_middleware, readyz
from central.nodehealth import NodeHealth, Thresholds, read_all
from central.webauth import LoginThrottle, Session, Sessions, User, Users, csrf_matches

__all__ = ["MULTIPART", "SESSION", "WEB", "PageError", "WebContext", "install", "need", "render"]

log = logging.getLogger("motcua.central.web")
STATIC = Path(__file__).parent / "static"
PAGE_PREFIXES = ("/admin", "/officer", "/login", "/logout", "/tra-cuu")
ANONYMOUS_POSTS = ("/login", "/login/mfa", "/tra-cuu")
HOME = {"admin": "/admin", "viewer": "/admin", "officer": "/officer"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class PageError(Exception):
    """An error shown to a person as a page: HTTP status and a Vietnamese message."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass
class WebContext:
    config: CentralConfig
    hub: Hub
    dossiers: Dossiers
    users: Users
    sessions: Sessions
    throttle: LoginThrottle
    monitor: Monitor
    limits: Thresholds
    mfa: MfaStore | None = None
    # password checked, code awaited: token -> (user, next, deadline ms); lost on restart (log in again)
    pending_mfa: dict[str, tuple[User, str, int]] = field(default_factory=dict)

    @property
    def cookie_name(self) -> str:
        return "__Host-motcua_session" if self.secure else "motcua_session"

    @property
    def secure(self) -> bool:
        return self.config.public_url.startswith("https://")

    async def health(self) -> list[NodeHealth]:
        hub = self.hub
        return await read_all(hub.store, hub.registry, self.monitor.refusals, hub.clock(), self.limits)

    async def audit(self, username: str, action: str, target: str) -> None:
        """Access log of personal data views and of changes (DOMAIN.md §6)."""
        async with self.hub.store.write() as db:
            await db.execute(
                "INSERT INTO web_access_log (at_ms, username, action, target) VALUES (?, ?, ?, ?)",
                (self.hub.clock(), username, action, target[:200]),
            )


WEB = web.AppKey("web", WebContext)
SESSION = web.RequestKey("session", object)  # Session | None
MULTIPART = web.RequestKey("multipart", object)  # the reader left after the CSRF part


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    session: Session | None = request.get(SESSION)  # type: ignore[assignment]
    base = {
        "session": session,
        "user": session.user if session else None,
        "csrf": session.csrf if session else "",
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def need(request: web.Request, *roles: str) -> Session:
    """The session of a user with one of ``roles``; else to the login page (anonymous) or 403."""
    session: Session | None = request.get(SESSION)  # type: ignore[assignment]
    if session is None:
        if request.headers.get("HX-Request"):
            raise web.HTTPUnauthorized(headers={"HX-Redirect": "/login"})
        raise web.HTTPSeeOther(f"/login?next={request.path}")
    if session.user.role not in roles:
        raise PageError(403, "Tài khoản của bạn không có quyền xem trang này.")
    return session


def _page_path(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PAGE_PREFIXES)


def _cross_site(request: web.Request, public_url: str) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    public = urlsplit(public_url)
    allowed = {f"{public.scheme}://{public.netloc}", f"{request.scheme}://{request.host}"}
    return origin not in allowed


async def _csrf_candidate(request: web.Request) -> str | None:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        part = await reader.next()
        if part is None or getattr(part, "name", None) != "csrf":
            return None
        value = await part.read_chunk(256)  # type: ignore[union-attr]
        request[MULTIPART] = reader  # the handler reads the remaining parts
        return value.decode("ascii", "replace").strip()
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        value = form.get("csrf")
        return value if isinstance(value, str) else None
    return None


def _error_page(request: web.Request, status: int, message: str, retry_after: int | None) -> web.Response:
    response = render(request, "error.html", {"status": status, "message": message}, status=status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@web.middleware
async def web_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not _page_path(request.path):
        return await handler(request)
    ctx = request.app[WEB]
    token = request.cookies.get(ctx.cookie_name, "")
    request[SESSION] = await ctx.sessions.get(token, now=ctx.hub.clock()) if token else None
    try:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if _cross_site(request, ctx.config.public_url):
                raise PageError(403, "Yêu cầu từ trang khác bị từ chối.")
            if not any(request.path == p for p in ANONYMOUS_POSTS):
                session = request.get(SESSION)
                if session is None:
                    raise PageError(401, "Phiên làm việc đã hết hạn. Vui lòng đăng nhập lại.")
                if not csrf_matches(session, await _csrf_candidate(request)):
                    raise PageError(403, "Mã chống giả mạo (CSRF) không hợp lệ. Tải lại trang rồi thử lại.")
        response = await handler(request)
    except PageError as exc:
        response = _error_page(request, exc.status, exc.message, exc.retry_after)
    except CentralError as exc:
        response = _error_page(request, exc.status, exc.reason, exc.retry_after)
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer makes browsers send Origin: null
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")
    return response


async def root(request: web.Request) -> web.StreamResponse:
    session: Session | None = request.get(SESSION)  # type: ignore[assignment]
    raise web.HTTPSeeOther(HOME[session.user.role] if session else "/login")


def _safe_next(value: str | None, role: str) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        target = value.split("?")[0]
        if target.startswith("/officer" if role == "officer" else "/admin"):
            return target
    return HOME[role]


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", {"next": request.query.get("next", ""), "error": None})


async def login(request: web.Request) -> web.StreamResponse:
    ctx = request.app[WEB]
    form = await request.post()
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:256]
    ip = request.remote or "?"
    wait = await ctx.throttle.retry_after(username, ip)
    if wait:
        raise PageError(429, f"Đăng nhập sai quá nhiều lần. Thử lại sau {wait} giây.", retry_after=wait)
    user = await ctx.users.authenticate(username, password)
    if user is None:
        await ctx.throttle.failed(username, ip)
        log.warning("login failed", extra={"fields": {"event": "login_failed", "remote": ip}})
        context = {"next": str(form.get("next", "")), "error": "Sai tên đăng nhập hoặc mật khẩu."}
        return render(request, "login.html", context, status=401)
    if ctx.mfa is not None and await ctx.mfa.status(user.username) == "active":
        now = ctx.hub.clock()
        for stale in [t for t, (_, _, until) in ctx.pending_mfa.items() if until < now][:1000]:
            del ctx.pending_mfa[stale]
        pending = secrets.token_urlsafe(32)
        ctx.pending_mfa[pending] = (user, str(form.get("next", "")), now + 300_000)
        return render(request, "login_mfa.html", {"pending": pending, "error": None})
    await ctx.throttle.succeeded(username)
    return await _open_session(request, user, str(form.get("next", "")))


async def login_mfa(request: web.Request) -> web.StreamResponse:
    """Second step for accounts with a TOTP factor: a code (or a recovery code), throttled like passwords."""
    ctx = request.app[WEB]
    form = await request.post()
    pending = str(form.get("pending", ""))[:64]
    code = str(form.get("code", ""))[:32]
    ip = request.remote or "?"
    found = ctx.pending_mfa.get(pending)
    if found is None or found[2] < ctx.hub.clock() or ctx.mfa is None:
        ctx.pending_mfa.pop(pending, None)
        raise web.HTTPSeeOther("/login")
    user, next_path, _ = found
    wait = await ctx.throttle.retry_after(user.username, ip)
    if wait:
        ctx.pending_mfa.pop(pending, None)
        raise PageError(429, f"Đăng nhập sai quá nhiều lần. Thử lại sau {wait} giây.", retry_after=wait)
    try:
        how = await ctx.mfa.verify(user.username, code, now_ms=ctx.hub.clock())
    except MfaError as exc:
        await ctx.throttle.failed(user.username, ip)
        log.warning(
            "login code refused", extra={"fields": {"event": "mfa_failed", "remote": ip, "why": exc.code}}
        )
        error = "Mã đã được dùng. Chờ mã mới." if exc.code == "mfa_replayed" else "Mã xác thực không đúng."
        return render(request, "login_mfa.html", {"pending": pending, "error": error}, status=401)
    del ctx.pending_mfa[pending]
    await ctx.throttle.succeeded(user.username)
    log.info("login second factor", extra={"fields": {"event": "mfa_ok", "user": user.username, "how": how}})
    return await _open_session(request, user, next_path)


async def _open_session(request: web.Request, user: User, next_path: str) -> web.StreamResponse:
    ctx = request.app[WEB]
    old = request.cookies.get(ctx.cookie_name)
    if old:
        await ctx.sessions.delete(old)  # never keep a token from before the login (fixation)
    token, _ = await ctx.sessions.create(user, now=ctx.hub.clock())
    log.info("login", extra={"fields": {"event": "login", "user": user.username}})
    response = web.HTTPSeeOther(_safe_next(next_path, user.role))
    response.set_cookie(
        ctx.cookie_name,
        token,
        httponly=True,
        samesite="Strict",
        secure=ctx.secure,
        path="/",
        max_age=ctx.config.session_max_s,
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    ctx = request.app[WEB]
    token = request.cookies.get(ctx.cookie_name)
    if token:
        await ctx.sessions.delete(token)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(ctx.cookie_name, path="/")
    raise response


async def _backfill(hub: Hub, dossiers: Dossiers) -> None:
    """Index dossiers folded before the index existed (bounded batches, in the background)."""
    while True:
        missing = await hub.store.fetchall(
            "SELECT code FROM dossiers WHERE code NOT IN (SELECT code FROM dossier_index) LIMIT 200"
        )
        if not missing:
            return
        for (code,) in missing:
            await dossiers.refresh(code)
        await asyncio.sleep(0)


def install(app: web.Application, config: CentralConfig) -> None:
    """Add the web pages, monitoring and their middlewares to the hub's app (see the module docstring)."""
    from central import (
        admin_mfa,
        admin_nodes,
        admin_pages,
        admin_review,
        admin_rotation,
        late_control,
        officer_ui,
        track_page,
    )

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("central", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    webfmt.install_filters(env)
    app.middlewares.insert(0, observe_middleware)
    app.middlewares.append(web_middleware)

    async def web_ctx(app: web.Application) -> AsyncIterator[None]:
        hub, dossiers = app[HUB], app[DOSSIERS]
        monitor = Monitor(hub.metrics.registry)
        limits = Thresholds(
            online_window_ms=config.online_window_s * 1000,
            skew_warn_ms=config.skew_warn_s * 1000,
            lag_warn_ms=config.lag_warn_s * 1000,
            disk_warn_bytes=config.disk_warn_bytes,
        )
        ctx = WebContext(
            config=config,
            hub=hub,
            dossiers=dossiers,
            users=Users(hub.store),
            sessions=Sessions(hub.store, config.session_idle_s * 1000, config.session_max_s * 1000),
            throttle=LoginThrottle(hub.store, hub.clock),
            mfa=MfaStore(hub.store, load_wrap_key(config.data_dir)),
            monitor=monitor,
            limits=limits,
        )

        async def refresh() -> None:
            monitor.gauges.rows = await ctx.health()

        monitor.refresh = refresh
        app[MONITOR] = monitor
        app[WEB] = ctx
        dossiers.on_refresh.append(index_state)
        hub.mailbox.hooks.append(admin_review.decision_hook)
        backfill = asyncio.create_task(_backfill(hub, dossiers), name="dossier-index-backfill")
        try:
            yield
        finally:
            backfill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await backfill

    app.cleanup_ctx.append(web_ctx)
    app.router.add_static("/static", STATIC, append_version=False)
    app.router.add_get("/", root)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/login/mfa", login_mfa)
    app.router.add_post("/logout", logout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for module in (
        admin_mfa,
        admin_pages,
        admin_review,
        admin_nodes,
        admin_rotation,
        late_control,
        officer_ui,
        track_page,
    ):
        app.add_routes(module.routes)
