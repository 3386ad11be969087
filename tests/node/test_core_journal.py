"""Journal: signed chain, validation before append, atomicity, projections equal a refold, restarts."""

from __future__ import annotations

import pytest

from node import projection
from node.actions import perform
from node.errors import InvalidInput, JournalError
from node.journal import verify_log
from node.provision import Node
from node.verify import verify_node
from protocol.chain import ChainState, verify_chain
from protocol.entry import Entry
from protocol.keys import parse_public_key, public_key_text
from tests.node.conftest import FAST_LOOKUP, reception


async def _raws(node: Node) -> list[bytes]:
    rows = await node.store.fetchall("SELECT raw FROM entries WHERE log = 'CN01' ORDER BY epoch, seq")
    return [bytes(r[0]) for r in rows]


async def test_genesis_and_appended_entries_verify_as_a_chain(node: Node) -> None:
    await node.desk.receive(reception(), actor="an.nv")
    await node.desk.receive(
        reception(applicant={"name": "Lê Văn Cường", "id_number": "001201012345"}), actor="an.nv"
    )
    raws = await _raws(node)
    assert len(raws) == 3
    genesis = Entry.parse(raws[0])
    assert genesis.kind == "log.genesis" and genesis.body["key"] == public_key_text(node.key)
    key = parse_public_key(public_key_text(node.key))
    state = verify_chain(ChainState.start("CN01", 1, key), raws)
    assert state.seq == 3
    async with node.store.read() as db:
        assert (await node.journal.head(db)).hash == state.head
        later = await node.journal.entries_after(db, 1, 1)
    assert [e.seq for e in later] == [2, 3]
    assert later[0].body["actor"] == "an.nv"


async def test_invalid_body_is_refused_and_nothing_is_written(node: Node) -> None:
    before = await _raws(node)
    with pytest.raises(InvalidInput) as caught:
        async with node.store.write() as db:
            await node.journal.append(
                db, "dossier.rating", {"dossier": "not a code", "scale": "x"}, actor="an.nv"
            )
    assert caught.value.status == 422 and caught.value.fields
    assert await _raws(node) == before


async def test_append_needs_a_transaction_and_refuses_genesis(node: Node) -> None:
    writer = node.store._writer  # outside any transaction
    assert not writer.in_transaction
    with pytest.raises(JournalError):
        await node.journal.append(writer, "x.y", {}, actor="a")
    with pytest.raises(JournalError):
        async with node.store.write() as db:
            await node.journal.append(db, "log.genesis", {}, actor="a")


async def test_failure_mid_append_leaves_nothing(node: Node) -> None:
    """A projector failure after the entry row is inserted rolls the whole transaction back."""
    before = await _raws(node)
    real = node.journal.project

    async def broken(db, entry):  # type: ignore[no-untyped-def]
        await real(db, entry)  # type: ignore[misc]
        raise OSError("disk went away")

    node.journal.project = broken
    with pytest.raises(OSError):
        await node.desk.receive(reception(), actor="an.nv")
    node.journal.project = real
    assert await _raws(node) == before
    assert await node.store.fetchall("SELECT * FROM dossiers") == []
    assert await node.store.fetchall("SELECT * FROM lookup_codes") == []
    again = await node.desk.receive(reception(), actor="an.nv")
    assert again.seq == 2  # the chain continues where it was


async def test_failure_in_the_writer_thread_leaves_nothing(node: Node) -> None:
    """The sign-insert-project step runs on the writer's thread (``run_sync``); a failure there after
    the rows are inserted rolls everything back too."""
    before = await _raws(node)
    real = node.journal.project

    def broken_sync(conn, entries, validated):  # type: ignore[no-untyped-def]
        real.sync_many(conn, entries, validated)  # type: ignore[union-attr]
        raise OSError("disk went away")

    async def broken(db, entry):  # type: ignore[no-untyped-def]
        raise AssertionError("the sync projector is used")

    broken.sync_many = broken_sync  # type: ignore[attr-defined]
    node.journal.project = broken
    with pytest.raises(OSError):
        await node.desk.receive(reception(), actor="an.nv")
    node.journal.project = real
    assert await _raws(node) == before
    assert await node.store.fetchall("SELECT * FROM dossiers") == []
    again = await node.desk.receive(reception(), actor="an.nv")
    assert again.seq == 2


async def test_built_bodies_are_validated_again_when_the_actor_differs(node: Node) -> None:
    """``append_many(built=True)`` trusts a builder's body only for the actor it was built for."""
    body = {"dossier": "not a code", "actor": "an.nv", "scale": "x"}
    async with node.store.write() as db:
        [result] = await node.journal.append_many(db, [("dossier.rating", body, "binh.tt")], built=True)
    assert isinstance(result, InvalidInput)
    assert len(await _raws(node)) == 1


async def test_clock_going_backwards_never_breaks_time_order(node: Node) -> None:
    times = iter([2_000_000_000_000, 1_000_000_000_000, 1_000_000_000_000])
    node.journal.wall = lambda: next(times)
    for _ in range(3):
        async with node.store.write() as db:
            await node.journal.append(db, "node.note", {"text": "x"}, actor="an.nv")
    entries = [Entry.parse(r) for r in await _raws(node)]
    stamps = [e.time for e in entries[1:]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert stamps[1] == (2_000_000_000_000, 1)


async def _busy_node(node: Node) -> list[str]:
    codes = []
    for i in range(6):
        r = await node.desk.receive(
            reception(applicant={"name": f"Phạm Thị Hồng {i}", "id_number": f"00119{i:07d}"}), actor="an.nv"
        )
        codes.append(r.code)
    await perform(node.desk, codes[0], "transfer", {"agency": "UBND phường"}, actor="an.nv")
    await perform(node.desk, codes[0], "supplement_request", {"items": [{"name": "Bản sao"}]}, actor="an.nv")
    await perform(node.desk, codes[0], "supplement_provided", {}, actor="an.nv")
    await perform(node.desk, codes[0], "result_ready", {"outcome": "approved"}, actor="an.nv")
    await perform(node.desk, codes[0], "return", {"recipient": {"name": "Phạm Thị Hồng"}}, actor="an.nv")
    await perform(node.desk, codes[1], "rating", {"value": 1}, actor="an.nv")
    await perform(node.desk, codes[2], "withdrawal_request", {"reason": "Đổi ý"}, actor="an.nv")
    await perform(node.desk, codes[2], "withdraw", {}, actor="truong.bp")
    await node.desk.refuse(
        {
            "procedure": "1.001193",
            "applicant": {"name": "Đỗ Văn Em", "id_number": "001099000001"},
            "reason": "Sai",
        },
        actor="an.nv",
    )
    return codes


async def test_projections_equal_a_refold(node: Node) -> None:
    await _busy_node(node)
    report = await verify_node(node.store, "CN01")
    assert report.ok, report.differences
    assert report.dossiers == 7
    async with node.store.read() as db:
        before = await projection.snapshot(db)
    async with node.store.write() as db:
        await projection.rebuild(db)
        after = await projection.snapshot(db)
    assert before == after
    assert len(before["timeline"]) == 6 + 5 + 1 + 2 + 1
    counters = {(k, v) for _, k, v in before["counters"]}
    assert ("dossier.received", 6) in counters and ("dossier.refused", 1) in counters


async def test_verify_detects_a_tampered_projection_and_entry(node: Node) -> None:
    codes = await _busy_node(node)
    async with node.store.write() as db:
        await db.execute("UPDATE dossiers SET state = 'returned', national = 10 WHERE code = ?", (codes[3],))
    report = await verify_node(node.store, "CN01")
    assert not report.ok and any("dossiers" in d for d in report.differences)
    async with node.store.write() as db:
        await projection.rebuild(db)
        row = await (await db.execute("SELECT raw FROM entries WHERE seq = 3")).fetchone()
        tampered = bytes(row[0]).replace("Phạm".encode(), b"Pham")
        await db.execute("UPDATE entries SET raw = ? WHERE seq = 3", (tampered,))
    with pytest.raises(Exception) as caught:
        async with node.store.read() as db:
            await verify_log(db, "CN01")
    assert getattr(caught.value, "position", "") == "CN01/1:3"


async def test_restart_loses_nothing_and_codes_continue(node: Node) -> None:
    first = [await node.desk.receive(reception(), actor="an.nv") for _ in range(3)]
    config = node.config
    await node.close()
    reopened = await Node.open(config, lookup_iterations=FAST_LOOKUP)
    try:
        more = [await reopened.desk.receive(reception(), actor="an.nv") for _ in range(2)]
        seqs = [int(r.code[-4:]) for r in first + more]
        assert seqs == [1000, 1001, 1002, 1003, 1004]
        assert [r.seq for r in first + more] == [2, 3, 4, 5, 6]
        assert (await verify_node(reopened.store, "CN01")).ok
    finally:
        await reopened.close()
        node.store = reopened.store  # the fixture closes it again: close() is idempotent
