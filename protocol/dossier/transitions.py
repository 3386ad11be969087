"""The dossier state machine: from which states each event kind is valid, and what it does (DOMAIN.md §5.2).

``ALLOWED[kind]`` lists the internal states an event may meet (``None``: the dossier does not exist yet).
``effect(state, record)`` applies a valid event; it is also used, unchecked, when a person resolves a
conflict with the decision ``apply``. Bodies reaching here have passed ``validate_body``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from protocol.deadline import classify
from protocol.dossier.codes import LookupHash
from protocol.dossier.events import Kind, body_fields, is_dislike
from protocol.dossier.model import (
    Applicant,
    BlobManifest,
    DocumentItem,
    ProcedureRef,
    Recipient,
    RegisterLine,
)
from protocol.dossier.state import (
    Apology,
    Attachment,
    DossierState,
    EventRecord,
    Pause,
    Rating,
    Result,
    Returned,
)
from protocol.dossier.status import InternalState as S
from protocol.schema import Fields

__all__ = [
    "ALLOWED",
    "CREATION_KINDS",
    "FINISHED",
    "IN_PROCESS",
    "effect",
]

IN_PROCESS = frozenset(
    {
        S.TRANSFERRED,
        S.PROCESSING,
        S.AWAITING_SIGNATURE,
        S.AWAITING_JOINT_STEP,
        S.JOINT_RESULT_RECEIVED,
        S.SUPPLEMENTED,
        S.FINANCIAL_OBLIGATION_MET,
    }
)
"""States reported as national status 4 (Đang xử lý)."""
_ACCEPTED_OPEN = IN_PROCESS | {S.RECEIVED, S.SUPPLEMENT_REQUESTED, S.FINANCIAL_OBLIGATION}
_ANY: frozenset[S | None] = frozenset(S)
FINISHED = frozenset({S.RESULT_READY, S.RETURNED, S.STOPPED, S.WITHDRAWN})
"""States in which processing has ended (the 766 end time is known)."""
CREATION_KINDS = frozenset({Kind.SUBMITTED, Kind.RECEIVED, Kind.REFUSED})

ALLOWED: Mapping[str, frozenset[S | None]] = {
    Kind.SUBMITTED: frozenset({None}),
    Kind.RECEIVED: frozenset({None, S.SUBMITTED}),
    Kind.REFUSED: frozenset({None, S.SUBMITTED}),
    Kind.SUPPLEMENT_REQUESTED: IN_PROCESS | {S.SUBMITTED},
    Kind.SUPPLEMENT_PROVIDED: frozenset({S.SUPPLEMENT_REQUESTED, S.GUIDANCE}),
    Kind.TRANSFERRED: IN_PROCESS | {S.RECEIVED},
    Kind.PROCESSING: IN_PROCESS | {S.RECEIVED},
    Kind.FINANCIAL_OBLIGATION: IN_PROCESS,
    Kind.FINANCIAL_OBLIGATION_MET: frozenset({S.FINANCIAL_OBLIGATION}),
    Kind.RESULT_READY: IN_PROCESS,
    Kind.RETURNED: frozenset({S.RESULT_READY}),
    Kind.WITHDRAWAL_REQUESTED: _ACCEPTED_OPEN,
    Kind.WITHDRAWN: frozenset({S.WITHDRAWAL_REQUESTED}),
    Kind.STOPPED: IN_PROCESS,
    Kind.APOLOGY: _ACCEPTED_OPEN,
    Kind.RATING: _ANY,
    Kind.ATTACHMENT: _ANY,
    Kind.ATTACHMENT_DISCARDED: _ANY,
    Kind.CONFLICT_RESOLVED: _ANY,
}


def _sub(value: object) -> Fields:
    if not isinstance(value, Mapping):
        raise TypeError("a validated body holds an object here")
    return body_fields(value)


def _obj(f: Fields, name: str) -> Fields:
    return _sub(f.raw(name))


def _either(value: int | None, fallback: int | None) -> int | None:
    return fallback if value is None else value


def _applicant(f: Fields) -> Applicant:
    return Applicant.read(_obj(f, "applicant"))


def _procedure(f: Fields) -> ProcedureRef:
    return ProcedureRef.read(_obj(f, "procedure"))


def _documents(f: Fields) -> tuple[DocumentItem, ...]:
    return tuple(DocumentItem.read(_sub(raw)) for _, raw in f.items("documents", max_items=100))


def _close_pause(state: DossierState, reason: str, at: int) -> tuple[Pause, ...]:
    pauses = list(state.pauses)
    for i in range(len(pauses) - 1, -1, -1):
        if pauses[i].end is None and pauses[i].reason == reason:
            pauses[i] = replace(pauses[i], end=max(at, pauses[i].start))
            break
    return tuple(pauses)


def _created(record: EventRecord, state: S) -> DossierState:
    return DossierState(code=str(record.body["dossier"]), state=state)


def effect(current: DossierState | None, record: EventRecord) -> DossierState:
    """The state after ``record`` (not checked against ``ALLOWED``; see module docstring)."""
    f = body_fields(record.body)
    kind = record.kind
    at = record.at
    state = current if current is not None else _created(record, S.SUBMITTED)
    if kind == Kind.SUBMITTED:
        state = replace(
            state,
            state=S.SUBMITTED,
            applicant=_applicant(f),
            procedure=_procedure(f),
            channel=f.integer("channel", 1, 3),
            submitted_at=f.integer("submitted_at", 0, 2**53),
        )
    elif kind == Kind.RECEIVED:
        lookup = _obj(f, "lookup")
        due = f.integer("due_at", 0, 2**53)
        state = replace(
            state,
            state=S.RECEIVED,
            applicant=_applicant(f),
            procedure=_procedure(f),
            documents=_documents(f),
            channel=f.integer("channel", 1, 3),
            fee=f.integer("fee", 0, 2**53),
            fee_paid=f.boolean("fee_paid") if f.has("fee_paid") else None,
            register=RegisterLine.read(_obj(f, "register")),
            lookup=LookupHash(
                lookup.text("hash", max_len=64), lookup.integer("iterations", 1, 2**53), lookup.text("alg")
            ),
            submitted_at=_either(f.opt_integer("submitted_at", 0, 2**53), state.submitted_at),
            received_at=f.integer("received_at", 0, 2**53),
            due_at=due,
            adjusted_due_at=due,
            receiving_node=record.log,
            pickup_node=f.text("pickup"),
        )
    elif kind == Kind.REFUSED:
        state = replace(
            state,
            state=S.REFUSED,
            refusal_reason=f.text("reason", max_len=10_000, multiline=True),
            applicant=_applicant(f) if f.has("applicant") else state.applicant,
            procedure=_procedure(f) if f.has("procedure") else state.procedure,
            channel=f.integer("channel", 1, 3) if f.has("channel") else state.channel,
            ended_at=at,
        )
    elif kind == Kind.SUPPLEMENT_REQUESTED:
        if state.state in (S.SUBMITTED, S.GUIDANCE):
            state = replace(state, state=S.GUIDANCE)
        else:
            state = replace(
                state,
                state=S.SUPPLEMENT_REQUESTED,
                supplement_requests=state.supplement_requests + 1,
                pauses=(*state.pauses, Pause(at, None, "supplement")),
            )
    elif kind == Kind.SUPPLEMENT_PROVIDED:
        if state.state is S.GUIDANCE:
            state = replace(state, state=S.SUBMITTED)
        else:
            state = replace(
                state,
                state=S.SUPPLEMENTED,
                pauses=_close_pause(state, "supplement", at),
                adjusted_due_at=_either(f.opt_integer("due_at", 0, 2**53), state.adjusted_due_at),
            )
        if f.has("documents"):
            state = replace(state, documents=state.documents + _documents(f))
    elif kind == Kind.TRANSFERRED:
        state = replace(state, state=S.TRANSFERRED, agency=f.text("agency"))
    elif kind == Kind.PROCESSING:
        state = replace(state, state=S(f.text("step")), agency=f.opt_text("agency") or state.agency)
    elif kind == Kind.FINANCIAL_OBLIGATION:
        items = tuple(
            (item.text("name"), item.integer("amount", 0, 2**53))
            for item in (_sub(raw) for _, raw in f.items("items", max_items=20))
        )
        state = replace(
            state,
            state=S.FINANCIAL_OBLIGATION,
            obligations=state.obligations + items,
            pauses=(*state.pauses, Pause(at, None, "financial_obligation")),
        )
    elif kind == Kind.FINANCIAL_OBLIGATION_MET:
        state = replace(
            state,
            state=S.FINANCIAL_OBLIGATION_MET,
            pauses=_close_pause(state, "financial_obligation", at),
            adjusted_due_at=_either(f.opt_integer("due_at", 0, 2**53), state.adjusted_due_at),
        )
    elif kind == Kind.RESULT_READY:
        result = Result(
            outcome=f.text("outcome"),
            reason=f.opt_text("reason", max_len=10_000, multiline=True),
            document_number=f.opt_text("document_number"),
            sha256=f.opt_text("result_sha256"),
            at=at,
        )
        state = replace(state, state=S.RESULT_READY, result=result, ended_at=at)
    elif kind == Kind.RETURNED:
        returned = Returned(
            recipient=Recipient.read(_obj(f, "recipient")),
            proxy=f.boolean("proxy"),
            authorisation=f.opt_text("authorisation", max_len=10_000),
            channel=f.integer("channel", 1, 3),
            fee_collected=f.opt_integer("fee_collected", 0, 2**53),
            at=at,
        )
        state = replace(state, state=S.RETURNED, returned=returned, ended_at=_either(state.ended_at, at))
    elif kind == Kind.WITHDRAWAL_REQUESTED:
        state = replace(state, state=S.WITHDRAWAL_REQUESTED, withdrawal_requested_at=at)
    elif kind == Kind.WITHDRAWN:
        state = replace(state, state=S.WITHDRAWN, ended_at=_either(state.withdrawal_requested_at, at))
    elif kind == Kind.STOPPED:
        state = replace(
            state, state=S.STOPPED, stop_reason=f.text("reason", max_len=10_000, multiline=True), ended_at=at
        )
    elif kind == Kind.APOLOGY:
        apology = Apology(
            new_due_at=f.integer("new_due_at", 0, 2**53),
            reason=f.text("reason", max_len=10_000, multiline=True),
            approved_by=f.opt_text("approved_by"),
            actor=record.actor,
            at=at,
        )
        state = replace(state, apologies=(*state.apologies, apology), promised_at=apology.new_due_at)
    elif kind == Kind.RATING:
        scale, value = f.text("scale"), f.integer("value", 1, 5)
        rating = Rating(
            scale,
            value,
            f.text("channel"),
            f.opt_text("comment", max_len=10_000, multiline=True),
            is_dislike(scale, value),
            at,
        )
        state = replace(state, rating=rating)
    elif kind == Kind.ATTACHMENT:
        manifest = BlobManifest.read(_obj(f, "manifest"))
        attachment = Attachment(
            manifest.sha256, f.text("document", max_len=300), f.text("role"), manifest, at, record.hash
        )
        kept = tuple(a for a in state.attachments if a.sha256 != manifest.sha256)
        state = replace(state, attachments=(*kept, attachment))
    elif kind == Kind.ATTACHMENT_DISCARDED:
        sha = f.text("sha256")
        state = replace(
            state,
            attachments=tuple(a for a in state.attachments if a.sha256 != sha),
            discarded=state.discarded + tuple(a for a in state.attachments if a.sha256 == sha),
        )
    return _with_timeliness(state)


def _with_timeliness(state: DossierState) -> DossierState:
    """Classify (766) once processing has ended and a due date is known; ``None`` otherwise."""
    if state.state not in FINISHED or state.ended_at is None or state.adjusted_due_at is None:
        return replace(state, timeliness=None) if state.timeliness is not None else state
    end = state.ended_at
    waiting = state.open_pause
    if waiting is not None and waiting.reason == "supplement":
        end = min(end, waiting.start)
    verdict = classify(end, state.adjusted_due_at, supplement_requests=state.supplement_requests)
    return replace(state, timeliness=verdict)
