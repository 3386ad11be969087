"""The branch's devices, running inside the node: blob store, scan intake, hot folders, print worker.

``Devices.start(node, config)`` (called from the app's ``cleanup_ctx`` once the node is open), in order:

1. ``BlobStore.sweep`` in a write transaction: temp files and unregistered blob files of a crash are
   removed *before* anything can stage a new blob (a staged, not yet registered blob would look orphaned);
2. one ``ScanIntake`` whose ``on_scan`` is the ``ScanRouter`` (desk's open dossier, else the inbox);
3. one ``HotFolder`` per ``[[scanner]]``; a folder that cannot be watched (unmounted share, permissions)
   does not stop the node: it is reported and retried every ``RETRY_SECONDS``;
4. the ``PrintWorker`` loop as a task, restarted after an unexpected error;
5. ``Receipts`` plugged into the reception desk, so a new dossier queues its receipt.

``stop()`` undoes them in reverse. ``devices_status(app)`` is the heartbeat's view of it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from node.blobs import BlobStore, SweepReport
from node.config import NodeConfig
from node.hotfolder import HotFolder, ScannerConfig, is_temp_name
from node.printing import PrinterStatus, PrintWorker
from node.provision import Node
from node.receipts import Receipts
from node.scan_attach import ScanRouter
from node.scan_intake import REJECTED_DIR, ScanIntake, list_rejected
from node.web.keys import CONFIG, NODE

__all__ = ["DEVICES", "RETRY_SECONDS", "Devices", "ScannerState", "devices_status"]

log = logging.getLogger(__name__)
RETRY_SECONDS = 30.0
READY = "Sẵn sàng."


@dataclass(slots=True)
class ScannerState:
    """One configured scanner: its hot folder once watching, or why it is not."""

    config: ScannerConfig
    hot: HotFolder | None = None
    error: str | None = None

    @property
    def message(self) -> str:
        if self.error is not None:
            return self.error
        return self.hot.status if self.hot is not None else "Chưa khởi động."

    @property
    def ok(self) -> bool:
        return self.error is None and self.hot is not None and self.hot.status == READY

    def pending_files(self) -> int:
        """Files waiting in the hot folder (not temp names, not the rejected/ folder)."""
        try:
            return sum(
                1
                for entry in os.scandir(self.config.folder)
                if not entry.is_dir(follow_symlinks=False) and not is_temp_name(entry.name)
            )
        except OSError:
            return 0

    def rejected_files(self) -> int:
        try:
            return sum(1 for p in (self.config.folder / REJECTED_DIR).glob("*.reason.txt"))
        except OSError:
            return 0


@dataclass(slots=True)
class Devices:
    """What ``start`` built; ``stop`` releases it."""

    config: NodeConfig
    node: Node
    blobs: BlobStore
    intake: ScanIntake
    worker: PrintWorker
    receipts: Receipts
    sweep: SweepReport
    scanners: dict[str, ScannerState] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def thumbnail_dir(self) -> Path:
        return self.config.data_dir / "cache" / "thumbnails"

    @property
    def desks(self) -> list[str]:
        return sorted({s.desk for s in self.config.scanners})

    @classmethod
    async def start(cls, node: Node, config: NodeConfig, *, print_poll: float = 5.0) -> Devices:
        blobs = BlobStore(config.data_dir, low_disk_bytes=config.low_disk_mb << 20)
        async with node.store.write() as db:
            report = await blobs.sweep(db)
        if report.temp_removed or report.orphans_removed:
            log.info(
                "blob sweep: %d temp, %d orphan files removed", report.temp_removed, report.orphans_removed
            )
        for missing in report.missing:
            log.error("registered blob %s has no file (restore it from a backup)", missing)
        router = ScanRouter(node.journal, config.scan_session_minutes * 60_000)
        intake = ScanIntake(blobs, node.store.write, router)
        worker = PrintWorker(
            node.store.write, {p.name: p for p in config.printers}, blobs, poll_interval=print_poll
        )
        receipts = Receipts(config, node.store, blobs, node.desk.catalog, worker.wake)
        for printer in config.printers:
            if printer.folder is not None:  # a folder printer's status reads its folder: have one
                try:
                    printer.folder.mkdir(mode=0o770, parents=True, exist_ok=True)
                except OSError as exc:
                    log.warning("printer %s: cannot create %s: %s", printer.name, printer.folder, exc)
        devices = cls(config, node, blobs, intake, worker, receipts, report)
        try:
            for scanner in config.scanners:
                state = ScannerState(scanner)
                devices.scanners[scanner.name] = state
                await devices._start_scanner(state)
            if any(s.hot is None for s in devices.scanners.values()):
                devices._spawn(devices._retry_scanners(), "scanners-retry")
            devices._spawn(devices._print_loop(), "print-worker")
        except BaseException:
            await devices.stop()
            raise
        node.desk.receipts = receipts
        return devices

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _start_scanner(self, state: ScannerState) -> None:
        hot = HotFolder(state.config, self.intake)
        try:
            await hot.start()
        except OSError as exc:
            await hot.stop()
            state.error = (
                f"Không theo dõi được thư mục quét {state.config.folder}: {exc.strerror or exc}. "
                f"Sẽ thử lại sau {RETRY_SECONDS:.0f} giây."
            )
            log.warning("scanner %s: %s", state.config.name, exc)
            return
        state.hot, state.error = hot, None
        log.info("scanner %s watching %s (desk %s)", state.config.name, hot.folder, state.config.desk)

    async def _retry_scanners(self) -> None:
        while any(s.hot is None for s in self.scanners.values()):
            await asyncio.sleep(RETRY_SECONDS)
            for state in self.scanners.values():
                if state.hot is None:
                    await self._start_scanner(state)

    async def _print_loop(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.worker.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("print worker failed; restarting in %.0f s", delay)
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)

    async def stop(self) -> None:
        """Stop watching and printing; files and jobs stay where they are for the next start."""
        if self.node.desk.receipts is self.receipts:
            self.node.desk.receipts = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for state in self.scanners.values():
            if state.hot is not None:
                await state.hot.stop()
                state.hot = None

    # -- state for the UI and the heartbeat --------------------------------------------------------

    def disk_message(self) -> str | None:
        """Why scans are not being taken because of disk space, or None."""
        try:
            free = self.blobs.ops.free_bytes(str(self.blobs.root))
        except OSError:
            free = shutil.disk_usage(self.config.data_dir).free
        if free >= self.blobs.low_disk_bytes:
            return None
        return (
            f"Ổ đĩa máy trạm sắp đầy: còn {free // 1048576} MB trống, dưới ngưỡng an toàn "
            f"{self.blobs.low_disk_bytes // 1048576} MB. Tạm dừng nhận bản quét (tệp vẫn nằm trong thư "
            "mục quét và sẽ được nhận khi có chỗ trống). Hãy giải phóng dung lượng."
        )

    def scanner_problems(self) -> list[str]:
        return [f"Máy quét {name}: {s.message}" for name, s in self.scanners.items() if not s.ok]

    async def printer_statuses(self) -> list[PrinterStatus]:
        return list(await asyncio.gather(*(self.worker.printer_status(p.name) for p in self.config.printers)))

    def rejected(self) -> list[tuple[ScannerConfig, Any]]:
        """(scanner, RejectedFile) of every hot folder, newest first."""
        out = []
        for state in self.scanners.values():
            try:
                out += [(state.config, r) for r in list_rejected(state.config.folder)]
            except OSError:
                continue
        return sorted(out, key=lambda item: item[1].rejected_at, reverse=True)


DEVICES = web.AppKey("devices", Devices)


async def devices_status(app: web.Application) -> dict[str, Any]:
    """Printers' and scanners' state for the sync heartbeat: plain JSON (str, int, bool, no floats).

    ``{"scan_intake": {"ok", "message"}, "scanners": [{"name", "desk", "ok", "message", "pending_files",
    "rejected_files"}], "printers": [{"name", "ok", "state", "message", "pending_jobs", "failed_jobs"}],
    "unassigned_scans": n}``. ``pending_jobs`` counts this node's queued and submitted jobs.
    """
    devices = app[DEVICES]
    disk = devices.disk_message()
    rows = await devices.node.store.fetchall(
        "SELECT printer, status, count(*) FROM print_jobs WHERE status IN ('queued', 'submitted', 'failed')"
        " GROUP BY printer, status"
    )
    counts: dict[tuple[str, str], int] = {(str(r[0]), str(r[1])): int(r[2]) for r in rows}
    inbox = await devices.node.store.fetchone("SELECT count(*) FROM unassigned_scans")
    printers = []
    for status in await devices.printer_statuses():
        pending = counts.get((status.name, "queued"), 0) + counts.get((status.name, "submitted"), 0)
        printers.append(
            {
                "name": status.name,
                "ok": status.ok,
                "state": status.state,
                "message": status.message,
                "pending_jobs": pending,
                "failed_jobs": counts.get((status.name, "failed"), 0),
            }
        )
    return {
        "scan_intake": {"ok": disk is None, "message": disk or READY},
        "scanners": [
            {
                "name": name,
                "desk": s.config.desk,
                "ok": s.ok and disk is None,
                "message": s.message,
                "pending_files": s.pending_files(),
                "rejected_files": s.rejected_files(),
            }
            for name, s in devices.scanners.items()
        ],
        "printers": printers,
        "unassigned_scans": int(inbox[0]) if inbox else 0,
    }


def devices_ctx(print_poll: float = 5.0) -> Callable[[web.Application], Any]:
    """The ``cleanup_ctx`` step; append it after the one that opens the node."""

    async def ctx(app: web.Application) -> Any:
        devices = await Devices.start(app[NODE], app[CONFIG], print_poll=print_poll)
        app[DEVICES] = devices
        try:
            yield
        finally:
            await devices.stop()

    return ctx
