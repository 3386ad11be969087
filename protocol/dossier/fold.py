"""The deterministic dossier fold (DESIGN.md §5; SPEC-dossier.md §3).

Input: event records from any logs, in any arrival order, duplicates allowed. The fold keeps the known
dossier kinds (other kinds are ignored), drops exact duplicates (same entry hash), groups events by the
body's ``dossier`` code, orders each group by ``(time, log, epoch, seq)`` and walks the state machine of
``transitions``. The result depends only on the *set* of records.

- An event that is not a valid transition where it falls is never dropped: it becomes a ``Conflict``
  (with the state it hit and the last event applied before it) until a ``dossier.conflict_resolved``
  event names it: ``dismiss`` leaves the state alone, ``apply`` applies the event as if valid; either
  may also set the internal state outright (``state``).
- A group with no creating event (``submitted``, ``received``, ``refused``) is **pending**: its events are
  held, not judged, because the creating entry has most likely not been synced here yet. Once a creating
  event is present, any event ordered before it is a conflict (it cannot have been caused by it).
- A body that fails validation becomes a ``body_invalid`` conflict (in its dossier if its code is
  readable, else unattributed); it can be dismissed, never applied.

``Fold.apply`` adds one record: it steps the dossier if the record comes after everything already
folded for it, and otherwise refolds that dossier from its records, so it always equals ``fold()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from protocol.deadline import Timeliness, classify
from protocol.dossier.codes import is_dossier_code
from protocol.dossier.events import DOSSIER_KINDS, Kind, body_fields, validate_body
from protocol.dossier.state import Conflict, ConflictReason, DossierState, EventRecord, TimelineEntry
from protocol.dossier.status import InternalState
from protocol.dossier.transitions import ALLOWED, CREATION_KINDS, effect
from protocol.errors import BodyInvalid

__all__ = [
    "Fold",
    "FoldResult",
    "fold",
    "fold_one",
    "timeliness_as_of",
]


@dataclass(frozen=True, slots=True)
class FoldResult:
    """Every dossier's state, every conflict (open and resolved, in fold order), and pending events."""

    dossiers: Mapping[str, DossierState]
    conflicts: tuple[Conflict, ...]
    pending: Mapping[str, tuple[EventRecord, ...]]

    @property
    def open_conflicts(self) -> tuple[Conflict, ...]:
        """Conflicts awaiting a person's decision."""
        return tuple(c for c in self.conflicts if c.open)


@dataclass(slots=True)
class _Run:
    """The walk over one dossier's ordered events."""

    code: str
    state: DossierState | None = None
    conflicts: list[Conflict] = field(default_factory=list)
    last_applied: str | None = None

    def feed(self, record: EventRecord, invalid: str | None) -> None:
        hit = self.state.state if self.state is not None else None
        if invalid is not None:
            self._conflict(record, ConflictReason.BODY_INVALID, f"nội dung sự kiện không hợp lệ: {invalid}")
        elif hit not in ALLOWED[record.kind]:
            where = hit.label if hit is not None else "hồ sơ chưa được tạo"
            self._conflict(
                record, ConflictReason.INVALID_TRANSITION, f"{record.kind} không hợp lệ khi: {where}"
            )
        elif record.kind == Kind.CONFLICT_RESOLVED:
            self._resolve(record)
        elif record.kind == Kind.ATTACHMENT_DISCARDED and not self._has_attachment(record):
            self._conflict(record, ConflictReason.UNKNOWN_ATTACHMENT, "không có tệp đính kèm với mã băm này")
        else:
            self._apply(record)

    def _apply(self, record: EventRecord) -> None:
        state = effect(self.state, record)
        self.state = replace(state, timeline=(*state.timeline, TimelineEntry.of(record)))
        self.last_applied = record.hash

    def _conflict(self, record: EventRecord, reason: ConflictReason, detail: str) -> None:
        hit = self.state.state if self.state is not None else None
        self.conflicts.append(Conflict(self.code, reason, record, hit, self.last_applied, detail))

    def _has_attachment(self, record: EventRecord) -> bool:
        sha = record.body.get("sha256")
        return self.state is not None and any(a.sha256 == sha for a in self.state.attachments)

    def _resolve(self, record: EventRecord) -> None:
        f = body_fields(record.body)
        target, decision = f.text("conflict"), f.text("decision")
        index = next((i for i, c in enumerate(self.conflicts) if c.open and c.record.hash == target), None)
        if index is None:
            self._conflict(
                record, ConflictReason.UNKNOWN_CONFLICT, "không có xung đột đang mở với mã băm này"
            )
            return
        conflict = self.conflicts[index]
        if decision == "apply" and (
            conflict.reason is ConflictReason.BODY_INVALID or conflict.record.kind == Kind.CONFLICT_RESOLVED
        ):
            self._conflict(record, ConflictReason.CANNOT_APPLY, "không thể áp dụng sự kiện này")
            return
        if decision == "apply" and conflict.reason is not ConflictReason.UNKNOWN_ATTACHMENT:
            self.state = effect(self.state, conflict.record)
        self.conflicts[index] = replace(conflict, resolved_by=record.hash, decision=decision)
        if f.has("state") and self.state is not None:
            self.state = replace(self.state, state=InternalState(f.text("state")))
        self._apply(record)

    def result(self) -> DossierState | None:
        if self.state is None:
            return None
        return replace(self.state, conflicts=tuple(self.conflicts))


@dataclass(slots=True)
class _Group:
    """All records of one dossier code, in fold order, and the run over them."""

    code: str
    records: list[tuple[EventRecord, str | None]] = field(default_factory=list)
    run: _Run | None = None

    @property
    def created(self) -> bool:
        return any(r.kind in CREATION_KINDS and invalid is None for r, invalid in self.records)

    def add(self, record: EventRecord, invalid: str | None) -> None:
        in_order = not self.records or record.order_key > self.records[-1][0].order_key
        if in_order:
            self.records.append((record, invalid))
        else:
            self.records.append((record, invalid))
            self.records.sort(key=lambda item: item[0].order_key)
        if not self.created:
            self.run = None
        elif in_order and self.run is not None:
            self.run.feed(record, invalid)
        else:
            self.run = _Run(self.code)
            for r, bad in self.records:
                self.run.feed(r, bad)


class Fold:
    """Incremental fold: ``apply`` records one at a time, in any order; ``result()`` equals ``fold()``."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._groups: dict[str, _Group] = {}
        self._unattributed: list[Conflict] = []

    def apply(self, record: EventRecord, *, validated: bool = False) -> None:
        """Add one record: ignored if not a dossier kind or already seen (same entry hash).

        ``validated``: the caller has just checked this very body with ``validate_body`` (it passed), so
        it is not checked again; the result is the same.
        """
        if record.kind not in DOSSIER_KINDS or record.hash in self._seen:
            return
        self._seen.add(record.hash)
        invalid: str | None = None
        try:
            if not validated:
                validate_body(record.kind, record.body)
        except BodyInvalid as exc:
            invalid = exc.reason
        code = record.body.get("dossier") if isinstance(record.body, Mapping) else None
        if not isinstance(code, str) or not is_dossier_code(code):
            detail = f"nội dung sự kiện không hợp lệ: {invalid}"
            self._unattributed.append(Conflict(None, ConflictReason.BODY_INVALID, record, None, None, detail))
            return
        self._groups.setdefault(code, _Group(code)).add(record, invalid)

    def state(self, code: str) -> DossierState | None:
        """The current state of one dossier (``None`` if unknown or pending)."""
        group = self._groups.get(code)
        return group.run.result() if group is not None and group.run is not None else None

    def result(self) -> FoldResult:
        """Snapshot of every dossier, conflict and pending group."""
        dossiers: dict[str, DossierState] = {}
        pending: dict[str, tuple[EventRecord, ...]] = {}
        conflicts = list(self._unattributed)
        for code in sorted(self._groups):
            group = self._groups[code]
            state = group.run.result() if group.run is not None else None
            if state is None:
                pending[code] = tuple(r for r, _ in group.records)
            else:
                dossiers[code] = state
                conflicts.extend(state.conflicts)
        conflicts.sort(key=lambda c: c.record.order_key)
        return FoldResult(dossiers=dossiers, conflicts=tuple(conflicts), pending=pending)


def fold(records: Iterable[EventRecord]) -> FoldResult:
    """Fold a set of records (any order, duplicates ignored) into dossier states and conflicts."""
    folder = Fold()
    for record in sorted(records, key=lambda r: r.order_key):
        folder.apply(record)
    return folder.result()


def fold_one(record: EventRecord, *, validated: bool = False) -> DossierState | None:
    """The state of the dossier of ``record`` when that record is its only event (a new dossier):
    ``fold([record]).dossiers.get(code)``. ``validated`` as in ``Fold.apply``."""
    folder = Fold()
    folder.apply(record, validated=validated)
    code = record.body.get("dossier") if isinstance(record.body, Mapping) else None
    return folder.state(code) if isinstance(code, str) else None


def timeliness_as_of(state: DossierState, as_of: int) -> Timeliness | None:
    """766 classification for reports: the final one if processing ended, else measured at ``as_of``
    (the end of the reporting period; a supplement never returned ends at its request). ``None`` without
    a due date (never accepted).
    """
    if state.timeliness is not None:
        return state.timeliness
    if state.adjusted_due_at is None or state.received_at is None:
        return None
    end = as_of
    waiting = state.open_pause
    if waiting is not None and waiting.reason == "supplement":
        end = min(end, waiting.start)
    return classify(end, state.adjusted_due_at, supplement_requests=state.supplement_requests)
