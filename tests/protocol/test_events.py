"""Event body validators (every kind's rejections) and the typed builders."""

from __future__ import annotations

import copy
from datetime import date

import pytest

from protocol.calendar import from_local
from protocol.dossier import builders
from protocol.dossier.codes import LookupHash
from protocol.dossier.events import BODY_VALIDATORS, DOSSIER_KINDS, Kind, is_dislike, validate_body
from protocol.dossier.model import (
    Applicant,
    BlobManifest,
    DocumentItem,
    ProcedureRef,
    Recipient,
    RegisterLine,
)
from protocol.errors import BodyInvalid
from tests.protocol.helpers import CODE, DELETE, DUE_AT, MINIMAL, RECEIVED_AT, SHA_A, body, manifest, set_path


def test_every_kind_has_a_validator_and_a_minimal_valid_body() -> None:
    assert set(BODY_VALIDATORS) == DOSSIER_KINDS == {k.value for k in Kind}
    assert set(MINIMAL) | {"dossier.received"} == DOSSIER_KINDS
    for kind in DOSSIER_KINDS:
        BODY_VALIDATORS[kind](body(kind))


@pytest.mark.parametrize("kind", sorted(DOSSIER_KINDS))
def test_common_fields_are_checked_for_every_kind(kind: str) -> None:
    for path, value, field in [
        ("dossier", DELETE, "dossier"),
        ("dossier", "HS-0001", "dossier"),
        ("dossier", 12, "dossier"),
        ("actor", DELETE, "actor"),
        ("actor", "", "actor"),
        ("actor", "Nguyễn Văn A", "actor"),
        ("unexpected", 1, "unexpected"),
    ]:
        data = body(kind)
        set_path(data, path, value)
        with pytest.raises(BodyInvalid) as info:
            BODY_VALIDATORS[kind](data)
        assert info.value.field == field, (kind, path)


def test_body_must_be_an_object() -> None:
    with pytest.raises(BodyInvalid):
        validate_body("dossier.received", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(BodyInvalid):
        validate_body("dossier.unknown", body("dossier.withdrawn"))


REJECTIONS: list[tuple[str, str, object, str]] = [
    # dossier.received
    ("dossier.received", "applicant.id_number", "001203O12345", "applicant.id_number"),
    ("dossier.received", "applicant.id_number", "003203012345", "applicant.id_number"),
    ("dossier.received", "applicant.id_number", "012345678", "applicant.id_number"),
    ("dossier.received", "applicant.id_type", "driving_licence", "applicant.id_type"),
    ("dossier.received", "applicant.name", "Nguye\u0302\u0303n Văn An", "applicant.name"),
    ("dossier.received", "applicant.name", "   ", "applicant.name"),
    ("dossier.received", "applicant.name", "A\u0000B", "applicant.name"),
    ("dossier.received", "applicant.name", "A" * 201, "applicant.name"),
    ("dossier.received", "applicant.phone", "0912-345-678", "applicant.phone"),
    ("dossier.received", "applicant.email", "an@", "applicant.email"),
    ("dossier.received", "applicant.nickname", "An", "applicant.nickname"),
    ("dossier.received", "procedure.code", "1001193", "procedure.code"),
    ("dossier.received", "procedure.version", DELETE, "procedure.version"),
    ("dossier.received", "documents", [], "documents"),
    ("dossier.received", "documents.0.form", "scan", "documents[0].form"),
    ("dossier.received", "documents.0.count", 0, "documents[0].count"),
    ("dossier.received", "channel", 4, "channel"),
    ("dossier.received", "channel", True, "channel"),
    ("dossier.received", "pickup", "cn01", "pickup"),
    ("dossier.received", "fee", 15000.0, "fee"),
    ("dossier.received", "fee", -1, "fee"),
    ("dossier.received", "fee", "15000", "fee"),
    ("dossier.received", "received_at", 2**53, "received_at"),
    ("dossier.received", "due_at", RECEIVED_AT - 1, "due_at"),
    ("dossier.received", "submitted_at", RECEIVED_AT + 1, "submitted_at"),
    ("dossier.received", "register.line", 0, "register.line"),
    ("dossier.received", "register.book", "Quyển 1", "register.book"),
    ("dossier.received", "lookup.alg", "md5", "lookup.alg"),
    ("dossier.received", "lookup.hash", "AB" * 32, "lookup.hash"),
    ("dossier.received", "lookup.iterations", 10, "lookup.iterations"),
    ("dossier.received", "lookup", DELETE, "lookup"),
    ("dossier.received", "dossier", "000.00.01.H26-261124-0012", "dossier"),
    # other kinds
    ("dossier.submitted", "channel", 1, "channel"),
    ("dossier.submitted", "submitted_at", -5, "submitted_at"),
    ("dossier.refused", "reason", DELETE, "reason"),
    ("dossier.refused", "reason", "", "reason"),
    ("dossier.refused", "applicant", {"name": "An", "id_type": "x", "id_number": "1"}, "applicant.id_type"),
    ("dossier.supplement_requested", "items", [], "items"),
    ("dossier.supplement_requested", "items.0.name", 3, "items[0].name"),
    ("dossier.supplement_requested", "items.0.extra", 3, "items[0].extra"),
    ("dossier.supplement_provided", "due_at", "tomorrow", "due_at"),
    ("dossier.supplement_provided", "documents", [{"name": "X"}], "documents[0].count"),
    ("dossier.transferred", "agency", DELETE, "agency"),
    ("dossier.transferred", "agency_code", "xa bac", "agency_code"),
    ("dossier.processing", "step", "thinking", "step"),
    ("dossier.financial_obligation", "items.0.amount", 10.5, "items[0].amount"),
    ("dossier.financial_obligation", "items.0.amount", 10**13, "items[0].amount"),
    ("dossier.financial_obligation_met", "due_at", None, "due_at"),
    ("dossier.result_ready", "outcome", "maybe", "outcome"),
    ("dossier.result_ready", "outcome", "refused", "reason"),
    ("dossier.result_ready", "result_sha256", "abc", "result_sha256"),
    ("dossier.returned", "proxy", "no", "proxy"),
    ("dossier.returned", "proxy", True, "authorisation"),
    ("dossier.returned", "recipient.id_type", "cccd", "recipient.id_number"),
    ("dossier.returned", "channel", 0, "channel"),
    ("dossier.withdrawal_requested", "reason", "", "reason"),
    ("dossier.withdrawn", "settlement", 5, "settlement"),
    ("dossier.stopped", "reason", DELETE, "reason"),
    ("dossier.apology", "new_due_at", DELETE, "new_due_at"),
    ("dossier.apology", "reason", DELETE, "reason"),
    ("dossier.rating", "value", 4, "value"),
    ("dossier.rating", "value", 0, "value"),
    ("dossier.rating", "scale", "ten", "scale"),
    ("dossier.rating", "channel", "email", "channel"),
    ("dossier.attachment", "manifest.chunk_size", 65536, "manifest.chunk_size"),
    ("dossier.attachment", "manifest.chunks", [SHA_A], "manifest.chunks"),
    ("dossier.attachment", "manifest.chunks.0", "xyz", "manifest.chunks[0]"),
    ("dossier.attachment", "manifest.media_type", "text/html", "manifest.media_type"),
    ("dossier.attachment", "manifest.sha256", "A" * 64, "manifest.sha256"),
    ("dossier.attachment", "manifest.size", 0, "manifest.size"),
    ("dossier.attachment", "role", "selfie", "role"),
    ("dossier.attachment", "document", DELETE, "document"),
    ("dossier.attachment_discarded", "sha256", "a" * 63, "sha256"),
    ("dossier.conflict_resolved", "decision", "ignore", "decision"),
    ("dossier.conflict_resolved", "state", "limbo", "state"),
    ("dossier.conflict_resolved", "note", DELETE, "note"),
]


@pytest.mark.parametrize(("kind", "path", "value", "field"), REJECTIONS)
def test_rejections_name_the_field(kind: str, path: str, value: object, field: str) -> None:
    data = body(kind)
    set_path(data, path, value)
    with pytest.raises(BodyInvalid) as info:
        BODY_VALIDATORS[kind](data)
    assert info.value.field == field


def test_every_kind_has_a_specific_rejection() -> None:
    assert {kind for kind, *_ in REJECTIONS} == DOSSIER_KINDS


def test_valid_variants() -> None:
    validate_body("dossier.received", body("dossier.received", submitted_at=RECEIVED_AT - 86_400_000 * 2))
    online = body(
        "dossier.received",
        dossier="000.00.01.H26-261121-0001",
        submitted_at=from_local(date(2026, 11, 21), 22),
    )
    validate_body("dossier.received", online)  # code dated on the (Saturday night) submission day
    validate_body(
        "dossier.received",
        body(
            "dossier.received",
            applicant={"name": "Công ty TNHH An Bình", "id_type": "tax_code", "id_number": "0101234567-001"},
        ),
    )
    validate_body(
        "dossier.received",
        body(
            "dossier.received",
            applicant={"name": "John Smith", "id_type": "passport", "id_number": "C1234567"},
        ),
    )
    validate_body(
        "dossier.received",
        body(
            "dossier.received", applicant={"name": "Lê Thị Bình", "id_type": "cmnd", "id_number": "012345678"}
        ),
    )
    validate_body(
        "dossier.result_ready", body("dossier.result_ready", outcome="refused", reason="Không đủ điều kiện.")
    )
    validate_body(
        "dossier.returned", body("dossier.returned", proxy=True, authorisation="Giấy ủy quyền số 12/UQ")
    )
    validate_body(
        "dossier.rating", body("dossier.rating", scale="five_star", value=5, comment="Nhanh\nchu đáo")
    )
    validate_body("dossier.attachment", body("dossier.attachment", manifest=manifest(size=1_048_576)))


def test_dislike_mapping() -> None:
    assert is_dislike("three_level", 1) and not is_dislike("three_level", 2)
    assert is_dislike("five_star", 2) and not is_dislike("five_star", 3)


# builders ------------------------------------------------------------------------------------------


def test_received_builder_normalizes_to_nfc_and_validates() -> None:
    decomposed = "Nguye\u0302\u0303n Va\u0306n An"
    built = builders.received_body(
        dossier=CODE,
        actor="clerk.cn01",
        applicant=Applicant(decomposed, "cccd", "001203012345", phone="0912345678"),
        procedure=ProcedureRef("1.004194", "2025-07-01"),
        documents=[DocumentItem("Tờ khai thay đổi thông tin cư trú (Mẫu CT01)", "original", 1)],
        channel=1,
        pickup="CN01",
        fee=15000,
        received_at=RECEIVED_AT,
        due_at=DUE_AT,
        register=RegisterLine("2026-11", 412),
        lookup=LookupHash("ab" * 32),
    )
    assert built == body("dossier.received")
    assert built["applicant"]["name"] == "Nguyễn Văn An"  # type: ignore[index]


def test_builders_refuse_invalid_input() -> None:
    with pytest.raises(BodyInvalid) as info:
        builders.rating_body(
            dossier=CODE, actor="kiosk:CN01-1", scale="three_level", value=5, channel="kiosk"
        )
    assert info.value.field == "value"
    with pytest.raises(BodyInvalid):
        builders.received_body(
            dossier=CODE,
            actor="clerk",
            applicant=Applicant("An", "cccd", "123"),
            procedure=ProcedureRef("1.004194", "v"),
            documents=[DocumentItem("Tờ khai", "original", 1)],
            channel=1,
            pickup="CN01",
            fee=0,
            received_at=RECEIVED_AT,
            due_at=DUE_AT,
            register=RegisterLine("1", 1),
            lookup=LookupHash("ab" * 32),
        )


def test_every_builder_produces_its_minimal_body() -> None:
    minimal = {kind: copy.deepcopy(body(kind)) for kind in DOSSIER_KINDS}
    common = {"dossier": CODE, "actor": "officer.1"}
    built = {
        "dossier.submitted": builders.submitted_body(
            **common,
            applicant=Applicant("Nguyễn Văn An", "cccd", "001203012345", phone="0912345678"),
            procedure=ProcedureRef("1.001193", "2025-07-01"),
            channel=2,
            submitted_at=RECEIVED_AT - 3_600_000,
        ),
        "dossier.refused": builders.refused_body(**common, reason="Hồ sơ không thuộc thẩm quyền giải quyết."),
        "dossier.supplement_requested": builders.supplement_requested_body(
            **common, items=[("Giấy tờ chứng minh chỗ ở hợp pháp", None)]
        ),
        "dossier.supplement_provided": builders.supplement_provided_body(**common),
        "dossier.transferred": builders.transferred_body(**common, agency="Công an phường Tây Hồ"),
        "dossier.processing": builders.processing_body(**common, step="processing"),
        "dossier.financial_obligation": builders.financial_obligation_body(
            **common, items=[("Lệ phí trước bạ", 500_000)]
        ),
        "dossier.financial_obligation_met": builders.financial_obligation_met_body(**common),
        "dossier.result_ready": builders.result_ready_body(**common, outcome="approved"),
        "dossier.returned": builders.returned_body(
            **common, recipient=Recipient("Nguyễn Văn An"), proxy=False, channel=1
        ),
        "dossier.withdrawal_requested": builders.withdrawal_requested_body(**common),
        "dossier.withdrawn": builders.withdrawn_body(**common),
        "dossier.stopped": builders.stopped_body(**common, reason="Thông báo dừng giải quyết hồ sơ."),
        "dossier.apology": builders.apology_body(
            **common, new_due_at=DUE_AT + 86_400_000, reason="Cần xác minh thêm."
        ),
        "dossier.rating": builders.rating_body(**common, scale="three_level", value=3, channel="kiosk"),
        "dossier.attachment": builders.attachment_body(
            **common,
            document="chưa phân loại",
            manifest=BlobManifest(
                SHA_A, 2_500_000, "application/pdf", 3, tuple(format(i, "064x") for i in range(3))
            ),
        ),
        "dossier.attachment_discarded": builders.attachment_discarded_body(
            **common, sha256=SHA_A, reason="Quét nhầm."
        ),
        "dossier.conflict_resolved": builders.conflict_resolved_body(
            **common, conflict="b" * 64, decision="dismiss", note="Đã kiểm tra."
        ),
    }
    for kind, value in built.items():
        assert value == minimal[kind], kind
