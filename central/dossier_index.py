"""The dossier index: one row per dossier for the lists of the dashboard and the officers' workspace.

Written from the same fold as the hub's ``dossiers`` row, in the same transaction (``Dossiers.on_refresh``),
so the lists never disagree with tracking. It keeps what lists filter and sort on: receiving branch,
procedure, agency, state and national status, the dates, the 766 verdict once processing ended, whether
the applicant's rating is a dislike, and the applicant's name masked to initials. Queries for the late-dossier
control and the satisfaction ratios are here too (docs/admin.md gives the formulas).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from central.store import SqliteStore
from protocol.catalog import default_catalog
from protocol.dossier import DossierState
from protocol.dossier.transitions import FINISHED
from protocol.errors import ProtocolError

__all__ = [
    "BranchRatios",
    "IndexRow",
    "agency_matches",
    "branch_ratios",
    "due_soon",
    "index_state",
    "mask_name",
    "overdue",
    "procedure_info",
]

SATISFACTION_TARGET = 95.0
_COLUMNS = (
    "code, receiving_node, pickup_node, procedure_code, procedure_name, agency, state, status, received_at, "
    "due_at, adjusted_due_at, promised_at, ended_at, timeliness, rating_dislike, applicant_masked, "
    "open_conflicts, updated_ms"
)


def mask_name(name: str | None) -> str:
    """Initials only: ``Nguyễn Văn An`` -> ``N. V. A.`` (no more of a name on public pages)."""
    if not name:
        return ""
    words = unicodedata.normalize("NFC", name).split()
    return " ".join(w[0].upper() + "." for w in words[:6] if w[:1].isalpha())


def procedure_info(state: DossierState) -> tuple[str | None, str | None, str | None]:
    """(code, name, agency): the agency a transfer named, else the one the catalog gives the procedure."""
    if state.procedure is None:
        return None, None, state.agency
    code, name, agency = state.procedure.code, None, state.agency
    try:
        procedure = default_catalog().version_of(code, state.procedure.version)
        name = procedure.name
        agency = agency or procedure.agency
    except (ProtocolError, LookupError):
        pass
    return code, name, agency


def agency_matches(officer_agency: str | None, dossier_agency: str | None) -> bool:
    """An officer without an agency sees every dossier; with one, only that agency's (case-insensitive)."""
    if officer_agency is None:
        return True
    if dossier_agency is None:
        return False
    a = unicodedata.normalize("NFC", officer_agency).strip().casefold()
    return a == unicodedata.normalize("NFC", dossier_agency).strip().casefold()


async def index_state(db: aiosqlite.Connection, state: DossierState) -> None:
    """``Dossiers.on_refresh`` extra: upsert the index row of ``state`` (inside the fold's transaction)."""
    if state.receiving_node is None:
        return
    code, name, agency = procedure_info(state)
    dislike = None if state.rating is None else int(state.rating.dislike)
    await db.execute(
        f"INSERT OR REPLACE INTO dossier_index ({_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "(SELECT updated_ms FROM dossiers WHERE code = ?))",
        (
            state.code,
            state.receiving_node,
            state.pickup_node or state.receiving_node,
            code,
            name,
            agency,
            state.state.value,
            int(state.status),
            state.received_at,
            state.due_at,
            state.adjusted_due_at,
            state.promised_at,
            state.ended_at if state.state in FINISHED else None,
            None if state.timeliness is None else state.timeliness.value,
            dislike,
            mask_name(state.applicant.name if state.applicant else None),
            len(state.open_conflicts),
            state.code,
        ),
    )


@dataclass(frozen=True, slots=True)
class IndexRow:
    code: str
    receiving_node: str
    pickup_node: str
    procedure_code: str | None
    procedure_name: str | None
    agency: str | None
    state: str
    status: int
    received_at: int | None
    due_at: int | None
    adjusted_due_at: int | None
    promised_at: int | None
    ended_at: int | None
    timeliness: str | None
    rating_dislike: int | None
    applicant_masked: str
    open_conflicts: int
    updated_ms: int

    def overdue(self, now: int) -> bool:
        """Open and past the due date (an apology's new promised date does not change the 766 verdict)."""
        return self.ended_at is None and self.adjusted_due_at is not None and self.adjusted_due_at < now


async def rows(
    store: SqliteStore, where: str = "1", params: Sequence[object] = (), limit: int = 500
) -> list[IndexRow]:
    found = await store.fetchall(
        f"SELECT {_COLUMNS} FROM dossier_index WHERE {where} ORDER BY adjusted_due_at, code LIMIT ?",
        (*params, limit),
    )
    return [IndexRow(*r) for r in found]


async def get(store: SqliteStore, code: str) -> IndexRow | None:
    found = await rows(store, "code = ?", (code,), 1)
    return found[0] if found else None


# Open = accepted and not finished; statuses 1 and 3 never had a due date.
_OPEN = "ended_at IS NULL AND adjusted_due_at IS NOT NULL AND status NOT IN (1, 3)"


async def overdue(store: SqliteStore, now: int) -> list[IndexRow]:
    return await rows(store, f"{_OPEN} AND adjusted_due_at < ?", (now,))


async def due_soon(store: SqliteStore, now: int, within_ms: int) -> list[IndexRow]:
    return await rows(
        store,
        f"{_OPEN} AND adjusted_due_at BETWEEN ? AND ?",
        (now, now + within_ms),
    )


@dataclass(frozen=True, slots=True)
class BranchRatios:
    """766 counts of one branch: finished dossiers by verdict, open ones already late, dislikes."""

    branch: str
    early: int
    on_time: int
    late_finished: int
    late_open: int
    dislikes: int

    @property
    def counted(self) -> int:
        return self.early + self.on_time + self.late_finished + self.late_open

    @property
    def late(self) -> int:
        return self.late_finished + self.late_open

    def percent(self, part: int) -> float | None:
        return None if self.counted == 0 else 100.0 * part / self.counted

    @property
    def on_time_percent(self) -> float | None:
        return self.percent(self.early + self.on_time)

    @property
    def satisfaction(self) -> float | None:
        """100% − (late-dossier rate + dislike rate), DOMAIN.md §7."""
        if self.counted == 0:
            return None
        return 100.0 - (100.0 * self.late / self.counted + 100.0 * self.dislikes / self.counted)

    @property
    def meets_target(self) -> bool | None:
        value = self.satisfaction
        return None if value is None else value >= SATISFACTION_TARGET


async def branch_ratios(store: SqliteStore, now: int) -> list[BranchRatios]:
    """Per receiving branch, over dossiers whose processing ended plus open ones already past due."""
    found = await store.fetchall(
        "SELECT receiving_node, "
        "SUM(timeliness = 'early'), SUM(timeliness = 'on_time'), SUM(timeliness = 'late'), "
        f"SUM(timeliness IS NULL AND {_OPEN} AND adjusted_due_at < ?), "
        f"SUM(rating_dislike = 1 AND (timeliness IS NOT NULL OR ({_OPEN} "
        "AND adjusted_due_at < ?))) "
        "FROM dossier_index GROUP BY receiving_node ORDER BY receiving_node",
        (now, now),
    )
    return [BranchRatios(r[0], *(int(v or 0) for v in r[1:])) for r in found]
