"""``dossier.received`` ``fee_paid`` (fee collected at reception) and the ``node.code_floor`` body."""

from __future__ import annotations

from datetime import date

import pytest

from protocol.dossier.codes import CODE_FLOOR_KIND, CodeBlock, CodeFloor, allocate_code, floor_after_restore
from protocol.dossier.events import validate_body
from protocol.dossier.fold import fold
from protocol.errors import BodyInvalid
from protocol.kinds import validate_body as validate_any_body
from tests.protocol.helpers import CODE, RECEIVED_AT, received, record


@pytest.mark.parametrize("paid", [True, False])
def test_fee_paid_is_recorded_and_folded(paid: bool) -> None:
    body = received(fee_paid=paid)
    validate_body("dossier.received", body)
    state = fold([record("dossier.received", body, RECEIVED_AT)]).dossiers[CODE]
    assert state.fee == 15000 and state.fee_paid is paid


def test_an_older_entry_without_fee_paid_still_folds() -> None:
    body = received()
    assert "fee_paid" not in body
    validate_body("dossier.received", body)
    assert fold([record("dossier.received", body, RECEIVED_AT)]).dossiers[CODE].fee_paid is None


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"fee_paid": "yes"}, "true or false"),
        ({"fee_paid": 1}, "true or false"),
        ({"fee": 0, "fee_paid": True}, "fee above 0"),
    ],
)
def test_fee_paid_is_strict(over: dict[str, object], reason: str) -> None:
    with pytest.raises(BodyInvalid, match=reason) as exc:
        validate_body("dossier.received", received(**over))
    assert exc.value.field == "fee_paid"


def test_code_floor_body_round_trips_and_is_strict() -> None:
    floor = CodeFloor("000.00.01.H26", date(2026, 11, 22), 1103, 100)
    assert CodeFloor.from_body(floor.to_body()) == floor
    validate_any_body(CODE_FLOOR_KIND, floor.to_body())
    for bad in (
        {**floor.to_body(), "extra": 1},
        {**floor.to_body(), "seq": 10000},
        {**floor.to_body(), "seq": "12"},
        {**floor.to_body(), "day": "2026-02-30"},
        {**floor.to_body(), "unit": "-bad"},
        {**floor.to_body(), "margin": -1},
    ):
        with pytest.raises(BodyInvalid):
            validate_any_body(CODE_FLOOR_KIND, bad)


def test_floor_after_restore_skips_the_margin_past_what_is_known() -> None:
    block = CodeBlock.indexed(1)  # 1000..1999
    assert floor_after_restore(None, None, block, 100) == 1099  # nothing known: the lost disk began at 1000
    assert floor_after_restore(1003, None, block, 100) == 1103
    assert floor_after_restore(1003, 1103, block, 100) == 1203  # an earlier floor of the day: past it again
    assert floor_after_restore(1990, None, block, 100) == 1999  # capped: the day's block is spent
    day = date(2026, 11, 22)
    assert allocate_code("U", day, block, floor_after_restore(1003, None, block, 100)).seq == 1104
