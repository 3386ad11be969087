"""The fee collected at reception (``fee_paid``): recorded in ``dossier.received``, kept in the folded
state, and printed on the receipt as "đã nộp" / "chưa nộp" (DOMAIN.md: 2025 receipt variants)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from pypdf import PdfReader

from node.forms import render
from node.provision import Node
from node.receipts import receipt_data
from protocol.calendar import local_date
from tests.node.conftest import reception

SIGNATURE = "2.000884"  # chứng thực chữ ký: flat fee 10.000 đồng
DOCS = [
    {"name": "Giấy tờ tùy thân của người yêu cầu chứng thực", "form": "original", "count": 1},
    {"name": "Giấy tờ, văn bản cần chứng thực chữ ký", "form": "original", "count": 1},
]


def _text(data: Any) -> str:
    reader = PdfReader(io.BytesIO(render("receipt", data)))
    return " ".join((page.extract_text() or "") for page in reader.pages)


async def _received(node: Node, code: str) -> dict[str, Any]:
    row = await node.store.fetchone(
        "SELECT raw FROM entries WHERE dossier = ? AND kind = 'dossier.received'", (code,)
    )
    assert row is not None
    return dict(json.loads(bytes(row[0]))["body"])


async def _state(node: Node, code: str) -> dict[str, Any]:
    row = await node.store.fetchone("SELECT state_json FROM dossiers WHERE code = ?", (code,))
    assert row is not None
    return dict(json.loads(str(row[0])))


@pytest.mark.parametrize(
    ("given", "paid", "printed"), [(True, True, "đã nộp"), ("on", True, "đã nộp"), (None, False, "chưa nộp")]
)
async def test_the_receipt_prints_whether_the_fee_was_collected(
    node: Node, given: object, paid: bool, printed: str
) -> None:
    data = reception(procedure=SIGNATURE, documents=DOCS)
    if given is not None:
        data["fee_paid"] = given  # JSON true, or the form's checkbox value
    recorded = await node.desk.receive(data, actor="an.nv")
    body = await _received(node, recorded.code)
    assert body["fee"] == 10000 and body["fee_paid"] is paid  # in the signed entry
    state = await _state(node, recorded.code)
    assert state["fee_paid"] is paid  # the reprint reads the folded state
    procedure = node.desk.catalog.lookup(SIGNATURE, local_date(int(body["received_at"])))
    for source in (body, state):
        text = _text(
            receipt_data(
                node.config, recorded.code, source, procedure, lookup_code="ABCD-EFGH", receiver_name="An"
            )
        )
        assert f"10.000 đồng ({printed})" in text, text
        other = "chưa nộp" if paid else "đã nộp"
        assert other not in text


async def test_no_fee_no_field_and_older_entries_print_as_before(node: Node) -> None:
    recorded = await node.desk.receive(reception(fee_paid=True), actor="an.nv")  # khai sinh: no fee
    body = await _received(node, recorded.code)
    assert body["fee"] == 0 and "fee_paid" not in body
    # an entry written before the field existed: printed as those receipts were ("đã nộp")
    older = {**body, "fee": 10000}
    procedure = node.desk.catalog.lookup("1.001193", local_date(int(body["received_at"])))
    text = _text(
        receipt_data(
            node.config, recorded.code, older, procedure, lookup_code="ABCD-EFGH", receiver_name="An"
        )
    )
    assert "10.000 đồng (đã nộp)" in text
