"""One scanner file → validated → blob(s) registered → ``on_scan`` → removed from the hot folder.

Every file ends in exactly one place: registered (then deleted from the hot folder), or moved to
``<folder>/rejected/`` with ``<name>.reason.txt`` (code + Vietnamese reason). When the answer is "not
yet" (looks incomplete, disk full, an fsync error, the callback failed) the file is left where it is
and the outcome is ``Deferred``: the hot folder tries again later, so nothing is lost.

Order of durability: blob files are fsynced at their content address before the transaction that
registers them and calls ``on_scan``; only after that commit is the scanner's file deleted. A crash in
between leaves the file in the hot folder; the next intake sees the same bytes, name, size and mtime
already registered and just deletes it (``Duplicate(leftover=True)``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiosqlite

from node.blobcipher import seal_file
from node.blobs import BlobStore, StagedBlob, fsync_dir, link_blobs, register_blob
from node.errors import NodeError, StorageError
from node.scan_inbox import OnScan, RegisteredScan, add_unassigned, find_by_content, insert_scan
from node.scan_validation import (
    OpenedScan,
    Rejection,
    ScanLimits,
    ValidScan,
    display_name,
    open_scan,
    validate_file,
)

__all__ = [
    "REJECTED_DIR",
    "Deferred",
    "Duplicate",
    "Outcome",
    "Registered",
    "Rejected",
    "RejectedFile",
    "ScanIntake",
    "list_rejected",
]

log = logging.getLogger(__name__)
REJECTED_DIR = "rejected"
VN_TZ = timezone(timedelta(hours=7), "ICT")
Writer = Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]


@dataclass(frozen=True, slots=True)
class Registered:
    """Accepted: blobs registered, ``on_scan`` ran in the same transaction, file removed."""

    scan: RegisteredScan


@dataclass(frozen=True, slots=True)
class Duplicate:
    """These bytes were already taken; the file is removed (a leftover of a crash) or rejected."""

    scan: RegisteredScan
    leftover: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """Moved to ``rejected/`` (or, for a symlink, removed) with a reason file."""

    rejection: Rejection
    reason_file: Path


@dataclass(frozen=True, slots=True)
class Deferred:
    """Not now: the file stays in the hot folder and is tried again later."""

    code: str
    message: str
    incomplete: bool = False  # looks cut short: counts towards the hot folder's retry limit


Outcome = Registered | Duplicate | Rejected | Deferred


@dataclass(frozen=True, slots=True)
class _Prepared:
    valid: ValidScan
    original: StagedBlob
    pdf: StagedBlob | None
    st: os.stat_result


class ScanIntake:
    """The pipeline shared by all hot folders of a node (one instance, many scanners)."""

    def __init__(
        self,
        blobs: BlobStore,
        writer: Writer,
        on_scan: OnScan = add_unassigned,
        *,
        limits: ScanLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.blobs = blobs
        self.writer = writer
        self.on_scan = on_scan
        self.limits = limits or ScanLimits()
        self.clock = clock

    async def process(self, path: Path, *, scanner: str, desk: str, final: bool = False) -> Outcome:
        """Take one file. ``final`` turns a "maybe incomplete" answer into a rejection."""
        try:
            prepared = await asyncio.to_thread(self._prepare, path)
        except StorageError as exc:
            log.warning("scan %s deferred: %s", path.name, exc)
            return Deferred(exc.code, exc.message)
        if isinstance(prepared, Deferred):
            return prepared
        if isinstance(prepared, Rejection):
            if prepared.maybe_incomplete and not final:
                return Deferred(prepared.code, prepared.message_vi, incomplete=True)
            return await asyncio.to_thread(self._reject, path, prepared, scanner, desk)
        try:
            outcome = await self._register(prepared, scanner=scanner, desk=desk)
        except NodeError as exc:
            log.warning("scan %s deferred: %s", path.name, exc)
            return Deferred(exc.code, exc.message)
        if isinstance(outcome, Rejection):
            return await asyncio.to_thread(self._reject, path, outcome, scanner, desk)
        await asyncio.to_thread(_remove_if_same, path, prepared.st)
        return outcome

    # -- blocking part (thread) ------------------------------------------------------------------

    def _prepare(self, path: Path) -> _Prepared | Rejection | Deferred:
        with open_scan(path, self.limits) as opened:
            if isinstance(opened, Rejection):
                return opened
            return self._prepare_open(opened, path.name)

    def _prepare_open(self, opened: OpenedScan, name: str) -> _Prepared | Rejection | Deferred:
        valid = validate_file(opened.file, opened.st.st_size, name, self.limits)
        if isinstance(valid, Rejection):
            return valid
        opened.file.seek(0)
        original = self.blobs.stage_file(opened.file, opened.st.st_size)
        pdf = self.blobs.stage_bytes(valid.pdf) if valid.pdf is not None else None
        if not opened.unchanged():
            # Staged files are harmless: unregistered, deduped on the next try, swept at startup.
            return Deferred("changed", "Tệp đang được ghi tiếp; sẽ thử lại.", incomplete=True)
        return _Prepared(valid, original, pdf, opened.st)

    # -- transaction -----------------------------------------------------------------------------

    async def _register(self, p: _Prepared, *, scanner: str, desk: str) -> Outcome | Rejection:
        now = int(self.clock() * 1000)
        v = p.valid
        async with self.writer() as db:
            existing = await find_by_content(db, p.original.sha256)
            if existing is not None:
                leftover = (existing.display_name, existing.source_size, existing.source_mtime_ns) == (
                    v.display_name, p.st.st_size, p.st.st_mtime_ns)  # fmt: skip
                if leftover:
                    return Duplicate(existing, leftover=True)
                when = datetime.fromtimestamp(existing.received_at / 1000, VN_TZ).strftime(
                    "%H:%M ngày %d/%m/%Y"
                )
                return Rejection(
                    "duplicate",
                    f"Tệp trùng nội dung với bản quét “{existing.display_name}” đã nhận lúc {when} "
                    f"(bản quét số {existing.id}).",
                    f"sha256={p.original.sha256}",
                )
            original = await register_blob(
                db,
                p.original,
                media_type=v.media_type,
                pages=v.pages,
                display_name=v.display_name,
                created_at=now,
            )
            pdf = original
            if p.pdf is not None:
                pdf_name = os.path.splitext(v.display_name)[0] + ".pdf"
                pdf = await register_blob(
                    db,
                    p.pdf,
                    media_type="application/pdf",
                    pages=v.pages,
                    display_name=pdf_name,
                    created_at=now,
                )
                await link_blobs(db, derived=pdf.sha256, source=original.sha256, relation="pdf_of")
            scan = await insert_scan(
                db, scanner=scanner, desk=desk, display_name=v.display_name, kind=v.kind, pages=v.pages,
                original=original, pdf=pdf, source_size=p.st.st_size, source_mtime_ns=p.st.st_mtime_ns,
                received_at=now,
            )  # fmt: skip
            await self.on_scan(db, scan)
        return Registered(scan)

    # -- rejection -------------------------------------------------------------------------------

    def _reject(self, path: Path, rejection: Rejection, scanner: str, desk: str) -> Rejected:
        folder = path.parent / REJECTED_DIR
        folder.mkdir(exist_ok=True)
        shown = display_name(path.name)
        target = _free_name(folder, shown)
        moved_note = ""
        if rejection.code == "symlink" or os.path.islink(path):
            os.unlink(path)  # never keep a link to who-knows-where in a folder staff open
            moved_note = "Liên kết tượng trưng đã bị xoá khỏi thư mục quét (không đọc nội dung)."
        else:
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):  # kept encrypted (RELIABILITY P1): a rejected
                    sha = seal_file(self.blobs.keyring, path, target)  # ID-card scan is personal data
                    moved_note = f"Tệp được lưu dạng mã hóa (SHA-256 bản gốc {sha})."
                else:  # a FIFO or device holds no bytes of its own: moved aside, never opened
                    os.rename(path, target)
            except FileNotFoundError:
                moved_note = "Tệp đã biến mất khỏi thư mục quét trước khi được chuyển."
        reason = target.with_name(target.name + ".reason.txt")
        stamp = datetime.fromtimestamp(self.clock(), VN_TZ).strftime("%d/%m/%Y %H:%M:%S")
        lines = [
            f"Mã lỗi: {rejection.code}",
            f"Lý do: {rejection.message_vi}",
            f"Tệp gốc: {shown}",
            f"Máy quét: {scanner} (quầy {desk})",
            f"Thời điểm: {stamp}",
        ]
        if moved_note:
            lines.append(moved_note)
        if rejection.detail:
            lines.append(f"Chi tiết kỹ thuật: {display_name(rejection.detail, 1000)}")
        tmp = folder / f".{reason.name}.tmp"
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, reason)
        fsync_dir(folder)
        fsync_dir(path.parent)
        log.info("scan %s rejected: %s", shown, rejection.code)
        return Rejected(rejection, reason)


def _free_name(folder: Path, name: str) -> Path:
    stem, ext = os.path.splitext(name)
    candidate, n = folder / name, 1
    while os.path.lexists(candidate) or os.path.lexists(f"{candidate}.reason.txt"):
        n += 1
        candidate = folder / f"{stem}-{n}{ext}"
    return candidate


def _remove_if_same(path: Path, st: os.stat_result) -> None:
    """Delete the scanner's file only if it is still the file we took (not a new one of the same name)."""
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) == (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    ):
        os.unlink(path)
        fsync_dir(path.parent)


@dataclass(frozen=True, slots=True)
class RejectedFile:
    """One entry of a scanner's ``rejected/`` folder, for the UI."""

    name: str
    code: str
    message: str
    rejected_at: float  # mtime of the reason file
    size: int | None  # None when only the reason remains (symlinks)


def list_rejected(folder: Path) -> list[RejectedFile]:
    """Rejected files of one hot folder, newest first. Reads only the reason files (lstat elsewhere)."""
    rejected = folder / REJECTED_DIR
    if not rejected.is_dir():
        return []
    out = []
    for reason in rejected.glob("*.reason.txt"):
        fields: dict[str, str] = {}
        for line in reason.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                fields.setdefault(key, value)
        name = reason.name.removesuffix(".reason.txt")
        try:
            size: int | None = os.lstat(rejected / name).st_size
        except FileNotFoundError:
            size = None
        out.append(
            RejectedFile(
                name, fields.get("Mã lỗi", "?"), fields.get("Lý do", ""), reason.stat().st_mtime, size
            )
        )
    return sorted(out, key=lambda r: r.rejected_at, reverse=True)
