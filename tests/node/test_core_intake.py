"""Reception and actions: validation in Vietnamese, codes per block, due dates, idempotency, states."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from node.actions import available_actions, perform
from node.config import NodeConfig
from node.errors import CodeExhausted, Conflict, Forbidden, InvalidInput, NotFound
from node.provision import Node, init_node
from protocol.calendar import default_calendar, from_local
from protocol.deadline import due_at
from protocol.dossier.codes import LookupHash, verify_lookup_code
from protocol.entry import Entry
from tests.node.conftest import FAST_LOOKUP, UNIT, reception


async def _count(node: Node, table: str) -> int:
    return int((await node.store.fetchone(f"SELECT count(*) FROM {table}"))[0])  # type: ignore[index]


async def test_receive_allocates_code_due_date_register_and_lookup(node: Node) -> None:
    at = from_local(__import__("datetime").date(2026, 11, 23), 14, 30)  # Monday 14:30
    node.desk.wall = node.journal.wall = lambda: at
    result = await node.desk.receive(reception(), actor="an.nv")
    assert result.code == f"{UNIT}-261123-1000"
    assert result.status == 2 and result.state == "received"
    calendar = default_calendar()
    assert result.due_at == due_at(at, node.desk.catalog.lookup("1.001193").time, calendar)
    row = await node.store.fetchone("SELECT raw FROM entries WHERE seq = ?", (result.seq,))
    body = Entry.parse(bytes(row[0])).body
    assert body["received_at"] == at and body["due_at"] == result.due_at
    assert body["applicant"]["phone"] == "0912345678"
    assert body["register"] == {"book": "CN01-2026", "line": 1}
    assert body["actor"] == "an.nv" and body["pickup"] == "CN01"
    assert result.lookup_code and "lookup_code" not in json.dumps(body, ensure_ascii=False)
    stored = LookupHash(body["lookup"]["hash"], body["lookup"]["iterations"], body["lookup"]["alg"])
    assert verify_lookup_code(result.code, result.lookup_code, stored)


async def test_invalid_input_lists_every_field_in_vietnamese_and_writes_nothing(node: Node) -> None:
    with pytest.raises(InvalidInput) as caught:
        await node.desk.receive(
            {
                "procedure": "9.999999",
                "applicant": {
                    "name": " ",
                    "id_type": "cccd",
                    "id_number": "0010900123",
                    "phone": "12345",
                    "email": "khong-phai-email",
                },
            },
            actor="an.nv",
        )
    fields = caught.value.fields
    assert set(fields) == {
        "procedure",
        "applicant.name",
        "applicant.id_number",
        "applicant.phone",
        "applicant.email",
    }
    assert "12 chữ số" in fields["applicant.id_number"]
    assert fields["applicant.name"].startswith("Vui lòng nhập")
    assert await _count(node, "entries") == 1 and await _count(node, "dossiers") == 0


async def test_missing_required_document_is_refused(node: Node) -> None:
    with pytest.raises(InvalidInput) as caught:
        await node.desk.receive(
            reception(documents=[{"name": "Tờ khai đăng ký khai sinh (theo mẫu)"}]), actor="a.b"
        )
    assert "Giấy chứng sinh" in caught.value.fields["documents"]


async def test_decomposed_input_is_stored_in_nfc_and_found_without_diacritics(node: Node) -> None:
    import unicodedata

    from node.dossiers import search

    name = unicodedata.normalize("NFD", "Đặng Thị Ngọc Ánh")
    result = await node.desk.receive(
        reception(applicant={"name": name, "id_number": "001190000777"}), actor="an.nv"
    )
    row = await node.store.fetchone(
        "SELECT applicant_name, name_folded FROM dossiers WHERE code = ?", (result.code,)
    )
    assert row[0] == unicodedata.normalize("NFC", name) and row[1] == "dang thi ngoc anh"
    for query in ("dang thi ngoc anh", "Đặng Thị", "ngọc ánh", "001190000777", result.code[-6:]):
        found = await search(node.store, query)
        assert [r.code for r in found] == [result.code], query
        assert found[0].id_masked == "001*******77"


async def test_idempotency_key_makes_one_dossier(node: Node) -> None:
    first = await node.desk.receive(reception(), actor="an.nv", idempotency_key="form-123456")
    again = await node.desk.receive(reception(), actor="an.nv", idempotency_key="form-123456")
    assert again.replayed and again.code == first.code and again.seq == first.seq
    assert again.lookup_code == first.lookup_code
    assert await _count(node, "dossiers") == 1
    with pytest.raises(Conflict):
        await node.desk.receive(reception(note="khác"), actor="an.nv", idempotency_key="form-123456")
    both = await asyncio.gather(
        *(node.desk.receive(reception(), actor="an.nv", idempotency_key="double-click-1") for _ in range(4))
    )
    assert len({r.code for r in both}) == 1 and await _count(node, "dossiers") == 2


async def test_concurrent_receptions_get_distinct_consecutive_codes(node: Node) -> None:
    results = await asyncio.gather(*(node.desk.receive(reception(), actor="an.nv") for _ in range(12)))
    seqs = sorted(int(r.code[-4:]) for r in results)
    assert seqs == list(range(1000, 1012))
    lines = await node.store.fetchall("SELECT register_line FROM dossiers ORDER BY register_line")
    assert [r[0] for r in lines] == list(range(1, 13))


async def test_block_exhaustion_and_disjoint_blocks(tmp_path: Path) -> None:
    a = await init_node(
        tmp_path / "a", node_id="CN01", unit_code=UNIT, name="A", code_block=1, code_block_size=2
    )
    b = await init_node(
        tmp_path / "b", node_id="CN02", unit_code=UNIT, name="B", code_block=2, code_block_size=2
    )
    na, nb = (
        await Node.open(a, lookup_iterations=FAST_LOOKUP),
        await Node.open(b, lookup_iterations=FAST_LOOKUP),
    )
    try:
        codes = [(await na.desk.receive(reception(), actor="x.y")).code[-4:] for _ in range(2)]
        codes += [(await nb.desk.receive(reception(), actor="x.y")).code[-4:] for _ in range(2)]
        assert codes == ["0002", "0003", "0004", "0005"]
        with pytest.raises(CodeExhausted) as caught:
            await na.desk.receive(reception(), actor="x.y")
        assert caught.value.status == 503 and "dải số" in caught.value.message
    finally:
        await na.close()
        await nb.close()


async def test_actions_follow_the_state_machine(node: Node) -> None:
    code = (await node.desk.receive(reception(), actor="an.nv")).code
    assert [a.name for a in available_actions("received")] == ["transfer", "rating", "withdrawal_request"]
    with pytest.raises(Conflict):
        await perform(node.desk, code, "return", {"recipient": {"name": "A"}}, actor="an.nv")
    with pytest.raises(NotFound):
        await perform(node.desk, f"{UNIT}-261122-9999", "transfer", {"agency": "X"}, actor="an.nv")
    with pytest.raises(InvalidInput) as caught:
        await perform(node.desk, code, "transfer", {}, actor="an.nv")
    assert "agency" in caught.value.fields
    await perform(node.desk, code, "withdrawal_request", {}, actor="an.nv")
    with pytest.raises(Forbidden):
        await perform(node.desk, code, "withdraw", {}, actor="an.nv", supervisor=False)
    done = await perform(node.desk, code, "withdraw", {"settlement": "Hoàn phí"}, actor="truong.bp")
    assert done.status == 8 and done.state == "withdrawn"


async def test_supplement_pause_extends_the_due_date(node: Node) -> None:
    from datetime import date

    start = from_local(date(2026, 11, 23), 9, 0)
    clock = {"now": start}
    node.desk.wall = node.journal.wall = lambda: clock["now"]
    received = await node.desk.receive(
        {"procedure": "1.004222", "applicant": {"name": "Vũ Minh Khoa", "id_number": "001087000123"}},
        actor="a.b",
    )
    await perform(node.desk, received.code, "transfer", {"agency": "Công an phường"}, actor="a.b")
    await perform(
        node.desk,
        received.code,
        "supplement_request",
        {"items": [{"name": "Hợp đồng thuê nhà"}]},
        actor="a.b",
    )
    clock["now"] = from_local(date(2026, 11, 25), 9, 0)  # two working days later
    await perform(node.desk, received.code, "supplement_provided", {}, actor="a.b")
    row = await node.store.fetchone(
        "SELECT due_at, adjusted_due_at, state FROM dossiers WHERE code = ?", (received.code,)
    )
    assert row[0] == received.due_at and row[2] == "supplemented"
    assert row[1] - row[0] >= 2 * 8 * 3_600_000 - 1  # the due date moved by the paused working time


async def test_config_file_round_trip(config: NodeConfig) -> None:
    from node.config import load

    assert load(config.data_dir, {}) == config
