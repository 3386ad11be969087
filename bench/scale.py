"""Many nodes pushing at once to one hub, against one node pushing the same entries, in the same run.

    python -m bench.scale [--nodes 300] [--entries 100] [--rounds 3] [--node-rounds 20]

The hub is ``motcua-central serve`` in its own process (bench.hubproc), its memory read from /proc.
Each round:

1. single: one node pushes ``nodes x entries`` entries in one ``sync_once()`` to a fresh hub: entries/s;
2. many: ``nodes`` enrolled nodes, each with its own key and a log of ``entries`` dossier entries,
   run ``sync_once()`` concurrently (hello, push, mailbox pulls, heartbeat: the whole round) against
   another fresh hub: total entries / wall time until the last finishes. Then every node's head at the
   hub is checked against its own (convergence). The hub's peak RSS (VmHWM) is read at the end.
   One more node is a real node process (its own SQLite log, ``SyncClient.run()`` loop, a new batch of
   entries every round) running through the burst and ``--node-rounds`` rounds; its RSS is sampled.

The simulated nodes share this process and keep their logs in memory (``MemoryLog``): they cost the
hub what real nodes cost it, while the process driving them stays light. Figures (issue 9):
``scale_converged`` (nodes whose head matches / nodes, goal 1), ``scale_hub_rate`` (ratio to the
single-node rate, goal >= 0.7), ``scale_hub_rss_mib`` (ratio to 500 MiB, lower is better, goal <= 1),
``scale_node_rss_mib`` (the real node's steady RSS: the highest sample of the second half of its rounds,
ratio to 120 MiB, goal <= 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.hubproc import HubProcess, proc_rss_mib
from bench.nodeside import NodeLog, dossier_events, enroll, sign_log
from bench.report import figure
from node.sync_client import HttpTransport, SyncClient
from protocol import (
    Entry,
    Head,
    Heartbeat,
    InviteToken,
    LogHead,
    Manifest,
    Receipt,
    decode,
    generate_private_key,
    private_key_from_seed,
    sign_entry,
)
from protocol.keys import Ed25519PrivateKey

HUB_RSS_GOAL_MIB = 500.0
NODE_RSS_GOAL_MIB = 120.0


@dataclass
class MemoryLog:
    """The sync client's ``LocalLog`` over lists: a simulated node's log, receipts and state."""

    node: str
    entries: list[Entry]
    receipts: list[Receipt] = field(default_factory=list)
    hub: dict[str, list[Entry]] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)

    async def own_entries_after(self, epoch: int, seq: int, limit: int) -> list[bytes]:
        return [e.raw for e in self.entries[seq : seq + limit]]

    async def own_head(self, epoch: int) -> Head:
        last = self.entries[-1]
        return Head(self.node, epoch, last.seq, last.hash)

    async def hub_head(self, log: str) -> tuple[int, str | None, tuple[int, int]]:
        held = self.hub.get(log)
        return (0, None, (0, 0)) if not held else (held[-1].seq, held[-1].hash, held[-1].time)

    async def store_hub_entries(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self.hub.setdefault(entry.log, []).append(entry)

    async def store_receipt(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)

    async def pending_blobs(self, held_seq: int, epoch: int) -> list[Manifest]:
        return []

    async def read_chunk(self, manifest: Manifest, index: int) -> bytes:
        raise AssertionError("no blobs in this benchmark")

    async def blob_done(self, sha256: str) -> None:
        pass

    async def set_state(self, values: dict[str, str]) -> None:
        self.state.update(values)

    async def status(self) -> Heartbeat:
        acked = self.receipts[-1].seq if self.receipts else 0
        last = self.entries[-1]
        return Heartbeat(
            version="bench",
            heads=(LogHead(self.node, 1, last.seq, last.hash),),
            unacked_entries=last.seq - acked,
            unacked_bytes=sum(len(e.raw) for e in self.entries[acked:]),
            oldest_unacked_ms=None,
            disk_free_bytes=1 << 40,
            printers=(),
            scanners=(),
            clock_ms=int(time.time() * 1000),
            last_error=self.state.get("last_error") or None,
        )


def node_name(i: int) -> str:
    return f"N{i:04d}"


def node_key(i: int) -> Ed25519PrivateKey:
    return private_key_from_seed(f"bench-scale-node-{i:06d}".encode().ljust(32, b"."))


async def _enrolled_clients(
    base: str, tokens: Sequence[InviteToken], logs: Sequence[tuple[str, Ed25519PrivateKey, list[Entry]]]
) -> list[SyncClient]:
    clients = []
    async with aiohttp.ClientSession() as session:
        for token, (name, key, entries) in zip(tokens, logs, strict=True):
            enrollment, hub_key = await enroll(session, base, token, key)
            clients.append(
                SyncClient(
                    name, enrollment.epoch, key, hub_key, MemoryLog(name, entries), HttpTransport(base)
                )
            )
    return clients


async def _close(clients: Sequence[SyncClient]) -> None:
    for client in clients:
        await client.transport.close()  # type: ignore[attr-defined]


async def single(work: Path, entries: list[Entry], key: Ed25519PrivateKey) -> float:
    hub = HubProcess(work / "single-hub")
    tokens = await hub.prepare([entries[0].log])
    await hub.start()
    try:
        (client,) = await _enrolled_clients(hub.base, tokens, [(entries[0].log, key, entries)])
        start = time.perf_counter()
        report = await client.sync_once()
        elapsed = time.perf_counter() - start
        assert report.pushed == len(entries), report
        await _close([client])
        return len(entries) / elapsed
    finally:
        hub.stop()


async def _sample(pid: int, into: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            into.append(proc_rss_mib(pid)[0])
        except (FileNotFoundError, ProcessLookupError):
            return
        await asyncio.sleep(0.1)


def _start_real_node(
    work: Path, base: str, token: InviteToken, rounds: int, entries: int
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.scale",
            "--real-node",
            str(work / "real-node"),
            "--hub",
            base,
            "--token",
            token.encode(),
            "--node-rounds",
            str(rounds),
            "--entries",
            str(entries),
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


async def many(
    work: Path, logs: list[tuple[str, Ed25519PrivateKey, list[Entry]]], node_rounds: int, per_node: int
) -> dict[str, float]:
    hub = HubProcess(work / "many-hub")
    tokens = await hub.prepare([name for name, _, _ in logs] + ["REAL-NODE"])
    await hub.start()
    real: subprocess.Popen[str] | None = None
    try:
        clients = await _enrolled_clients(hub.base, tokens[:-1], logs)
        real = _start_real_node(work, hub.base, tokens[-1], node_rounds, per_node)
        assert real.stdout is not None
        ready = await asyncio.to_thread(real.stdout.readline)  # enrolled, about to sync
        assert json.loads(ready)["event"] == "ready", ready
        hub_rss: list[float] = []
        node_rss: list[float] = []
        stop = asyncio.Event()
        samplers = [
            asyncio.create_task(_sample(hub.pid, hub_rss, stop)),
            asyncio.create_task(_sample(real.pid, node_rss, stop)),
        ]
        start = time.perf_counter()
        reports = await asyncio.gather(*(c.sync_once() for c in clients))
        elapsed = time.perf_counter() - start
        total = sum(r.pushed for r in reports)
        converged = 0
        for client, (_, _, entries) in zip(clients, logs, strict=True):
            state = decode(await client.call("GET", "/v1/sync/state"), max_bytes=None)
            heads = {(h["log"], h["epoch"]): (h["seq"], h["head"]) for h in state["logs"]}
            if heads.get((client.node, 1)) == (entries[-1].seq, entries[-1].hash):
                converged += 1
        await _close(clients)
        done = await asyncio.to_thread(real.stdout.read)
        real.wait(60)
        stop.set()
        await asyncio.gather(*samplers)
        result = json.loads(done.strip().splitlines()[-1])
        assert result["converged"], result
        half = node_rss[len(node_rss) // 2 :] or node_rss
        return {
            "rate": total / elapsed,
            "seconds": elapsed,
            "converged": converged / len(clients),
            "hub_peak_mib": max(hub.rss()[1], *hub_rss),
            "node_steady_mib": max(half),
            "node_peak_mib": result["peak_rss_mib"],
        }
    finally:
        if real is not None and real.poll() is None:
            real.kill()
            real.wait(15)
        hub.stop()


async def real_node(root: Path, base: str, token_text: str, rounds: int, per_round: int) -> None:
    """One real node process: SQLite log, the real client; a batch of dossier entries per round."""
    token = InviteToken.parse(token_text)
    key = generate_private_key()
    node = await NodeLog.create(token.node, root)
    async with aiohttp.ClientSession() as session:
        enrollment, hub_key = await enroll(session, base, token, key)
    genesis = sign_log(key, token.node, 1)
    await node.load(genesis)
    client = node.client(enrollment.epoch, key, hub_key, base)
    print(json.dumps({"event": "ready"}), flush=True)
    last = genesis[-1]
    number = 1
    for _ in range(rounds):
        batch = []
        for kind, body in dossier_events(token.node, per_round, first_number=number):
            last = sign_entry(
                key,
                log=last.log,
                epoch=1,
                seq=last.seq + 1,
                prev=last.hash,
                time=(last.time[0] + 1000, 0),
                kind=kind,
                body=body,
            )
            batch.append(last)
        number = (number + per_round) % 9000 + 1
        await node.load(batch)
        await client.sync_once()
    state = decode(await client.call("GET", "/v1/sync/state"), max_bytes=None)
    heads = {(h["log"], h["epoch"]): (h["seq"], h["head"]) for h in state["logs"]}
    converged = heads.get((token.node, enrollment.epoch)) == (last.seq, last.hash)
    await node.close(client)
    _, peak = proc_rss_mib(os.getpid())
    print(json.dumps({"event": "done", "converged": converged, "peak_rss_mib": peak}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--entries", type=int, default=100, help="entries per node")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--node-rounds", type=int, default=20, help="rounds of the real node process")
    parser.add_argument("--real-node", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hub", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.real_node is not None:
        asyncio.run(real_node(args.real_node, args.hub, args.token, args.node_rounds, args.entries))
        return
    t = time.perf_counter()
    logs = []
    for i in range(args.nodes):
        key = node_key(i)
        logs.append(
            (node_name(i), key, sign_log(key, node_name(i), args.entries, first_number=1 + i * 20 % 9000))
        )
    one_key = node_key(10**6)
    one = sign_log(one_key, "SINGLE", args.nodes * args.entries)
    print(
        f"scale: {args.nodes} nodes x {args.entries} entries = {args.nodes * args.entries} "
        f"(signed in {time.perf_counter() - t:.1f} s, untimed)",
        flush=True,
    )
    rounds = []
    with tempfile.TemporaryDirectory(prefix="motcua-bench-scale-") as tmp:
        for r in range(args.rounds):
            work = Path(tmp) / f"round-{r}"
            order = ["single", "many"] if r % 2 == 0 else ["many", "single"]
            got: dict[str, float] = {}
            for what in order:
                if what == "single":
                    got["single"] = asyncio.run(single(work, one, one_key))
                else:
                    got.update(asyncio.run(many(work, logs, args.node_rounds, args.entries)))
            print(
                f"  round {r + 1}: single {got['single']:.0f}/s, {args.nodes} nodes {got['rate']:.0f}/s "
                f"({got['seconds']:.2f} s), converged {got['converged']:.0%}, "
                f"hub peak {got['hub_peak_mib']:.0f} MiB, "
                f"node steady {got['node_steady_mib']:.0f} MiB (peak {got['node_peak_mib']:.0f})",
                flush=True,
            )
            rounds.append(got)
    median = {k: statistics.median(g[k] for g in rounds) for k in rounds[0]}
    ratio = statistics.median(g["rate"] / g["single"] for g in rounds)
    figure("scale_single_node", median["single"], "entries/s", 1.0, 1.0)
    figure(
        "scale_converged",
        min(g["converged"] for g in rounds),
        "fraction",
        min(g["converged"] for g in rounds),
        1.0,
    )
    figure("scale_hub_rate", median["rate"], "entries/s", ratio, 0.7)
    hub_peak = max(g["hub_peak_mib"] for g in rounds)
    figure("scale_hub_rss_mib", hub_peak, "MiB", hub_peak / HUB_RSS_GOAL_MIB, 1.0, lower_is_better=True)
    node_steady = max(g["node_steady_mib"] for g in rounds)
    figure(
        "scale_node_rss_mib", node_steady, "MiB", node_steady / NODE_RSS_GOAL_MIB, 1.0, lower_is_better=True
    )


if __name__ == "__main__":
    main()
