"""Real parts on loopback for end-to-end tests: the hub app, and real node apps created from invite tokens.

``HubRunner`` serves ``central.app.make_app`` on a fixed free port and can be stopped and started again
on the same port and data (the hub going down and coming back). ``NodeRunner`` creates a node with
``motcua-node init --token`` (``node.restore.provision_from_hub``), serves ``node.app.make_app`` (so the
sync task runs exactly as in production, with a 1 s interval and backoff cap) and talks to its JSON API
and web UI like a client would. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from central.app import make_app as make_hub_app
from central.config import CentralConfig, load
from central.errors import now_ms
from central.hub import HUB, Hub
from node.app import make_app as make_node_app
from node.auth import add_user, create_token
from node.config import NodeConfig
from node.config import load as load_node_config
from node.restore import provision_from_hub
from node.store import Store
from tests.central.helpers import make_hub_dir

FAST_LOOKUP = 1_000
UNIT = "000.00.01.H26"
PASSWORD = "mat-khau-rat-dai-12"
FAST_SYNC = {"sync_interval_seconds": 1, "sync_max_backoff_seconds": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, what: str = "") -> None:
    """Poll ``check`` every 0.1 s until it is true; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.1)


def reception(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "procedure": "1.001193",
        "applicant": {"name": "Nguyễn Văn An", "id_type": "cccd", "id_number": "001090012345"},
    }
    data.update(overrides)
    return data


@dataclass
class HubRunner:
    root: Path
    config: CentralConfig = field(init=False)
    port: int = field(default_factory=free_port)
    server: TestServer | None = None
    app: web.Application | None = None
    clock: Callable[[], int] = now_ms
    settings: dict[str, Any] = field(default_factory=dict)  # config overrides

    def __post_init__(self) -> None:
        self.config = load(make_hub_dir(self.root).data_dir, environ={}, **self.settings)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hub(self) -> Hub:
        assert self.app is not None
        return self.app[HUB]

    async def start(self) -> None:
        self.app = make_hub_app(self.config, clock=self.clock)
        self.server = TestServer(self.app, host="127.0.0.1", port=self.port)
        await self.server.start_server()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def invite(self, node: str, name: str | None = None) -> str:
        token = await self.hub.registry.invite(
            node,
            "branch",
            name or f"Chi nhánh {node}",
            hub_url=self.base,
            hub_key=self.hub.public_key,
            now=now_ms(),
            ttl_ms=600_000,
        )
        return token.encode()

    async def head(self, node: str, epoch: int) -> tuple[int, str | None]:
        head = await self.hub.store.head(node, epoch)
        return (0, None) if head is None else (head.seq, head.hash)


@dataclass
class NodeRunner:
    data: Path
    config: NodeConfig
    api_token: str
    port: int = field(default_factory=free_port)
    server: TestServer | None = None
    app: web.Application | None = None
    session: aiohttp.ClientSession | None = None

    @classmethod
    async def create(cls, data: Path, token: str, *, node_id: str, block: int) -> NodeRunner:
        report = await provision_from_hub(
            data, token, unit_code=UNIT, code_block=block, extra=dict(FAST_SYNC)
        )
        assert report.config is not None and report.config.node_id == node_id
        return cls(data, report.config, await seed_users(report.config))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.config = load_node_config(self.data, {})
        self.app = make_node_app(self.config, lookup_iterations=FAST_LOOKUP)
        self.server = TestServer(self.app, host="127.0.0.1", port=self.port)
        await self.server.start_server()
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.api_token}"})

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.request(method, self.base + path, json=body) as resp:
            return resp.status, await resp.json()

    async def receive(self, **overrides: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/api/v1/dossiers", reception(**overrides))
        assert status == 201, body
        return dict(body)

    async def dossier(self, code: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/v1/dossiers/{code}")
        assert status == 200, body
        return dict(body)

    async def sync_status(self) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/v1/status")
        assert status == 200, body
        return dict(body)

    async def page(self, path: str) -> str:
        """A staff page as a logged-in clerk sees it (a fresh browser session)."""
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(self.base + "/dang-nhap") as resp:
                csrf = _csrf(await resp.text())
            async with browser.post(
                self.base + "/dang-nhap",
                data={"csrf": csrf, "username": "an.nv", "password": PASSWORD, "next": path},
                headers={"Origin": self.base},
            ) as resp:
                assert resp.status == 200, await resp.text()
            async with browser.get(self.base + path) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.text()

    def copy_data(self, target: Path) -> None:
        """A backup of the whole state directory (taken while the node is stopped)."""
        assert self.server is None, "stop the node before copying its data"
        shutil.copytree(self.data, target)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no csrf field"
    return match.group(1)


async def seed_users(config: NodeConfig) -> str:
    store = await Store.open(config.db_path)
    try:
        await add_user(store, "an.nv", PASSWORD, "staff", "Nguyễn Văn An")
        return await create_token(store, "kiosk")
    finally:
        await store.close()
