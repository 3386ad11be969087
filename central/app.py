"""``make_app(config)``: the hub's aiohttp application, every long-lived part under ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from central import sync_api
from central.config import CentralConfig
from central.dossiers import DOSSIERS, TRACK_LIMIT, Dossiers, IpLimiter, track_routes
from central.errors import CLOCK, error_middleware, now_ms
from central.hub import HUB, Hub
from central.officers import officer_routes
from central.relay import RELAY, Relay
from central.web import install as install_web

__all__ = ["HUB", "make_app"]


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
        relay = Relay(hub, dossiers)  # a branch's dossier entries to the other involved branches
        hub.receiver.hooks.append(relay.hook)
        hub.receiver.committed.append(relay.committed)
        app[RELAY] = relay
        relaying = asyncio.create_task(relay.run(), name="branch-relay")
        try:
            yield
        finally:
            await relay.stop(relaying)
            projector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projector
            await hub.close()

    app[CLOCK] = clock
    app.cleanup_ctx.append(hub_ctx)
    app.add_routes(sync_api.routes)
    app.add_routes(officer_routes)
    app.add_routes(track_routes)
    install_web(app, config)  # pages, /healthz, /readyz, /metrics (central.web)
    return app
