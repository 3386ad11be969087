"""The node's aiohttp application: ``make_app(config)``.

Long-lived parts start in ``cleanup_ctx`` (the store, journal, desk and auth as one ``Node``; then the
devices: blob sweep, hot folders, print worker), so a failed start unwinds what already started and
shutdown closes the store after the last request. The middlewares, outermost first: errors (the only
place errors become HTTP), then security (sessions, bearer tokens, CSRF, headers), then the device
banner/panel context of staff pages.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from node import api, retention
from node.auth import Principal, Session
from node.config import NodeConfig
from node.devices import DEVICES, devices_ctx, devices_status
from node.errors import error_middleware
from node.hubdata import apply_hub_data
from node.lease import pii_lock_middleware
from node.monitoring import METRICS, NodeMonitor, metrics_handler
from node.provision import Node
from node.sync_service import SYNC, SyncService
from node.web import devices as devices_web
from node.web import pages
from node.web.format import FILTERS
from node.web.keys import CONFIG, NODE
from node.web.security import security_middleware
from protocol.calendar import Calendar
from protocol.catalog import Catalog

__all__ = ["make_app"]

log = logging.getLogger("motcua.node")
WEB_DIR = Path(__file__).resolve().parent / "web"


async def _device_report(app: web.Application) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Printers and scanners for the sync heartbeat (node.devices.devices_status)."""
    status = await devices_status(app)
    return list(status.get("printers", [])), list(status.get("scanners", []))


async def _apply(node: Node, catalog: Catalog | None) -> None:
    await apply_hub_data(node, catalog)


def make_app(
    config: NodeConfig,
    *,
    catalog: Catalog | None = None,
    calendar: Calendar | None = None,
    lookup_iterations: int | None = None,
    print_poll: float = 5.0,
    clock: Callable[[], int] | None = None,
) -> web.Application:
    """The application for ``config``; the node opens when the app starts and closes when it stops.

    ``clock`` (unix ms) decides whether the hub's offline lease has expired (node.lease); tests inject it.
    """

    async def sessions(token: str | None) -> Session | None:
        return await app[NODE].auth.session(token)

    async def bearer(token: str) -> Principal:
        return await app[NODE].auth.bearer(token)

    app = web.Application(
        middlewares=[
            error_middleware(pages.render_error),
            security_middleware(lambda: sessions, lambda: bearer),
            devices_web.context_middleware,
            pii_lock_middleware(lambda: app[NODE].store if NODE in app else None, clock),  # type: ignore[list-item]
        ],
        client_max_size=1024 * 1024,
    )
    app[CONFIG] = config
    app[METRICS] = NodeMonitor()  # per app: several nodes can run in one process (tests)

    async def node_ctx(app: web.Application) -> AsyncIterator[None]:
        node = await Node.open(
            config, catalog=catalog, calendar=calendar, lookup_iterations=lookup_iterations
        )
        app[NODE] = node
        try:  # the newest valid catalog and calendar the hub broadcast, stored by earlier pulls
            await apply_hub_data(node, catalog)
        except BaseException:
            await node.close()
            raise
        log.info("node %s (%s) open, epoch %d", config.node_id, config.name, node.journal.epoch)
        try:
            yield
        finally:
            await node.close()

    app.cleanup_ctx.append(node_ctx)
    # scanners, printers, blob sweep: after the node is open, stopped before it closes
    app.cleanup_ctx.append(devices_ctx(print_poll))

    async def sync_ctx(app: web.Application) -> AsyncIterator[None]:
        # After the node and its devices: continuous sync with the hub when enrolled (node.sync_service).
        service = await SyncService.open(app[NODE])
        if service is not None:
            app[SYNC] = service
            service.client.on_round = app[METRICS].record_round
            service.client.on_pulled = lambda: _apply(app[NODE], catalog)
            if DEVICES in app:
                service.add_device_probe(lambda: _device_report(app))
            await service.start()
            log.info("sync with %s started", service.transport.base)
        try:
            yield
        finally:
            if service is not None:
                await service.close()

    app.cleanup_ctx.append(sync_ctx)

    async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
        async with retention.running(config, app[NODE].store):  # purge of scans the hub holds
            yield

    app.cleanup_ctx.append(retention_ctx)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)
    app.router.add_routes(api.routes)
    app.router.add_routes(devices_web.routes)
    app.router.add_routes(pages.routes)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_static("/static", WEB_DIR / "static", append_version=False)
    return app
