"""Who is asking, and may they: sessions for pages, bearer tokens for the API, CSRF, security headers.

- Pages: the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS or when configured) names a
  server-side session; without one, a GET is redirected to the login page and anything else is 401.
- Every state-changing page request (POST) must come from this origin (``Origin`` when sent, else
  ``Sec-Fetch-Site`` when sent) and carry the session's synchronizer token in the ``csrf`` field; the
  login form, which has no session yet, uses a pre-login token (cookie + field). Failing either is 403.
- ``/api/*`` (except the OpenAPI description) needs ``Authorization: Bearer <token>``; no cookies are
  looked at there, so no CSRF applies.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from node.auth import Principal, Session
from node.errors import AuthRequired, Forbidden
from node.web.keys import PRINCIPAL, SESSION

__all__ = [
    "PRELOGIN_COOKIE",
    "SESSION_COOKIE",
    "check_csrf",
    "check_same_origin",
    "principal",
    "security_middleware",
    "session_of",
]

SESSION_COOKIE = "motcua_session"
PRELOGIN_COOKIE = "motcua_prelogin"
_PUBLIC = frozenset({"/dang-nhap", "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/favicon.ico"})
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SessionLookup = Callable[[str | None], Awaitable[Session | None]]
BearerLookup = Callable[[str], Awaitable[Principal]]


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)


def principal(request: web.Request) -> Principal:
    """The acting principal (session user or API token); 401 if none."""
    found = request.get(PRINCIPAL)
    if found is None:
        raise AuthRequired()
    return found


def check_same_origin(request: web.Request) -> None:
    """403 unless the request says it comes from this origin (or says nothing, e.g. a script)."""
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin != f"{request.scheme}://{request.host}":
            raise Forbidden("Yêu cầu đến từ trang khác nên bị từ chối (kiểm tra nguồn gốc).")
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("Yêu cầu đến từ trang khác nên bị từ chối (kiểm tra nguồn gốc).")


async def check_csrf(request: web.Request, expected: str) -> None:
    """403 unless the form's ``csrf`` field equals ``expected``."""
    form = await request.post()
    given = form.get("csrf")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden(
            "Phiên làm việc của biểu mẫu đã hết hạn hoặc không hợp lệ. Vui lòng tải lại trang và thử lại."
        )


def _is_public(path: str) -> bool:
    return path in _PUBLIC or path.startswith("/static/")


def security_middleware(
    sessions: Callable[[], SessionLookup], bearer: Callable[[], BearerLookup]
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware; ``sessions``/``bearer`` give the lookups once the node is open (cleanup_ctx)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/api/") and path != "/api/v1/openapi.json":
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthRequired("Thiếu token API: gửi kèm tiêu đề Authorization: Bearer <token>.")
            request[PRINCIPAL] = await bearer()(token.strip())
            response = await handler(request)
        else:
            session = await sessions()(request.cookies.get(SESSION_COOKIE))
            if session is not None:
                request[SESSION] = session
                request[PRINCIPAL] = session.principal
            if request.method not in _SAFE:
                check_same_origin(request)
            if not _is_public(path):
                if session is None:
                    if request.method in _SAFE:
                        target = request.path_qs if request.path != "/" else "/hom-nay"
                        raise web.HTTPSeeOther(f"/dang-nhap?next={quote(target, safe='/')}")
                    raise AuthRequired("Phiên làm việc đã hết hạn. Vui lòng đăng nhập lại.")
                if request.method not in _SAFE:
                    await check_csrf(request, session.csrf)
            response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("Content-Security-Policy", _CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return middleware
