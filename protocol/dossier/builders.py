"""Typed constructors of dossier event bodies, for nodes and the hub.

Each builder takes typed values, leaves out optional fields given as ``None``, normalizes every string to
Unicode NFC (the edge is where input methods' decomposed diacritics are fixed; validators then refuse
non-NFC), validates the result with the kind's validator and returns the body ready to sign.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Literal

from protocol.dossier.codes import LookupHash
from protocol.dossier.events import Kind, validate_body
from protocol.dossier.model import (
    Applicant,
    BlobManifest,
    DocumentItem,
    ProcedureRef,
    Recipient,
    RegisterLine,
)

__all__ = [
    "apology_body",
    "attachment_body",
    "attachment_discarded_body",
    "conflict_resolved_body",
    "financial_obligation_body",
    "financial_obligation_met_body",
    "processing_body",
    "rating_body",
    "received_body",
    "refused_body",
    "result_ready_body",
    "returned_body",
    "stopped_body",
    "submitted_body",
    "supplement_provided_body",
    "supplement_requested_body",
    "transferred_body",
    "withdrawal_requested_body",
    "withdrawn_body",
]


def _nfc(value: object) -> object:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {_nfc(k): _nfc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nfc(v) for v in value]
    return value


def _build(kind: Kind, dossier: str, actor: str, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"dossier": dossier, "actor": actor}
    body.update({k: v for k, v in fields.items() if v is not None})
    normalized = _nfc(body)
    assert isinstance(normalized, dict)
    validate_body(kind, normalized)
    return normalized


def _docs(documents: Sequence[DocumentItem] | None) -> list[dict[str, object]] | None:
    return None if documents is None else [d.to_body() for d in documents]


def submitted_body(
    *,
    dossier: str,
    actor: str,
    applicant: Applicant,
    procedure: ProcedureRef,
    channel: int,
    submitted_at: int,
    note: str | None = None,
) -> dict[str, object]:
    """``dossier.submitted``: an online or postal submission not yet accepted (status 1)."""
    return _build(
        Kind.SUBMITTED,
        dossier,
        actor,
        applicant=applicant.to_body(),
        procedure=procedure.to_body(),
        channel=channel,
        submitted_at=submitted_at,
        note=note,
    )


def received_body(
    *,
    dossier: str,
    actor: str,
    applicant: Applicant,
    procedure: ProcedureRef,
    documents: Sequence[DocumentItem],
    channel: int,
    pickup: str,
    fee: int,
    received_at: int,
    due_at: int,
    register: RegisterLine,
    lookup: LookupHash,
    submitted_at: int | None = None,
    note: str | None = None,
    fee_paid: bool | None = None,
) -> dict[str, object]:
    """``dossier.received``: accepted at reception (status 2); the due date is fixed here. ``fee_paid``:
    whether the fee was collected at reception (only with a fee above 0)."""
    return _build(
        Kind.RECEIVED,
        dossier,
        actor,
        applicant=applicant.to_body(),
        procedure=procedure.to_body(),
        documents=_docs(documents),
        channel=channel,
        pickup=pickup,
        fee=fee,
        fee_paid=fee_paid,
        received_at=received_at,
        due_at=due_at,
        register=register.to_body(),
        lookup=lookup.to_body(),
        submitted_at=submitted_at,
        note=note,
    )


def refused_body(
    *,
    dossier: str,
    actor: str,
    reason: str,
    applicant: Applicant | None = None,
    procedure: ProcedureRef | None = None,
    channel: int | None = None,
) -> dict[str, object]:
    """``dossier.refused``: not accepted at reception (status 3), with the legal reason as free text."""
    return _build(
        Kind.REFUSED,
        dossier,
        actor,
        reason=reason,
        applicant=applicant.to_body() if applicant else None,
        procedure=procedure.to_body() if procedure else None,
        channel=channel,
    )


def supplement_requested_body(
    *,
    dossier: str,
    actor: str,
    items: Sequence[tuple[str, str | None]],
    contact: str | None = None,
    note: str | None = None,
) -> dict[str, object]:
    """``dossier.supplement_requested``: items (name, reason) to supplement; the clock pauses (status 5)."""
    listed = [
        {"name": name} if reason is None else {"name": name, "reason": reason} for name, reason in items
    ]
    return _build(Kind.SUPPLEMENT_REQUESTED, dossier, actor, items=listed, contact=contact, note=note)


def supplement_provided_body(
    *,
    dossier: str,
    actor: str,
    documents: Sequence[DocumentItem] | None = None,
    due_at: int | None = None,
    note: str | None = None,
) -> dict[str, object]:
    """``dossier.supplement_provided``: the pause ends; ``due_at`` is the due date extended for it."""
    return _build(
        Kind.SUPPLEMENT_PROVIDED, dossier, actor, documents=_docs(documents), due_at=due_at, note=note
    )


def transferred_body(
    *, dossier: str, actor: str, agency: str, agency_code: str | None = None, note: str | None = None
) -> dict[str, object]:
    """``dossier.transferred``: handed to the resolving agency (status 4)."""
    return _build(Kind.TRANSFERRED, dossier, actor, agency=agency, agency_code=agency_code, note=note)


def processing_body(
    *,
    dossier: str,
    actor: str,
    step: Literal["processing", "awaiting_signature", "awaiting_joint_step", "joint_result_received"],
    agency: str | None = None,
    note: str | None = None,
) -> dict[str, object]:
    """``dossier.processing``: a step inside processing (status 4)."""
    return _build(Kind.PROCESSING, dossier, actor, step=step, agency=agency, note=note)


def financial_obligation_body(
    *, dossier: str, actor: str, items: Sequence[tuple[str, int]], note: str | None = None
) -> dict[str, object]:
    """``dossier.financial_obligation``: fees, taxes or levies (name, amount in đồng) to pay (status 6)."""
    listed = [{"name": name, "amount": amount} for name, amount in items]
    return _build(Kind.FINANCIAL_OBLIGATION, dossier, actor, items=listed, note=note)


def financial_obligation_met_body(
    *, dossier: str, actor: str, due_at: int | None = None, note: str | None = None
) -> dict[str, object]:
    """``dossier.financial_obligation_met``: paid; ``due_at`` when the procedure excludes that time."""
    return _build(Kind.FINANCIAL_OBLIGATION_MET, dossier, actor, due_at=due_at, note=note)


def result_ready_body(
    *,
    dossier: str,
    actor: str,
    outcome: Literal["approved", "refused"],
    reason: str | None = None,
    document_number: str | None = None,
    result_sha256: str | None = None,
    note: str | None = None,
) -> dict[str, object]:
    """``dossier.result_ready``: an approval or a reasoned refusal is ready (status 9)."""
    return _build(
        Kind.RESULT_READY,
        dossier,
        actor,
        outcome=outcome,
        reason=reason,
        document_number=document_number,
        result_sha256=result_sha256,
        note=note,
    )


def returned_body(
    *,
    dossier: str,
    actor: str,
    recipient: Recipient,
    proxy: bool,
    channel: int,
    authorisation: str | None = None,
    fee_collected: int | None = None,
    note: str | None = None,
) -> dict[str, object]:
    """``dossier.returned``: the result was handed over (status 10)."""
    return _build(
        Kind.RETURNED,
        dossier,
        actor,
        recipient=recipient.to_body(),
        proxy=proxy,
        channel=channel,
        authorisation=authorisation,
        fee_collected=fee_collected,
        note=note,
    )


def withdrawal_requested_body(*, dossier: str, actor: str, reason: str | None = None) -> dict[str, object]:
    """``dossier.withdrawal_requested``: the applicant asks to withdraw (status 7)."""
    return _build(Kind.WITHDRAWAL_REQUESTED, dossier, actor, reason=reason)


def withdrawn_body(
    *, dossier: str, actor: str, settlement: str | None = None, note: str | None = None
) -> dict[str, object]:
    """``dossier.withdrawn``: the officer confirms the withdrawal; processing stops (status 8)."""
    return _build(Kind.WITHDRAWN, dossier, actor, settlement=settlement, note=note)


def stopped_body(
    *, dossier: str, actor: str, reason: str, notice_number: str | None = None
) -> dict[str, object]:
    """``dossier.stopped``: the agency stops processing, with its notice (status 8)."""
    return _build(Kind.STOPPED, dossier, actor, reason=reason, notice_number=notice_number)


def apology_body(
    *, dossier: str, actor: str, new_due_at: int, reason: str, approved_by: str | None = None
) -> dict[str, object]:
    """``dossier.apology``: apology and new promised date; the statutory due date is kept."""
    return _build(Kind.APOLOGY, dossier, actor, new_due_at=new_due_at, reason=reason, approved_by=approved_by)


def rating_body(
    *,
    dossier: str,
    actor: str,
    scale: Literal["three_level", "five_star"],
    value: int,
    channel: str,
    comment: str | None = None,
) -> dict[str, object]:
    """``dossier.rating``: the applicant's satisfaction rating."""
    return _build(Kind.RATING, dossier, actor, scale=scale, value=value, channel=channel, comment=comment)


def attachment_body(
    *,
    dossier: str,
    actor: str,
    document: str,
    manifest: BlobManifest,
    role: Literal["document", "result"] = "document",
    note: str | None = None,
) -> dict[str, object]:
    """``dossier.attachment``: a scan of a document (or of the result) by its blob manifest."""
    return _build(
        Kind.ATTACHMENT, dossier, actor, document=document, role=role, manifest=manifest.to_body(), note=note
    )


def attachment_discarded_body(*, dossier: str, actor: str, sha256: str, reason: str) -> dict[str, object]:
    """``dossier.attachment_discarded``: an attached scan is withdrawn from the dossier."""
    return _build(Kind.ATTACHMENT_DISCARDED, dossier, actor, sha256=sha256, reason=reason)


def conflict_resolved_body(
    *,
    dossier: str,
    actor: str,
    conflict: str,
    decision: Literal["dismiss", "apply"],
    note: str,
    state: str | None = None,
) -> dict[str, object]:
    """``dossier.conflict_resolved``: a person's decision on a conflicting event (by its entry hash)."""
    return _build(
        Kind.CONFLICT_RESOLVED, dossier, actor, conflict=conflict, decision=decision, note=note, state=state
    )
