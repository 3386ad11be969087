"""The ``[[scanner]]``, ``[[printer]]`` and ``[receipt_printers]`` tables of ``node.toml``.

``node.config`` stays the one place that reads the file; it hands these tables to ``parse_tables`` and
gets typed tuples back (``ScannerConfig`` and ``PrinterConfig`` from the device modules). Every error is
a ``ConfigError`` naming the table, its position and the key, e.g. ``scanner[2].folder: ...``.
``dump_tables`` writes them back in the same shape, so ``motcua-node scanner add`` can rewrite the file.

    [[scanner]]
    name = "quay-1"
    folder = "/srv/scan/quay-1"
    desk = "Q1"
    # polling = true      # a CIFS/NFS mount: inotify sees nothing there

    [[printer]]
    name = "may-in-quay-1"
    queue = "HP_M404"    # a CUPS queue (lp -d) ...
    # folder = "/srv/in" # ... or a folder another system prints from (kind = "folder")

    [receipt_printers]   # which printer prints the receipt at each desk (else receipt_printer)
    Q1 = "may-in-quay-1"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from node.errors import ConfigError
from node.hotfolder import ScannerConfig
from node.printing import PrinterConfig

__all__ = [
    "DESK_RE",
    "NAME_RE",
    "TABLES",
    "check_devices",
    "dump_tables",
    "parse_printer",
    "parse_receipt_printers",
    "parse_scanner",
]

#: TOML table name -> NodeConfig field
TABLES = {"scanner": "scanners", "printer": "printers", "receipt_printers": "receipt_printers"}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
DESK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_SCANNER_KEYS = {f.name for f in fields(ScannerConfig)}
_PRINTER_KEYS = {f.name for f in fields(PrinterConfig)}


def _number(where: str, value: object, *, integer: bool = False) -> float | int:
    if type(value) is bool or not isinstance(value, int | float) or (integer and type(value) is not int):
        raise ConfigError(f"{where}: phải là số{' nguyên' if integer else ''}, không phải {value!r}")
    return value


def _text(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: phải là chuỗi ký tự, không phải {value!r}")
    return value.strip()


def _folder(where: str, value: object) -> Path:
    text = _text(where, value)
    path = Path(text)
    if not text or not path.is_absolute() or ".." in path.parts:
        raise ConfigError(f"{where}: phải là đường dẫn tuyệt đối (ví dụ /srv/scan/q1), không phải {text!r}")
    return path


def _table(where: str, raw: object, allowed: set[str], required: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: phải là một bảng TOML ([[...]])")
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: khóa cấu hình không tồn tại")
    for key in required:
        if key not in raw:
            raise ConfigError(f"{where}.{key}: thiếu khóa bắt buộc")
    return raw


def parse_scanner(raw: object, index: int) -> ScannerConfig:
    """One ``[[scanner]]`` table."""
    where = f"scanner[{index}]"
    t = _table(where, raw, _SCANNER_KEYS, ("name", "folder", "desk"))
    name = _text(f"{where}.name", t["name"])
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}.name: {name!r} chỉ gồm chữ không dấu, số, '.', '_', '-' (≤ 63 ký tự)")
    desk = _text(f"{where}.desk", t["desk"])
    if not DESK_RE.fullmatch(desk):
        raise ConfigError(f"{where}.desk: {desk!r} chỉ gồm chữ không dấu, số, '.', '_', '-' (ví dụ Q1)")
    values: dict[str, Any] = {"name": name, "desk": desk, "folder": _folder(f"{where}.folder", t["folder"])}
    if "polling" in t:
        if type(t["polling"]) is not bool:
            raise ConfigError(f"{where}.polling: phải là true hoặc false")
        values["polling"] = t["polling"]
    for key, low, high in (("poll_interval", 0.1, 3600), ("debounce", 0, 3600), ("retry_delay", 0.1, 3600)):
        if key in t:
            number = _number(f"{where}.{key}", t[key])
            if not low <= number <= high:
                raise ConfigError(f"{where}.{key}: phải từ {low} đến {high} giây")
            values[key] = float(number)
    if "incomplete_retries" in t:
        retries = _number(f"{where}.incomplete_retries", t["incomplete_retries"], integer=True)
        if not 1 <= retries <= 100:
            raise ConfigError(f"{where}.incomplete_retries: phải từ 1 đến 100")
        values["incomplete_retries"] = retries
    return ScannerConfig(**values)


def parse_printer(raw: object, index: int) -> PrinterConfig:
    """One ``[[printer]]`` table; ``kind`` defaults to ``folder`` when only a folder is given."""
    where = f"printer[{index}]"
    t = _table(where, raw, _PRINTER_KEYS, ("name",))
    name = _text(f"{where}.name", t["name"])
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}.name: {name!r} chỉ gồm chữ không dấu, số, '.', '_', '-' (≤ 63 ký tự)")
    kind = _text(f"{where}.kind", t.get("kind", "folder" if "folder" in t and "queue" not in t else "cups"))
    if kind not in ("cups", "folder"):
        raise ConfigError(f"{where}.kind: phải là cups hoặc folder, không phải {kind!r}")
    if kind == "cups":
        if "folder" in t:
            raise ConfigError(f"{where}.folder: máy in kiểu cups không dùng thư mục (dùng queue)")
        queue = _text(f"{where}.queue", t.get("queue", ""))
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,127}", queue):
            raise ConfigError(f"{where}.queue: tên hàng đợi CUPS {queue!r} không hợp lệ")
        folder = None
    else:
        if "queue" in t or "cups_server" in t:
            raise ConfigError(f"{where}.queue: máy in kiểu folder không dùng hàng đợi CUPS")
        if "folder" not in t:
            raise ConfigError(f"{where}.folder: thiếu thư mục nhận tệp PDF")
        queue, folder = "", _folder(f"{where}.folder", t["folder"])
    server = _text(f"{where}.cups_server", t.get("cups_server", ""))
    if server and not re.fullmatch(r"[^\s'\"]{1,255}", server):
        raise ConfigError(f"{where}.cups_server: {server!r} không hợp lệ")
    media = _text(f"{where}.media", t.get("media", "A4"))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", media):
        raise ConfigError(f"{where}.media: {media!r} không hợp lệ")
    return PrinterConfig(name=name, kind=kind, queue=queue, folder=folder, cups_server=server, media=media)  # type: ignore[arg-type]


def parse_receipt_printers(raw: object) -> tuple[tuple[str, str], ...]:
    """``[receipt_printers]``: desk = printer name."""
    if not isinstance(raw, Mapping):
        raise ConfigError('receipt_printers: phải là một bảng TOML (quầy = "tên máy in")')
    out = []
    for desk, printer in sorted(raw.items()):
        if not DESK_RE.fullmatch(desk):
            raise ConfigError(f"receipt_printers.{desk}: tên quầy không hợp lệ")
        out.append((desk, _text(f"receipt_printers.{desk}", printer)))
    return tuple(out)


def check_devices(
    scanners: Sequence[ScannerConfig],
    printers: Sequence[PrinterConfig],
    receipt_printer: str | None,
    receipt_printers: Sequence[tuple[str, str]],
    data_dir: Path,
) -> None:
    """Cross-table rules: unique names and folders, no folder inside another, printers that exist."""
    seen: dict[str, str] = {}
    for what, items in (("scanner", scanners), ("printer", printers)):
        names: set[str] = set()
        for i, item in enumerate(items):
            if item.name in names:
                raise ConfigError(f"{what}[{i}].name: trùng tên {item.name!r}")
            names.add(item.name)
            folder = getattr(item, "folder", None)
            if folder is None:
                continue
            key = f"{what}[{i}].folder"
            resolved = str(Path(folder).resolve())
            data = str(data_dir.resolve())
            if _inside(resolved, data) or _inside(data, resolved):
                raise ConfigError(f"{key}: không được nằm trong (hoặc chứa) thư mục dữ liệu {data}")
            for other_key, other in seen.items():
                if _inside(resolved, other) or _inside(other, resolved):
                    # A printer folder inside a hot folder would feed printed forms back in as scans.
                    raise ConfigError(f"{key}: trùng hoặc lồng nhau với {other_key} ({other})")
            seen[key] = resolved
    printer_names = {p.name for p in printers}
    if receipt_printer is not None and receipt_printer not in printer_names:
        raise ConfigError(f"receipt_printer: không có máy in tên {receipt_printer!r} ([[printer]])")
    for desk, name in receipt_printers:
        if name not in printer_names:
            raise ConfigError(f"receipt_printers.{desk}: không có máy in tên {name!r} ([[printer]])")


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def dump_tables(
    scanners: Sequence[ScannerConfig],
    printers: Sequence[PrinterConfig],
    receipt_printers: Sequence[tuple[str, str]],
) -> str:
    """The TOML of the device tables (only values that differ from the defaults, plus the required ones)."""
    lines: list[str] = []
    for scanner in scanners:
        lines += ["", "[[scanner]]"]
        for f in fields(ScannerConfig):
            value = getattr(scanner, f.name)
            if f.name in ("name", "folder", "desk") or value != f.default:
                lines.append(f"{f.name} = {_toml(value)}")
    for printer in printers:
        lines += ["", "[[printer]]", f"name = {_toml(printer.name)}", f"kind = {_toml(printer.kind)}"]
        if printer.kind == "cups":
            lines.append(f"queue = {_toml(printer.queue)}")
            if printer.cups_server:
                lines.append(f"cups_server = {_toml(printer.cups_server)}")
        else:
            lines.append(f"folder = {_toml(printer.folder)}")
        if printer.media != "A4":
            lines.append(f"media = {_toml(printer.media)}")
    if receipt_printers:
        lines += ["", "[receipt_printers]"]
        lines += [f"{desk} = {_toml(name)}" for desk, name in receipt_printers]
    return "\n".join(lines) + ("\n" if lines else "")
