"""N6 harness: one real hub (``central.app.make_app`` on an aiohttp server on 127.0.0.1) and real nodes
(``node.provision.Node``: store, journal, desk; ``node.sync_service.SyncService``: the node's own sync
client over its store), all in one process on one event loop, for a Hypothesis state machine.

The hub is started once and shared by many examples (each example is a new node id, so examples never
see each other's logs); it is replaced by a fresh one every ``HUB_EXAMPLES`` examples so its broadcast
mailbox, which every new node pulls, stays small. Faults are real:

- **lost ack**: a hub middleware lets the push handler commit, then aborts the TCP connection before
  the answer is written (the node sees a dropped connection: outcome unknown);
- **crash mid-push**: the middleware holds a push before (or after) the handler, the test cancels the
  node's sync round while it waits, closes the node's stores and releases the hub side;
- **offline**: the node's transport points at a closed port (connection refused);
- **hub restart**: the server and the hub's stores are closed and opened again on the same files/port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestServer

from central.app import make_app
from central.config import load as load_hub_config
from central.errors import now_ms
from central.hub import HUB, Hub
from central.mailbox import BROADCAST, Post
from tests.reliability.hubsim import new_hub

__all__ = ["HubFaults", "World", "free_port"]

T = TypeVar("T")
HUB_EXAMPLES = 150  # examples per hub before a fresh one
PUSH = "/v1/sync/logs/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HubFaults:
    """What the hub middleware does to the next push (POST /v1/sync/logs/...)."""

    mode: str = ""  # "", "drop_ack", "hold_before", "hold_after"
    reached: asyncio.Event | None = None  # set when the held push got there (before/after the handler)
    release: asyncio.Event | None = None
    dropped: int = 0
    held: list[asyncio.Task[Any]] = field(default_factory=list)

    def arm(self, mode: str) -> None:
        self.mode = mode
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self.mode or request.method != "POST" or not request.path.startswith(PUSH):
            return await handler(request)
        mode, self.mode = self.mode, ""
        reached, release = self.reached, self.release
        assert reached is not None and release is not None
        task = asyncio.current_task()
        if task is not None:
            self.held.append(task)
        if mode == "hold_before":
            reached.set()
            await release.wait()  # the node's round is cancelled and its stores closed meanwhile
        response = await handler(request)  # the hub commits here (or refuses)
        if mode == "hold_after":
            reached.set()
            await release.wait()
        if mode in ("drop_ack", "hold_after"):
            self.dropped += 1
            transport = request.transport
            if transport is not None:
                transport.abort()  # the answer never leaves: the node sees the connection drop
            raise ConnectionResetError("model: answer dropped after the hub committed")
        return response

    async def settle(self) -> None:
        """Release held handlers and wait for them to finish (whatever they answer)."""
        if self.release is not None:
            self.release.set()
        self.mode = ""
        held, self.held = self.held, []
        pending = [task for task in held if not task.done()]
        if pending:  # bounded: a released handler finishes within a few loop turns
            await asyncio.wait(pending, timeout=5)


class World:
    """The event loop, the hub and its server, shared by the examples of one test."""

    def __init__(self, root: Path, *, hub_examples: int = HUB_EXAMPLES) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        self.faults = HubFaults()
        self.server: TestServer | None = None
        self.hub_dir = root / "hub0"
        self.hub_serial = 0
        self.hub_examples = hub_examples
        self.on_hub = 0
        self.node_serial = itertools.count(1)
        self.hub_restarts = 0
        self.timings: dict[str, float] = {}  # seconds spent per calling rule
        self._reader: sqlite3.Connection | None = None
        self._reader_path: Path | None = None
        self.template: Path | None = None
        # the dropped answers are logged by aiohttp as errors: keep a failure's output readable
        self._server_log = logging.getLogger("aiohttp.server")
        self._server_level = self._server_log.level
        self._server_log.setLevel(logging.CRITICAL)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hub(self) -> Hub:
        assert self.server is not None
        return self.server.app[HUB]

    @property
    def hub_db(self) -> Path:
        return self.hub_dir / "hub.sqlite3"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        started = time.perf_counter()
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))
        finally:
            name = sys._getframe(1).f_code.co_name
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started

    async def _start(self) -> None:
        app = make_app(load_hub_config(self.hub_dir, environ={}))
        # outermost: the error middleware never sees the drop
        app.middlewares.insert(0, self.faults.middleware)
        self.server = TestServer(app, host="127.0.0.1", port=self.port)
        await self.server.start_server()

    async def _stop(self) -> None:
        await self.faults.settle()
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def new_example(self) -> None:
        """A fresh hub every ``hub_examples`` examples (or when none runs)."""
        if self.server is not None and self.on_hub < self.hub_examples:
            self.on_hub += 1
            return
        await self._stop()
        self.hub_serial += 1
        self.hub_dir = self.root / f"hub{self.hub_serial}"
        await new_hub(self.hub_dir, [])
        if self.template is None:
            from tests.reliability.modelnode import make_template

            self.template = await make_template(self.root / "template.sqlite3")
        await self._start()
        self.on_hub = 1

    async def restart_hub(self) -> None:
        await self._stop()
        await self._start()
        self.hub_restarts += 1

    async def invite(self, node: str) -> str:
        hub = self.hub
        token = await hub.registry.invite(
            node, "branch", f"Chi nhánh {node}", hub_url=self.base, hub_key=hub.public_key,
            now=now_ms(), ttl_ms=3_600_000,
        )  # fmt: skip
        return str(token.encode())

    async def revoke(self, node: str) -> tuple[int, int]:
        """What ``motcua-central node revoke`` does: the registry's cut, then the broadcast."""
        hub = self.hub
        epoch, cut = await hub.registry.revoke(node, after=None, reason="mất máy (mô hình)", now=now_ms())
        body = {"node": node, "epoch": epoch, "after_seq": cut, "reason": "mất máy (mô hình)"}
        await hub.mailbox.post([Post(BROADCAST, "hub.revocation", body)])
        return epoch, cut

    async def release(self, node: str) -> None:
        await self.hub.registry.release(node, now=now_ms())

    def hub_rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Read the hub's database (read-only, WAL: never blocks the hub's writer)."""
        if self._reader is None or self._reader_path != self.hub_db:
            if self._reader is not None:
                self._reader.close()
            self._reader = sqlite3.connect(f"file:{self.hub_db}?mode=ro", uri=True, isolation_level=None)
            self._reader_path = self.hub_db
        return self._reader.execute(sql, args).fetchall()

    def close(self) -> None:
        self._server_log.setLevel(self._server_level)
        if self._reader is not None:
            self._reader.close()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self._stop())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
