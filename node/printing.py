"""Persistent print queue: jobs survive restarts, CUPS (``lp``) or a printer folder does the printing.

The receipt's job is queued by the caller in the SAME transaction as the dossier (``enqueue(db, ...)``),
with an idempotency key (e.g. ``receipt:<dossier code>``): a double click or a retried request finds the
existing job instead of adding one, and a reprint is a new job that never touches the dossier.

``PrintWorker`` follows litestream's split: ``run_once()`` does the work (tests call it directly),
``run()`` only schedules (wake-up event, poll interval). Submission happens outside any SQLite
transaction; printing is at-least-once (a crash between ``lp`` and the status update resubmits).

    queued ──lp ok──▶ submitted ──gone from "lpstat -W not-completed"──▶ printed
       │ ▲  (folder printers go straight to printed)
       │ └─ error, attempts < max: next_attempt_at = now + backoff
       └──── error, attempts = max ──▶ failed        cancel: queued/submitted/failed ──▶ cancelled
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from node.blobs import BlobStore, fsync_dir
from node.cups import PrinterStatus, cups_command, folder_status, lp_error_message, printer_status
from node.errors import NodeError, PrintJobNotFound, PrintSubmitFailed

__all__ = [
    "PRINT_SQL",
    "PrintJob",
    "PrintWorker",
    "PrinterConfig",
    "PrinterStatus",
    "cancel",
    "enqueue",
    "get_job",
    "list_jobs",
    "reprint",
    "retry",
]

Writer = Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]
STATUSES = ("queued", "submitted", "printed", "failed", "cancelled")

PRINT_SQL = """
CREATE TABLE IF NOT EXISTS print_jobs (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,   -- 'receipt:<dossier code>', 'reprint:<job>:<request>'...
    printer         TEXT NOT NULL,          -- PrinterConfig.name
    form            TEXT NOT NULL,          -- node.forms.FORMS key, or 'file'
    dossier_code    TEXT,
    pdf_sha256      TEXT,                   -- a blob (rendered forms are kept as blobs) ...
    pdf_path        TEXT,                   -- ... or a file the node owns
    title           TEXT NOT NULL,
    copies          INTEGER NOT NULL DEFAULT 1 CHECK (copies BETWEEN 1 AND 20),
    status          TEXT NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'submitted', 'printed', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,       -- unix ms
    last_error      TEXT,                   -- plain Vietnamese, for the printers page
    cups_job        TEXT,                   -- 'QUEUE-N' once CUPS accepted it
    reprint_of      INTEGER REFERENCES print_jobs (id),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK ((pdf_sha256 IS NULL) <> (pdf_path IS NULL))
) STRICT;
CREATE INDEX IF NOT EXISTS print_jobs_due ON print_jobs (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS print_jobs_dossier ON print_jobs (dossier_code);
"""


def _ms(clock: Callable[[], float] = time.time) -> int:
    return int(clock() * 1000)


@dataclass(frozen=True, slots=True)
class PrinterConfig:
    """One printer of the branch: a CUPS queue (default) or a folder another system prints from."""

    name: str = field(
        metadata={"help": "Tên máy in dùng trong giao diện và lệnh in (duy nhất trên máy trạm)."}
    )
    kind: Literal["cups", "folder"] = field(
        default="cups", metadata={"help": "cups: gửi bằng lệnh lp; folder: ghi tệp PDF vào một thư mục."}
    )
    queue: str = field(default="", metadata={"help": "Tên hàng đợi CUPS (lp -d QUEUE) khi kind = cups."})
    folder: Path | None = field(default=None, metadata={"help": "Thư mục nhận tệp PDF khi kind = folder."})
    cups_server: str = field(
        default="", metadata={"help": "Máy chủ CUPS (host:port hoặc đường dẫn socket); để trống = mặc định."}
    )
    media: str = field(default="A4", metadata={"help": "Khổ giấy gửi cho CUPS (-o media=...)."})

    def validate(self) -> None:
        if not self.name.strip():
            raise ValueError("printer name is empty")
        if self.kind == "cups" and not re.fullmatch(r"[A-Za-z0-9_.-]{1,127}", self.queue):
            raise ValueError(f"printer {self.name!r}: CUPS queue name {self.queue!r} is not valid")
        if self.kind == "folder" and (self.folder is None or not self.folder.is_absolute()):
            raise ValueError(f"printer {self.name!r}: folder must be an absolute path")
        if self.kind not in ("cups", "folder"):
            raise ValueError(f"printer {self.name!r}: kind must be cups or folder")


@dataclass(frozen=True, slots=True)
class PrintJob:
    """One row of ``print_jobs``."""

    id: int
    idempotency_key: str
    printer: str
    form: str
    dossier_code: str | None
    pdf_sha256: str | None
    pdf_path: str | None
    title: str
    copies: int
    status: str
    attempts: int
    next_attempt_at: int
    last_error: str | None
    cups_job: str | None
    reprint_of: int | None
    created_at: int
    updated_at: int


_COLS = (
    "id, idempotency_key, printer, form, dossier_code, pdf_sha256, pdf_path, title, copies, status, attempts,"
    " next_attempt_at, last_error, cups_job, reprint_of, created_at, updated_at"
)


async def _one(db: aiosqlite.Connection, where: str, args: Sequence[Any]) -> PrintJob | None:
    async with db.execute(f"SELECT {_COLS} FROM print_jobs WHERE {where}", args) as cur:
        row = await cur.fetchone()
    return PrintJob(*row) if row else None


async def get_job(db: aiosqlite.Connection, job_id: int) -> PrintJob:
    job = await _one(db, "id = ?", (job_id,))
    if job is None:
        raise PrintJobNotFound(detail=f"job {job_id}")
    return job


async def list_jobs(
    db: aiosqlite.Connection, *, status: str | None = None, dossier_code: str | None = None, limit: int = 200
) -> list[PrintJob]:
    """Newest first, optionally filtered (the printers page and the dossier page)."""
    where, args = ["1"], []
    if status:
        where.append("status = ?")
        args.append(status)
    if dossier_code:
        where.append("dossier_code = ?")
        args.append(dossier_code)
    sql = f"SELECT {_COLS} FROM print_jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
    async with db.execute(sql, (*args, limit)) as cur:
        return [PrintJob(*row) async for row in cur]


async def enqueue(
    db: aiosqlite.Connection,
    *,
    idempotency_key: str,
    printer: str,
    form: str,
    pdf_sha256: str | None = None,
    pdf_path: str | None = None,
    copies: int = 1,
    dossier_code: str | None = None,
    title: str = "",
    reprint_of: int | None = None,
    now_ms: int | None = None,
) -> PrintJob:
    """Queue a job inside the caller's transaction; the same key returns the existing job unchanged."""
    if (pdf_sha256 is None) == (pdf_path is None):
        raise ValueError("exactly one of pdf_sha256 / pdf_path")
    now = now_ms if now_ms is not None else _ms()
    await db.execute(
        "INSERT INTO print_jobs (idempotency_key, printer, form, dossier_code, pdf_sha256, pdf_path, title,"
        " copies, next_attempt_at, reprint_of, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (idempotency_key) DO NOTHING",
        (idempotency_key, printer, form, dossier_code, pdf_sha256, pdf_path,
         title or f"{form} {dossier_code or ''}".strip(), copies, now, reprint_of, now, now),
    )  # fmt: skip
    job = await _one(db, "idempotency_key = ?", (idempotency_key,))
    assert job is not None
    return job


async def reprint(
    db: aiosqlite.Connection,
    job_id: int,
    *,
    request_key: str,
    printer: str | None = None,
    copies: int | None = None,
) -> PrintJob:
    """A new job printing the same PDF again; ``request_key`` (one per UI click) makes it idempotent."""
    old = await get_job(db, job_id)
    return await enqueue(
        db,
        idempotency_key=f"reprint:{job_id}:{request_key}",
        printer=printer or old.printer,
        form=old.form,
        pdf_sha256=old.pdf_sha256,
        pdf_path=old.pdf_path,
        copies=copies or old.copies,
        dossier_code=old.dossier_code,
        title=old.title,
        reprint_of=job_id,
    )


async def retry(db: aiosqlite.Connection, job_id: int, *, now_ms: int | None = None) -> PrintJob:
    """Put a failed job back in the queue with a fresh attempt budget."""
    job = await get_job(db, job_id)
    if job.status != "failed":
        raise NodeError("Chỉ thử in lại được lệnh in đã lỗi.", detail=f"job {job_id} is {job.status}")
    now = now_ms if now_ms is not None else _ms()
    await db.execute(
        "UPDATE print_jobs SET status='queued', attempts=0, next_attempt_at=?, updated_at=? WHERE id=?",
        (now, now, job_id),
    )
    return await get_job(db, job_id)


async def cancel(db: aiosqlite.Connection, job_id: int, *, now_ms: int | None = None) -> PrintJob:
    """Cancel a job that has not printed yet (a submitted one is also withdrawn from CUPS by the worker)."""
    job = await get_job(db, job_id)
    if job.status in ("printed", "cancelled"):
        raise NodeError("Lệnh in đã in xong hoặc đã huỷ.", detail=f"job {job_id} is {job.status}")
    now = now_ms if now_ms is not None else _ms()
    await db.execute("UPDATE print_jobs SET status='cancelled', updated_at=? WHERE id=?", (now, job_id))
    return await get_job(db, job_id)


class PrintWorker:
    """Submits due jobs and follows submitted ones until CUPS has printed them."""

    def __init__(
        self,
        writer: Writer,
        printers: Mapping[str, PrinterConfig],
        blobs: BlobStore,
        *,
        max_attempts: int = 5,
        backoff_base: float = 2.0,
        backoff_max: float = 300.0,
        poll_interval: float = 5.0,
        command_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.writer = writer
        self.printers = dict(printers)
        self.blobs = blobs
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.poll_interval = poll_interval
        self.command_timeout = command_timeout
        self.clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Call after committing a transaction that queued a job."""
        self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled: work, then sleep until woken or the poll interval passes."""
        while True:
            self._wake.clear()
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def run_once(self) -> int:
        """Submit every due job, then check submitted ones. Returns how many jobs changed state."""
        now = _ms(self.clock)
        async with self.writer() as db:
            async with db.execute(
                f"SELECT {_COLS} FROM print_jobs WHERE status='queued' AND next_attempt_at <= ? ORDER BY id",
                (now,),
            ) as cur:
                due = [PrintJob(*row) async for row in cur]
        changed = 0
        for job in due:
            changed += await self._submit(job)
        return changed + await self._follow_submitted()

    async def printer_status(self, name: str) -> PrinterStatus:
        """Plain-Vietnamese status of a configured printer (for the printers page)."""
        printer = self.printers.get(name)
        if printer is None:
            return PrinterStatus(name, "missing", "Máy in chưa được cấu hình trên máy trạm.")
        if printer.kind == "folder":
            return folder_status(printer.name, printer.folder)
        return await printer_status(printer.name, printer.queue, printer.cups_server, self.command_timeout)

    # -- internals -------------------------------------------------------------------------------

    async def _submit(self, job: PrintJob) -> int:
        printer = self.printers.get(job.printer)
        try:
            if printer is None:
                raise NodeError("Máy in chưa được cấu hình trên máy trạm.", detail=job.printer)
            data = await asyncio.to_thread(self._verified_source, job)
            if printer.kind == "folder":
                await asyncio.to_thread(_write_to_folder, printer, job, data)
                await self._set(job.id, "status='printed', attempts=attempts+1, last_error=NULL")
                return 1
            cups_job = await self._lp(printer, job, data)
        except PrintSubmitFailed as exc:
            return await self._failed_attempt(job, exc.message, retryable=True)
        except NodeError as exc:
            return await self._failed_attempt(job, exc.message, retryable=exc.retryable)
        await self._set(
            job.id, "status='submitted', attempts=attempts+1, cups_job=?, last_error=NULL", (cups_job,)
        )
        return 1

    def _verified_source(self, job: PrintJob) -> bytes:
        """The PDF to print: a blob is decrypted and verified in memory (never a plaintext file)."""
        if job.pdf_sha256:
            return self.blobs.read_bytes(job.pdf_sha256)  # BlobNotFound / BlobCorrupt / BlobAuthFailed
        path = Path(job.pdf_path or "")
        if not path.is_file():
            raise NodeError("Không tìm thấy tệp cần in.", detail=str(path))
        return path.read_bytes()

    async def _lp(self, printer: PrinterConfig, job: PrintJob, data: bytes) -> str:
        # the PDF goes to lp on stdin: no plaintext copy of a form with personal data on disk
        argv = ["lp", "-d", printer.queue, "-o", f"media={printer.media}", "-n", str(job.copies),
                "-t", job.title, "--"]  # fmt: skip
        rc, out, err = await cups_command(argv, printer.cups_server, self.command_timeout, stdin=data)
        match = re.search(r"request id is (\S+)", out)
        if rc != 0 or match is None:
            raise PrintSubmitFailed(lp_error_message(err or out, printer.queue), detail=(err or out).strip())
        return match.group(1)

    async def _failed_attempt(self, job: PrintJob, message: str, *, retryable: bool) -> int:
        attempts = job.attempts + 1
        if not retryable or attempts >= self.max_attempts:
            await self._set(job.id, "status='failed', attempts=?, last_error=?", (attempts, message))
        else:
            delay = min(self.backoff_max, self.backoff_base * 2 ** (attempts - 1))
            await self._set(
                job.id,
                "attempts=?, last_error=?, next_attempt_at=?",
                (attempts, message, _ms(self.clock) + int(delay * 1000)),
            )
        return 1

    async def _follow_submitted(self) -> int:
        async with self.writer() as db:
            async with db.execute(
                "SELECT id, printer, cups_job FROM print_jobs WHERE status='submitted' ORDER BY id"
            ) as cur:
                rows = list(await cur.fetchall())
        by_printer: dict[str, list[tuple[int, str]]] = {}
        for job_id, printer, cups_job in rows:
            by_printer.setdefault(printer, []).append((job_id, cups_job))
        changed = 0
        for name, jobs in by_printer.items():
            printer = self.printers.get(name)
            if printer is None or printer.kind != "cups":
                continue
            rc, out, _ = await cups_command(
                ["lpstat", "-W", "not-completed", "-o", printer.queue],
                printer.cups_server,
                self.command_timeout,
            )
            if rc != 0:
                continue  # cupsd unreachable: ask again next round, the job is safe in CUPS' spool
            pending = {line.split()[0] for line in out.splitlines() if line.strip()}
            for job_id, cups_job in jobs:
                if cups_job not in pending:
                    await self._set(job_id, "status='printed'", (), only_if="submitted")
                    changed += 1
        return changed

    async def cancel_submitted(self, job_id: int) -> PrintJob:
        """Cancel a job, withdrawing it from the CUPS queue first when it was already submitted."""
        async with self.writer() as db:
            job = await get_job(db, job_id)
        printer = self.printers.get(job.printer)
        if job.status == "submitted" and job.cups_job and printer is not None:
            await cups_command(["cancel", job.cups_job], printer.cups_server, self.command_timeout)
        async with self.writer() as db:
            return await cancel(db, job_id, now_ms=_ms(self.clock))

    async def _set(
        self, job_id: int, assignments: str, args: Sequence[Any] = (), *, only_if: str = ""
    ) -> None:
        guard = " AND status = ?" if only_if else " AND status NOT IN ('cancelled', 'printed')"
        params = (*args, _ms(self.clock), job_id) + ((only_if,) if only_if else ())
        async with self.writer() as db:
            await db.execute(f"UPDATE print_jobs SET {assignments}, updated_at=? WHERE id=?{guard}", params)


def _write_to_folder(printer: PrinterConfig, job: PrintJob, data: bytes) -> None:
    """One PDF per copy, each written to a dotfile, fsynced, renamed, then the folder fsynced."""
    folder = printer.folder
    assert folder is not None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", job.dossier_code or job.form)[:80]
        for k in range(1, job.copies + 1):
            fd, tmp = tempfile.mkstemp(prefix=".motcua-", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, folder / f"job{job.id:06d}-{stem}-{k}.pdf")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        fsync_dir(folder)
    except OSError as exc:
        raise PrintSubmitFailed(
            f"Không ghi được tệp in vào thư mục {folder}: {exc.strerror or exc}.", detail=repr(exc)
        ) from exc
