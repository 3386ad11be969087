"""The locked node: "Mở khóa dữ liệu" at shift start (key_source = 'passphrase', node.atrest).

Until the data passphrase is entered nothing of the node can be read (the database and the scans are
encrypted), so ``serve`` first runs this small application on the node's address: every page answers
423 with the unlock form; a POST of the right passphrase unwraps the keyring (Argon2id, about a quarter
of a second; one attempt at a time, one second's pause after a wrong one) and the real application
starts in its place. The form carries a per-process token and must come from the same origin. Staff
accounts live in the encrypted database, so this page cannot ask who is unlocking; the unlock is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import secrets
from collections.abc import Callable

from aiohttp import web

from node import sdnotify
from node.config import NodeConfig
from node.errors import DataKeyError, WrongDataKey
from node.service import watch

__all__ = ["unlock_app", "wait_for_unlock"]

log = logging.getLogger("motcua.node.unlock")

_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mở khóa dữ liệu · {name}</title><link rel="stylesheet" href="/static/app.css"></head>
<body><main id="noi-dung"><h1>Mở khóa dữ liệu</h1>
<p>Dữ liệu của máy trạm <strong>{node}</strong> ({name}) được mã hóa. Nhập mật khẩu dữ liệu của ca làm việc
để mở khóa.</p>{message}
<form method="post" action="/mo-khoa">
<input type="hidden" name="csrf" value="{csrf}">
<label for="mat-khau">Mật khẩu dữ liệu</label>
<input id="mat-khau" name="passphrase" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Mở khóa dữ liệu</button>
</form></main></body></html>
"""


def unlock_app(config: NodeConfig, done: asyncio.Event, unlock: Callable[[str], object]) -> web.Application:
    """The application served while the data key is locked; sets ``done`` once ``unlock`` succeeded."""
    token = secrets.token_urlsafe(24)
    busy = asyncio.Lock()

    def page(status: int, message: str = "") -> web.Response:
        body = _PAGE.format(
            name=html.escape(config.name),
            node=html.escape(config.node_id),
            csrf=token,
            message=f'<p class="error" role="alert">{html.escape(message)}</p>' if message else "",
        )
        return web.Response(
            status=status,
            text=body,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def locked(request: web.Request) -> web.Response:
        if request.path == "/healthz":
            return web.json_response({"status": "locked"}, status=503)
        return page(423)

    async def post(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return page(403, "Yêu cầu không hợp lệ (khác nguồn).")
        form = await request.post()
        if not secrets.compare_digest(str(form.get("csrf", "")), token):
            return page(403, "Phiên làm việc đã hết hạn, hãy thử lại.")
        async with busy:
            try:
                await asyncio.to_thread(unlock, str(form.get("passphrase", "")))
            except WrongDataKey:
                log.warning("data unlock failed from %s", request.remote)
                await asyncio.sleep(1.0)
                return page(403, "Sai mật khẩu dữ liệu.")
            except DataKeyError as exc:
                return page(500, exc.message)
        log.info("data unlocked from %s", request.remote)
        done.set()
        return web.Response(
            status=200,
            text='<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="2;url=/hom-nay">'
            "<p>Đã mở khóa dữ liệu. Đang khởi động máy trạm…</p>",
            content_type="text/html",
        )

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/mo-khoa", post)
    from node.app import WEB_DIR

    app.router.add_static("/static", WEB_DIR / "static", append_version=False)
    app.router.add_route("GET", "/{tail:.*}", locked)
    return app


async def wait_for_unlock(
    config: NodeConfig,
    host: str,
    port: int,
    unlock: Callable[[str], object],
    *,
    announce: Callable[[str], None] = lambda _line: None,
) -> None:
    """Serve the unlock page on host:port until the data key is unlocked, then free the port."""
    done = asyncio.Event()
    runner = web.AppRunner(unlock_app(config, done, unlock), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        announce(f"======== Locked: unlock the data at http://{host}:{port}/ ========")
        status = "Đang chờ mở khóa dữ liệu (Mở khóa dữ liệu)"
        sdnotify.notify(f"READY=1\nSTATUS={status}")
        # the unit's WatchdogSec= runs while the page waits: keep pinging, or systemd restarts it
        watchdog = asyncio.create_task(watch(_nothing_wrong, ok_status=status), name="systemd-watchdog")
        try:
            await done.wait()
            await asyncio.sleep(0.2)  # the answer to the unlocking POST leaves first
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
    finally:
        await runner.cleanup()


async def _nothing_wrong() -> list[str]:
    return []
