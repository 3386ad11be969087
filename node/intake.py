"""Reception at the counter: receive a dossier (or refuse it) offline, and preview its due date.

``Desk.receive`` validates the input (NFC, citizen id, phone, procedure from the catalog, checklist),
allocates the dossier code from this node's own daily block, computes the due date from the procedure's
statutory time and the working-day calendar (fixed from then on), makes the receipt's lookup code, and
appends ``dossier.received``; the answer comes after the commit. An idempotency key makes a double
submit return the first result instead of a second dossier.

Code allocation: the highest sequence already used in this node's block on that day is read from the
log (every epoch) once, then moved forward by this desk's commits, plus codes reserved by receptions
still in flight (the lookup code's PBKDF2 runs on a per-core thread pool outside the writer lock, so
several receptions proceed at once). A reservation that never commits is released and may be given
again, never twice: an uncommitted code was never printed. A reservation is released only when its
reception's transaction has ended, even if the request went away before.

Group commit: a reception ready to be written joins a queue; one background task writes the whole queue
in one transaction (one fsync: ``Journal.append_many_then``, ``executemany`` for the rows), then answers
each request, only after that COMMIT. The transaction is four trips to the writer's thread whatever the
group's size (BEGIN; the idempotency keys and codes already in the log; the entries, their projections
and the desk's own rows in one ``run_sync``; COMMIT): each trip waits for a turn of the event loop.
What arrives meanwhile forms the next group. A request whose idempotency key is already in the group
waits for the next one (and is then a replay). If the group's transaction fails, each of its receptions
is retried alone in its own transaction, so one bad request answers its own error and never loses or
half-writes the others; if a COMMIT fails, nobody in that group is told their dossier was recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import hashlib
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import aiosqlite

from node.code_floor import floor_seq
from node.errors import CodeExhausted, Conflict, InvalidInput, JournalError, NodeError
from node.inputs import ID_TYPES, InputReader
from node.journal import Journal
from node.store import Store, run_sync
from protocol.calendar import Calendar, local_date
from protocol.catalog import AssessedFee, Catalog, PerPageFee, Procedure
from protocol.deadline import due_at
from protocol.dossier import builders
from protocol.dossier.codes import (
    CodeBlock,
    DossierCode,
    allocate_code,
    format_lookup_code,
    hash_lookup_code,
    new_lookup_code,
)
from protocol.dossier.model import Applicant, DocumentItem, ProcedureRef, RegisterLine
from protocol.encoding import canonical, nfc
from protocol.entry import NODE_ID_RE, Entry
from protocol.errors import BodyInvalid, CalendarNotCovered, CodeBlockExhausted, UnknownProcedure

log = logging.getLogger("motcua.node.intake")

__all__ = [
    "INTAKE_SQL",
    "Desk",
    "DuePreview",
    "ReceiptHook",
    "Recorded",
    "idempotent_result",
    "remember",
]

INTAKE_SQL = """
CREATE TABLE idempotency (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,                -- SHA-256 of the canonical request
    actor       TEXT NOT NULL,
    dossier     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    log         TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- The plain lookup code exists on the printed receipt and here (for reprints), never in an entry.
CREATE TABLE lookup_codes (
    dossier    TEXT PRIMARY KEY,
    code       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
"""


@dataclass(frozen=True, slots=True)
class Recorded:
    """What an action wrote: the dossier, the entry reference, and the state after it."""

    code: str
    kind: str
    log: str
    epoch: int
    seq: int
    hash: str
    status: int
    state: str
    due_at: int | None = None
    lookup_code: str | None = None
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "code": self.code,
            "kind": self.kind,
            "status": self.status,
            "state": self.state,
            "due_at": self.due_at,
            "entry": {"log": self.log, "epoch": self.epoch, "seq": self.seq, "hash": self.hash},
        }
        if self.lookup_code is not None:
            data["lookup_code"] = self.lookup_code
        return data


@dataclass(frozen=True, slots=True)
class DuePreview:
    """The due date a dossier of ``procedure`` received at ``received_at`` would get."""

    procedure: Procedure
    received_at: int
    due_at: int


def fingerprint(kind: str, code: str | None, data: Mapping[str, Any]) -> str:
    payload = {"kind": kind, "dossier": code, "data": nfc(dict(data))}
    try:
        raw = canonical(payload)
    except Exception:  # floats etc.: the request is invalid anyway; hash its repr
        raw = repr(payload).encode()
    return hashlib.sha256(raw).hexdigest()


async def idempotent_result(
    db: aiosqlite.Connection, key: str | None, print_: str
) -> tuple[str, str, int, int, str] | None:
    """(dossier, log, epoch, seq, hash) recorded for ``key``; Conflict if the key was used for other data."""
    if key is None:
        return None
    async with db.execute(
        "SELECT i.fingerprint, i.dossier, i.log, i.epoch, i.seq, e.hash FROM idempotency i"
        " JOIN entries e USING (log, epoch, seq) WHERE i.key = ?",
        (key,),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    if row[0] != print_:
        raise Conflict("Khóa chống gửi trùng (Idempotency-Key) đã được dùng cho một yêu cầu khác.")
    return str(row[1]), str(row[2]), int(row[3]), int(row[4]), str(row[5])


async def remember(
    db: aiosqlite.Connection, key: str | None, print_: str, actor: str, entry: Entry, code: str, wall: int
) -> None:
    if key is not None:
        await db.execute(
            "INSERT INTO idempotency VALUES (?,?,?,?,?,?,?,?,?)",
            (key, print_, actor, code, entry.kind, entry.log, entry.epoch, entry.seq, wall),
        )


_HASHERS: concurrent.futures.ThreadPoolExecutor | None = None


def _hashers() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that hash lookup codes (PBKDF2 runs without the GIL): one per core, first come first
    served. More would only share the same cores, so every hash would take longer and the event
    loop would get less CPU; asyncio's default pool is also used by other work."""
    global _HASHERS
    if _HASHERS is None:
        workers = os.cpu_count() or 1
        _HASHERS = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="lookup-hash")
    return _HASHERS


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _group_reads(
    conn: sqlite3.Connection, keys: list[str], codes: list[str]
) -> tuple[dict[str, tuple[object, ...]], set[str]]:
    """On the writer's thread, in the group's transaction: the idempotency rows of ``keys``, and which of
    ``codes`` the log holds already (one hand-off for both)."""
    known: dict[str, tuple[object, ...]] = {}
    for chunk in _chunks(keys):
        rows = conn.execute(
            "SELECT key, fingerprint, dossier, log, epoch, seq, kind FROM idempotency"
            f" WHERE key IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        known.update((str(r[0]), tuple(r)) for r in rows)
    stored: set[str] = set()
    for chunk in _chunks(codes):
        rows = conn.execute(
            f"SELECT DISTINCT dossier FROM entries WHERE dossier IN ({','.join('?' * len(chunk))})", chunk
        )
        stored.update(str(r[0]) for r in rows)
    return known, stored


def _group_rows(
    conn: sqlite3.Connection,
    lookups: Sequence[tuple[object, ...]],
    remembered: Sequence[tuple[object, ...]],
    codes: list[str],
) -> dict[str, tuple[int, str, int | None]]:
    """On the writer's thread, after the group's entries: lookup codes and idempotency rows, then the
    states of ``codes`` as projected (one hand-off)."""
    if lookups:
        conn.executemany("INSERT INTO lookup_codes VALUES (?,?,?)", lookups)
    if remembered:
        conn.executemany("INSERT INTO idempotency VALUES (?,?,?,?,?,?,?,?,?)", remembered)
    states: dict[str, tuple[int, str, int | None]] = {}
    for chunk in _chunks(codes):
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT code, national, state, due_at FROM dossiers WHERE code IN ({marks})"
        rows = conn.execute(sql, chunk)
        states.update((str(r[0]), (int(r[1]), str(r[2]), r[3])) for r in rows)
    return states


def _retrieve(done: asyncio.Future[Recorded]) -> None:
    """Mark a failed answer as seen even when its request went away before it came."""
    if not done.cancelled():
        done.exception()


@dataclass(slots=True)
class _Reservations:
    """Codes handed out but not yet committed, per (unit, day), and the highest ones committed.

    ``used``/``line_top`` are read from the store once (per day, per register book) and then moved
    forward by this desk's own commits, so a reception does not query the store to allocate. Only this
    desk writes codes of its block and lines of its book; a group commit still checks that none of its
    codes is in the log already (and drops these caches if one is).
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    codes: dict[tuple[str, date], set[int]] = field(default_factory=dict)
    lines: dict[str, set[int]] = field(default_factory=dict)
    used: dict[tuple[str, date], int | None] = field(default_factory=dict)
    line_top: dict[str, int] = field(default_factory=dict)


_DEFER = object()  # a second request with the same idempotency key in one group: next group
_CHUNK = 500  # host parameters per IN (...) query


@dataclass(slots=True, eq=False)
class _Pending:
    """One reception or refusal waiting for the group commit."""

    kind: str
    body: dict[str, Any]
    actor: str
    code: DossierCode
    line: int | None
    book: str | None
    print_: str
    key: str | None
    now: int
    lookup: str | None
    receipt: Any | None
    done: asyncio.Future[Recorded]


class ReceiptHook(Protocol):
    """Prints the receipt of a new dossier (``node.receipts.Receipts``): render and stage before the
    transaction, register and queue inside it, wake the printer after it."""

    async def prepare(
        self, body: Mapping[str, Any], lookup: str, procedure: Procedure, actor: str, desk: str | None
    ) -> Any | None: ...

    async def commit(self, db: aiosqlite.Connection, prepared: Any) -> Any: ...

    def committed(self, prepared: Any) -> None: ...


@dataclass(slots=True)
class Desk:
    """The reception desk of one node: reads input, allocates codes, appends reception events."""

    store: Store
    journal: Journal
    catalog: Catalog
    calendar: Calendar
    unit_code: str
    block: CodeBlock
    lookup_iterations: int | None = None
    wall: Any = field(default=lambda: time.time_ns() // 1_000_000)
    receipts: ReceiptHook | None = None
    _reserved: _Reservations = field(default_factory=_Reservations)
    _queue: list[_Pending] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None

    # -- reading input -----------------------------------------------------------------------------

    def procedure(self, reader: InputReader, on: date) -> Procedure | None:
        code = reader.text("procedure", "thủ tục", max_len=40)
        if code is None:
            return None
        try:
            return self.catalog.lookup(code, on)
        except UnknownProcedure:
            try:  # in the catalog, but not yet in force on the node's "today": often a wrong clock (S9)
                later = self.catalog.lookup(code, None)
            except UnknownProcedure:
                reader.fail("procedure", "Thủ tục không có trong danh mục của máy trạm.")
                return None
            reader.fail(
                "procedure",
                f"Thủ tục chỉ có hiệu lực từ ngày {later.effective:%d/%m/%Y}, nhưng theo đồng hồ máy trạm "
                f"hôm nay là {on:%d/%m/%Y}. Nếu ngày giờ của máy sai, hãy báo quản trị chỉnh lại.",
            )
            return None

    def applicant(self, reader: InputReader, today: date) -> Applicant | None:
        r = reader.child("applicant")
        name = r.text("name", "họ và tên người nộp", max_len=200)
        id_type = r.choice("id_type", "loại giấy tờ", ID_TYPES, default="cccd")
        number = r.id_number("id_number", id_type, today)
        phone = r.phone("phone")
        email = r.email("email")
        address = r.text("address", "địa chỉ", required=False, max_len=300)
        if name is None or id_type is None or number is None or r.errors:
            return None
        return Applicant(name, id_type, number, phone, email, address)  # type: ignore[arg-type]

    def documents(self, reader: InputReader, procedure: Procedure | None) -> list[DocumentItem]:
        items: list[DocumentItem] = []
        for item in reader.items("documents"):
            name = item.text("name", "tên giấy tờ", max_len=300)
            form = item.choice("form", "bản chính/bản sao", ("original", "copy"), default="original")
            count = item.integer("count", "số lượng", 1, 99, default=1)
            if name and form and count:
                items.append(DocumentItem(name, form, count))  # type: ignore[arg-type]
        if procedure is None:
            return items
        if "documents" not in reader.data:
            return [DocumentItem(d.name, d.form, d.count) for d in procedure.documents if d.required]
        given = {d.name for d in items}
        missing = [d.name for d in procedure.documents if d.required and d.name not in given]
        if missing:
            reader.fail("documents", "Thiếu giấy tờ bắt buộc: " + "; ".join(missing) + ".")
        elif not items:
            reader.fail("documents", "Vui lòng đánh dấu các giấy tờ đã nhận.")
        return items

    def fee(self, reader: InputReader, procedure: Procedure | None) -> int:
        if procedure is None or isinstance(procedure.fee, AssessedFee):
            return 0
        copies = reader.integer("copies", "số bản", 1, 999, default=1) or 1
        if isinstance(procedure.fee, PerPageFee):
            pages = reader.integer("pages", "số trang của bản chính", 1, 10_000)
            return procedure.fee.amount_for(pages=pages, copies=copies) if pages else 0
        return procedure.fee.amount_for(copies=copies)

    def pickup(self, reader: InputReader) -> str:
        """Where the result is handed back: this node unless another branch is named (boundary-free)."""
        value = reader.text("pickup", "nơi trả kết quả", required=False, max_len=32)
        if value is None:
            return self.journal.node_id
        value = value.strip().upper()
        if not NODE_ID_RE.fullmatch(value):
            reader.fail("pickup", "Mã nơi trả kết quả không hợp lệ (ví dụ CN02).")
        return value

    # -- due date ------------------------------------------------------------------------------------

    def preview(self, procedure_code: str, received_at: int | None = None) -> DuePreview:
        at = self.wall() if received_at is None else received_at
        reader = InputReader({"procedure": procedure_code})
        procedure = self.procedure(reader, local_date(at))
        reader.check()
        assert procedure is not None
        return DuePreview(procedure, at, self._due(procedure, at))

    def _due(self, procedure: Procedure, at: int) -> int:
        try:
            return due_at(at, procedure.time, self.calendar)
        except CalendarNotCovered as exc:
            raise NodeError(
                "Lịch làm việc trên máy trạm chưa có dữ liệu cho ngày cần tính hạn trả kết quả: "
                + exc.reason
                + f". Theo đồng hồ máy trạm hôm nay là {local_date(at):%d/%m/%Y}; nếu ngày giờ của máy sai, "
                "hãy báo quản trị chỉnh lại."
            ) from None

    # -- code allocation -----------------------------------------------------------------------------

    async def _used_max(self, day: date) -> int | None:
        """The highest sequence of this node's block used on ``day`` in the log (every epoch, every log),
        or reserved by a restored epoch's code floor."""
        prefix = f"{self.unit_code}-{day:%y%m%d}-"
        row = await self.store.fetchone(
            "SELECT max(CAST(substr(dossier, ?) AS INTEGER)) FROM entries WHERE dossier >= ? AND dossier < ?"
            " AND length(dossier) = ? AND CAST(substr(dossier, ?) AS INTEGER) BETWEEN ? AND ?",
            (
                len(prefix) + 1,
                prefix,
                prefix + "\x7f",
                len(prefix) + 4,
                len(prefix) + 1,
                self.block.start,
                self.block.last,
            ),
        )
        used = int(row[0]) if row is not None and row[0] is not None else None
        # a restored epoch's floor: numbers a lost disk may have printed that day (node/code_floor.py)
        floor = await floor_seq(self.store, self.unit_code, day)
        if floor is not None and self.block.start - 1 <= floor <= self.block.last:
            used = max(used or 0, floor)
        return used

    async def _max_line(self, book: str) -> int:
        row = await self.store.fetchone(
            "SELECT max(register_line) FROM dossiers WHERE register_book = ?", (book,)
        )
        return int(row[0]) if row is not None and row[0] is not None else 0

    async def _reserve(self, day: date, book: str | None) -> tuple[DossierCode, int | None]:
        r = self._reserved
        async with r.lock:
            held = r.codes.setdefault((self.unit_code, day), set())
            if (self.unit_code, day) not in r.used:
                r.used[(self.unit_code, day)] = await self._used_max(day)
            used = r.used[(self.unit_code, day)]
            top = max([*held, *([used] if used is not None else [])], default=None)
            try:
                code = allocate_code(self.unit_code, day, self.block, top)
            except CodeBlockExhausted as exc:
                raise CodeExhausted(exc.reason) from None
            held.add(code.seq)
            line = None
            if book is not None:
                lines = r.lines.setdefault(book, set())
                if book not in r.line_top:
                    r.line_top[book] = await self._max_line(book)
                line = max([r.line_top[book], *lines]) + 1
                lines.add(line)
            return code, line

    def _used(self, code: DossierCode, book: str | None, line: int | None) -> None:
        """After a commit: ``code`` (and ``line``) are in the log now."""
        r = self._reserved
        key = (code.unit, code.day)
        if key in r.used:
            r.used[key] = max(code.seq, r.used[key] or 0)
        if book is not None and line is not None and book in r.line_top:
            r.line_top[book] = max(line, r.line_top[book])

    def _forget(self) -> None:
        """Read the highest codes and lines from the store again at the next allocation."""
        self._reserved.used.clear()
        self._reserved.line_top.clear()

    def _release(self, code: DossierCode, book: str | None, line: int | None) -> None:
        self._reserved.codes.get((self.unit_code, code.day), set()).discard(code.seq)
        if book is not None and line is not None:
            self._reserved.lines.get(book, set()).discard(line)

    # -- actions -------------------------------------------------------------------------------------

    async def receive(
        self,
        data: Mapping[str, Any],
        *,
        actor: str,
        idempotency_key: str | None = None,
        desk: str | None = None,
    ) -> Recorded:
        """Validate, allocate, append ``dossier.received`` (and queue its receipt); return after commit."""
        print_ = fingerprint("dossier.received", None, data) if idempotency_key is not None else ""
        replay = await self._replay(idempotency_key, print_)
        if replay is not None:
            return replay
        now = self.wall()
        today = local_date(now)
        reader = InputReader(data)
        procedure = self.procedure(reader, today)
        applicant = self.applicant(reader, today)
        documents = self.documents(reader, procedure)
        fee = self.fee(reader, procedure)
        fee_paid = reader.boolean("fee_paid") if fee else None  # collected at the counter (receipt line)
        channel = reader.integer("channel", "kênh tiếp nhận", 1, 3, default=1)
        note = reader.text("note", "ghi chú", required=False, max_len=2000, multiline=True)
        pickup = self.pickup(reader)
        reader.check()
        assert procedure is not None and applicant is not None and channel is not None
        due = self._due(procedure, now)
        book = f"{self.journal.node_id}-{today.year}"
        code, line = await self._reserve(today, book)
        submitted = False
        try:
            lookup = new_lookup_code(os.urandom(16))
            lookup_hash = await asyncio.get_running_loop().run_in_executor(
                _hashers(),
                functools.partial(
                    hash_lookup_code,
                    str(code),
                    lookup,
                    **({"iterations": self.lookup_iterations} if self.lookup_iterations else {}),
                ),
            )
            assert line is not None
            body = builders.received_body(
                dossier=str(code),
                actor=actor,
                applicant=applicant,
                procedure=ProcedureRef(procedure.code, procedure.version),
                documents=documents,
                channel=channel,
                pickup=pickup,
                fee=fee,
                fee_paid=fee_paid,
                received_at=now,
                due_at=due,
                register=RegisterLine(book, line),
                lookup=lookup_hash,
                note=note,
            )
            receipt = (
                await self.receipts.prepare(body, lookup, procedure, actor, desk) if self.receipts else None
            )
            submitted = True  # from here on the group commit releases the reservation
            result = await self._submit(
                "dossier.received",
                body,
                actor,
                code,
                line,
                book,
                print_,
                idempotency_key,
                now,
                lookup,
                receipt,
            )
            if receipt is not None and self.receipts is not None and not result.replayed:
                self.receipts.committed(receipt)
        except BodyInvalid as exc:
            raise InvalidInput({exc.field or "body": exc.reason}) from None
        finally:
            if not submitted:
                self._release(code, book, line)
        return result

    async def refuse(
        self, data: Mapping[str, Any], *, actor: str, idempotency_key: str | None = None
    ) -> Recorded:
        """Refuse a dossier at reception (Phiếu từ chối): a code is allocated for the refusal notice."""
        print_ = fingerprint("dossier.refused", None, data) if idempotency_key is not None else ""
        replay = await self._replay(idempotency_key, print_)
        if replay is not None:
            return replay
        now = self.wall()
        today = local_date(now)
        reader = InputReader(data)
        procedure = self.procedure(reader, today)
        applicant = self.applicant(reader, today)
        reason = reader.text("reason", "lý do từ chối", max_len=2000, multiline=True)
        reader.check()
        assert procedure is not None and applicant is not None and reason is not None
        code, _ = await self._reserve(today, None)
        submitted = False
        try:
            body = builders.refused_body(
                dossier=str(code),
                actor=actor,
                reason=reason,
                applicant=applicant,
                procedure=ProcedureRef(procedure.code, procedure.version),
                channel=1,
            )
            submitted = True  # from here on the group commit releases the reservation
            return await self._submit(
                "dossier.refused", body, actor, code, None, None, print_, idempotency_key, now, None, None
            )
        except BodyInvalid as exc:
            raise InvalidInput({exc.field or "body": exc.reason}) from None
        finally:
            if not submitted:
                self._release(code, None, None)

    # -- group commit --------------------------------------------------------------------------------

    async def _submit(
        self,
        kind: str,
        body: dict[str, Any],
        actor: str,
        code: DossierCode,
        line: int | None,
        book: str | None,
        print_: str,
        key: str | None,
        now: int,
        lookup: str | None,
        receipt: Any | None,
    ) -> Recorded:
        """Queue one reception for the group commit; its answer comes after the commit that holds it.

        Receptions arriving while a group is being written wait for the next group, which the same
        background task writes as soon as the writer is free: one transaction and one fsync for all of
        them, each answered only after that COMMIT. The wait is shielded: a request that goes away
        never cancels the group it is in.
        """
        done: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)
        self._queue.append(
            _Pending(kind, body, actor, code, line, book, print_, key, now, lookup, receipt, done)
        )
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="intake-group-commit")
        return await asyncio.shield(done)

    async def _flush(self) -> None:
        """Write queued receptions, a group per transaction, until the queue is empty."""
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await self._commit(group)
            except BaseException as exc:  # cancelled (shutdown) or a bug: nobody may wait forever
                for item in group + self._queue:
                    self._finish(item, exc)
                self._queue = []
                raise

    async def _commit(self, group: list[_Pending]) -> None:
        """One transaction for ``group``; if it fails, each request alone, so one cannot sink the rest."""
        try:
            async with self.store.write() as db:
                outcomes = await self._write_group(db, group)
        except Exception as exc:
            if len(group) == 1:
                self._finish(group[0], exc)
                return
            log.warning("group commit of %d receptions failed (%r); writing each alone", len(group), exc)
            for item in group:
                await self._commit([item])
            return
        deferred = []
        for item, outcome in zip(group, outcomes, strict=True):
            if outcome is _DEFER:
                deferred.append(item)
            else:
                assert isinstance(outcome, Recorded | Exception)
                self._finish(item, outcome)
        self._queue[:0] = deferred

    def _finish(self, item: _Pending, outcome: Recorded | BaseException) -> None:
        """Answer one request after its group's transaction ended; its code is then in the log or free."""
        if item.done.done():  # answered already (only this method sets it): its code is not ours now
            return
        if isinstance(outcome, Recorded) and not outcome.replayed:
            self._used(item.code, item.book, item.line)
        self._release(item.code, item.book, item.line)
        if isinstance(outcome, Recorded):
            item.done.set_result(outcome)
        elif isinstance(outcome, asyncio.CancelledError):
            item.done.cancel()
        else:
            item.done.set_exception(outcome)

    async def _write_group(self, db: aiosqlite.Connection, group: list[_Pending]) -> list[object]:
        """Inside the transaction: replays, then every new entry (``Journal.append_many``) and its rows."""
        outcomes: list[object] = [None] * len(group)
        keys = sorted({item.key for item in group if item.key is not None})
        codes = [str(group[i].code) for i in range(len(group))]
        known, stored = await run_sync(db, _group_reads, keys, codes)
        fresh: list[int] = []
        seen: set[str] = set()
        for i, item in enumerate(group):
            if item.key is not None:
                row = known.get(item.key)
                if row is not None:
                    if row[1] != item.print_:
                        outcomes[i] = Conflict(
                            "Khóa chống gửi trùng (Idempotency-Key) đã được dùng cho một yêu cầu khác."
                        )
                    else:
                        found = (str(row[2]), str(row[3]), int(row[4]), int(row[5]), str(row[6]))  # type: ignore[call-overload]
                        outcomes[i] = await self._recorded_from(db, found, replayed=True)
                    continue
                if item.key in seen:
                    outcomes[i] = _DEFER
                    continue
                seen.add(item.key)
            fresh.append(i)
        fresh_codes = [str(group[i].code) for i in fresh]
        taken: set[str] = {c for c, n in Counter(fresh_codes).items() if n > 1} | (stored & set(fresh_codes))
        if taken:  # never a second dossier under a code: the store holds codes this desk did not count
            self._forget()
            for i in fresh:
                if str(group[i].code) in taken:
                    outcomes[i] = JournalError(
                        "Số hồ sơ vừa cấp đã có trong nhật ký; vui lòng gửi lại.", detail=str(group[i].code)
                    )
            fresh = [i for i in fresh if outcomes[i] is None]
        lookups = [(str(group[i].code), group[i].lookup, group[i].now) for i in fresh if group[i].lookup]
        keyed = {str(group[i].code): group[i] for i in fresh if group[i].key is not None}

        def rows(conn: sqlite3.Connection, entries: list[Entry]) -> dict[str, tuple[int, str, int | None]]:
            """Lookup codes, idempotency rows and the projected states, in the entries' hand-off."""
            mine = {str(e.body.get("dossier")): e for e in entries}
            remembered = [
                (item.key, item.print_, item.actor, code, e.kind, e.log, e.epoch, e.seq, item.now)
                for code, item in keyed.items()
                if (e := mine.get(code)) is not None
            ]
            return _group_rows(conn, [r for r in lookups if r[0] in mine], remembered, sorted(mine))

        results, states_or_none = await self.journal.append_many_then(
            db, [(group[i].kind, group[i].body, group[i].actor) for i in fresh], built=True, then=rows
        )
        written: list[tuple[int, Entry]] = []
        for i, result in zip(fresh, results, strict=True):
            if isinstance(result, Entry):
                written.append((i, result))
            else:
                outcomes[i] = result
        if not written:
            return outcomes
        states = states_or_none or {}
        if self.receipts is not None:
            for i, _ in written:
                if group[i].receipt is not None:
                    await self.receipts.commit(db, group[i].receipt)
        for i, entry in written:
            item = group[i]
            status, state, due = states.get(str(item.code), (0, "pending", None))
            outcomes[i] = Recorded(
                str(item.code),
                entry.kind,
                entry.log,
                entry.epoch,
                entry.seq,
                entry.hash,
                status,
                state,
                due,
                format_lookup_code(item.lookup) if item.lookup else None,
            )
        return outcomes

    async def _replay(self, key: str | None, print_: str) -> Recorded | None:
        if key is None:
            return None
        if not 8 <= len(key) <= 128 or not key.isascii() or not key.isprintable():
            raise InvalidInput({"idempotency_key": "Khóa chống gửi trùng phải gồm 8–128 ký tự ASCII."})
        async with self.store.read() as db:
            row = await idempotent_result(db, key, print_)
            return None if row is None else await self._recorded_from(db, row, replayed=True)

    async def _recorded_from(
        self, db: aiosqlite.Connection, row: tuple[str, str, int, int, str], *, replayed: bool
    ) -> Recorded:
        code, log, epoch, seq, _ = row
        async with db.execute(
            "SELECT raw FROM entries WHERE log=? AND epoch=? AND seq=?", (log, epoch, seq)
        ) as c:
            found = await c.fetchone()
        assert found is not None
        async with db.execute("SELECT code FROM lookup_codes WHERE dossier = ?", (code,)) as c:
            lookup = await c.fetchone()
        entry = Entry.parse(bytes(found[0]))
        recorded = await self._recorded(
            db, entry, code, lookup_code=format_lookup_code(lookup[0]) if lookup else None
        )
        return dataclasses.replace(recorded, replayed=replayed)

    @staticmethod
    async def _recorded(
        db: aiosqlite.Connection, entry: Entry, code: str, *, lookup_code: str | None = None
    ) -> Recorded:
        async with db.execute("SELECT national, state, due_at FROM dossiers WHERE code = ?", (code,)) as c:
            row = await c.fetchone()
        status, state, due = (int(row[0]), str(row[1]), row[2]) if row else (0, "pending", None)
        return Recorded(
            code, entry.kind, entry.log, entry.epoch, entry.seq, entry.hash, status, state, due, lookup_code
        )
