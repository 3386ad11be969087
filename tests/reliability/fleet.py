"""Real hub and node *processes* for the network, clock and monitoring tests (N4, N5, S9, M1).

``HubProc``: a hub state directory (``hubsim.new_hub``) with a ``central.toml``, a viewer and an admin
web user (as ``motcua-central user add`` makes them), served by ``motcua-central serve``; ``invite``
makes a token naming any URL (the fault proxy's, to put it between node and hub); ``dashboard()`` logs
in over HTTP and reads the sync-health table (``/admin/table``) as an administrator's browser does.

``NodeProc``: a node provisioned from an invite (``motcua-node init --token``'s code), a staff user and an
API token seeded, then ``motcua-node serve`` as a process, optionally under ``faketime`` (libfaketime:
the process's wall clock shifted; monotonic clocks left alone). Its JSON API, staff pages and log are what
the tests read.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.reliability.procs import ROOT, ServerProc, free_port, wait_serving

__all__ = ["FAKETIME", "HubProc", "NodeProc", "faketime_available", "libfaketime", "until"]

FAKETIME = shutil.which("faketime")
PASSWORD = "mật khẩu đủ dài 2026"
STAFF_PASSWORD = "mat-khau-rat-dai-12"
ROW_RE = re.compile(r'<tr class="sev-\d" data-node="([^"]+)" data-severity="(\d)">(.*?)</tr>', re.S)
CODE_RE = re.compile(r'data-code="([a-z_]+)"')
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def faketime_available() -> bool:
    return FAKETIME is not None and bool(glob.glob(LIBFAKETIME))


LIBFAKETIME = "/usr/lib/*/faketime/libfaketime.so.1"


def libfaketime() -> str:
    found = sorted(glob.glob(LIBFAKETIME))
    assert found, f"no {LIBFAKETIME}"
    return found[0]


def _script(tool: str) -> list[str]:
    """``python -m node|central`` from the repository root: the code of this checkout (the installed
    script would import whatever tree the editable install points at)."""
    return [sys.executable, "-m", tool]


def _spawn(argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> ServerProc:
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})}
        )
    return ServerProc(popen.pid, port, log, popen)


class HubProc:
    def __init__(self, root: Path, **config: Any) -> None:
        self.dir = root / "hub"
        self.port = free_port()
        self.config = {"online_window_s": 180, **config}
        self.proc: ServerProc | None = None
        self.log = root / "hub.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def create(self) -> None:
        from tests.reliability.hubsim import new_hub

        await new_hub(self.dir, [])
        (self.dir / "central.toml").write_text(
            "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.config.items()), "utf-8"
        )
        from central.config import load
        from central.errors import now_ms
        from central.hub import Hub
        from central.webauth import Users

        hub = await Hub.open(load(self.dir, environ={}), now_ms)
        try:  # what ``motcua-central user add`` does, without a process start per user
            for username, role in (("xem1", "viewer"), ("quantri1", "admin")):
                await Users(hub.store).add(username, role, PASSWORD, agency=None, now=now_ms())
        finally:
            await hub.close()

    async def start(self) -> None:
        argv = [*_script("central"), "--data", str(self.dir), "serve", "--listen", f"127.0.0.1:{self.port}"]
        self.proc = _spawn(argv, self.port, self.log)
        await wait_serving(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    async def invite(self, node: str, hub_url: str | None = None, kind: str = "branch") -> str:
        from central.config import load
        from central.errors import now_ms
        from central.hub import Hub

        hub = await Hub.open(load(self.dir, environ={}), now_ms)
        try:
            token = await hub.registry.invite(
                node, kind, f"Chi nhánh {node}", hub_url=hub_url or self.url, hub_key=hub.public_key,
                now=now_ms(), ttl_ms=3_600_000,
            )  # fmt: skip
            return str(token.encode())
        finally:
            await hub.close()

    async def dashboard(self) -> dict[str, tuple[int, set[str], str]]:
        """The sync-health table as {node: (severity, problem codes, row html)}, through a real login."""
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=10)
        ) as browser:
            async with browser.post(
                self.url + "/login", data={"username": "xem1", "password": PASSWORD}, allow_redirects=False
            ) as resp:
                assert resp.status == 303, await resp.text()
            async with browser.get(self.url + "/admin/table") as resp:
                assert resp.status == 200, await resp.text()
                html = await resp.text()
        return {m[1]: (int(m[2]), set(CODE_RE.findall(m[3])), m[3]) for m in ROW_RE.finditer(html)}

    async def revoke(self, node: str, reason: str) -> None:
        """Revoke ``node``'s key as an administrator does, through the revoke page."""
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=10)
        ) as browser:
            async with browser.post(
                self.url + "/login",
                data={"username": "quantri1", "password": PASSWORD},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303, await resp.text()
            async with browser.get(f"{self.url}/admin/nodes/{node}/revoke") as resp:
                match = CSRF_RE.search(await resp.text())
                assert resp.status == 200 and match, resp.status
            async with browser.post(
                f"{self.url}/admin/nodes/{node}/revoke",
                data={"csrf": match[1], "confirm": node, "reason": reason, "after": ""},
                headers={"Origin": self.url},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303, await resp.text()

    def head(self, node: str) -> int:
        import sqlite3

        db = sqlite3.connect(f"file:{self.dir / 'hub.sqlite3'}?mode=ro", uri=True, timeout=10)
        try:
            (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM entries WHERE log = ?", (node,)).fetchone()
            return int(seq)
        finally:
            db.close()


class NodeProc:
    def __init__(self, root: Path, node_id: str, block: int) -> None:
        self.node_id = node_id
        self.block = block
        self.data = root / node_id
        self.port = free_port()
        self.log = root / f"{node_id}.log"
        self.proc: ServerProc | None = None
        self.api_token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def create(self, token: str, **config: Any) -> None:
        from node.restore import provision_from_hub
        from tests.e2e.realnode import seed_users

        settings = {"sync_interval_seconds": 1, "sync_max_backoff_seconds": 1, **config}
        report = await provision_from_hub(
            self.data, token, unit_code="000.00.01.H26", code_block=self.block, extra=settings
        )
        assert report.config is not None
        self.api_token = await seed_users(report.config)

    async def start(self, *, fake: str | None = None, fake_file: Path | None = None) -> None:
        """Serve; ``fake``: a libfaketime offset such as ``-730d``; ``fake_file``: a file holding the offset,
        re-read at every clock call (the clock can be moved while the process runs)."""
        argv = [*_script("node"), "serve", "--data", str(self.data), "--listen", f"127.0.0.1:{self.port}"]
        env = {}
        if fake is not None:  # libfaketime preloaded into the server itself: the `faketime` wrapper runs
            # it as a child, which survived the wrapper's SIGTERM/SIGKILL (leaked `serve` processes)
            env = {"LD_PRELOAD": libfaketime(), "FAKETIME": fake, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        elif fake_file is not None:  # the wrapper would set FAKETIME, which wins over the file
            env = {
                "LD_PRELOAD": libfaketime(),
                "FAKETIME_TIMESTAMP_FILE": str(fake_file),
                "FAKETIME_CACHE_DURATION": "1",  # re-read the file at most once a second
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            }
        self.proc = _spawn(argv, self.port, self.log, env)
        await wait_serving(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    async def call(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.api_token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as session:
            async with session.request(method, self.url + path, json=body) as resp:
                return resp.status, await resp.json()

    async def receive(self, **overrides: Any) -> tuple[int, Any]:
        from tests.e2e.realnode import reception

        return await self.call("POST", "/api/v1/dossiers", reception(**overrides))

    async def status(self) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/v1/status")
        assert status == 200, body
        return dict(body)

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as anonymous:
            async with anonymous.get(self.url + "/readyz") as resp:
                return resp.status, await resp.json()

    async def browser(self) -> aiohttp.ClientSession:
        """A logged-in staff browser session (the caller closes it)."""
        browser = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=10)
        )
        async with browser.get(self.url + "/dang-nhap") as resp:
            match = CSRF_RE.search(await resp.text())
            assert match, "no csrf field on the login page"
        async with browser.post(
            self.url + "/dang-nhap",
            data={"csrf": match[1], "username": "an.nv", "password": STAFF_PASSWORD, "next": "/hom-nay"},
            headers={"Origin": self.url},
        ) as resp:
            assert resp.status == 200, await resp.text()
        return browser

    async def page(self, path: str) -> str:
        browser = await self.browser()
        try:
            async with browser.get(self.url + path) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.text()
        finally:
            await browser.close()


async def until(check: Any, *, timeout: float, what: str, step: float = 0.2) -> float:
    """Poll the async ``check`` until true (bounded); return the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)
    return time.monotonic() - started
