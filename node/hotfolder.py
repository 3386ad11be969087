"""Watch a scanner's hot folder and feed finished files to the ``ScanIntake`` (ECOSYSTEM.md §4.2).

- Native (inotify) mode: a file is a candidate on ``FileClosedEvent`` (close after write) or on a
  ``FileMovedEvent`` whose destination is a non-temp name in the folder (write-temp-then-rename).
- Polling mode (CIFS/NFS mounts, where inotify sees nothing): creations and modifications make a file
  a candidate, and it is only taken once its size and mtime are unchanged across two polls.
- Files already there at start, and entries that never send a close event (symlinks, FIFOs, files
  created by a writer still running), go through the same stability check.
- Temp names are ignored: dotfiles, ``~$*``, ``*.tmp``, ``*.part``, ``*.crdownload``.

The observer runs in its own thread and only calls ``loop.call_soon_threadsafe``; everything else
happens on the event loop. Each path has at most one intake running. A "looks incomplete" answer is
retried, and only counts towards ``incomplete_retries`` while the file stays unchanged (a slow writer
is never rejected for being slow). Storage trouble (disk full, EIO) is retried with backoff forever:
the scan waits in the folder, and ``status`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from node.scan_intake import Deferred, Outcome, ScanIntake

__all__ = ["HotFolder", "ScannerConfig", "is_temp_name"]

log = logging.getLogger(__name__)
_TEMP_SUFFIXES = (".tmp", ".part", ".crdownload")
_DONE_MEMORY = 4096


@dataclass(frozen=True, slots=True)
class ScannerConfig:
    """One scanner: its hot folder and the desk whose open dossier its scans attach to."""

    name: str = field(metadata={"help": "Tên máy quét (duy nhất trên máy trạm)."})
    folder: Path = field(metadata={"help": "Thư mục máy quét ghi tệp vào (hot folder)."})
    desk: str = field(metadata={"help": "Quầy sử dụng máy quét; bản quét gắn vào hồ sơ đang mở ở quầy này."})
    polling: bool = field(
        default=False, metadata={"help": "Dùng chế độ quét định kỳ (thư mục trên ổ mạng CIFS/NFS)."}
    )
    poll_interval: float = field(default=2.0, metadata={"help": "Giây giữa hai lần kiểm tra kích thước tệp."})
    debounce: float = field(default=2.0, metadata={"help": "Giây chờ sau khi tệp được đóng trước khi nhận."})
    incomplete_retries: int = field(
        default=5, metadata={"help": "Số lần thử lại một tệp có vẻ chưa hoàn chỉnh trước khi từ chối."}
    )
    retry_delay: float = field(default=3.0, metadata={"help": "Giây chờ giữa hai lần thử lại."})

    def validate(self) -> None:
        if not self.name.strip() or not self.desk.strip():
            raise ValueError("scanner name and desk must not be empty")
        if not self.folder.is_absolute():
            raise ValueError(f"scanner {self.name!r}: folder must be an absolute path")
        if (
            self.poll_interval <= 0
            or self.debounce < 0
            or self.incomplete_retries < 1
            or self.retry_delay <= 0
        ):
            raise ValueError(f"scanner {self.name!r}: timings must be positive")


def is_temp_name(name: str) -> bool:
    """Names scanners and copy tools use while a file is still being written."""
    low = name.lower()
    return name.startswith((".", "~$")) or low.endswith(_TEMP_SUFFIXES)


@dataclass(slots=True)
class _PathState:
    timer: asyncio.TimerHandle | None = None
    running: bool = False
    again: bool = False  # an event arrived while running
    stable_needed: bool = True
    last_seen: tuple[int, int] | None = None  # (size, mtime_ns) at the previous look
    unchanged_tries: int = 0  # incomplete answers while the file did not change
    storage_failures: int = 0


class _Handler(FileSystemEventHandler):
    """Runs in the observer thread: filter, then hand the path to the loop."""

    def __init__(self, hot: HotFolder) -> None:
        self.hot = hot

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            path, trusted = os.fsdecode(event.dest_path), not self.hot.config.polling
        elif isinstance(event, FileClosedEvent):
            path, trusted = os.fsdecode(event.src_path), True
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent):
            path, trusted = os.fsdecode(event.src_path), False
        else:
            return
        self.hot.loop.call_soon_threadsafe(self.hot.notify, Path(path), trusted)


class HotFolder:
    """One scanner's folder: observer thread → debounced, de-duplicated intake on the event loop."""

    def __init__(self, config: ScannerConfig, intake: ScanIntake) -> None:
        self.config = config
        self.intake = intake
        self.folder = config.folder
        self.loop = asyncio.get_running_loop()
        self.status = "Sẵn sàng."
        self.outcomes: list[Outcome] = []  # the most recent ones, for the UI and tests
        self._states: dict[Path, _PathState] = {}
        self._done: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._observer: BaseObserver | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start watching, then look at what is already in the folder."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder = self.folder.resolve()
        observer = PollingObserver(timeout=self.config.poll_interval) if self.config.polling else Observer()
        observer.schedule(_Handler(self), str(self.folder), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self.rescan()

    async def stop(self) -> None:
        """Stop the observer and cancel pending work (files stay in the folder for next time)."""
        if self._observer is not None:
            observer, self._observer = self._observer, None
            observer.stop()
            await asyncio.to_thread(observer.join, 5)
        for state in self._states.values():
            if state.timer:
                state.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._states.clear()

    def rescan(self) -> None:
        """Queue every candidate entry in the folder (startup, or after a share was remounted)."""
        for entry in os.scandir(self.folder):
            if not entry.is_dir(follow_symlinks=False):
                self.notify(Path(entry.path), trusted=False)

    def idle(self) -> bool:
        return not self._states and not self._tasks

    # -- events (loop thread) --------------------------------------------------------------------

    def notify(self, path: Path, trusted: bool) -> None:
        """A path may hold a finished file. ``trusted``: a close/rename event said the writer is done."""
        if path.parent != self.folder or is_temp_name(path.name):
            return
        state = self._states.setdefault(path, _PathState())
        state.stable_needed = state.stable_needed and not trusted
        if state.running:
            state.again = True
            return
        self._schedule(path, state, self.config.debounce)

    def _schedule(self, path: Path, state: _PathState, delay: float) -> None:
        if state.timer:
            state.timer.cancel()
        state.timer = self.loop.call_later(delay, self._fire, path)

    def _fire(self, path: Path) -> None:
        state = self._states.get(path)
        if state is None or state.running:
            return
        state.timer = None
        state.running = True
        task = asyncio.create_task(self._run(path, state), name=f"scan:{self.config.name}:{path.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, path: Path, state: _PathState) -> None:
        try:
            retry_in = await self._attempt(path, state)
        except Exception:  # never let one file kill the watcher; keep it for a later try
            log.exception("scan intake failed for %s", path.name)
            retry_in = self.config.retry_delay * 4
        finally:
            state.running = False
        if retry_in is None and not state.again:
            self._states.pop(path, None)
            return
        state.again = False
        self._schedule(path, state, retry_in if retry_in is not None else self.config.debounce)

    async def _attempt(self, path: Path, state: _PathState) -> float | None:
        """Process once; returns the delay before the next try, or None when the file is settled."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        seen = (st.st_size, st.st_mtime_ns)
        key = (str(path), *seen)
        if key in self._done:
            return None
        changed = seen != state.last_seen
        state.last_seen = seen
        if changed:
            state.unchanged_tries = 0
        if state.stable_needed and changed and stat.S_ISREG(st.st_mode):
            return self.config.poll_interval  # look again: taken only when two looks agree
        final = state.unchanged_tries + 1 >= self.config.incomplete_retries
        outcome = await self.intake.process(
            path, scanner=self.config.name, desk=self.config.desk, final=final
        )
        if isinstance(outcome, Deferred):
            if outcome.incomplete:
                state.unchanged_tries += 1
                state.stable_needed = True
                return self.config.retry_delay
            state.storage_failures += 1
            self.status = outcome.message
            return min(60.0, self.config.retry_delay * 2 ** min(state.storage_failures, 5))
        self.status = "Sẵn sàng."
        self._done[key] = None
        while len(self._done) > _DONE_MEMORY:
            self._done.popitem(last=False)
        self.outcomes.append(outcome)
        del self.outcomes[:-200]
        return None
