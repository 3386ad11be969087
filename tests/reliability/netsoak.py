"""N1-N3 harness: real nodes (``node.provision.Node``: journal, desk, store) syncing through the fault
proxy to a real hub process, with a Jepsen-style history and checkers.

Each node keeps taking intakes (``Desk.receive``: the real reception code) while two sync loops per
node (two ``SyncClient``s on the same log: concurrent, overlapping pushes; N3) run rounds through
``tests.faults.proxy.FaultProxy``. A nemesis alternates faulty and healthy windows and partitions
once; then the network heals and every node must reach "hub head = local head" within the bound.

Checkers (RELIABILITY.md §2.2): (1) set: every intake answered by the desk is on the hub, nothing on
the hub that no node wrote; (2) multiset: each (node, seq) and each dossier code exactly once; (3)
the hub's log of each node is a byte-identical prefix of the node's log, sampled every 0.5 s during
the run and at the end; (4) every receipt a node keeps is signed by the hub and matches what the hub
stores at that position.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from node.config import load as load_node_config
from node.provision import Node, init_node
from node.sync_client import SYNC_SQL, HttpTransport, SyncClient, SyncError
from node.sync_store import SqliteLocalLog
from protocol import Enrollment, EnrollmentRequest, PublicKey, Receipt, canonical, decode, public_key_text
from tests.faults.proxy import FaultProxy, Faults
from tests.node.conftest import FAST_LOOKUP, reception
from tests.reliability.procs import ServerProc, free_port, spawn_cli, wait_serving
from tests.tools import node_db

__all__ = ["NetSoak", "SoakPlan", "open_enrolled", "open_node", "sync_client"]


@dataclass
class SoakPlan:
    seconds: float  # faulty run time (intakes keep coming)
    partition_at: float
    partition_s: float
    intake_per_s: float = 1.0
    nodes: int = 3
    converge_s: float = 60.0
    faults: Faults = field(
        default_factory=lambda: Faults(
            delay_ms=(0, 300), refuse=0.2, reset=0.05, truncate=0.05, ack_loss=0.05, replay=0.05
        )
    )


@dataclass
class SimBranch:
    node_id: str
    node: Node
    clients: list[SyncClient]
    acked: list[str] = field(default_factory=list)
    failed: int = 0


async def _invite(hub_dir: Path, node_id: str, url: str) -> Any:
    from central.config import load
    from central.errors import now_ms
    from central.hub import Hub

    hub = await Hub.open(load(hub_dir, environ={}), now_ms)
    try:
        return await hub.registry.invite(
            node_id, "branch", node_id, hub_url=url, hub_key=hub.public_key, now=now_ms(), ttl_ms=3_600_000
        )
    finally:
        await hub.close()


async def open_node(data: Path) -> Node:
    """Open a real node's parts, plus the sync client's tables (the node-side sync lands on syncint)."""
    node = await Node.open(load_node_config(data, {}), lookup_iterations=FAST_LOOKUP)
    async with node.store.write() as db:
        for statement in SYNC_SQL.split(";"):
            if statement.strip():
                await db.execute(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
    return node


async def open_enrolled(data: Path, hub_dir: Path, hub_url: str) -> tuple[Node, PublicKey]:
    """Open the node at ``data``; enroll its key (invite in-process, ``/v1/enroll`` over HTTP)."""
    node = await open_node(data)
    token = await _invite(hub_dir, node.config.node_id, hub_url)
    request = EnrollmentRequest.make(token, node.key)
    async with aiohttp.ClientSession() as session:
        async with session.post(hub_url + "/v1/enroll", data=canonical(request.to_wire())) as resp:
            assert resp.status == 200, await resp.text()
            enrollment = Enrollment.from_wire(decode(await resp.read()))
    assert enrollment.epoch == 1
    return node, enrollment.verify(token, public_key_text(node.key))


def sync_client(node: Node, hub_key: PublicKey, base: str) -> SyncClient:
    """The node's own sync client (``NodeSyncClient``: recovery, fork exposure, append blocks) over its
    store, one connection per request."""
    from node.sync_service import NodeSyncClient

    data = node.config.data_dir
    local = SqliteLocalLog(
        node.store, node.config.node_id, lambda sha: data / "blobs" / sha, wall=_now, data_dir=data
    )
    transport = HttpTransport(base, timeout=5, session=_session())
    return NodeSyncClient(
        node.config.node_id, 1, node.key, hub_key, local, transport, wall=_now, store=node.store
    )


def _session() -> aiohttp.ClientSession:
    # one connection per request, so every request draws its own fate at the proxy
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=5)
    )


class NetSoak:
    def __init__(self, tmp: Path, plan: SoakPlan, seed: int) -> None:
        self.tmp = tmp
        self.plan = plan
        self.rng = random.Random(seed)
        self.seed = seed
        self.hub_dir = tmp / "hub"
        self.branches: list[SimBranch] = []
        self.samples = 0
        self.rounds_ok = 0
        self.rounds_failed: dict[str, int] = {}
        self.hub: ServerProc | None = None
        self.proxy: FaultProxy | None = None
        self.hub_key: PublicKey | None = None

    # -- setup -------------------------------------------------------------------------------------

    async def start(self) -> None:
        from tests.reliability.hubsim import new_hub

        self.hub_key = await new_hub(self.hub_dir, [])
        port = free_port()
        self.hub = spawn_cli(
            "central", ["--data", str(self.hub_dir), "serve", "--listen", f"127.0.0.1:{port}"], port,
            self.tmp / "hub.log",
        )  # fmt: skip
        await wait_serving(self.hub)
        self.proxy = FaultProxy(port, seed=self.seed)
        await self.proxy.start()
        for i in range(1, self.plan.nodes + 1):
            self.branches.append(await self._branch(f"CN{i:02d}", i))

    async def _branch(self, node_id: str, block: int) -> SimBranch:
        assert self.hub is not None and self.proxy is not None
        data = self.tmp / node_id
        await init_node(data, node_id=node_id, unit_code="000.00.01.H26", name=node_id, code_block=block)
        node, hub_key = await open_enrolled(data, self.hub_dir, self.hub.url)
        clients = [sync_client(node, hub_key, self.proxy.url) for _ in range(2)]
        return SimBranch(node_id, node, clients)

    async def close(self) -> None:
        for b in self.branches:
            for c in b.clients:
                await c.transport.close()  # type: ignore[attr-defined]
            await b.node.close()
        if self.proxy is not None:
            await self.proxy.stop()
        if self.hub is not None:
            self.hub.stop()

    # -- workload ----------------------------------------------------------------------------------

    async def _intakes(self, branch: SimBranch, until: float, rng: random.Random) -> None:
        i = 0
        while time.monotonic() < until:
            i += 1
            try:
                result = await branch.node.desk.receive(
                    reception(note=f"{branch.node_id} #{i}"), actor="soak"
                )
                branch.acked.append(result.code)
            except Exception:  # a local intake failure is a finding; count it, the checker shows it
                branch.failed += 1
            for c in branch.clients:
                c.poke()
            await asyncio.sleep(rng.expovariate(self.plan.intake_per_s))

    async def _sync_loop(self, client: SyncClient, stop: asyncio.Event, rng: random.Random) -> None:
        delay = 0.05
        while not stop.is_set():
            try:
                await client.sync_once()
                self.rounds_ok += 1
                delay = 0.05
            except SyncError as exc:
                self.rounds_failed[exc.code] = self.rounds_failed.get(exc.code, 0) + 1
                assert exc.retryable, f"non-retryable sync error under network faults: {exc}"
                delay = min(1.0, delay * 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=rng.uniform(0, delay))

    async def _sampler(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.check_prefix()
            self.samples += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)

    async def _nemesis(self, until: float) -> None:
        assert self.proxy is not None
        start = time.monotonic()
        partitioned = False
        while time.monotonic() < until:
            now = time.monotonic() - start
            if not partitioned and now >= self.plan.partition_at:
                self.proxy.partition(self.plan.partition_s)
                partitioned = True
            # alternate faulty (3 s) and healthy (1 s) windows
            self.proxy.faults = self.plan.faults if int(now) % 4 != 3 else Faults()
            await asyncio.sleep(0.25)
        self.proxy.heal()
        self.proxy.faults = Faults()

    async def run(self) -> dict[str, Any]:
        stop = asyncio.Event()
        until = time.monotonic() + self.plan.seconds
        workers = [asyncio.create_task(self._sampler(stop))]
        for b in self.branches:
            workers.append(asyncio.create_task(self._intakes(b, until, random.Random(self.rng.random()))))
            for c in b.clients:
                workers.append(
                    asyncio.create_task(self._sync_loop(c, stop, random.Random(self.rng.random())))
                )
        started = time.monotonic()
        try:
            await self._nemesis(until)
            healed = time.monotonic()
            converged = await self._converged(healed + self.plan.converge_s)
            convergence_s = time.monotonic() - healed
        finally:
            stop.set()
            results = await asyncio.gather(*workers, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        assert converged, f"not converged {self.plan.converge_s} s after healing: {self.lag()}"
        checked = self.check_all()
        assert self.proxy is not None
        return {
            "nodes": len(self.branches),
            "intakes_acked": sum(len(b.acked) for b in self.branches),
            "intake_failures": sum(b.failed for b in self.branches),
            "lost": 0,
            "unexpected": 0,
            "duplicates": 0,
            "prefix_samples": self.samples,
            "receipts_checked": checked,
            "sync_rounds_ok": self.rounds_ok,
            "sync_rounds_failed": dict(sorted(self.rounds_failed.items())),
            "faults": {k: self.proxy.count(k) for k in (
                "refuse", "reset", "truncate", "ack_loss", "response_dropped", "replay", "replayed",
                "partitioned")},
            "run_s": round(self.plan.seconds, 1),
            "convergence_s": round(convergence_s, 2),
            "total_s": round(time.monotonic() - started, 1),
        }  # fmt: skip

    # -- checkers ----------------------------------------------------------------------------------

    def _hub_db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.hub_dir / 'hub.sqlite3'}?mode=ro", uri=True)

    def _node_rows(self, b: SimBranch) -> list[tuple[int, bytes]]:
        with contextlib.closing(node_db(b.node.config.db_path, readonly=True)) as db:
            return [
                (s, bytes(r))
                for s, r in db.execute(
                    "SELECT seq, raw FROM entries WHERE log = ? AND epoch = 1 ORDER BY seq", (b.node_id,)
                )
            ]

    def check_prefix(self) -> None:
        with contextlib.closing(self._hub_db()) as hub:
            for b in self.branches:
                hub_rows = [
                    (s, bytes(r))
                    for s, r in hub.execute(
                        "SELECT seq, raw FROM entries WHERE log = ? AND epoch = 1 ORDER BY seq", (b.node_id,)
                    )
                ]
                mine = self._node_rows(b)
                assert hub_rows == mine[: len(hub_rows)], f"{b.node_id}: the hub's log is not a prefix"

    def lag(self) -> dict[str, tuple[int, int]]:
        with contextlib.closing(self._hub_db()) as hub:
            out = {}
            for b in self.branches:
                (held,) = hub.execute(
                    "SELECT coalesce(max(seq), 0) FROM entries WHERE log = ? AND epoch = 1", (b.node_id,)
                ).fetchone()
                out[b.node_id] = (held, len(self._node_rows(b)))
            return out

    async def _converged(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if all(h == n for h, n in self.lag().values()):
                return True
            for b in self.branches:
                for c in b.clients:
                    c.poke()
            await asyncio.sleep(0.2)
        return False

    def check_all(self) -> int:
        self.check_prefix()
        receipts = 0
        assert self.hub_key is not None
        with contextlib.closing(self._hub_db()) as hub:
            codes = [r[0] for r in hub.execute("SELECT dossier FROM entries WHERE kind = 'dossier.received'")]
            assert len(codes) == len(set(codes)), "a dossier was received twice on the hub"
            written = set()
            for b in self.branches:
                mine = self._node_rows(b)
                held = hub.execute("SELECT count(*) FROM entries WHERE log = ?", (b.node_id,)).fetchone()[0]
                assert held == len(mine), f"{b.node_id}: hub holds {held} of {len(mine)}"
                missing = set(b.acked) - set(codes)
                assert not missing, f"{b.node_id}: acknowledged intakes lost: {sorted(missing)[:5]}"
                written |= set(b.acked)
                with contextlib.closing(node_db(b.node.config.db_path, readonly=True)) as db:
                    for row in db.execute("SELECT log, epoch, seq, head, hub_time, sig FROM sync_receipts"):
                        receipt = Receipt(*row)
                        receipt.verify(self.hub_key)
                        stored = hub.execute(
                            "SELECT hash FROM entries WHERE log = ? AND epoch = ? AND seq = ?", row[:3]
                        ).fetchone()
                        assert stored is not None and stored[0] == receipt.head, f"receipt {row[:3]} unbacked"
                        receipts += 1
            unexpected = set(codes) - written
            assert not unexpected, f"dossiers on the hub that no intake answered: {sorted(unexpected)[:5]}"
        return receipts


def _now() -> int:
    return time.time_ns() // 1_000_000
