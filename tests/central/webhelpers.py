"""Helpers for the web page tests: users, logins with a real cookie jar, CSRF tokens, dossiers pushed by a
simulated branch (real signed entries), heartbeats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from central.web import WEB
from protocol import Heartbeat, LogHead, canonical
from protocol.catalog import default_catalog
from protocol.dossier import (
    Applicant,
    DocumentItem,
    ProcedureRef,
    RegisterLine,
    hash_lookup_code,
    received_body,
)
from tests.central.helpers import SimNode, hub_clock, hub_of

PASSWORD = "mật khẩu đủ dài 2026"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
# A dossier code for a reception day in UTC+7 must match the day of ``received_at``.
LOOKUP = "ABCD2345"


async def add_user(client: TestClient, username: str, role: str, agency: str | None = None) -> None:
    await client.server.app[WEB].users.add(username, role, PASSWORD, agency=agency, now=hub_clock.now)


async def login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return await client.post(
        "/login", data={"username": username, "password": password}, allow_redirects=False
    )


async def csrf_of(client: TestClient, path: str = "/") -> str:
    resp = await client.get(path)
    text = await resp.text()
    match = CSRF_RE.search(text)
    assert match, f"no CSRF token on {path} ({resp.status})"
    return match.group(1)


@dataclass
class Branch:
    """A simulated branch node that receives dossiers and pushes them to the hub."""

    sim: SimNode
    count: int = 0

    @classmethod
    async def enroll(cls, client: TestClient, node: str = "CN01", kind: str = "branch") -> Branch:
        sim = SimNode(client, node)
        await sim.enroll(hub_of(client), kind)
        return cls(sim)

    def receive(
        self,
        *,
        name: str = "Nguyễn Văn An",
        procedure: str = "1.001193",
        received_at: int | None = None,
        due_at: int | None = None,
        pickup: str | None = None,
    ) -> str:
        self.count += 1
        # default: half an hour before hub time (node clocks agree with the hub's)
        at = received_at if received_at is not None else hub_clock.now - 30 * 60 * 1000
        from protocol.calendar import local_date

        day = local_date(at)
        code = f"{self.sim.node}-{day:%y%m%d}-{self.count:04d}"
        version = default_catalog().lookup(procedure).version
        body = received_body(
            dossier=code,
            actor="clerk1",
            applicant=Applicant(name=name, id_type="cccd", id_number="001090012345"),
            procedure=ProcedureRef(procedure, version),
            documents=[DocumentItem("Tờ khai", "original", 1)],
            channel=1,
            pickup=pickup or self.sim.node,
            fee=0,
            received_at=at,
            due_at=due_at if due_at is not None else at + 8 * 3600 * 1000,
            register=RegisterLine("2026-01", self.count),
            lookup=hash_lookup_code(code, LOOKUP, iterations=10000),
        )
        self.sim.time = max(self.sim.time, at)
        self.sim.append("dossier.received", body)
        return code

    async def push(self) -> dict[str, Any]:
        status, body = await self.sim.push()
        assert status == 200, body
        return body

    async def heartbeat(self, **overrides: Any) -> dict[str, Any]:
        held = self.sim.entries[-1] if self.sim.entries else None
        values: dict[str, Any] = {
            "version": "0.1.0",
            "heads": (LogHead(self.sim.node, 1, held.seq, held.hash),) if held else (),
            "unacked_entries": 0,
            "unacked_bytes": 0,
            "oldest_unacked_ms": None,
            "disk_free_bytes": 50 * 1024**3,
            "printers": ({"name": "quay-1", "state": "ok"},),
            "scanners": ({"name": "may-quet-1", "state": "ok"},),
            "clock_ms": hub_clock.now,
            "last_error": None,
        }
        values.update(overrides)
        status, body = await self.sim.call(
            "POST", "/v1/sync/heartbeat", canonical(Heartbeat(**values).to_wire())
        )
        assert status == 200, body
        return body


async def settle(client: TestClient) -> None:
    """Let the hub's background projector fold what was just committed, and the relay between branches
    forward it (bounded wait)."""
    import asyncio

    from central.dossiers import DOSSIERS
    from central.relay import RELAY

    dossiers = client.server.app[DOSSIERS]
    relay = client.server.app.get(RELAY)
    for _ in range(500):
        if relay is not None and not await relay.idle():
            await asyncio.sleep(0.01)
            continue
        if dossiers.idle():
            await asyncio.sleep(0.01)
            if dossiers.idle():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the dossier projector did not settle")


def forked(branch: Branch, seq: int) -> Any:
    """A validly signed entry at ``seq`` that differs from the one the branch already pushed there."""
    from protocol import sign_entry

    held = branch.sim.entries[seq - 1]
    return sign_entry(
        branch.sim.key,
        log=branch.sim.node,
        epoch=branch.sim.epoch,
        seq=seq,
        prev=held.prev,
        time=held.time,
        kind="test.note",
        body={"n": "another history"},
    )


ROW_RE = re.compile(r'<tr class="sev-\d" data-node="([^"]+)" data-severity="(\d)">(.*?)</tr>', re.S)
CODE_RE = re.compile(r'data-code="([a-z_]+)"')


async def table(client: TestClient, query: str = "") -> dict[str, tuple[int, set[str], str]]:
    """The dashboard fragment as {node: (severity, problem codes, row html)}."""
    resp = await client.get("/admin/table" + query)
    assert resp.status == 200
    html = await resp.text()
    return {m[1]: (int(m[2]), set(CODE_RE.findall(m[3])), m[3]) for m in ROW_RE.finditer(html)}
