"""Group commit of receptions: concurrent intakes share one transaction (one fsync), every request is
answered only after the COMMIT that holds it, and one failing request never loses or half-writes the
others. Also ``Journal.append_many`` and ``projection.apply_many`` against their one-at-a-time forms."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import pytest

from node import projection
from node.actions import perform
from node.errors import InvalidInput
from node.intake import Recorded
from node.provision import Node
from node.verify import verify_node
from protocol.dossier.codes import LookupHash
from protocol.entry import Entry
from tests.node.conftest import reception
from tests.tools import node_db


def _person(i: int) -> dict[str, Any]:
    return reception(applicant={"name": f"Trần Thị Bích {i}", "id_number": f"00119{i:07d}"})


def _count_transactions(node: Node) -> list[int]:
    """Wrap ``store.write`` to count transactions that reached COMMIT."""
    commits: list[int] = []
    real = node.store.write

    @asynccontextmanager
    async def counting() -> AsyncIterator[aiosqlite.Connection]:
        async with real() as db:
            yield db
        commits.append(1)

    node.store.write = counting  # type: ignore[method-assign]
    return commits


async def _in_one_group(node: Node, coros: list[Any]) -> list[Any]:
    """Start ``coros`` while the writer is busy, so they all wait for it; then let them go."""
    async with node.store.write():
        tasks = [asyncio.create_task(c) for c in coros]
        for _ in range(1000):
            if sum(len(v) for v in node.desk._reserved.codes.values()) == len(coros):  # noqa: SLF001
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # hashed (the lookup hash is stubbed: instant) and queued
        assert not any(t.done() for t in tasks)
    return await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture(autouse=True)
def _instant_lookup_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PBKDF2 is tested elsewhere; here it would only make the timing of the queue vary."""
    from node import intake

    monkeypatch.setattr(intake, "hash_lookup_code", lambda code, plain, **_: LookupHash("ab" * 32))


def _committed(node: Node, code: str) -> bool:
    """Read with a separate plain connection: only committed data is visible there."""
    db = node_db(node.config.db_path)
    try:
        found = db.execute("SELECT count(*) FROM entries WHERE dossier = ?", (code,)).fetchone()
        return bool(found[0])
    finally:
        db.close()


async def test_concurrent_receptions_share_commits_and_answer_after_commit(node: Node) -> None:
    seen_durable: list[bool] = []

    async def one(i: int) -> Recorded:
        result = await node.desk.receive(_person(i), actor="an.nv")
        seen_durable.append(_committed(node, result.code))  # at the moment the answer arrives
        return result

    commits = _count_transactions(node)
    results = await _in_one_group(node, [one(i) for i in range(16)])
    assert all(seen_durable) and len(seen_durable) == 16
    assert len(commits) <= 3, commits  # the writer held by the test, then one or two groups
    assert sorted(r.seq for r in results) == list(range(2, 18))
    assert sorted(int(r.code[-4:]) for r in results) == list(range(1000, 1016))
    assert all(r.status == 2 and r.state == "received" and r.lookup_code for r in results)
    report = await verify_node(node.store, "CN01")
    assert report.ok, report.differences


async def test_one_failing_request_does_not_sink_its_group(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error for one reception rolls the group back; the others are written alone."""
    real = node.journal.project
    assert real is not None

    async def one_at_a_time(db: aiosqlite.Connection, entry: Entry) -> None:
        if entry.body.get("applicant", {}).get("name") == "Trần Thị Bích 3":
            raise sqlite3.OperationalError("disk I/O error")
        await real(db, entry)

    node.journal.project = one_at_a_time  # no ``many``: append_many calls it per entry
    results = await _in_one_group(node, [node.desk.receive(_person(i), actor="an.nv") for i in range(8)])
    assert "writing each alone" in caplog.text  # the group failed as a whole first
    node.journal.project = real
    failed = [r for r in results if isinstance(r, BaseException)]
    done = [r for r in results if isinstance(r, Recorded)]
    assert len(failed) == 1 and isinstance(failed[0], sqlite3.OperationalError)
    assert len(done) == 7
    for r in done:
        assert _committed(node, r.code)
    rows = await node.store.fetchall("SELECT applicant_name FROM dossiers")
    assert "Trần Thị Bích 3" not in {r[0] for r in rows} and len(rows) == 7
    assert len(await node.store.fetchall("SELECT * FROM lookup_codes")) == 7
    assert sorted(r.seq for r in done) == list(range(2, 9))  # the chain has no hole
    report = await verify_node(node.store, "CN01")
    assert report.ok, report.differences
    # the failed reception's number was never printed: it may be given again, never twice
    again = await node.desk.receive(_person(3), actor="an.nv")
    codes = [r.code for r in done] + [again.code]
    assert len(set(codes)) == 8


async def test_a_cancelled_request_never_cancels_its_group_nor_frees_its_code_early(node: Node) -> None:
    tasks = [asyncio.create_task(node.desk.receive(_person(i), actor="an.nv")) for i in range(10)]
    await asyncio.sleep(0)
    while not node.desk._queue and not all(t.done() for t in tasks):  # noqa: SLF001
        await asyncio.sleep(0.001)
    tasks[0].cancel()
    more = [asyncio.create_task(node.desk.receive(_person(20 + i), actor="an.nv")) for i in range(4)]
    results = await asyncio.gather(*tasks, *more, return_exceptions=True)
    done = [r for r in results if isinstance(r, Recorded)]
    assert len(done) >= 13
    rows = await node.store.fetchall("SELECT code FROM dossiers")
    assert len(rows) == len({r[0] for r in rows})  # no code twice
    assert {r.code for r in done} <= {r[0] for r in rows}
    report = await verify_node(node.store, "CN01")
    assert report.ok, report.differences


async def test_same_idempotency_key_in_one_group_makes_one_dossier(node: Node) -> None:
    results = await asyncio.gather(
        *(node.desk.receive(_person(1), actor="an.nv", idempotency_key="same-key-123") for _ in range(5)),
        *(node.desk.receive(_person(i), actor="an.nv") for i in range(2, 6)),
    )
    first = [r for r in results[:5] if not r.replayed]
    assert len(first) == 1 and all(r.code == first[0].code for r in results[:5])
    assert all(r.lookup_code == first[0].lookup_code for r in results[:5])
    assert len(await node.store.fetchall("SELECT * FROM dossiers")) == 5


async def test_append_many_skips_an_invalid_body_and_keeps_the_chain(node: Node) -> None:
    async with node.store.write() as db:
        results = await node.journal.append_many(
            db,
            [
                ("node.note", {"text": "một"}, "an.nv"),
                ("dossier.received", {"dossier": "không phải mã"}, "an.nv"),
                ("node.note", {"text": "hai"}, "an.nv"),
            ],
        )
    assert isinstance(results[1], InvalidInput)
    assert [r.seq for r in results if isinstance(r, Entry)] == [2, 3]
    assert (await verify_node(node.store, "CN01")).ok


async def test_apply_many_equals_a_refold(node: Node) -> None:
    """Project every entry at once (new dossiers take the direct path) and compare with a rebuild."""
    codes = [(await node.desk.receive(_person(i), actor="an.nv")).code for i in range(5)]
    await perform(node.desk, codes[0], "transfer", {"agency": "UBND phường"}, actor="an.nv")
    await perform(node.desk, codes[1], "rating", {"value": 1}, actor="an.nv")
    async with node.store.write() as db:
        rows = await db.execute_fetchall("SELECT raw FROM entries ORDER BY seq")
        entries = [Entry.parse(bytes(r[0])) for r in rows]
        await projection.rebuild(db)
        expected = await projection.snapshot(db)
        for table in projection.PROJECTION_TABLES:
            await db.execute(f"DELETE FROM {table}")
        await projection.apply_many(db, entries)
        assert await projection.snapshot(db) == expected
        for table in projection.PROJECTION_TABLES:  # and in two groups, the second on top of the first
            await db.execute(f"DELETE FROM {table}")
        await projection.apply_many(db, entries[:4])
        await projection.apply_many(db, entries[4:])
        assert await projection.snapshot(db) == expected
    counters = {(k, v) for _, k, v in expected["counters"]}
    assert ("dossier.received", 5) in counters


@pytest.mark.parametrize("size", [1, 3])
async def test_commit_failure_answers_every_request_with_the_error(node: Node, size: int) -> None:
    """If COMMIT itself fails, nobody is told their dossier was recorded."""
    real = node.store._writer.commit  # noqa: SLF001
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise sqlite3.OperationalError("disk I/O error")

    node.store._writer.commit = failing  # type: ignore[method-assign]  # noqa: SLF001
    try:
        results = await asyncio.gather(
            *(node.desk.receive(_person(i), actor="an.nv") for i in range(size)), return_exceptions=True
        )
    finally:
        node.store._writer.commit = real  # type: ignore[method-assign]  # noqa: SLF001
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert await node.store.fetchall("SELECT * FROM dossiers") == []
    assert len(await node.store.fetchall("SELECT * FROM entries")) == 1
    ok = await node.desk.receive(_person(9), actor="an.nv")
    assert ok.seq == 2 and ok.code.endswith("-1000")


async def test_state_json_is_the_dataclass_as_json(node: Node) -> None:
    """``state_to_json`` (field names cached per class) equals the plain definition, for busy states."""
    import dataclasses
    import json

    from protocol.dossier.fold import fold
    from tests.node.test_core_journal import _busy_node

    await _busy_node(node)
    rows = await node.store.fetchall("SELECT raw FROM entries")
    states = fold([projection.record_of(Entry.parse(bytes(r[0]))) for r in rows]).dossiers
    assert len(states) == 7
    for state in states.values():
        plain = dataclasses.asdict(dataclasses.replace(state, timeline=(), conflicts=()))
        expected = json.dumps(plain, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        assert projection.state_to_json(state) == expected
