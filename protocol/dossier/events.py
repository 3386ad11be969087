"""Dossier event kinds and the strict validator of each kind's body (SPEC-dossier.md §2).

Every body has ``"dossier"`` (the dossier code) and ``"actor"`` (the user id of whoever recorded the
event: the clerk, the officer, ``kiosk:<id>`` for a rating terminal). Unknown and missing fields,
non-NFC or blank strings, floats, out-of-range integers and malformed codes are refused with
``BodyInvalid(reason, field=<path>)``. ``BODY_VALIDATORS`` maps each kind to its validator; the core's
``kinds.validate_body`` dispatches to it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from protocol.calendar import local_date
from protocol.dossier.codes import LOOKUP_ITERATIONS_MAX, LOOKUP_ITERATIONS_MIN, MAX_CODE_LENGTH, DossierCode
from protocol.dossier.model import (
    Applicant,
    BlobManifest,
    DocumentItem,
    ProcedureRef,
    Recipient,
    RegisterLine,
)
from protocol.dossier.status import InternalState
from protocol.errors import BodyInvalid, DossierCodeInvalid
from protocol.schema import Fields

__all__ = [
    "ACTOR_PATTERN",
    "BODY_VALIDATORS",
    "CHANNELS",
    "DOSSIER_KINDS",
    "Kind",
    "MAX_MONEY",
    "MAX_MS",
    "NODE_ID_PATTERN",
    "PROCESSING_STEPS",
    "RATING_CHANNELS",
    "RATING_SCALES",
    "UNCLASSIFIED_DOCUMENT",
    "body_fields",
    "is_dislike",
    "validate_body",
]


class Kind(StrEnum):
    """The kinds of dossier events (entry ``kind``)."""

    SUBMITTED = "dossier.submitted"
    RECEIVED = "dossier.received"
    REFUSED = "dossier.refused"
    SUPPLEMENT_REQUESTED = "dossier.supplement_requested"
    SUPPLEMENT_PROVIDED = "dossier.supplement_provided"
    TRANSFERRED = "dossier.transferred"
    PROCESSING = "dossier.processing"
    FINANCIAL_OBLIGATION = "dossier.financial_obligation"
    FINANCIAL_OBLIGATION_MET = "dossier.financial_obligation_met"
    RESULT_READY = "dossier.result_ready"
    RETURNED = "dossier.returned"
    WITHDRAWAL_REQUESTED = "dossier.withdrawal_requested"
    WITHDRAWN = "dossier.withdrawn"
    STOPPED = "dossier.stopped"
    APOLOGY = "dossier.apology"
    RATING = "dossier.rating"
    ATTACHMENT = "dossier.attachment"
    ATTACHMENT_DISCARDED = "dossier.attachment_discarded"
    CONFLICT_RESOLVED = "dossier.conflict_resolved"


DOSSIER_KINDS = frozenset(k.value for k in Kind)
MAX_MS = 2**53 - 1
MAX_MONEY = 10**12
"""Largest amount in đồng a body may carry."""
CHANNELS = {1: "Trực tiếp", 2: "Trực tuyến", 3: "Bưu chính công ích"}
NODE_ID_PATTERN = r"[A-Z0-9][A-Z0-9-]{1,31}"
ACTOR_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}"
PROCESSING_STEPS = ("processing", "awaiting_signature", "awaiting_joint_step", "joint_result_received")
RATING_SCALES = {"three_level": 3, "five_star": 5}
"""three_level: 1 Không hài lòng, 2 Hài lòng, 3 Rất hài lòng; five_star: 1–5 stars."""
RATING_CHANNELS = ("kiosk", "qr", "counter", "dvcqg", "sms")
UNCLASSIFIED_DOCUMENT = "chưa phân loại"
_SHA256 = r"[0-9a-f]{64}"
_TEXT = 2000


def is_dislike(scale: str, value: int) -> bool:
    """Whether a rating counts as a national "dislike": Không hài lòng, or at most 2 stars (DOMAIN.md §7)."""
    return value <= (1 if scale == "three_level" else 2)


def _fail(reason: str, where: str) -> BodyInvalid:
    return BodyInvalid(f"{where}: {reason}" if where else reason, field=where or None)


def body_fields(body: Mapping[str, object]) -> Fields:
    """A reader over an already validated body (the fold reads typed values through it)."""
    return Fields(body, "", _fail)


def _ms(f: Fields, name: str) -> int:
    return f.integer(name, 0, MAX_MS)


def _note(f: Fields, name: str = "note") -> None:
    f.opt_text(name, max_len=_TEXT, multiline=True)


def _obj(f: Fields, name: str, required: Collection[str], optional: Collection[str] = ()) -> Fields:
    return f.obj(name, required=required, optional=optional)


def _applicant(f: Fields) -> None:
    Applicant.read(_obj(f, "applicant", Applicant.FIELDS, Applicant.OPTIONAL))


def _procedure(f: Fields) -> None:
    ProcedureRef.read(_obj(f, "procedure", ProcedureRef.FIELDS))


def _documents(f: Fields) -> None:
    for where, raw in f.items("documents", min_items=1, max_items=100):
        DocumentItem.read(Fields.of(raw, where, f.fail, required=DocumentItem.FIELDS))


def _check_submitted(f: Fields) -> None:
    _applicant(f)
    _procedure(f)
    f.int_choice("channel", (2, 3))
    _ms(f, "submitted_at")
    _note(f)


def _check_received(f: Fields) -> None:
    _applicant(f)
    _procedure(f)
    _documents(f)
    f.int_choice("channel", CHANNELS)
    f.text("pickup", max_len=32, pattern=NODE_ID_PATTERN)
    fee = f.integer("fee", 0, MAX_MONEY)
    if f.has("fee_paid"):
        f.boolean("fee_paid")
        if fee == 0:
            raise _fail("only with a fee above 0", "fee_paid")
    received_at = _ms(f, "received_at")
    if _ms(f, "due_at") < received_at:
        raise _fail("must not be before received_at", "due_at")
    submitted_at = f.opt_integer("submitted_at", 0, received_at)
    RegisterLine.read(_obj(f, "register", RegisterLine.FIELDS))
    lookup = _obj(f, "lookup", ("alg", "hash", "iterations"))
    lookup.choice("alg", ("pbkdf2-sha256",))
    lookup.text("hash", max_len=64, pattern=_SHA256)
    lookup.integer("iterations", LOOKUP_ITERATIONS_MIN, LOOKUP_ITERATIONS_MAX)
    _note(f)
    day = DossierCode.parse(f.text("dossier")).day
    days = {local_date(received_at)} | ({local_date(submitted_at)} if submitted_at is not None else set())
    if day not in days:
        raise _fail(
            "the date in the code is neither the reception nor the submission date (UTC+7)", "dossier"
        )


def _check_refused(f: Fields) -> None:
    f.text("reason", max_len=_TEXT, multiline=True)
    if f.has("applicant"):
        _applicant(f)
    if f.has("procedure"):
        _procedure(f)
    if f.has("channel"):
        f.int_choice("channel", CHANNELS)


def _check_supplement_requested(f: Fields) -> None:
    for where, raw in f.items("items", min_items=1, max_items=50):
        item = Fields.of(raw, where, f.fail, required=("name",), optional=("reason",))
        item.text("name", max_len=300)
        item.opt_text("reason", max_len=1000, multiline=True)
    f.opt_text("contact", max_len=200)
    _note(f)


def _check_resumed(f: Fields) -> None:
    if f.has("documents"):
        _documents(f)
    if f.has("due_at"):
        _ms(f, "due_at")
    _note(f)


def _check_transferred(f: Fields) -> None:
    f.text("agency", max_len=200)
    f.opt_text("agency_code", max_len=32, pattern=r"[A-Z0-9][A-Z0-9.-]{0,31}")
    _note(f)


def _check_processing(f: Fields) -> None:
    f.choice("step", PROCESSING_STEPS)
    f.opt_text("agency", max_len=200)
    _note(f)


def _check_financial_obligation(f: Fields) -> None:
    for where, raw in f.items("items", min_items=1, max_items=20):
        item = Fields.of(raw, where, f.fail, required=("name", "amount"))
        item.text("name", max_len=200)
        item.integer("amount", 0, MAX_MONEY)
    _note(f)


def _check_result_ready(f: Fields) -> None:
    outcome = f.choice("outcome", ("approved", "refused"))
    if outcome == "refused" and not f.has("reason"):
        raise _fail("a refusal must give its reason", "reason")
    f.opt_text("reason", max_len=_TEXT, multiline=True)
    f.opt_text("document_number", max_len=64)
    f.opt_text("result_sha256", max_len=64, pattern=_SHA256)
    _note(f)


def _check_returned(f: Fields) -> None:
    Recipient.read(_obj(f, "recipient", Recipient.FIELDS, Recipient.OPTIONAL))
    proxy = f.boolean("proxy")
    if proxy and not f.has("authorisation"):
        raise _fail("a proxy must show an authorisation", "authorisation")
    f.opt_text("authorisation", max_len=300)
    f.int_choice("channel", CHANNELS)
    f.opt_integer("fee_collected", 0, MAX_MONEY)
    _note(f)


def _check_withdrawal_requested(f: Fields) -> None:
    f.opt_text("reason", max_len=_TEXT, multiline=True)


def _check_withdrawn(f: Fields) -> None:
    f.opt_text("settlement", max_len=1000, multiline=True)
    _note(f)


def _check_stopped(f: Fields) -> None:
    f.text("reason", max_len=_TEXT, multiline=True)
    f.opt_text("notice_number", max_len=64)


def _check_apology(f: Fields) -> None:
    _ms(f, "new_due_at")
    f.text("reason", max_len=_TEXT, multiline=True)
    f.opt_text("approved_by", max_len=200)


def _check_rating(f: Fields) -> None:
    scale = f.choice("scale", RATING_SCALES)
    f.integer("value", 1, RATING_SCALES[scale])
    f.choice("channel", RATING_CHANNELS)
    f.opt_text("comment", max_len=1000, multiline=True)


def _check_attachment(f: Fields) -> None:
    f.text("document", max_len=300)
    f.choice("role", ("document", "result"))
    BlobManifest.read(_obj(f, "manifest", BlobManifest.FIELDS))
    _note(f)


def _check_attachment_discarded(f: Fields) -> None:
    f.text("sha256", max_len=64, pattern=_SHA256)
    f.text("reason", max_len=_TEXT, multiline=True)


def _check_conflict_resolved(f: Fields) -> None:
    f.text("conflict", max_len=64, pattern=_SHA256)
    f.choice("decision", ("dismiss", "apply"))
    f.text("note", max_len=_TEXT, multiline=True)
    if f.has("state"):
        f.choice("state", {s.value for s in InternalState})


@dataclass(frozen=True, slots=True)
class _Spec:
    """Fields a kind's body may hold beyond ``dossier`` and ``actor``, and its checks."""

    required: frozenset[str]
    optional: frozenset[str]
    check: Callable[[Fields], None]


def _spec(required: str, optional: str, check: Callable[[Fields], None]) -> _Spec:
    return _Spec(frozenset(required.split()), frozenset(optional.split()), check)


_SPECS: dict[str, _Spec] = {
    Kind.SUBMITTED: _spec("applicant procedure channel submitted_at", "note", _check_submitted),
    Kind.RECEIVED: _spec(
        "applicant procedure documents channel pickup fee received_at due_at register lookup",
        "fee_paid submitted_at note",
        _check_received,
    ),
    Kind.REFUSED: _spec("reason", "applicant procedure channel", _check_refused),
    Kind.SUPPLEMENT_REQUESTED: _spec("items", "contact note", _check_supplement_requested),
    Kind.SUPPLEMENT_PROVIDED: _spec("", "documents due_at note", _check_resumed),
    Kind.TRANSFERRED: _spec("agency", "agency_code note", _check_transferred),
    Kind.PROCESSING: _spec("step", "agency note", _check_processing),
    Kind.FINANCIAL_OBLIGATION: _spec("items", "note", _check_financial_obligation),
    Kind.FINANCIAL_OBLIGATION_MET: _spec("", "due_at note", _check_resumed),
    Kind.RESULT_READY: _spec("outcome", "reason document_number result_sha256 note", _check_result_ready),
    Kind.RETURNED: _spec("recipient proxy channel", "authorisation fee_collected note", _check_returned),
    Kind.WITHDRAWAL_REQUESTED: _spec("", "reason", _check_withdrawal_requested),
    Kind.WITHDRAWN: _spec("", "settlement note", _check_withdrawn),
    Kind.STOPPED: _spec("reason", "notice_number", _check_stopped),
    Kind.APOLOGY: _spec("new_due_at reason", "approved_by", _check_apology),
    Kind.RATING: _spec("scale value channel", "comment", _check_rating),
    Kind.ATTACHMENT: _spec("document role manifest", "note", _check_attachment),
    Kind.ATTACHMENT_DISCARDED: _spec("sha256 reason", "", _check_attachment_discarded),
    Kind.CONFLICT_RESOLVED: _spec("conflict decision note", "state", _check_conflict_resolved),
}


def validate_body(kind: str, body: Mapping[str, object]) -> None:
    """Raise ``BodyInvalid`` (naming the field path) unless ``body`` is a valid body of kind ``kind``."""
    spec = _SPECS.get(kind)
    if spec is None:
        raise BodyInvalid(f"{kind!r} is not a dossier event kind", field=None)
    f = Fields.of(body, "", _fail, required=spec.required | {"dossier", "actor"}, optional=spec.optional)
    code = f.text("dossier", max_len=MAX_CODE_LENGTH)
    try:
        DossierCode.parse(code)
    except DossierCodeInvalid as exc:
        raise _fail(exc.reason, "dossier") from None
    f.text("actor", max_len=64, pattern=ACTOR_PATTERN)
    spec.check(f)


def _validator(kind: str) -> Callable[[Mapping[str, object]], None]:
    def validate(body: Mapping[str, object]) -> None:
        validate_body(kind, body)

    validate.__name__ = f"validate_{kind.removeprefix('dossier.')}"
    return validate


BODY_VALIDATORS: Mapping[str, Callable[[Mapping[str, object]], None]] = {
    kind: _validator(kind) for kind in sorted(DOSSIER_KINDS)
}
