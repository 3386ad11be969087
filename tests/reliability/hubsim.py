"""Simulated nodes against a real hub over real HTTP (real time, signed requests), and hub-side checks.

``HubNode`` holds a key and a chain it extends on demand; ``push(first, last)`` sends entries
``first..last`` as NDJSON with a signed request. ``new_hub(dir, nodes)`` creates a hub state directory
and enrolls the nodes in-process (invite + enroll, exactly what ``/v1/enroll`` runs), so a hub process
can start on it. ``check_hub_db`` opens the hub's SQLite file while the hub is down and checks what
the soaks promise: integrity, contiguous logs equal to what the nodes signed, receipts backed by data.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from central.config import load
from central.errors import now_ms
from central.hub import Hub
from protocol import (
    EnrollmentRequest,
    Entry,
    PublicKey,
    Receipt,
    body_digest,
    generate_private_key,
    genesis_body,
    private_key_from_seed,
    public_key_text,
    save_private_key,
    sign_entry,
    sign_request,
)
from protocol.hlc import HybridClock
from protocol.keys import Ed25519PrivateKey

__all__ = ["HubNode", "check_hub_db", "new_hub"]


@dataclass
class HubNode:
    node: str
    key: Ed25519PrivateKey = field(default_factory=generate_private_key)
    epoch: int = 1
    entries: list[Entry] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    hlc: HybridClock = field(default_factory=HybridClock)

    def extend_to(self, seq: int) -> None:
        while len(self.entries) < seq:
            n = len(self.entries) + 1
            now = time.time_ns() // 1_000_000
            if n == 1:
                kind, body = (
                    "log.genesis",
                    genesis_body(self.node, self.epoch, public_key_text(self.key), None),
                )
            else:
                kind, body = "test.note", {"n": n, "text": f"ghi chú số {n}"}
            self.entries.append(
                sign_entry(
                    self.key, log=self.node, epoch=self.epoch, seq=n,
                    prev=self.entries[-1].hash if self.entries else None, time=self.hlc.now(now), kind=kind,
                    body=body,
                )
            )  # fmt: skip

    def body(self, first: int, last: int) -> bytes:
        self.extend_to(last)
        return b"".join(e.raw + b"\n" for e in self.entries[first - 1 : last])

    def headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        return sign_request(
            self.key, node=self.node, epoch=self.epoch, method=method, target=target,
            time_ms=time.time_ns() // 1_000_000, body_sha256=body_digest(body),
        )  # fmt: skip

    async def call(
        self, session: aiohttp.ClientSession, base: str, method: str, target: str, body: bytes = b""
    ) -> tuple[int, Any]:
        async with session.request(
            method, base + target, data=body, headers=self.headers(method, target, body)
        ) as resp:
            payload = await resp.read()
            if resp.headers.get("Content-Type", "").startswith("application/json"):
                import json

                return resp.status, json.loads(payload)
            return resp.status, payload

    async def push(self, session: aiohttp.ClientSession, base: str, first: int, last: int) -> tuple[int, Any]:
        return await self.call(
            session, base, "POST", f"/v1/sync/logs/{self.node}/{self.epoch}", self.body(first, last)
        )


async def new_hub(data: Path, nodes: list[HubNode]) -> PublicKey:
    """A hub state directory with ``nodes`` enrolled at epoch 1; returns the hub's public key."""
    data.mkdir(parents=True, exist_ok=True)
    save_private_key(private_key_from_seed(b"r" * 32), data / "hub.key")
    hub = await Hub.open(load(data, environ={}), now_ms)
    try:
        for sim in nodes:
            token = await hub.registry.invite(
                sim.node, "branch", f"Chi nhánh {sim.node}", hub_url="http://127.0.0.1",
                hub_key=hub.public_key, now=now_ms(), ttl_ms=3_600_000,
            )  # fmt: skip
            await hub.registry.enroll(
                EnrollmentRequest.make(token, sim.key), hub_key=hub.hub_key, now=now_ms()
            )
        return hub.public_key
    finally:
        await hub.close()


def check_hub_db(path: Path, nodes: list[HubNode], hub_key: PublicKey) -> dict[str, int]:
    """Hub down: integrity ok; each node's stored log = 1..n of its own signed bytes (no gap, no
    duplicate, no foreign byte); every receipt a node holds is signed by the hub and covered by data."""
    db = sqlite3.connect(path, isolation_level=None)
    held: dict[str, int] = {}
    try:
        (result,) = db.execute("PRAGMA integrity_check").fetchone()
        assert result == "ok", f"hub integrity_check: {result}"
        for sim in nodes:
            rows = db.execute(
                "SELECT seq, hash, raw FROM entries WHERE log = ? AND epoch = ? ORDER BY seq",
                (sim.node, sim.epoch),
            ).fetchall()
            seqs = [r[0] for r in rows]
            assert seqs == list(range(1, len(rows) + 1)), f"{sim.node}: stored seqs not contiguous"
            for seq, digest, raw in rows:
                mine = sim.entries[seq - 1]
                assert bytes(raw) == mine.raw and digest == mine.hash, (
                    f"{sim.node}:{seq} differs from what it signed"
                )
            for receipt in sim.receipts:
                receipt.verify(hub_key)
                assert receipt.seq <= len(rows), (
                    f"{sim.node}: receipt for {receipt.seq} but hub holds {len(rows)}"
                )
                assert rows[receipt.seq - 1][1] == receipt.head, (
                    f"{sim.node}: receipt head is not the stored entry"
                )
            head = db.execute(
                "SELECT seq, hash FROM heads WHERE log = ? AND epoch = ?", (sim.node, sim.epoch)
            ).fetchone()
            if rows:
                assert head is not None and (head[0], head[1]) == (len(rows), rows[-1][1]), (
                    f"{sim.node}: head row"
                )
            held[sim.node] = len(rows)
    finally:
        db.close()
    return held
