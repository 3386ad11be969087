"""Test helpers: a hub on a real loopback port, simulated nodes that sign entries and requests."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from central.config import CentralConfig, load
from central.hub import HUB, Hub
from protocol import (
    EnrollmentRequest,
    Entry,
    Head,
    InviteToken,
    body_digest,
    canonical,
    generate_private_key,
    genesis_body,
    private_key_from_seed,
    public_key_text,
    save_private_key,
    sign_entry,
    sign_request,
)
from protocol.keys import Ed25519PrivateKey

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def make_hub_dir(path: Path, **overrides: Any) -> CentralConfig:
    path.mkdir(parents=True, exist_ok=True)
    save_private_key(private_key_from_seed(b"h" * 32), path / "hub.key")
    return load(path, environ={}, **overrides)


def dump_db(path: Path) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Every row of every table, in a stable order: equal dumps mean an unchanged hub."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        return [(t, sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr)) for t in tables]


@dataclass
class SimNode:
    """A node as the hub sees it: a key, a log, and a client that signs every request."""

    client: TestClient
    node: str
    key: Ed25519PrivateKey = field(default_factory=generate_private_key)
    epoch: int = 1
    entries: list[Entry] = field(default_factory=list)
    time: int = T0
    previous: Head | None = None

    def append(self, kind: str, body: dict[str, Any], *, key: Ed25519PrivateKey | None = None) -> Entry:
        if not self.entries:
            genesis = sign_entry(
                self.key,
                log=self.node,
                epoch=self.epoch,
                seq=1,
                prev=None,
                time=(self.time, 0),
                kind="log.genesis",
                body=genesis_body(self.node, self.epoch, public_key_text(self.key), self.previous),
            )
            self.entries.append(genesis)
        self.time += 1000
        last = self.entries[-1]
        entry = sign_entry(
            key or self.key,
            log=self.node,
            epoch=self.epoch,
            seq=last.seq + 1,
            prev=last.hash,
            time=(self.time, 0),
            kind=kind,
            body=body,
        )
        self.entries.append(entry)
        return entry

    def notes(self, n: int) -> list[Entry]:
        return [self.append("test.note", {"n": len(self.entries) + i}) for i in range(n)]

    def headers(
        self,
        method: str,
        target: str,
        body: bytes,
        *,
        time_ms: int | None = None,
        key: Ed25519PrivateKey | None = None,
        epoch: int | None = None,
    ) -> dict[str, str]:
        return sign_request(
            key or self.key,
            node=self.node,
            epoch=epoch or self.epoch,
            method=method,
            target=target,
            time_ms=time_ms if time_ms is not None else hub_clock.now,
            body_sha256=body_digest(body),
        )

    async def call(self, method: str, target: str, body: bytes = b"", **kw: Any) -> tuple[int, Any]:
        headers = self.headers(method, target, body, **kw)
        resp = await self.client.request(method, target, data=body, headers=headers)
        ctype = resp.headers.get("Content-Type", "")
        payload: Any = await resp.json() if ctype.startswith("application/json") else await resp.read()
        return resp.status, payload

    async def push(
        self,
        entries: list[Entry] | None = None,
        *,
        log: str | None = None,
        epoch: int | None = None,
        raw: bytes | None = None,
        **kw: Any,
    ) -> tuple[int, Any]:
        chosen = self.entries if entries is None else entries
        body = raw if raw is not None else b"".join(e.raw + b"\n" for e in chosen)
        target = f"/v1/sync/logs/{log or self.node}/{epoch or self.epoch}"
        return await self.call("POST", target, body, **kw)

    async def enroll(self, hub: Hub, kind: str = "branch") -> dict[str, Any]:
        token = await hub.registry.invite(
            self.node,
            kind,
            f"Chi nhánh {self.node}",
            hub_url="http://127.0.0.1",
            hub_key=hub.public_key,
            now=hub_clock.now,
            ttl_ms=3_600_000,
        )
        return await self.enroll_with(token)

    async def enroll_with(self, token: InviteToken) -> dict[str, Any]:
        request = EnrollmentRequest.make(token, self.key)
        resp = await self.client.post("/v1/enroll", data=canonical(request.to_wire()))
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


class _Clock:
    """The hub's clock in tests: fixed, advanced by hand."""

    def __init__(self) -> None:
        self.now = T0 + 3_600_000

    def __call__(self) -> int:
        return self.now


hub_clock = _Clock()


def hub_of(client: TestClient) -> Hub:
    return client.server.app[HUB]
