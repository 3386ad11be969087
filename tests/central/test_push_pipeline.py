"""The receive pipeline (chunks parsed and signature-checked on the signature pool, links checked in
order) names the same first failure as a sequential verifier, wherever it falls; the next push of a log
is verified while the one before is committed, and committed after it; the dossier projector folds in
batches exactly as one dossier at a time, and defers to pushes only for a bounded time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from central.dossiers import DOSSIERS, Dossiers
from protocol import PushResult, private_key_from_seed, sign_entry
from tests.central.helpers import SimNode, dump_db, hub_of
from tests.protocol.helpers import received


async def chunked(client: TestClient, chunk: int = 3) -> SimNode:
    hub_of(client).receiver.chunk = chunk
    sim = SimNode(client, "CN01")
    await sim.enroll(hub_of(client))
    return sim


def tamper_sig(raw: bytes) -> bytes:
    out = bytearray(raw)
    at = out.index(b'"sig":"') + 10
    out[at] = ord("1") if out[at] == ord("0") else ord("0")
    return bytes(out)


async def refused(
    sim: SimNode, hub_dir: Path, lines: list[bytes], status: int, code: str, index: int
) -> None:
    before = dump_db(hub_dir / "hub.sqlite3")
    got, body = await sim.push(raw=b"".join(line + b"\n" for line in lines))
    assert (got, body["error"], body["index"]) == (status, code, index), body
    assert dump_db(hub_dir / "hub.sqlite3") == before


async def test_a_chunked_run_is_accepted_whole(client: TestClient) -> None:
    sim = await chunked(client)
    sim.notes(10)  # 11 entries: chunks of 3, 3, 3, 2
    status, body = await sim.push()
    assert status == 200 and body["accepted"] == 11, body
    assert await hub_of(client).store.entries("CN01", 1, 0, 100) == [e.raw for e in sim.entries]


@pytest.mark.parametrize("bad", [0, 2, 3, 7, 10])
async def test_a_bad_signature_in_any_chunk_is_named_at_its_index(
    client: TestClient, hub_dir: Path, bad: int
) -> None:
    sim = await chunked(client)
    sim.notes(10)
    lines = [e.raw for e in sim.entries]
    lines[bad] = tamper_sig(lines[bad])
    await refused(sim, hub_dir, lines, 422, "bad_signature", bad)


async def test_a_broken_link_at_a_chunk_boundary_is_named(client: TestClient, hub_dir: Path) -> None:
    sim = await chunked(client)
    sim.notes(8)
    lines = [e.raw for e in sim.entries]
    del lines[6]  # the first line of the third chunk now follows entry 6: a gap at index 6
    await refused(sim, hub_dir, lines, 422, "seq_gap", 6)


async def test_the_first_failure_wins_across_chunks_and_kinds_of_check(
    client: TestClient, hub_dir: Path
) -> None:
    sim = await chunked(client)
    sim.notes(10)
    lines = [e.raw for e in sim.entries]
    lines[4] = tamper_sig(lines[4])  # chunk 2: signature
    lines[8] = b'{"not": "canonical"}'  # chunk 3: decoding
    await refused(sim, hub_dir, lines, 422, "bad_signature", 4)
    lines[4] = sim.entries[4].raw
    await refused(sim, hub_dir, lines, 400, "not_canonical", 8)
    foreign = private_key_from_seed(b"f" * 32)  # entry 7 validly shaped but signed by another key
    e = sim.entries[7]
    lines[7] = sign_entry(
        foreign, log=e.log, epoch=e.epoch, seq=e.seq, prev=e.prev, time=e.time, kind=e.kind, body=e.body
    ).raw
    await refused(sim, hub_dir, lines, 422, "bad_signature", 7)


async def test_invalid_bodies_in_later_chunks_are_quarantined(client: TestClient) -> None:
    sim = await chunked(client)
    sim.notes(4)
    sim.append("dossier.received", {"dossier": "not a code"})
    sim.notes(3)
    bad = sim.append("dossier.received", {"dossier": "nor this"})
    status, body = await sim.push()
    assert status == 200 and body["quarantined"] == [6, bad.seq], body


CODES = [f"000.00.01.H26-261123-{n:04d}" for n in range(1, 8)]


async def test_projector_batches_fold_exactly_like_single_refreshes(client: TestClient) -> None:
    hub = hub_of(client)
    sim = SimNode(client, "CN01")
    await sim.enroll(hub)
    for code in CODES:
        sim.append("dossier.received", received(code, actor="clerk.cn01", pickup="CN01"))
    sim.append("dossier.processing", {"dossier": CODES[0], "actor": "clerk.cn01", "step": "processing"})
    sim.append("dossier.returned", {"dossier": CODES[1], "actor": "clerk.cn01", "recipient": {"name": "A"}})
    assert (await sim.push())[0] == 200
    dossiers = client.server.app[DOSSIERS]
    batched = await dossiers.refresh_many(CODES)
    rows = await hub.store.fetchall("SELECT * FROM dossiers ORDER BY code")
    conflicts = await hub.store.fetchall("SELECT * FROM dossier_conflicts ORDER BY code, seq")
    async with hub.store.write() as db:
        await db.execute("DELETE FROM dossiers")
        await db.execute("DELETE FROM dossier_conflicts")
    singles = {code: await dossiers.refresh(code) for code in CODES}
    assert singles == batched and all(s is not None for s in singles.values())
    strip = [r[:-1] for r in rows]  # updated_ms aside
    assert [r[:-1] for r in await hub.store.fetchall("SELECT * FROM dossiers ORDER BY code")] == strip
    assert await hub.store.fetchall("SELECT * FROM dossier_conflicts ORDER BY code, seq") == conflicts
    assert len(rows) == len(CODES)


async def test_projector_defers_to_pushes_but_not_forever(client: TestClient) -> None:
    hub = hub_of(client)
    busy = True
    dossiers = Dossiers(hub.store, hub.clock, busy=lambda: busy, max_defer_s=0.3)
    refreshed: list[float] = []

    async def refresh_many(codes):  # type: ignore[no-untyped-def]
        refreshed.append(time.monotonic())
        return {}

    dossiers.refresh_many = refresh_many  # type: ignore[method-assign]
    task = asyncio.create_task(dossiers.run())
    try:
        start = time.monotonic()
        dossiers.pending.add(CODES[0])
        dossiers.wake.set()
        await asyncio.sleep(0.1)
        assert refreshed == []  # pushes in progress: waiting
        await asyncio.sleep(0.4)
        assert len(refreshed) == 1 and refreshed[0] - start >= 0.3  # ... but at most max_defer_s
        busy = False
        dossiers.pending.add(CODES[1])
        dossiers.wake.set()
        await asyncio.sleep(0.1)
        assert len(refreshed) == 2  # idle: at once
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_receiver_reports_pushes_coming_in(client: TestClient) -> None:
    receiver = hub_of(client).receiver
    sim = await chunked(client)
    sim.notes(2)
    assert receiver.active == 0
    assert (await sim.push())[0] == 200
    assert receiver.active == 0 and receiver.busy(quiet_s=60) and not receiver.busy(quiet_s=0)


async def _held_commit(client: TestClient) -> tuple[asyncio.Event, asyncio.Event, list[str]]:
    """Make the hub's next store commit wait for ``release`` (``started`` set when it is waiting)."""
    store = hub_of(client).store
    real = store.commit
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def commit(*batches):  # type: ignore[no-untyped-def]
        calls.append(f"{batches[0].rows[0].seq}-{batches[0].rows[-1].seq}")
        if len(calls) == 1:
            started.set()
            await release.wait()
        await real(*batches)

    store.commit = commit  # type: ignore[method-assign]
    return started, release, calls


async def test_the_next_batch_is_verified_while_the_one_before_is_committed(
    client: TestClient, hub_dir: Path
) -> None:
    """Two pushes in flight (as the node sends them): the second is verified while the first one's
    commit is still running, is committed after it, and neither is answered before its own commit."""
    sim = await chunked(client)
    sim.notes(9)  # 10 entries
    first, second = sim.entries[:5], sim.entries[5:]
    started, release, calls = await _held_commit(client)
    one = asyncio.create_task(sim.push(first))
    await asyncio.wait_for(started.wait(), 10)
    two = asyncio.create_task(sim.push(second))
    receiver = hub_of(client).receiver
    for _ in range(500):  # the second push is verified and waits for the first commit
        if receiver._tails.get(("CN01", 1)) is not None and receiver._tails[("CN01", 1)].seq == 10:
            break
        await asyncio.sleep(0.01)
    assert receiver._tails[("CN01", 1)].seq == 10
    assert not one.done() and not two.done() and calls == ["1-5"]
    assert await hub_of(client).store.head("CN01", 1) is None  # nothing stored or answered yet
    release.set()
    (s1, b1), (s2, b2) = await asyncio.wait_for(asyncio.gather(one, two), 10)
    assert (s1, b1["accepted"], s2, b2["accepted"]) == (200, 5, 200, 5), (b1, b2)
    assert calls == ["1-5", "6-10"]
    receipt = PushResult.from_wire(b2).receipt
    assert receipt is not None and (receipt.seq, receipt.head) == (10, sim.entries[-1].hash)
    receipt.verify(hub_of(client).public_key)
    assert await hub_of(client).store.entries("CN01", 1, 0, 100) == [e.raw for e in sim.entries]
    assert receiver._tails == {}


async def test_a_batch_whose_predecessor_fails_to_commit_is_refused_with_the_stored_head(
    client: TestClient, hub_dir: Path
) -> None:
    """The first commit fails (disk full): the batch verified on top of it is refused with seq_gap naming
    what is stored, nothing of either is stored, and resending from the hub's head works."""
    sim = await chunked(client)
    sim.notes(9)
    status, _ = await sim.push(sim.entries[:2])
    assert status == 200
    store = hub_of(client).store
    real = store.commit
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def failing(*batches):  # type: ignore[no-untyped-def]
        calls.append(f"{batches[0].rows[0].seq}-{batches[0].rows[-1].seq}")
        if len(calls) == 1:
            started.set()
            await release.wait()
            raise OSError(28, "No space left on device")
        await real(*batches)

    store.commit = failing  # type: ignore[method-assign]
    before = dump_db(hub_dir / "hub.sqlite3")
    one = asyncio.create_task(sim.push(sim.entries[2:6]))
    await asyncio.wait_for(started.wait(), 10)
    two = asyncio.create_task(sim.push(sim.entries[6:]))
    receiver = hub_of(client).receiver
    for _ in range(500):
        if receiver._tails.get(("CN01", 1)) is not None and receiver._tails[("CN01", 1)].seq == 10:
            break
        await asyncio.sleep(0.01)
    release.set()
    (s1, b1), (s2, b2) = await asyncio.wait_for(asyncio.gather(one, two), 10)
    assert (s1, b1["error"]) == (507, "disk_full"), b1
    assert (s2, b2["error"], b2["head"]["seq"]) == (409, "seq_gap", 2), b2
    assert calls == ["3-6"]  # the second batch never reached the store
    assert dump_db(hub_dir / "hub.sqlite3") == before
    status, body = await sim.push(sim.entries[2:])
    assert (status, body["accepted"]) == (200, 8), body


async def test_a_bad_continuation_is_refused_and_the_batch_before_it_is_stored(
    client: TestClient, hub_dir: Path
) -> None:
    sim = await chunked(client)
    sim.notes(9)
    started, release, calls = await _held_commit(client)
    one = asyncio.create_task(sim.push(sim.entries[:5]))
    await asyncio.wait_for(started.wait(), 10)
    lines = [e.raw for e in sim.entries[5:]]
    lines[3] = tamper_sig(lines[3])
    two = asyncio.create_task(sim.push(raw=b"".join(line + b"\n" for line in lines)))
    (s2, b2) = await asyncio.wait_for(two, 10)
    assert (s2, b2["error"], b2["index"]) == (422, "bad_signature", 3), b2
    release.set()
    s1, b1 = await asyncio.wait_for(one, 10)
    assert (s1, b1["accepted"]) == (200, 5)
    assert await hub_of(client).store.entries("CN01", 1, 0, 100) == [e.raw for e in sim.entries[:5]]
