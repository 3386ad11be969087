"""Talking to CUPS through its command-line clients (lp, lpstat, cancel), with plain-Vietnamese errors.

The clients are run with ``asyncio.create_subprocess_exec`` (an argv list, never a shell), a timeout,
``LC_ALL=C`` so their English messages can be recognised, and ``CUPS_SERVER`` when a printer names a
server. pycups is avoided (GPL, no wheels: ECOSYSTEM.md §2.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["PrinterStatus", "cups_command", "folder_status", "lp_error_message", "printer_status"]

State = Literal["ready", "printing", "stopped", "rejecting", "missing", "unreachable", "error"]


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printers page shows: a state, a Vietnamese sentence, and the jobs still waiting."""

    name: str
    state: State
    message: str
    waiting_jobs: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("ready", "printing")


async def cups_command(
    argv: Sequence[str], server: str = "", timeout: float = 30.0, *, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run a CUPS client (``stdin`` fed to it); returns (returncode, stdout, stderr); missing binary: 127."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    if server:
        env["CUPS_SERVER"] = server
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: command not found"
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return 124, "", f"{argv[0]}: timed out after {timeout}s"
    return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


_KNOWN = (
    ("command not found", "Máy trạm chưa cài gói cups-client (lệnh lp/lpstat)."),
    ("timed out", "Dịch vụ in CUPS không phản hồi."),
    ("unable to connect", "Không kết nối được dịch vụ in CUPS (cupsd chưa chạy?)."),
    ("bad file descriptor", "Không kết nối được dịch vụ in CUPS (cupsd chưa chạy?)."),
    ("connection refused", "Không kết nối được dịch vụ in CUPS (cupsd chưa chạy?)."),
    ("does not exist", "Không tìm thấy hàng đợi in “{queue}” trong CUPS."),
    ("invalid destination", "Không tìm thấy hàng đợi in “{queue}” trong CUPS."),
    ("unknown destination", "Không tìm thấy hàng đợi in “{queue}” trong CUPS."),
    ("not accepting", "Máy in “{queue}” đang từ chối nhận lệnh in (đã tắt chấp nhận lệnh)."),
    ("forbidden", "Dịch vụ in CUPS từ chối quyền gửi lệnh in."),
    ("unable to access", "Dịch vụ in không đọc được tệp cần in."),
)


def lp_error_message(text: str, queue: str) -> str:
    """Map the stderr of lp/lpstat to one plain Vietnamese sentence."""
    low = text.lower()
    for needle, message in _KNOWN:
        if needle in low:
            return message.format(queue=queue)
    first = text.strip().splitlines()[0] if text.strip() else "không rõ nguyên nhân"
    return f"Không gửi được lệnh in tới “{queue}”: {first}"


async def printer_status(name: str, queue: str, server: str = "", timeout: float = 10.0) -> PrinterStatus:
    """State of a CUPS queue from ``lpstat -r``, ``-p``, ``-a`` and ``-W not-completed -o``."""
    rc, out, err = await cups_command(["lpstat", "-r"], server, timeout)
    if rc == 127 or "is running" not in out:
        message = (
            lp_error_message(err, queue)
            if rc == 127
            else "Dịch vụ in CUPS không chạy hoặc không kết nối được."
        )
        return PrinterStatus(name, "unreachable", message, detail=(err or out).strip())
    rc, out, err = await cups_command(["lpstat", "-p", queue], server, timeout)
    if rc != 0 or not out.strip():
        message = lp_error_message(err or out, queue)
        state: State = "missing" if "Không tìm thấy" in message else "unreachable"
        return PrinterStatus(name, state, message, detail=(err or out).strip())
    _, queued_out, _ = await cups_command(["lpstat", "-W", "not-completed", "-o", queue], server, timeout)
    waiting = sum(1 for line in queued_out.splitlines() if line.strip())
    _, accept_out, _ = await cups_command(["lpstat", "-a", queue], server, timeout)
    first, *rest = out.strip().splitlines()
    reason = " ".join(line.strip() for line in rest).strip()
    tail = f" Có {waiting} lệnh in đang chờ." if waiting else ""
    if " disabled " in f" {first} ":
        why = f" (lý do: {reason})" if reason and reason.lower() != "paused" else ""
        message = f"Máy in đang tạm dừng{why}: lệnh in được giữ trong hàng đợi và sẽ in khi bật lại.{tail}"
        return PrinterStatus(name, "stopped", message, waiting, first)
    if "not accepting" in accept_out:
        return PrinterStatus(
            name, "rejecting", "Máy in đang từ chối nhận lệnh in mới." + tail, waiting, first
        )
    if "now printing" in first:
        return PrinterStatus(name, "printing", "Đang in." + tail, waiting, first)
    if " is idle" in first:
        return PrinterStatus(name, "ready", "Sẵn sàng." + tail, waiting, first)
    return PrinterStatus(name, "error", f"Trạng thái máy in không rõ: {first}", waiting, first)


def folder_status(name: str, folder: Path | None) -> PrinterStatus:
    """A folder printer is ready when its folder exists and is writable."""
    if folder is None or not folder.is_dir():
        return PrinterStatus(name, "missing", f"Không tìm thấy thư mục in {folder}.")
    if not os.access(folder, os.W_OK | os.X_OK):
        return PrinterStatus(name, "error", f"Không có quyền ghi vào thư mục in {folder}.")
    waiting = sum(1 for p in folder.iterdir() if p.suffix == ".pdf" and not p.name.startswith("."))
    tail = f" Có {waiting} tệp chưa được lấy đi." if waiting else ""
    return PrinterStatus(name, "ready", f"Sẵn sàng (ghi tệp PDF vào {folder}).{tail}", waiting)
