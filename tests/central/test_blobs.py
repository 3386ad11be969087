"""Blob upload at the hub over HTTP: ``need`` answers every state in two queries, a chunk is checked against
its manifest with the digest the request signed, the completing chunk assembles the file directly, and a
manifest that lies about the whole file leaves nothing at the content address."""

from __future__ import annotations

import hashlib
import os

import pytest
from aiohttp.test_utils import TestClient

from protocol import BlobNeed, Manifest, manifest_for_bytes
from tests.central.helpers import SimNode, hub_of

MIB = 1 << 20


def attachment(code: str, manifest: Manifest) -> dict[str, object]:
    return {
        "dossier": code,
        "actor": "clerk",
        "document": "CCCD",
        "role": "document",
        "manifest": manifest.to_body(),
    }


async def node_with(client: TestClient, name: str, *manifests: Manifest) -> SimNode:
    sim = SimNode(client, name)
    await sim.enroll(hub_of(client))
    for n, manifest in enumerate(manifests, start=1):
        sim.append("dossier.attachment", attachment(f"000.00.01.H26-261123-{n:04d}", manifest))
    status, body = await sim.push()
    assert status == 200, body
    return sim


async def need(sim: SimNode, *shas: str) -> list[dict[str, object]]:
    from protocol import canonical

    status, body = await sim.call("POST", "/v1/sync/blobs/need", canonical({"blobs": list(shas)}))
    assert status == 200, body
    return body["blobs"]  # type: ignore[no-any-return]


async def put(sim: SimNode, sha: str, index: int, data: bytes) -> tuple[int, dict[str, object]]:
    return await sim.call("PUT", f"/v1/sync/blobs/{sha}/{index}", data)  # type: ignore[return-value]


async def test_need_put_and_assemble(client: TestClient) -> None:
    hub = hub_of(client)
    one = os.urandom(1000)
    three = os.urandom(2 * MIB + 5)
    m1, m3 = manifest_for_bytes(one, "application/pdf", 1), manifest_for_bytes(three, "application/pdf", 3)
    other = manifest_for_bytes(b"someone else's", "application/pdf", 1)
    sim = await node_with(client, "CN01", m1, m3)
    await node_with(client, "CN02", other)
    assert await need(sim, m1.sha256, m3.sha256, other.sha256, "f" * 64) == [
        {"sha256": m1.sha256, "state": "missing", "missing": [0]},
        {"sha256": m3.sha256, "state": "missing", "missing": [0, 1, 2]},
        {"sha256": other.sha256, "state": "unknown", "missing": []},  # not CN01's to see
        {"sha256": "f" * 64, "state": "unknown", "missing": []},
    ]
    status, body = await sim.call("POST", "/v1/sync/blobs/need", b'{"blobs":["NOT-HEX"]}')
    assert (status, body["error"]) == (404, "blob_unknown")
    # A one-chunk blob: written once, straight to its content address.
    assert await put(sim, m1.sha256, 0, one) == (200, {"sha256": m1.sha256, "index": 0, "complete": True})
    assert hub.blobs.path_for(m1.sha256).read_bytes() == one
    assert not (hub.blobs.root / "chunks" / m1.sha256).exists()
    # Three chunks in any order; the last one completes the file without being stored alone.
    pieces = [three[i * MIB : (i + 1) * MIB] for i in range(3)]
    assert (await put(sim, m3.sha256, 2, pieces[2]))[1]["complete"] is False
    assert await need(sim, m3.sha256) == [{"sha256": m3.sha256, "state": "partial", "missing": [0, 1]}]
    assert (await put(sim, m3.sha256, 0, pieces[0]))[1]["complete"] is False
    assert (await put(sim, m3.sha256, 1, pieces[1]))[1]["complete"] is True
    assert hub.blobs.path_for(m3.sha256).read_bytes() == three
    assert not (hub.blobs.root / "chunks" / m3.sha256).exists()
    assert await need(sim, m1.sha256, m3.sha256) == [
        {"sha256": m1.sha256, "state": "complete", "missing": []},
        {"sha256": m3.sha256, "state": "complete", "missing": []},
    ]
    assert (await put(sim, m3.sha256, 0, pieces[0]))[1]["complete"] is True  # again: nothing to do
    rows = await hub.store.fetchall("SELECT state FROM blobs WHERE sha256 IN (?, ?)", (m1.sha256, m3.sha256))
    assert [r[0] for r in rows] == ["complete", "complete"]


async def test_chunks_that_do_not_match_are_refused(client: TestClient) -> None:
    data = os.urandom(MIB + 10)
    manifest = manifest_for_bytes(data, "application/pdf", 2)
    sim = await node_with(client, "CN01", manifest)
    status, body = await put(sim, manifest.sha256, 1, b"x" * 10)  # right length, wrong bytes
    assert (status, body["error"]) == (422, "blob_mismatch")
    status, body = await put(sim, manifest.sha256, 1, data[MIB:] + b"!")  # wrong length
    assert (status, body["error"]) == (422, "blob_mismatch")
    status, body = await put(sim, manifest.sha256, 2, b"")  # no such chunk
    assert (status, body["error"]) == (422, "blob_mismatch")
    assert await need(sim, manifest.sha256) == [
        {"sha256": manifest.sha256, "state": "missing", "missing": [0, 1]}
    ]


async def test_a_manifest_lying_about_the_whole_leaves_nothing_behind(client: TestClient) -> None:
    hub = hub_of(client)
    data = os.urandom(300)
    honest = manifest_for_bytes(data, "application/pdf", 1)
    liar = Manifest("0" * 64, honest.size, honest.media_type, 1, honest.chunk_size, honest.chunks)
    sim = await node_with(client, "CN01", liar)
    assert hashlib.sha256(data).hexdigest() == liar.chunks[0]  # the chunk matches its own hash
    status, body = await put(sim, liar.sha256, 0, data)
    assert (status, body["error"]) == (422, "blob_mismatch")
    assert not hub.blobs.path_for(liar.sha256).exists()
    assert list(hub.blobs.tmp.iterdir()) == []


async def test_deferred_acknowledgement_need_waits_for_durability(client: TestClient) -> None:
    """``?ack=later``: the answer comes once the chunk is checked and written; ``need`` answers only after
    the group commit, so ``complete`` there means fsynced, renamed and recorded."""
    hub = hub_of(client)
    one = os.urandom(5000)
    three = os.urandom(2 * MIB + 77)
    m1, m3 = manifest_for_bytes(one, "application/pdf", 1), manifest_for_bytes(three, "application/pdf", 3)
    sim = await node_with(client, "CN01", m1, m3)
    pieces = [three[i * MIB : (i + 1) * MIB] for i in range(3)]
    for sha, index, data in [(m1.sha256, 0, one), (m3.sha256, 1, pieces[1]), (m3.sha256, 0, pieces[0])]:
        status, body = await sim.call("PUT", f"/v1/sync/blobs/{sha}/{index}?ack=later", data)
        assert (status, body) == (200, {"sha256": sha, "index": index, "complete": False})
    assert await need(sim, m1.sha256, m3.sha256) == [
        {"sha256": m1.sha256, "state": "complete", "missing": []},
        {"sha256": m3.sha256, "state": "partial", "missing": [2]},
    ]
    assert hub.blobs.path_for(m1.sha256).read_bytes() == one
    status, body = await sim.call("PUT", f"/v1/sync/blobs/{m3.sha256}/2?ack=later", pieces[2])
    assert (status, body["complete"]) == (200, False)
    assert await need(sim, m3.sha256) == [{"sha256": m3.sha256, "state": "complete", "missing": []}]
    assert hub.blobs.path_for(m3.sha256).read_bytes() == three
    assert not (hub.blobs.root / "chunks" / m3.sha256).exists()
    assert list(hub.blobs.tmp.iterdir()) == []
    assert (hub.blobs._queue, hub.blobs._queued, hub.blobs._completing, hub.blobs._locks) == ([], {}, {}, {})
    status, body = await sim.call("PUT", f"/v1/sync/blobs/{m3.sha256}/0?ack=soon", pieces[0])
    assert (status, body["error"]) == (400, "bad_request")
    # a lying manifest is still refused at once, before anything is queued
    liar = Manifest("0" * 64, len(one), "application/pdf", 1, m1.chunk_size, m1.chunks)
    sim2 = await node_with(client, "CN02", liar)
    status, body = await sim2.call("PUT", f"/v1/sync/blobs/{liar.sha256}/0?ack=later", one)
    assert (status, body["error"]) == (422, "blob_mismatch")
    assert hub.blobs._queue == [] and list(hub.blobs.tmp.iterdir()) == []


async def test_a_group_that_cannot_be_made_durable_claims_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed fsync fails the waiting upload and records nothing: ``need`` still asks for the chunk, and
    sending it again completes the blob."""
    import central.blobs

    hub = hub_of(client)
    data = os.urandom(MIB + 3)
    manifest = manifest_for_bytes(data, "application/pdf", 2)
    sim = await node_with(client, "CN01", manifest)
    real = central.blobs._fsync_file

    def broken(path: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(central.blobs, "_fsync_file", broken)
    status, _ = await put(sim, manifest.sha256, 0, data[:MIB])  # waits for its group: fails
    assert status >= 500
    status, body = await sim.call("PUT", f"/v1/sync/blobs/{manifest.sha256}/1?ack=later", data[MIB:])
    assert (status, body["complete"]) == (200, False)  # written; its group fails later
    assert await need(sim, manifest.sha256) == [
        {"sha256": manifest.sha256, "state": "missing", "missing": [0, 1]}
    ]
    assert list(hub.blobs.tmp.iterdir()) == [] and not (hub.blobs.root / "chunks" / manifest.sha256).exists()
    monkeypatch.setattr(central.blobs, "_fsync_file", real)
    assert (await put(sim, manifest.sha256, 1, data[MIB:]))[1]["complete"] is False
    assert (await put(sim, manifest.sha256, 0, data[:MIB]))[1]["complete"] is True
    assert hub.blobs.path_for(manifest.sha256).read_bytes() == data


async def test_a_crash_before_the_group_commit_resumes_from_what_is_durable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks answered with ``?ack=later`` but not yet durable when the hub dies are not claimed by the
    hub that comes back: it asks for them again (only them), and the blob completes."""
    import asyncio
    import threading

    import central.blobs
    from central.blobs import HubBlobs

    hub = hub_of(client)
    data = os.urandom(3 * MIB)
    manifest = manifest_for_bytes(data, "application/pdf", 3)
    sim = await node_with(client, "CN01", manifest)
    pieces = [data[i * MIB : (i + 1) * MIB] for i in range(3)]
    assert (await put(sim, manifest.sha256, 0, pieces[0]))[1]["complete"] is False  # durable
    stuck, crashed = threading.Event(), threading.Event()
    real = central.blobs._fsync_file

    def hang(path: str) -> None:  # the disk is slow; the process dies before the fsync returns
        stuck.set()
        crashed.wait(30)
        raise OSError(5, "the process is gone")

    monkeypatch.setattr(central.blobs, "_fsync_file", hang)
    status, body = await sim.call("PUT", f"/v1/sync/blobs/{manifest.sha256}/1?ack=later", pieces[1])
    assert (status, body["complete"]) == (200, False)
    assert await asyncio.to_thread(stuck.wait, 30)
    # the hub restarts on the same disk and database while the old writer never finished
    reborn = HubBlobs(hub.store, hub.blobs.root)
    assert await reborn.need("CN01", [manifest.sha256]) == [BlobNeed(manifest.sha256, "partial", (1, 2))]
    crashed.set()
    await hub.blobs.flush()
    monkeypatch.setattr(central.blobs, "_fsync_file", real)
    assert await reborn.put_chunk("CN01", manifest.sha256, 1, pieces[1]) is False
    assert await reborn.put_chunk("CN01", manifest.sha256, 2, pieces[2]) is True
    assert reborn.path_for(manifest.sha256).read_bytes() == data
    assert await reborn.need("CN01", [manifest.sha256]) == [BlobNeed(manifest.sha256, "complete", ())]


async def test_every_chunk_held_but_not_assembled_is_completed_by_sending_the_last_again(
    client: TestClient,
) -> None:
    """A state the hub never writes itself (all chunks recorded, blob not complete, e.g. from a restored
    backup): ``need`` asks for the last chunk, and sending it assembles the file."""
    hub = hub_of(client)
    data = os.urandom(2 * MIB)
    manifest = manifest_for_bytes(data, "application/pdf", 2)
    sim = await node_with(client, "CN01", manifest)
    assert (await put(sim, manifest.sha256, 0, data[:MIB]))[1]["complete"] is False
    (hub.blobs.root / "chunks" / manifest.sha256 / "1").write_bytes(data[MIB:])
    async with hub.store.write() as db:
        await db.execute("INSERT INTO blob_chunks (sha256, idx) VALUES (?, 1)", (manifest.sha256,))
    assert await need(sim, manifest.sha256) == [
        {"sha256": manifest.sha256, "state": "partial", "missing": [1]}
    ]
    assert (await put(sim, manifest.sha256, 1, data[MIB:]))[1]["complete"] is True
    assert hub.blobs.path_for(manifest.sha256).read_bytes() == data
