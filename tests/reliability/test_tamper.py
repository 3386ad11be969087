"""S1-S3, S6, S7: every tampered push is refused with a named reason and leaves the hub byte-identical.

Builds on tests/central/test_push.py (one bit in sig/body/prev, one spacing, framing, one fork, one
cross-node push, revocation, one wrong epoch) with the exhaustive variants: every single-bit flip of a
pushed 3-entry batch (each re-signed at the request level, so the hub's entry checks are what refuse
it), random structural edits (truncate, extend, splice, swap, duplicate, drop, foreign lines), every
non-canonical encoding class, S+L signatures and small-order keys, replays (same request, old batch,
after a hub restart, under other credentials), cross-node and wrong/sealed-epoch pushes, revoked keys.
The hub database is dumped (every row of every table) before and after: equal dumps.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from central.app import make_app
from central.config import load
from protocol import (
    EnrollmentRequest,
    Entry,
    b64url_decode,
    b64url_encode,
    private_key_from_seed,
    sign_entry,
)
from tests.central.helpers import SimNode, dump_db, hub_clock, hub_of, make_hub_dir

L = 2**252 + 27742317777372353535851937790883648493  # the Ed25519 group order
# Every code a refused push may carry (SPEC §7.3); anything else, or a 2xx/5xx, fails the test.
DECLARED = {
    400: {"invalid_json", "float", "int_range", "duplicate_key", "too_deep", "lone_surrogate", "not_nfc",
          "not_canonical", "too_large", "bad_framing", "body_hash_mismatch", "bad_shape", "bad_request"},
    401: {"auth_missing", "auth_malformed", "unknown_node", "stale", "bad_request_signature", "replayed"},
    403: {"cross_node", "node_revoked", "node_quarantined", "wrong_epoch", "epoch_sealed"},
    404: {"not_found"},
    409: {"seq_gap", "fork"},
    413: {"too_large", "too_many_entries"},
    422: {"bad_shape", "bad_version", "wrong_log", "wrong_epoch", "seq_gap", "prev_mismatch",
          "time_backwards", "bad_signature", "bad_genesis", "key_mismatch", "body_invalid", "not_canonical",
          "invalid_json", "float", "int_range", "duplicate_key", "too_deep", "lone_surrogate", "not_nfc",
          "too_large"},
}  # fmt: skip


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    make_hub_dir(tmp_path / "hub")
    return tmp_path / "hub"


@pytest.fixture
async def client(hub_dir: Path, aiohttp_client) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    config = load(hub_dir, environ={}, max_push_bytes=512 * 1024, max_push_entries=500)
    yield await aiohttp_client(make_app(config, clock=hub_clock))


@pytest.fixture
async def sim(client: TestClient) -> SimNode:
    """CN01 enrolled; the hub holds seq 1..2; entries 3..5 are signed but not pushed."""
    node = SimNode(client, "CN01")
    await node.enroll(hub_of(client))
    node.notes(4)
    status, body = await node.push(node.entries[:2])
    assert status == 200, body
    return node


def _refusal(status: int, body: Any) -> str:
    assert status in DECLARED, f"answered {status}: {body}"
    assert isinstance(body, dict) and body.get("error") in DECLARED[status], f"{status}: {body}"
    assert isinstance(body.get("reason"), str) and body["reason"], body
    return f"{status} {body['error']}"


async def _push_raw(sim: SimNode, body: bytes, **kw: Any) -> tuple[int, Any]:
    return await sim.push(raw=body, **kw)


async def _flip_all(sim: SimNode, batch: list[Entry], hub_dir: Path) -> Counter[str]:
    body = b"".join(e.raw + b"\n" for e in batch)
    before = dump_db(hub_dir / "hub.sqlite3")
    reasons: Counter[str] = Counter()
    for i in range(len(body)):
        for bit in range(8):
            tampered = bytearray(body)
            tampered[i] ^= 1 << bit
            status, answer = await _push_raw(sim, bytes(tampered))
            reasons[_refusal(status, answer)] += 1
    assert dump_db(hub_dir / "hub.sqlite3") == before
    return reasons


async def test_every_single_bit_flip_of_a_new_batch_is_refused(
    sim: SimNode,
    hub_dir: Path,
    figures,  # type: ignore[no-untyped-def]
) -> None:
    started = time.monotonic()
    batch = sim.entries[2:5]
    reasons = await _flip_all(sim, batch, hub_dir)
    total = sum(reasons.values())
    assert total == 8 * sum(len(e.raw) + 1 for e in batch)
    status, body = await sim.push(batch)  # the genuine batch still goes through: nothing was poisoned
    assert status == 200 and body["accepted"] == 3, body
    figures("S1 bit flips, new 3-entry batch", flips=total, refused=total,
            seconds=round(time.monotonic() - started, 1), reasons=dict(reasons.most_common()))  # fmt: skip


@pytest.mark.slow
async def test_every_single_bit_flip_of_an_overlapping_batch_is_refused(
    sim: SimNode,
    hub_dir: Path,
    figures,  # type: ignore[no-untyped-def]
) -> None:
    """The first line is one the hub holds: a flipped held line must never count as a fork."""
    batch = sim.entries[1:4]
    reasons = await _flip_all(sim, batch, hub_dir)
    assert not any(r.endswith(" fork") for r in reasons)
    figures(
        "S1 bit flips, overlapping batch", flips=sum(reasons.values()), reasons=dict(reasons.most_common())
    )


def _other_history(sim: SimNode) -> list[Entry]:
    """A second history under the same key, diverging at seq 3 (lines usable as splice material)."""
    out = list(sim.entries[:2])
    for n in range(3, 7):
        out.append(
            sign_entry(sim.key, log=sim.node, epoch=1, seq=n, prev=out[-1].hash, time=(hub_clock.now, n),
                       kind="test.note", body={"n": f"other {n}"})
        )  # fmt: skip
    return out[2:]


def _edit(rng: random.Random, lines: list[bytes], material: list[bytes]) -> bytes:
    lines = list(lines)
    op = rng.choice(["truncate", "extend", "splice", "swap", "duplicate", "drop", "foreign", "cut_line"])
    if op == "truncate":
        body = b"".join(x + b"\n" for x in lines)
        return body[: rng.randrange(1, len(body))]
    if op == "extend":
        body = b"".join(x + b"\n" for x in lines)
        return body + bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    if op == "splice":
        i = rng.randrange(len(lines))
        lines[i : i + rng.randint(0, 2)] = rng.sample(material, rng.randint(1, 2))
    elif op == "swap" and len(lines) > 1:
        i, j = rng.sample(range(len(lines)), 2)
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "duplicate":
        i = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
    elif op == "drop" and len(lines) > 1:
        del lines[rng.randrange(len(lines))]
    elif op == "foreign":
        lines[rng.randrange(len(lines))] = rng.choice(material)
    else:  # cut_line: a line split in two or two lines joined
        i = rng.randrange(len(lines))
        cut = rng.randrange(1, len(lines[i]))
        lines[i : i + 1] = [lines[i][:cut], lines[i][cut:]] if rng.random() < 0.5 else [lines[i][:cut]]
    return b"".join(x + b"\n" for x in lines)


def _genuine_continuation(body: bytes, own: list[Entry], held: int) -> bool:
    """The oracle: a run of this node's own consecutive entries that adds something is legitimately
    accepted; the generator skips those (they would change the hub, correctly)."""
    if not body.endswith(b"\n"):
        return False
    lines = body[:-1].split(b"\n")
    raws = [e.raw for e in own]
    if not all(line in raws for line in lines):
        return False
    seqs = [raws.index(line) + 1 for line in lines]
    contiguous = seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    return contiguous and seqs[0] <= held + 1 and seqs[-1] > held


async def random_edits(
    sim: SimNode, client: TestClient, hub_dir: Path, count: int, seed: int
) -> Counter[str]:
    other = SimNode(client, "CN02")
    await other.enroll(hub_of(client))
    other.notes(3)
    material = [e.raw for e in _other_history(sim)] + [e.raw for e in other.entries[1:]]
    material += [sim.entries[0].raw]  # the genesis again, at the wrong place
    rng = random.Random(seed)
    before = dump_db(hub_dir / "hub.sqlite3")
    reasons: Counter[str] = Counter()
    done = 0
    while done < count:
        body = _edit(rng, [e.raw for e in sim.entries[1:5]], material)
        if _genuine_continuation(body, sim.entries, held=2):
            reasons["skipped: a genuine continuation"] += 1
            continue
        status, answer = await _push_raw(sim, body)
        if status == 200:  # only a pure re-send of held entries may pass, and it changes nothing
            assert answer["accepted"] == 0, (body, answer)
            reasons["200 duplicates only"] += 1
        else:
            reasons[_refusal(status, answer)] += 1
        done += 1
    assert dump_db(hub_dir / "hub.sqlite3") == before
    return reasons


async def test_random_structural_edits_are_refused(
    sim: SimNode,
    client: TestClient,
    hub_dir: Path,
    figures,  # type: ignore[no-untyped-def]
) -> None:
    reasons = await random_edits(sim, client, hub_dir, 2000, seed=20261122)
    assert not any(r.endswith(" fork") for r in reasons)
    figures("S1 random edits (quick)", edits=2000, reasons=dict(reasons.most_common()))


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_random_structural_edits_soak(
    sim: SimNode,
    client: TestClient,
    hub_dir: Path,
    figures,  # type: ignore[no-untyped-def]
) -> None:
    reasons = await random_edits(sim, client, hub_dir, 10_000, seed=5)
    figures("S1 random edits (soak)", edits=10_000, reasons=dict(reasons.most_common()))


def _non_canonical(raw: bytes) -> dict[str, bytes]:
    value = json.loads(raw)
    text = raw.decode()
    seq = value["seq"]
    return {
        "key order": json.dumps(dict(reversed(list(value.items()))), separators=(",", ":"),
                                ensure_ascii=False).encode(),
        "whitespace": raw.replace(b'":', b'": ', 1),
        "leading space": b" " + raw,
        "trailing space": raw + b" ",
        "crlf": raw + b"\r",
        "bom": b"\xef\xbb\xbf" + raw,
        "duplicate key": raw[:-1] + b',"v":1}',
        "float seq": text.replace(f'"seq":{seq}', f'"seq":{seq}.0').encode(),
        "exponent seq": text.replace(f'"seq":{seq}', f'"seq":{seq}e0').encode(),
        "leading zero": text.replace(f'"seq":{seq}', f'"seq":0{seq}').encode(),
        "plus sign": text.replace(f'"seq":{seq}', f'"seq":+{seq}').encode(),
        "negative zero": text.replace('"time":[', '"time":[-0,', 1).encode(),
        "big int": text.replace(f'"seq":{seq}', '"seq":9007199254740993').encode(),
        "escaped letter": raw.replace(b'"kind":"test', b'"kind":"\\u0074est'),
        "escaped slash": raw.replace(b'"kind":"test', b'"kind":"\\/test'),
        "upper-case escape": raw[:-1] + b',"x":"\\u001F"}',
        "not nfc": raw[:-1] + ',"x":"Nguye\u0302\u0303n"}'.encode(),
        "lone surrogate": raw[:-1] + b',"x":"\\ud800"}',
        "nan": text.replace(f'"seq":{seq}', '"seq":NaN').encode(),
        "latin-1": raw[:-1] + ',"x":"é"}'.encode("latin-1"),
        "deep": raw[:-1] + b',"x":' + b"[" * 40 + b"]" * 40 + b"}",
        "unknown member": raw[:-1] + b',"zz":1}',
    }  # fmt: skip


async def test_non_canonical_encodings_are_refused(
    sim: SimNode,
    hub_dir: Path,
    figures,  # type: ignore[no-untyped-def]
) -> None:
    before = dump_db(hub_dir / "hub.sqlite3")
    seen = {}
    for name, line in _non_canonical(sim.entries[2].raw).items():
        status, body = await _push_raw(sim, line + b"\n")
        seen[name] = _refusal(status, body)
        assert status in (400, 422) and body["index"] == 0, (name, body)
    assert dump_db(hub_dir / "hub.sqlite3") == before
    figures("S2 non-canonical encodings", cases=len(seen), refused=seen)


def _malleate(raw: bytes, k: int) -> bytes:
    value = json.loads(raw)
    sig = b64url_decode(value["sig"], length=64)
    s = int.from_bytes(sig[32:], "little") + k * L
    assert s < 2**256
    forged = b64url_encode(sig[:32] + s.to_bytes(32, "little"))
    return raw.replace(value["sig"].encode(), forged.encode())


async def test_signature_malleability_and_small_order_keys(
    sim: SimNode, client: TestClient, hub_dir: Path
) -> None:
    before = dump_db(hub_dir / "hub.sqlite3")
    for k in (1, 2, 3):
        status, body = await _push_raw(sim, _malleate(sim.entries[2].raw, k) + b"\n")
        assert (status, body["error"]) == (422, "bad_signature"), body
    headers = sim.headers("POST", "/v1/sync/logs/CN01/1", sim.entries[2].raw + b"\n")
    sig = b64url_decode(headers["X-Motcua-Signature"], length=64)
    s = int.from_bytes(sig[32:], "little") + L
    headers["X-Motcua-Signature"] = b64url_encode(sig[:32] + s.to_bytes(32, "little"))
    resp = await client.post("/v1/sync/logs/CN01/1", data=sim.entries[2].raw + b"\n", headers=headers)
    assert resp.status == 401 and (await resp.json())["error"] in ("bad_request_signature", "auth_malformed")
    assert dump_db(hub_dir / "hub.sqlite3") == before
    hub = hub_of(client)
    token = await hub.registry.invite(
        "CN09",
        "van",
        "Xe 9",
        hub_url="http://127.0.0.1",
        hub_key=hub.public_key,
        now=hub_clock.now,
        ttl_ms=3_600_000,
    )
    good = EnrollmentRequest.make(token, private_key_from_seed(b"k" * 32))
    for small in (
        "01" + "00" * 31,
        "ec" + "ff" * 30 + "7f",
        "00" * 32,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    ):
        request = EnrollmentRequest(good.node, b64url_encode(bytes.fromhex(small)), good.secret, good.proof)
        resp = await client.post("/v1/enroll", data=json.dumps(request.to_wire(), separators=(",", ":")))
        answer = await resp.json()
        assert resp.status in (400, 401) and answer["error"], answer
    assert (
        await client.post("/v1/enroll", data=json.dumps(good.to_wire(), separators=(",", ":")))
    ).status == 200


async def test_replays_change_nothing(
    sim: SimNode, client: TestClient, hub_dir: Path, aiohttp_client
) -> None:  # type: ignore[no-untyped-def]
    body = b"".join(e.raw + b"\n" for e in sim.entries[2:5])
    headers = sim.headers("POST", "/v1/sync/logs/CN01/1", body)
    first = await client.post("/v1/sync/logs/CN01/1", data=body, headers=headers)
    assert first.status == 200
    receipt = (await first.json())["receipt"]
    before = dump_db(hub_dir / "hub.sqlite3")
    again = await client.post("/v1/sync/logs/CN01/1", data=body, headers=headers)  # the same request
    assert again.status == 401 and (await again.json())["error"] == "replayed"
    status, old = await sim.push(sim.entries[:3])  # an old batch, freshly signed: duplicates only
    assert status == 200 and old["accepted"] == 0 and old["duplicates"] == 3
    status, same = await sim.push(sim.entries[2:5])
    assert status == 200 and same["receipt"] == receipt
    other = SimNode(client, "CN02")
    await other.enroll(hub_of(client))
    after_enroll = dump_db(hub_dir / "hub.sqlite3")
    status, answer = await other.push(sim.entries[2:5], log="CN01")  # CN01's batch under CN02's credentials
    assert (status, answer["error"]) == (403, "cross_node")
    assert dump_db(hub_dir / "hub.sqlite3") == after_enroll
    assert [t for t in before if t[0] != "nodes"] != []  # sanity: the dump is not empty
    # After a hub restart the in-memory replay cache is empty: the captured request is accepted again,
    # but as pure duplicates, so the stored state still does not change.
    await client.close()
    config = load(hub_dir, environ={}, max_push_bytes=512 * 1024, max_push_entries=500)
    restarted = await aiohttp_client(TestServer(make_app(config, clock=hub_clock)))
    replay = await restarted.post("/v1/sync/logs/CN01/1", data=body, headers=headers)
    answer = await replay.json()
    assert replay.status == 200 and answer["accepted"] == 0 and answer["receipt"] == receipt, answer
    assert dump_db(hub_dir / "hub.sqlite3") == after_enroll


async def test_cross_node_wrong_epoch_sealed_and_revoked(
    sim: SimNode, client: TestClient, hub_dir: Path
) -> None:
    hub = hub_of(client)
    cn02 = SimNode(client, "CN02")
    await cn02.enroll(hub)
    cn02.notes(2)
    assert (await cn02.push())[0] == 200
    before = dump_db(hub_dir / "hub.sqlite3")

    def signed(key: Any, log: str, prev: str) -> list[Entry]:
        entry = sign_entry(key, log=log, epoch=1, seq=3, prev=prev, time=(hub_clock.now, 9), kind="test.note",
                           body={"n": 1})  # fmt: skip
        return [entry]

    batch = b"".join(e.raw + b"\n" for e in sim.entries[2:5])
    cases = [
        (await sim.push(cn02.entries, log="CN02"), 403, "cross_node"),
        (await sim.push(signed(sim.key, "CN02", cn02.entries[1].hash), log="CN02"), 403, "cross_node"),
        (await sim.push(signed(sim.key, "CN02", sim.entries[1].hash)), 422, "wrong_log"),
        (await sim.push(signed(cn02.key, "CN01", sim.entries[1].hash)), 422, "bad_signature"),
        (await sim.push(sim.entries[2:5], key=cn02.key), 401, "bad_request_signature"),
        (await sim.call("POST", "/v1/sync/logs/CN01/1", batch, epoch=2), 401, "unknown_node"),
        (await sim.push(sim.entries[2:5], epoch=2), 403, "wrong_epoch"),
        (await sim.push(sim.entries[2:5], time_ms=hub_clock.now - 600_000), 401, "stale"),
    ]
    for (status, body), want_status, want_code in cases:
        assert (status, body["error"]) == (want_status, want_code), body
    assert dump_db(hub_dir / "hub.sqlite3") == before
    # Re-provisioned: the old key's epoch is sealed at what the hub holds.
    token = await hub.registry.invite(
        "CN02",
        "branch",
        "CN02",
        hub_url="http://127.0.0.1",
        hub_key=hub.public_key,
        now=hub_clock.now,
        ttl_ms=3_600_000,
    )
    new = SimNode(client, "CN02", key=private_key_from_seed(b"n" * 32))
    new.epoch = (await new.enroll_with(token))["epoch"]
    assert new.epoch == 2
    cn02.notes(1)
    sealed = dump_db(hub_dir / "hub.sqlite3")
    status, body = await cn02.push(cn02.entries[3:])
    assert (status, body["error"]) == (403, "epoch_sealed"), body
    status, body = await new.push(cn02.entries[3:], epoch=1)  # the new key, into the sealed epoch
    assert (status, body["error"]) == (403, "epoch_sealed"), body
    assert dump_db(hub_dir / "hub.sqlite3") == sealed
    # Revoked: refused from then on, held entries kept.
    await hub.registry.revoke("CN01", after=None, reason="xe bị mất", now=hub_clock.now)
    revoked = dump_db(hub_dir / "hub.sqlite3")
    for entries in (sim.entries[2:5], sim.entries[:2]):
        status, body = await sim.push(entries)
        assert (status, body["error"]) == (403, "node_revoked"), body
    for method, target in (("GET", "/v1/sync/mailbox/hub"), ("POST", "/v1/sync/blobs/need")):
        status, body = await sim.call(method, target, b'{"blobs":[]}' if method == "POST" else b"")
        assert (status, body["error"]) == (403, "node_revoked"), body
    assert dump_db(hub_dir / "hub.sqlite3") == revoked
    assert await hub.store.entries("CN01", 1, 0, 10) == [e.raw for e in sim.entries[:2]]
