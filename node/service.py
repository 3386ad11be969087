"""Running the node as a service: bind, tell systemd, watch, stop cleanly (``motcua-node serve``).

``web.run_app`` cannot say *when* the port is bound, so ``serve`` drives the aiohttp runner itself:

1. ``runner.setup()`` runs every ``cleanup_ctx`` (the store opens, migrations apply);
2. the TCP site starts: the port accepts connections;
3. only then ``READY=1`` with a Vietnamese ``STATUS=`` line;
4. a task on the event loop sends ``WATCHDOG=1`` every ``WATCHDOG_USEC/2`` while the readiness check
   (the one ``/readyz`` uses) passes, and a new ``STATUS=`` when the answer changes; a wedged loop or
   writer stops the pings, and systemd restarts the node;
5. SIGTERM/SIGINT: ``STOPPING=1``, the site stops taking requests, the cleanup contexts close the store.
6. A fatal report (``on_fatal``: the store failed after an I/O error, see ``node.store``): ``STATUS=``
   says so, the site stops taking requests, the requests in flight get their answers (bounded by
   ``FATAL_DRAIN_S``), then the process exits at once with ``EXIT_STORAGE_FAILED`` (75) *without*
   running the cleanup contexts: closing the database would checkpoint and fsync again after a failed
   fsync. systemd (``Restart=always``) starts it again and SQLite's recovery settles what is on disk.

Outside systemd (no ``NOTIFY_SOCKET``) the notifications are no-ops and this is a plain server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from node import sdnotify

__all__ = ["EXIT_STORAGE_FAILED", "FATAL_DRAIN_S", "Fatal", "Health", "serve", "settle_heap", "watch"]

log = logging.getLogger("motcua.node.service")

Health = Callable[[], Awaitable[list[str]]]
"""Returns what keeps the service from being ready (empty list: ready)."""

Fatal = Callable[[web.Application, Callable[[str], None]], None]
"""Called once the app is set up with a ``report(reason)`` callback to register where fatal errors
arise (the node: ``store.on_failure``)."""

EXIT_STORAGE_FAILED = 75
"""Exit status after a storage failure (EX_TEMPFAIL): distinct from a crash, systemd restarts the node."""

FATAL_DRAIN_S = 2.0
"""How long the requests in flight at a fatal error get to finish (their answer is the error)."""


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
    on_fatal: Fatal | None = None,
    exit_now: Callable[[int], object] = os._exit,
) -> None:
    """Serve ``app`` on host:port until SIGTERM or SIGINT, speaking sd_notify along the way.

    A fatal report ends the process with ``exit_now(EXIT_STORAGE_FAILED)`` (see step 6 above).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    fatal: asyncio.Future[str] = loop.create_future()

    def report(reason: str) -> None:
        if not fatal.done():
            fatal.set_result(reason)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    watchdog: asyncio.Task[None] | None = None
    try:
        sdnotify.notify("STATUS=Đang mở cơ sở dữ liệu")
        await runner.setup()
        if on_fatal is not None:
            on_fatal(app, report)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        settle_heap()
        announce(f"======== Running on {site.name} ========")
        sdnotify.notify(f"READY=1\nSTATUS={ready_status}")
        watchdog = asyncio.create_task(
            watch(lambda: health(app), ok_status=ready_status), name="systemd-watchdog"
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, fatal}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if fatal.done():
            await _die(runner, fatal.result(), exit_now)
        sdnotify.notify(f"STOPPING=1\nSTATUS={stopping_status}")
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _die(runner: web.AppRunner, reason: str, exit_now: Callable[[int], object]) -> None:
    """Fail-stop: answer the requests in flight, then exit without closing anything (no checkpoint)."""
    log.critical("storage failed (%s): exiting with status %d for a restart", reason, EXIT_STORAGE_FAILED)
    with contextlib.suppress(Exception):
        sdnotify.notify(f"STATUS=Lỗi ghi ổ đĩa, đang khởi động lại: {reason}"[:400])
    with contextlib.suppress(Exception):
        for site in list(runner.sites):
            await site.stop()
        server = runner.server
        if server is not None:
            server.pre_shutdown()
            await asyncio.wait_for(server.shutdown(FATAL_DRAIN_S), timeout=FATAL_DRAIN_S + 1)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    exit_now(EXIT_STORAGE_FAILED)
