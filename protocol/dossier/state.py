"""What the fold reads (``EventRecord``) and what it produces (``DossierState``, ``Conflict``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from protocol.deadline import Timeliness
from protocol.dossier.codes import LookupHash
from protocol.dossier.model import (
    Applicant,
    BlobManifest,
    DocumentItem,
    ProcedureRef,
    Recipient,
    RegisterLine,
)
from protocol.dossier.status import InternalState, NationalStatus

__all__ = [
    "Apology",
    "Attachment",
    "Conflict",
    "ConflictReason",
    "DossierState",
    "EventRecord",
    "Pause",
    "Rating",
    "Result",
    "Returned",
    "TimelineEntry",
]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One verified log entry as the fold sees it; nodes and the hub build these from entries."""

    log: str
    epoch: int
    seq: int
    time: tuple[int, int]
    kind: str
    body: Mapping[str, object]
    hash: str

    @property
    def order_key(self) -> tuple[int, int, str, int, int, str]:
        """Fold order: hybrid logical time, then log, epoch, seq (the hash only breaks impossible ties)."""
        return (self.time[0], self.time[1], self.log, self.epoch, self.seq, self.hash)

    @property
    def at(self) -> int:
        """Wall-clock part of the hybrid time: when the event was recorded (epoch ms UTC)."""
        return self.time[0]

    @property
    def actor(self) -> str | None:
        """The body's ``actor``, if it has a string one."""
        actor = self.body.get("actor")
        return actor if isinstance(actor, str) else None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """An event applied to the dossier, in fold order."""

    kind: str
    time: tuple[int, int]
    log: str
    epoch: int
    seq: int
    hash: str
    actor: str | None

    @classmethod
    def of(cls, record: EventRecord) -> TimelineEntry:
        """The timeline line of ``record``."""
        return cls(record.kind, record.time, record.log, record.epoch, record.seq, record.hash, record.actor)


class ConflictReason(StrEnum):
    """Why an event could not be applied at its place in the fold."""

    INVALID_TRANSITION = "invalid_transition"
    UNKNOWN_ATTACHMENT = "unknown_attachment"
    UNKNOWN_CONFLICT = "unknown_conflict"
    CANNOT_APPLY = "cannot_apply"
    BODY_INVALID = "body_invalid"


@dataclass(frozen=True, slots=True)
class Conflict:
    """An event that was not applied, with the state it hit and the last event applied before it.

    It stays until a ``dossier.conflict_resolved`` event names it (``resolved_by`` is then that event's hash).
    """

    dossier: str | None
    reason: ConflictReason
    record: EventRecord
    state: InternalState | None
    after: str | None
    detail: str
    resolved_by: str | None = None
    decision: str | None = None

    @property
    def open(self) -> bool:
        """Whether no person has resolved it yet."""
        return self.resolved_by is None


@dataclass(frozen=True, slots=True)
class Pause:
    """An interval during which the statutory clock stood still; ``end`` is ``None`` while it lasts."""

    start: int
    end: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Apology:
    """A letter of apology with a new promised date (the statutory due date is kept)."""

    new_due_at: int
    reason: str
    approved_by: str | None
    actor: str | None
    at: int


@dataclass(frozen=True, slots=True)
class Attachment:
    """A scan attached to the dossier."""

    sha256: str
    document: str
    role: str
    manifest: BlobManifest
    at: int
    entry: str


@dataclass(frozen=True, slots=True)
class Rating:
    """The applicant's rating, raw, plus whether it counts as a national dislike."""

    scale: str
    value: int
    channel: str
    comment: str | None
    dislike: bool
    at: int


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of processing: an approval, or a refusal with its reason."""

    outcome: str
    reason: str | None
    document_number: str | None
    sha256: str | None
    at: int


@dataclass(frozen=True, slots=True)
class Returned:
    """How the result was handed over."""

    recipient: Recipient
    proxy: bool
    authorisation: str | None
    channel: int
    fee_collected: int | None
    at: int


@dataclass(frozen=True, slots=True)
class DossierState:
    """The folded state of one dossier. ``due_at`` is fixed at reception; ``adjusted_due_at`` adds pauses."""

    code: str
    state: InternalState
    applicant: Applicant | None = None
    procedure: ProcedureRef | None = None
    channel: int | None = None
    documents: tuple[DocumentItem, ...] = ()
    fee: int | None = None
    fee_paid: bool | None = None  # collected at reception; None: not recorded (entries before the field)
    register: RegisterLine | None = None
    lookup: LookupHash | None = None
    submitted_at: int | None = None
    received_at: int | None = None
    due_at: int | None = None
    adjusted_due_at: int | None = None
    promised_at: int | None = None
    apologies: tuple[Apology, ...] = ()
    pauses: tuple[Pause, ...] = ()
    supplement_requests: int = 0
    obligations: tuple[tuple[str, int], ...] = ()
    receiving_node: str | None = None
    pickup_node: str | None = None
    agency: str | None = None
    attachments: tuple[Attachment, ...] = ()
    discarded: tuple[Attachment, ...] = ()
    rating: Rating | None = None
    result: Result | None = None
    returned: Returned | None = None
    refusal_reason: str | None = None
    stop_reason: str | None = None
    withdrawal_requested_at: int | None = None
    ended_at: int | None = None
    timeliness: Timeliness | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    @property
    def status(self) -> NationalStatus:
        """The national status code (1–10)."""
        return self.state.national

    @property
    def open_conflicts(self) -> tuple[Conflict, ...]:
        """Conflicts no person has resolved yet."""
        return tuple(c for c in self.conflicts if c.open)

    @property
    def open_pause(self) -> Pause | None:
        """The pause in progress, if the clock is stopped now."""
        return next((p for p in reversed(self.pauses) if p.end is None), None)
