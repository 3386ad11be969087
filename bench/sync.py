"""End-to-end sync over loopback against PouchDB and against a raw upload sink, measured in the same run.

    python -m bench.sync [--entries 25000] [--scans 200] [--rounds 3] [--catchup-scan-mib 2048]
                         [--only docs,scans,catchup] [--fsync-peer]

Our side is the real thing: the hub is ``motcua-central serve`` in its own process (fresh state directory
per measurement, SQLite WAL ``synchronous=FULL``), the node a durable SQLite log (bench.nodeside) with the
real ``SyncClient.sync_once()`` over HTTP on 127.0.0.1. Each round runs our measurement and the peer's
one after the other, alternating which goes first; the figure is the median over rounds of the
per-round ratio (the machine is shared, so only same-round comparisons mean anything).

Figures and goals (issue 9):
- ``sync_entries``: 25,000 dossier entries (~460 B, whole lifecycles, every signature and link verified
  by the hub, durable commit, signed receipt kept by the node) in one ``sync_once()``, entries/s, vs
  PouchDB replicating 25,000 docs of ~500 B to a PouchDB server (``bench.pouchdb.run_docs``): >= 2.0 x.
- ``scan_upload``: 200 scans of 1 MiB, each named by a signed attachment entry, in one ``sync_once()``
  (metadata, then chunks: hashed by the node, checked by the hub against the manifest, written, fsynced,
  assembled, checked whole, fsynced), MiB/s, vs PouchDB attachments (200 x 1 MiB): >= 4 x;
- ``scan_upload_vs_sink``: the same MiB/s vs the raw aiohttp sink of bench.upload_sink (hash + write +
  fsync, its own process), the same 200 files: >= 0.5 x.
- ``catchup_metadata_s``: a node offline for 7 simulated days (25,000 entries over 7 days, 2,048 of them
  attachments naming 2 GiB of scans on its disk) comes back: hello, push of all its entries and mailbox
  pulls, until the moment it would start on the scans (they need not be uploaded for this figure):
  seconds, ratio = seconds / 5 (lower is better, goal <= 1).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench import pouchdb
from bench.hubproc import HubProcess
from bench.nodeside import NodeLog, bench_keyring, enroll, sign_log
from bench.report import figure
from bench.upload_sink import upload
from node.blobs import BlobStore
from node.sync_client import SyncClient, SyncError
from protocol import Entry, Manifest, decode, private_key_from_seed
from protocol.keys import Ed25519PrivateKey

NODE = "CN01"
MIB = 1 << 20


class _StopAtBlobs(Exception):
    """Raised by the catch-up transport when the node turns to the scans: metadata is done."""


class _MetadataOnly:
    """Transport wrapper: lets everything through until ``POST /v1/sync/blobs/need``, then stops."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stopped_at: float | None = None

    async def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if target == "/v1/sync/blobs/need":
            self.stopped_at = time.perf_counter()
            raise _StopAtBlobs
        return await self.inner.request(method, target, body, headers)

    async def close(self) -> None:
        await self.inner.close()


async def _hub_head(client: SyncClient) -> tuple[int, str | None]:
    state = decode(await client.call("GET", "/v1/sync/state"), max_bytes=None)
    for head in state["logs"]:
        if head["log"] == client.node and head["epoch"] == client.epoch:
            return head["seq"], head["head"]
    return 0, None


async def _our_sync(
    work: Path,
    key: Ed25519PrivateKey,
    entries: list[Entry],
    blobs: BlobStore | None = None,
    *,
    metadata_only: bool = False,
) -> tuple[float, Any]:
    """One fresh hub process and node; the seconds of one timed ``sync_once()`` (and its report)."""
    hub = HubProcess(work / "hub")
    token = (await hub.prepare([NODE]))[0]
    await hub.start()
    node = await NodeLog.create(NODE, work / "node", blobs)
    client = None
    try:
        await node.load(entries)
        async with aiohttp.ClientSession() as session:
            enrollment, hub_key = await enroll(session, hub.base, token, key)
        client = node.client(enrollment.epoch, key, hub_key, hub.base)
        report: Any = None
        if metadata_only:
            wrapper = _MetadataOnly(client.transport)
            client.transport = wrapper
            start = time.perf_counter()
            try:
                await client.sync_once()
            except _StopAtBlobs:
                pass
            assert wrapper.stopped_at is not None, "the round never reached the scans"
            elapsed = wrapper.stopped_at - start
            client.transport = wrapper.inner
        else:
            start = time.perf_counter()
            report = await client.sync_once()
            elapsed = time.perf_counter() - start
        assert await _hub_head(client) == (entries[-1].seq, entries[-1].hash), "hub did not converge"
        return elapsed, report
    finally:
        await node.close(client)
        hub.stop()


def _scan_files(root: Path, count: int, size: int) -> tuple[BlobStore, list[Manifest], list[Path]]:
    """``count`` distinct random scans of ``size`` bytes, staged durably in a node blob store."""
    from protocol import manifest_for_bytes

    store = BlobStore(root, low_disk_bytes=0, keyring=bench_keyring(root))
    manifests, paths = [], []
    base = os.urandom(size)
    for i in range(count):
        data = i.to_bytes(8, "big") + base[8:]
        staged = store.stage_bytes(data)
        manifests.append(manifest_for_bytes(data, "application/pdf", 1))
        assert manifests[-1].sha256 == staged.sha256
        paths.append(staged.path)
    return store, manifests, paths


def _start_sink(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.upload_sink", "--dir", str(root)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, f"http://127.0.0.1:{json.loads(line)['port']}"


def _sink_mib_s(root: Path, paths: list[Path]) -> float:
    proc, base = _start_sink(root)
    try:
        start = time.perf_counter()
        sent = asyncio.run(upload(base, paths))
        elapsed = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(15)
    return sent / MIB / elapsed


def _rounds(
    n: int, ours: Callable[[int], float], peer: Callable[[int], float], label: str
) -> list[tuple[float, float]]:
    results = []
    for r in range(n):
        if r % 2 == 0:
            a = ours(r)
            b = peer(r)
        else:
            b = peer(r)
            a = ours(r)
        print(f"  {label} round {r + 1}: ours {a:.6g}, reference {b:.6g}, ratio {a / b:.3f}", flush=True)
        results.append((a, b))
    return results


def _summary(results: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Median of ours, median of the reference, median of the per-round ratios."""
    return (
        statistics.median(a for a, _ in results),
        statistics.median(b for _, b in results),
        statistics.median(a / b for a, b in results),
    )


def bench_docs(tmp: Path, key: Ed25519PrivateKey, n: int, rounds: int, fsync_peer: bool) -> None:
    t = time.perf_counter()
    entries = sign_log(key, NODE, n)
    size = sum(len(e.raw) for e in entries) / len(entries)
    print(
        f"sync: {n} entries, mean {size:.0f} B, signed in {time.perf_counter() - t:.1f} s (untimed)",
        flush=True,
    )

    def ours(r: int) -> float:
        elapsed, report = asyncio.run(_our_sync(tmp / f"docs-{r}", key, entries))
        assert report.pushed == n and not report.quarantined, report
        return n / elapsed

    def peer(r: int) -> float:
        return float(pouchdb.run_docs(n, 500, fsync=fsync_peer)["docs_per_s"])

    ours_rate, peer_rate, ratio = _summary(_rounds(rounds, ours, peer, "docs/s"))
    figure("pouchdb_docs", peer_rate, "docs/s", 1.0, 1.0)
    figure("sync_entries", ours_rate, "entries/s", ratio, 2.0)


def bench_scans(tmp: Path, key: Ed25519PrivateKey, count: int, rounds: int, fsync_peer: bool) -> None:
    store, manifests, paths = _scan_files(tmp / "scans", count, MIB)
    entries = sign_log(key, NODE, 1 + 2 * count, manifests=manifests, lifecycle=False)
    mib = count * MIB / MIB

    def ours(r: int) -> float:
        elapsed, report = asyncio.run(_our_sync(tmp / f"scans-{r}", key, entries, store))
        assert report.chunks == count, report
        return mib / elapsed

    def peer(r: int) -> float:
        return float(pouchdb.run_attachments(count, MIB, fsync=fsync_peer)["mib_per_s"])

    def sink(r: int) -> float:
        return _sink_mib_s(tmp / f"sink-{r}", paths)

    results = []
    for r in range(rounds):
        order = [("ours", ours), ("peer", peer), ("sink", sink)]
        if r % 2:
            order.reverse()
        got = {name: fn(r) for name, fn in order}
        print(
            f"  MiB/s round {r + 1}: ours {got['ours']:.4g}, pouchdb {got['peer']:.4g}, "
            f"sink {got['sink']:.4g}",
            flush=True,
        )
        results.append(got)
    ours_m = statistics.median(g["ours"] for g in results)
    figure("pouchdb_attachments", statistics.median(g["peer"] for g in results), "MiB/s", 1.0, 1.0)
    figure("upload_sink", statistics.median(g["sink"] for g in results), "MiB/s", 1.0, 1.0)
    figure("scan_upload", ours_m, "MiB/s", statistics.median(g["ours"] / g["peer"] for g in results), 4.0)
    figure(
        "scan_upload_vs_sink", ours_m, "MiB/s", statistics.median(g["ours"] / g["sink"] for g in results), 0.5
    )


def bench_catchup(tmp: Path, key: Ed25519PrivateKey, n: int, scan_mib: int, rounds: int) -> None:
    t = time.perf_counter()
    store, manifests, _ = _scan_files(tmp / "catchup-scans", scan_mib, MIB)
    entries = sign_log(key, NODE, n, span_ms=7 * 86_400_000, manifests=manifests)
    attachments = sum(e.kind == "dossier.attachment" for e in entries)
    print(
        f"catch-up: {n} entries over 7 days, {attachments} attachments naming {scan_mib} MiB of scans "
        f"(prepared in {time.perf_counter() - t:.1f} s, untimed)",
        flush=True,
    )
    times = []
    for r in range(rounds):
        raw = _raw_verify_rate(entries[:5000])  # how fast this machine is right now (it is shared)
        elapsed, _ = asyncio.run(_our_sync(tmp / f"catchup-{r}", key, entries, store, metadata_only=True))
        print(
            f"  catch-up round {r + 1}: {elapsed:.3f} s ({n / elapsed:.0f} entries/s; raw Ed25519 verify "
            f"just before: {raw:.0f}/s on one core)",
            flush=True,
        )
        times.append(elapsed)
    best = statistics.median(times)
    figure("catchup_metadata_s", best, "s", best / 5.0, 1.0, lower_is_better=True)


def _raw_verify_rate(entries: list[Entry]) -> float:
    from protocol import b64url_decode, parse_public_key

    key = parse_public_key(entries[0].body["key"]) if entries[0].seq == 1 else None
    assert key is not None
    pairs = [(b64url_decode(e.sig), e.signable()) for e in entries]
    start = time.perf_counter()
    for sig, msg in pairs:
        key.verify(sig, msg)
    return len(pairs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=25000)
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--catchup-scan-mib", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="docs,scans,catchup")
    parser.add_argument("--fsync-peer", action="store_true", help="PouchDB server with synchronous writes")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    key = private_key_from_seed(b"bench-node-CN01-seed-0123456789a"[:32])
    pouchdb.ensure_installed()
    with tempfile.TemporaryDirectory(prefix="motcua-bench-sync-", dir=args.dir) as tmp:
        work = Path(tmp)
        if "docs" in only:
            bench_docs(work, key, args.entries, args.rounds, args.fsync_peer)
        if "scans" in only:
            bench_scans(work, key, args.scans, args.rounds, args.fsync_peer)
        if "catchup" in only:
            bench_catchup(work, key, args.entries, args.catchup_scan_mib, args.rounds)


if __name__ == "__main__":
    try:
        main()
    except SyncError as exc:
        print(f"sync failed: {exc}", file=sys.stderr)
        sys.exit(1)
