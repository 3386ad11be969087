"""Pushes to a real hub on loopback: accepted, idempotent, and every attack refused with its reason while
the hub's database stays byte-identical."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from protocol import PushResult, Receipt, private_key_from_seed, sign_entry
from tests.central.helpers import SimNode, dump_db, hub_clock, hub_of


async def enrolled(client: TestClient, node: str = "CN01") -> SimNode:
    sim = SimNode(client, node)
    await sim.enroll(hub_of(client))
    return sim


async def test_push_commits_and_returns_a_receipt_that_verifies(client: TestClient) -> None:
    sim = await enrolled(client)
    sim.notes(9)
    status, body = await sim.push()
    assert status == 200, body
    result = PushResult.from_wire(body)
    assert (result.accepted, result.duplicates, result.quarantined) == (10, 0, ())
    assert result.receipt is not None
    result.receipt.verify(hub_of(client).public_key)
    assert (result.receipt.seq, result.receipt.head) == (10, sim.entries[-1].hash)
    status, state = await sim.call("GET", "/v1/sync/state")
    assert status == 200 and state["logs"] == [
        {"log": "CN01", "epoch": 1, "seq": 10, "head": sim.entries[-1].hash}
    ]
    stored = await hub_of(client).store.entries("CN01", 1, 0, 100)
    assert stored == [e.raw for e in sim.entries]  # the exact bytes, never re-encoded


async def test_identical_overlap_is_counted_and_changes_nothing(client: TestClient, hub_dir: Path) -> None:
    sim = await enrolled(client)
    sim.notes(4)
    status, first = await sim.push()
    assert status == 200
    before = dump_db(hub_dir / "hub.sqlite3")
    status, again = await sim.push()
    assert status == 200 and again["accepted"] == 0 and again["duplicates"] == 5
    assert again["receipt"] == first["receipt"]
    assert dump_db(hub_dir / "hub.sqlite3") == before
    sim.notes(2)  # overlap plus new entries: the new ones are taken
    status, mixed = await sim.push(sim.entries[3:])
    assert status == 200 and (mixed["accepted"], mixed["duplicates"]) == (2, 2)


async def _refused(sim: SimNode, hub_dir: Path, status: int, code: str, **push: object) -> dict:
    before = dump_db(hub_dir / "hub.sqlite3")
    got, body = await sim.push(**push)  # type: ignore[arg-type]
    assert (got, body["error"]) == (status, code), body
    assert isinstance(body["hub_time"], int)
    assert dump_db(hub_dir / "hub.sqlite3") == before
    return body


@pytest.mark.parametrize("where", ["sig", "body", "prev"])
async def test_tampered_entries_are_refused(client: TestClient, hub_dir: Path, where: str) -> None:
    sim = await enrolled(client)
    sim.notes(3)
    assert (await sim.push(sim.entries[:2]))[0] == 200
    raw = bytearray(sim.entries[2].raw)
    offset = {
        "sig": raw.index(b'"sig":"') + 10,
        "body": raw.index(b'"n":') + 4,
        "prev": raw.index(b'"prev":"') + 9,
    }
    if where == "body":
        raw[offset[where]] ^= 0x01  # one bit of a digit
    else:  # another character of the alphabet (a flipped bit may leave base64url or hex: bad_shape)
        raw[offset[where]] = ord("1") if raw[offset[where]] == ord("0") else ord("0")
    body = bytes(raw) + b"\n" + sim.entries[3].raw + b"\n"
    expected = {"sig": "bad_signature", "body": "bad_signature", "prev": "prev_mismatch"}[where]
    result = await _refused(sim, hub_dir, 422, expected, raw=body)
    assert result["index"] == 0


async def test_non_canonical_and_bad_framing(client: TestClient, hub_dir: Path) -> None:
    sim = await enrolled(client)
    sim.notes(1)
    spaced = sim.entries[0].raw.replace(b'"v":1', b'"v": 1')
    await _refused(sim, hub_dir, 400, "not_canonical", raw=spaced + b"\n")
    await _refused(sim, hub_dir, 400, "bad_framing", raw=sim.entries[0].raw)  # no final newline
    await _refused(sim, hub_dir, 400, "bad_framing", raw=sim.entries[0].raw + b"\n\n")
    await _refused(sim, hub_dir, 400, "invalid_json", raw=b"\xff\n")


async def test_gap_is_refused_with_the_hubs_head(client: TestClient, hub_dir: Path) -> None:
    sim = await enrolled(client)
    sim.notes(7)
    assert (await sim.push(sim.entries[:3]))[0] == 200
    body = await _refused(sim, hub_dir, 409, "seq_gap", entries=sim.entries[5:])
    assert body["head"] == {"log": "CN01", "epoch": 1, "seq": 3, "head": sim.entries[2].hash}
    await _refused(sim, hub_dir, 422, "seq_gap", entries=[sim.entries[3], sim.entries[5]])  # hole inside
    assert (await sim.push(sim.entries[3:]))[0] == 200


async def test_fork_keeps_evidence_quarantines_and_alarms(client: TestClient, hub_dir: Path) -> None:
    sim = await enrolled(client)
    sim.notes(4)
    assert (await sim.push())[0] == 200
    third = sim.entries[2]
    other = sign_entry(
        sim.key,
        log="CN01",
        epoch=1,
        seq=3,
        prev=third.prev,
        time=third.time,
        kind="test.note",
        body={"n": "another history"},
    )
    status, body = await sim.push([other])
    assert (status, body["error"]) == (409, "fork") and body["head"]["seq"] == 5
    hub = hub_of(client)
    forks = await hub.store.fetchall("SELECT seq, stored_hash, offered_hash, offered_raw FROM forks")
    assert forks == [(3, third.hash, other.hash, other.raw)]
    assert (await hub.registry.node("CN01")).status == "quarantined"  # type: ignore[union-attr]
    assert await hub.store.fetchall("SELECT kind FROM alarms WHERE node = 'CN01'") == [("fork",)]
    assert await hub.store.hashes("CN01", 1, 3, 3) == {3: third.hash}  # never overwritten
    sim.notes(1)
    await _refused(sim, hub_dir, 403, "node_quarantined", entries=sim.entries[-1:])


async def test_a_damaged_different_entry_is_not_fork_evidence(client: TestClient, hub_dir: Path) -> None:
    sim = await enrolled(client)
    sim.notes(2)
    assert (await sim.push())[0] == 200
    forged = sign_entry(
        private_key_from_seed(b"x" * 32),
        log="CN01",
        epoch=1,
        seq=2,
        prev=sim.entries[0].hash,
        time=sim.entries[1].time,
        kind="test.note",
        body={"n": "forged"},
    )
    await _refused(sim, hub_dir, 422, "bad_signature", entries=[forged])
    assert (await hub_of(client).registry.node("CN01")).status == "active"  # type: ignore[union-attr]


async def test_cross_node_pushes_are_refused(client: TestClient, hub_dir: Path) -> None:
    cn01 = await enrolled(client, "CN01")
    cn02 = await enrolled(client, "CN02")
    cn02.notes(2)
    cn01.notes(2)
    await _refused(cn01, hub_dir, 403, "cross_node", entries=cn02.entries, log="CN02")
    await _refused(cn01, hub_dir, 422, "wrong_log", entries=cn02.entries)
    # CN02's entries re-signed by CN01's key under CN02's name: refused by CN01's path and by CN02's key
    assert (await cn02.push())[0] == 200


async def test_revoked_node_is_refused_and_told(client: TestClient, hub_dir: Path) -> None:
    sim = await enrolled(client)
    sim.notes(3)
    assert (await sim.push(sim.entries[:2]))[0] == 200
    hub = hub_of(client)
    assert await hub.registry.revoke("CN01", after=None, reason="van stolen", now=hub_clock.now) == (1, 2)
    body = await _refused(sim, hub_dir, 403, "node_revoked", entries=sim.entries[2:])
    assert "van stolen" in body["reason"]
    status, state = await sim.call("GET", "/v1/sync/state")
    assert status == 200 and state["status"] == "revoked"
    status, body = await sim.call("GET", "/v1/sync/mailbox/hub")
    assert (status, body["error"]) == (403, "node_revoked")


async def test_revocation_cut_quarantines_what_came_after(client: TestClient) -> None:
    sim = await enrolled(client)
    sim.notes(5)
    assert (await sim.push())[0] == 200
    hub = hub_of(client)
    assert await hub.registry.revoke("CN01", after=4, reason="key leaked", now=hub_clock.now) == (1, 4)
    rows = await hub.store.fetchall("SELECT seq, code FROM quarantine WHERE log = 'CN01' ORDER BY seq")
    assert rows == [(5, "revoked"), (6, "revoked")]


async def test_wrong_epoch(client: TestClient, hub_dir: Path) -> None:
    sim = await enrolled(client)
    sim.notes(1)
    await _refused(sim, hub_dir, 403, "wrong_epoch", epoch=2)
    status, body = await sim.call("GET", "/v1/sync/state", epoch=2)
    assert (status, body["error"]) == (401, "unknown_node")
    other = SimNode(client, "CN01", key=sim.key, epoch=2)
    other.notes(1)
    await _refused(sim, hub_dir, 422, "wrong_epoch", entries=other.entries)


async def test_body_invalid_is_stored_quarantined_and_does_not_block(client: TestClient) -> None:
    sim = await enrolled(client)
    sim.append("dossier.received", {"dossier": "not a code"})
    sim.notes(2)
    status, body = await sim.push()
    assert status == 200 and body["accepted"] == 4 and body["quarantined"] == [2]
    rows = await hub_of(client).store.fetchall("SELECT seq, code FROM quarantine")
    assert rows == [(2, "body_invalid")]


async def test_limits(client: TestClient, hub_dir: Path) -> None:
    sim = await enrolled(client)
    sim.notes(600)
    await _refused(sim, hub_dir, 413, "too_many_entries")
    big = b"x" * (600 * 1024)
    await _refused(sim, hub_dir, 413, "too_large", raw=big)
    status, body = await sim.push(sim.entries[:500])
    assert status == 200 and body["accepted"] == 500


async def test_receipts_verify_and_bind_the_head(client: TestClient) -> None:
    sim = await enrolled(client)
    sim.notes(2)
    _, body = await sim.push()
    receipt = Receipt.from_wire(body["receipt"])
    from protocol import BadSignature

    forged = Receipt(receipt.log, receipt.epoch, receipt.seq + 1, receipt.head, receipt.hub_time, receipt.sig)
    with pytest.raises(BadSignature):
        forged.verify(hub_of(client).public_key)
