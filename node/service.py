"""Running the node as a service: bind, tell systemd, watch, stop cleanly (``motcua-node serve``).

``web.run_app`` cannot say *when* the port is bound, so ``serve`` drives the aiohttp runner itself:

1. ``runner.setup()`` runs every ``cleanup_ctx`` (the store opens, migrations apply);
2. the TCP site starts: the port accepts connections;
3. only then ``READY=1`` with a Vietnamese ``STATUS=`` line;
4. a task on the event loop sends ``WATCHDOG=1`` every ``WATCHDOG_USEC/2`` while the readiness check
   (the one ``/readyz`` uses) passes, and a new ``STATUS=`` when the answer changes; a wedged loop or
   writer stops the pings, and systemd restarts the node;
5. SIGTERM/SIGINT: ``STOPPING=1``, the site stops taking requests, the cleanup contexts close the store.

Outside systemd (no ``NOTIFY_SOCKET``) the notifications are no-ops and this is a plain server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from node import sdnotify

__all__ = ["Health", "serve", "settle_heap", "watch"]

log = logging.getLogger("motcua.node.service")

Health = Callable[[], Awaitable[list[str]]]
"""Returns what keeps the service from being ready (empty list: ready)."""


async def watch(
    health: Health,
    *,
    ok_status: str,
    environ: Mapping[str, str] | None = None,
    interval: float | None = None,
) -> None:
    """Ping the watchdog while ``health()`` finds no problem; report changes as ``STATUS=``.

    ``interval`` defaults to half of ``WATCHDOG_USEC``; without a watchdog nothing runs. The check has
    the interval as its time limit: a check that hangs counts as a failure (no ping).
    """
    every = sdnotify.watchdog_interval(environ) if interval is None else interval
    if every is None:
        return
    last: tuple[str, ...] = ()  # READY=1 carried the status for "no problem"
    while True:
        try:
            problems = await asyncio.wait_for(health(), timeout=every)
        except TimeoutError:
            problems = ["kiểm tra sức khỏe quá thời gian"]
        if not problems:
            sdnotify.notify("WATCHDOG=1", environ=environ)
        current = tuple(problems)
        if current != last:
            text = ok_status if not problems else "Không sẵn sàng: " + "; ".join(problems)
            sdnotify.notify(f"STATUS={text}", environ=environ)
            if problems:
                log.warning("not ready: %s", "; ".join(problems))
            last = current
        await asyncio.sleep(every)


def settle_heap() -> None:
    """After startup: collect once, then move every object alive now (modules, the catalog, the
    calendar, templates: hundreds of thousands of them) out of the garbage collector's view.

    Without this each full (generation 2) collection walks all of them, ~100 ms of a stopped event loop
    on this hardware, during which every request in flight waits (bench.intake: the first full
    collection under load alone made the p99). Frozen objects are never collected, which is right for
    what lives as long as the process; everything allocated later is collected as usual.
    """
    gc.collect()
    gc.freeze()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    health: Callable[[web.Application], Awaitable[list[str]]],
    ready_status: str,
    stopping_status: str,
    shutdown_timeout: float = 10.0,
    announce: Callable[[str], None] = lambda _line: None,
) -> None:
    """Serve ``app`` on host:port until SIGTERM or SIGINT, speaking sd_notify along the way."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    watchdog: asyncio.Task[None] | None = None
    try:
        sdnotify.notify("STATUS=Đang mở cơ sở dữ liệu")
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        settle_heap()
        announce(f"======== Running on {site.name} ========")
        sdnotify.notify(f"READY=1\nSTATUS={ready_status}")
        watchdog = asyncio.create_task(
            watch(lambda: health(app), ok_status=ready_status), name="systemd-watchdog"
        )
        await stop.wait()
        sdnotify.notify(f"STOPPING=1\nSTATUS={stopping_status}")
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
