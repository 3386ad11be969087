"""The node's aiohttp application: ``make_app(config)``.

Long-lived parts start in ``cleanup_ctx`` (the store, journal, desk and auth as one ``Node``), so a failed
start unwinds what already started and shutdown closes the store after the last request. The
middlewares, outermost first: errors (the only place errors become HTTP), then security (sessions,
bearer tokens, CSRF, headers).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from node import api
from node.auth import Principal, Session
from node.config import NodeConfig
from node.errors import error_middleware
from node.provision import Node
from node.sync_service import SYNC, SyncService
from node.web import pages
from node.web.format import FILTERS
from node.web.keys import CONFIG, NODE
from node.web.security import security_middleware
from protocol.calendar import Calendar
from protocol.catalog import Catalog

__all__ = ["make_app"]

log = logging.getLogger("motcua.node")
WEB_DIR = Path(__file__).resolve().parent / "web"


def make_app(
    config: NodeConfig,
    *,
    catalog: Catalog | None = None,
    calendar: Calendar | None = None,
    lookup_iterations: int | None = None,
) -> web.Application:
    """The application for ``config``; the node opens when the app starts and closes when it stops."""

    async def sessions(token: str | None) -> Session | None:
        return await app[NODE].auth.session(token)

    async def bearer(token: str) -> Principal:
        return await app[NODE].auth.bearer(token)

    app = web.Application(
        middlewares=[
            error_middleware(pages.render_error),
            security_middleware(lambda: sessions, lambda: bearer),
        ],
        client_max_size=1024 * 1024,
    )
    app[CONFIG] = config

    async def node_ctx(app: web.Application) -> AsyncIterator[None]:
        node = await Node.open(
            config, catalog=catalog, calendar=calendar, lookup_iterations=lookup_iterations
        )
        app[NODE] = node
        log.info("node %s (%s) open, epoch %d", config.node_id, config.name, node.journal.epoch)
        try:
            yield
        finally:
            await node.close()

    app.cleanup_ctx.append(node_ctx)

    async def sync_ctx(app: web.Application) -> AsyncIterator[None]:
        # After the node opened: continuous sync with the hub, when the node is enrolled (node.sync_service).
        service = await SyncService.open(app[NODE])
        if service is not None:
            app[SYNC] = service
            await service.start()
            log.info("sync with %s started", service.transport.base)
        try:
            yield
        finally:
            if service is not None:
                await service.close()

    app.cleanup_ctx.append(sync_ctx)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)
    app.router.add_routes(api.routes)
    app.router.add_routes(pages.routes)
    app.router.add_static("/static", WEB_DIR / "static", append_version=False)
    return app
