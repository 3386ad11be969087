"""``make_app(config)``: the hub's aiohttp application, every long-lived part under ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import generate_latest

from central import sync_api
from central.config import CentralConfig
from central.dossiers import DOSSIERS, TRACK_LIMIT, Dossiers, IpLimiter, track_routes
from central.errors import CLOCK, error_middleware, now_ms
from central.hub import HUB, Hub
from central.officers import officer_routes

__all__ = ["HUB", "make_app"]


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.store.fetchone("SELECT 1")
    return web.json_response({"status": "ok", "hub_time": hub.clock()})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[HUB].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def make_app(config: CentralConfig, *, clock: Callable[[], int] = now_ms) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_push_bytes)

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        hub = await Hub.open(config, clock)
        app[HUB] = hub
        dossiers = Dossiers(hub.store, clock, busy=hub.receiver.busy)
        hub.receiver.committed.append(dossiers.committed)
        hub.mailbox.committed.append(dossiers.committed)
        app[DOSSIERS] = dossiers
        app[TRACK_LIMIT] = IpLimiter(config.track_rate_per_min)
        projector = asyncio.create_task(dossiers.run(), name="dossier-projector")
        try:
            yield
        finally:
            projector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projector
            await hub.close()

    app[CLOCK] = clock
    app.cleanup_ctx.append(hub_ctx)
    app.add_routes(sync_api.routes)
    app.add_routes(officer_routes)
    app.add_routes(track_routes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
