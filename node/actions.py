"""What staff record on a dossier after reception: transfer, supplement, result, return, rating, withdrawal.

Each action reads its input (Vietnamese field errors), builds the event body with the domain builders,
checks in the write transaction that the dossier's current state allows that event kind (the fold's
``ALLOWED`` table; otherwise ``Conflict`` 409 and nothing is written) and appends it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from node.errors import Conflict, Forbidden, InvalidInput, NotFound
from node.inputs import ID_TYPES, InputReader
from node.intake import Desk, Recorded, fingerprint, idempotent_result, remember
from protocol.calendar import local_date
from protocol.deadline import extend_for_pause
from protocol.dossier import builders
from protocol.dossier.codes import is_dossier_code
from protocol.dossier.events import RATING_SCALES, Kind
from protocol.dossier.model import Recipient
from protocol.dossier.status import InternalState
from protocol.dossier.transitions import ALLOWED
from protocol.errors import BodyInvalid, ProtocolError

__all__ = ["ACTIONS", "Action", "available_actions", "perform"]

Builder = Callable[[InputReader, "Current", Desk, int], dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Current:
    """The dossier as the action sees it: code, internal state and the folded state (JSON)."""

    code: str
    state: InternalState
    data: Mapping[str, Any]
    actor: str


@dataclass(frozen=True, slots=True)
class Action:
    """A staff action: its event kind, Vietnamese label, and how its body is built from input."""

    name: str
    kind: Kind
    label: str
    build: Builder
    supervisor_only: bool = False


def _transfer(r: InputReader, cur: Current, desk: Desk, now: int) -> dict[str, Any] | None:
    agency = r.text("agency", "cơ quan giải quyết", max_len=200)
    note = r.text("note", "ghi chú", required=False, max_len=2000, multiline=True)
    r.check()
    assert agency is not None
    return builders.transferred_body(dossier=cur.code, actor=cur.actor, agency=agency, note=note)


def _supplement_requested(r: InputReader, cur: Current, desk: Desk, now: int) -> dict[str, Any] | None:
    items: list[tuple[str, str | None]] = []
    for item in r.items("items"):
        name = item.text("name", "giấy tờ cần bổ sung", max_len=300)
        reason = item.text("reason", "lý do", required=False, max_len=1000, multiline=True)
        if name:
            items.append((name, reason))
    if not items and "items" not in r.errors:
        r.fail("items", "Vui lòng nhập ít nhất một giấy tờ cần bổ sung.")
    contact = r.text("contact", "người/số điện thoại hướng dẫn", required=False, max_len=200)
    note = r.text("note", "ghi chú", required=False, max_len=2000, multiline=True)
    r.check()
    return builders.supplement_requested_body(
        dossier=cur.code, actor=cur.actor, items=items, contact=contact, note=note
    )


def _supplement_provided(r: InputReader, cur: Current, desk: Desk, now: int) -> dict[str, Any] | None:
    note = r.text("note", "ghi chú", required=False, max_len=2000, multiline=True)
    r.check()
    due = cur.data.get("adjusted_due_at")
    pauses = [p for p in cur.data.get("pauses", ()) if p.get("end") is None]
    procedure = cur.data.get("procedure") or {}
    new_due = None
    if isinstance(due, int) and pauses and procedure:
        unit = desk.catalog.version_of(procedure["code"], procedure["version"]).time.unit
        new_due = extend_for_pause(due, pauses[-1]["start"], now, unit, desk.calendar)
    return builders.supplement_provided_body(dossier=cur.code, actor=cur.actor, due_at=new_due, note=note)


def _result_ready(r: InputReader, cur: Current, desk: Desk, now: int) -> dict[str, Any] | None:
    outcome = r.choice("outcome", "kết quả", {"approved": "Giải quyết", "refused": "Từ chối giải quyết"})
    reason = r.text("reason", "lý do từ chối", required=outcome == "refused", max_len=2000, multiline=True)
    number = r.text("document_number", "số văn bản kết quả", required=False, max_len=64)
    note = r.text("note", "ghi chú", required=False, max_len=2000, multiline=True)
    r.check()
    return builders.result_ready_body(
        dossier=cur.code,
        actor=cur.actor,
        outcome=outcome,
        reason=reason,
        document_number=number,
        note=note,  # type: ignore[arg-type]
    )


def _returned(r: InputReader, cur: Current, desk: Desk, now: int) -> dict[str, Any] | None:
    rec = r.child("recipient")
    name = rec.text("name", "họ và tên người nhận kết quả", max_len=200)
    id_type = rec.choice("id_type", "loại giấy tờ", ID_TYPES, default="")
    number = rec.id_number("id_number", id_type, desk_today(desk, now)) if id_type else None
    proxy = r.boolean("proxy")
    authorisation = r.text("authorisation", "giấy ủy quyền", required=proxy, max_len=300)
    channel = r.integer("channel", "hình thức trả", 1, 3, default=1)
    fee = r.integer("fee_collected", "phí, lệ phí đã thu", 0, 10**12, default=0)
    note = r.text("note", "ghi chú", required=False, max_len=2000, multiline=True)
    r.check()
    assert name is not None and channel is not None
    recipient = Recipient(name, id_type or None, number) if id_type and number else Recipient(name)  # type: ignore[arg-type]
    return builders.returned_body(
        dossier=cur.code,
        actor=cur.actor,
        recipient=recipient,
        proxy=proxy,
        channel=channel,
        authorisation=authorisation,
        fee_collected=fee or None,
        note=note,
    )


def _rating(r: InputReader, cur: Current, desk: Desk, now: int) -> dict[str, Any] | None:
    scale = r.choice("scale", "thang đánh giá", RATING_SCALES, default="three_level")
    value = r.integer("value", "mức đánh giá", 1, RATING_SCALES.get(scale or "", 5))
    channel = r.choice("channel", "kênh đánh giá", ("counter", "kiosk", "qr"), default="counter")
    comment = r.text("comment", "góp ý", required=False, max_len=1000, multiline=True)
    r.check()
    return builders.rating_body(
        dossier=cur.code,
        actor=cur.actor,
        scale=scale,
        value=value,
        channel=channel,
        comment=comment,  # type: ignore[arg-type]
    )


def _withdrawal_requested(r: InputReader, cur: Current, desk: Desk, now: int) -> dict[str, Any] | None:
    reason = r.text("reason", "lý do rút hồ sơ", required=False, max_len=2000, multiline=True)
    r.check()
    return builders.withdrawal_requested_body(dossier=cur.code, actor=cur.actor, reason=reason)


def _withdrawn(r: InputReader, cur: Current, desk: Desk, now: int) -> dict[str, Any] | None:
    settlement = r.text("settlement", "xử lý phí, lệ phí", required=False, max_len=1000, multiline=True)
    note = r.text("note", "ghi chú", required=False, max_len=2000, multiline=True)
    r.check()
    return builders.withdrawn_body(dossier=cur.code, actor=cur.actor, settlement=settlement, note=note)


def desk_today(desk: Desk, now: int) -> date:
    return local_date(now)


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("transfer", Kind.TRANSFERRED, "Chuyển cơ quan giải quyết", _transfer),
        Action(
            "supplement_request", Kind.SUPPLEMENT_REQUESTED, "Yêu cầu bổ sung hồ sơ", _supplement_requested
        ),
        Action(
            "supplement_provided", Kind.SUPPLEMENT_PROVIDED, "Đã nhận hồ sơ bổ sung", _supplement_provided
        ),
        Action("result_ready", Kind.RESULT_READY, "Nhận kết quả từ cơ quan giải quyết", _result_ready),
        Action("return", Kind.RETURNED, "Trả kết quả", _returned),
        Action("rating", Kind.RATING, "Ghi nhận đánh giá", _rating),
        Action(
            "withdrawal_request", Kind.WITHDRAWAL_REQUESTED, "Công dân xin rút hồ sơ", _withdrawal_requested
        ),
        Action("withdraw", Kind.WITHDRAWN, "Xác nhận rút hồ sơ", _withdrawn, supervisor_only=True),
    )
}


def available_actions(state: str | None, *, supervisor: bool = True) -> list[Action]:
    """Actions whose event the state machine allows in ``state`` (None: unknown dossier)."""
    try:
        current = InternalState(state) if state is not None else None
    except ValueError:
        return []
    return [
        a for a in ACTIONS.values() if current in ALLOWED[a.kind] and (supervisor or not a.supervisor_only)
    ]


async def perform(
    desk: Desk,
    code: str,
    action_name: str,
    data: Mapping[str, Any],
    *,
    actor: str,
    supervisor: bool = True,
    idempotency_key: str | None = None,
) -> Recorded:
    """Record ``action_name`` on dossier ``code``; 404 unknown dossier, 409 not allowed now, 422 bad input."""
    action = ACTIONS.get(action_name)
    if action is None or not is_dossier_code(code):
        raise NotFound("Không có thao tác hoặc hồ sơ này.")
    if action.supervisor_only and not supervisor:
        raise Forbidden("Thao tác này cần quyền trưởng bộ phận (supervisor).")
    print_ = fingerprint(action.kind, code, data)
    now = desk.wall()
    async with desk.store.write() as db:
        replay = await idempotent_result(db, idempotency_key, print_)
        if replay is not None:
            return await desk._recorded_from(db, replay, replayed=True)
        async with db.execute("SELECT state, state_json FROM dossiers WHERE code = ?", (code,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise NotFound(f"Không tìm thấy hồ sơ {code}.")
        current = Current(code, InternalState(row[0]), json.loads(row[1]), actor)
        if current.state not in ALLOWED[action.kind]:
            raise Conflict(
                f"Không thể “{action.label.lower()}” khi hồ sơ đang ở trạng thái “{current.state.label}”."
            )
        try:
            body = action.build(InputReader(data), current, desk, now)
        except BodyInvalid as exc:
            raise InvalidInput({exc.field or "body": exc.reason}) from None
        except ProtocolError as exc:
            raise InvalidInput({"body": exc.reason}) from None
        assert body is not None
        entry = await desk.journal.append(db, action.kind, body, actor=actor)
        await remember(db, idempotency_key, print_, actor, entry, code, now)
        return await desk._recorded(db, entry, code)
