"""``motcua-node scanner add|list`` and ``printer add|list``: edit the device tables of ``node.toml``.

The file is rewritten whole from the settings it already holds (read without environment overrides, so
an override is never baked into the file), plus the new table, validated exactly as ``load`` validates
it, then written atomically: a temp file in the same folder, fsync, rename over the old file (keeping its
mode), fsync the folder. An exclusive lock on ``node.toml.lock`` serialises concurrent edits. A running
node reads its configuration once: restart it to use the new device.

A hot folder is created if missing (mode 0770: the scanner's share user reaches it through its group,
nobody else can); an existing one must be a real directory, not a symlink, and not writable by everyone
(any local user could then slip a file into a dossier).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import stat
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from node import config as config_module
from node.blobs import fsync_dir
from node.config import CONFIG_FILE, NodeConfig
from node.device_config import parse_printer, parse_scanner
from node.errors import ConfigError
from node.hotfolder import ScannerConfig
from node.printing import PrinterConfig

__all__ = [
    "add_printer",
    "add_scanner",
    "describe_printer",
    "describe_scanner",
    "prepare_folder",
    "rewrite_config",
]


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    fd = os.open(data_dir / (CONFIG_FILE + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _file_config(data_dir: Path) -> NodeConfig:
    """The config exactly as the file says (no environment overrides)."""
    return config_module.load(data_dir, {})


def rewrite_config(data_dir: str | Path, change: Callable[[NodeConfig], NodeConfig]) -> NodeConfig:
    """Apply ``change`` to the file's config, validate, and replace ``node.toml`` atomically."""
    data_dir = Path(data_dir).absolute()
    path = data_dir / CONFIG_FILE
    with _locked(data_dir):
        updated = change(_file_config(data_dir))
        config_module.validate(updated)
        text = config_module.dump(updated)
        config_module.build(tomllib.loads(text), data_dir)  # what we write must load back
        mode = stat.S_IMODE(os.stat(path).st_mode)
        tmp = path.with_name(f".{CONFIG_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(data_dir)
    return updated


def _check_folder(path: Path, key: str) -> bool:
    """Whether ``path`` must be created; refuse symlinks, non-directories and world-writable folders."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{key}: {path} là liên kết tượng trưng; hãy dùng đường dẫn thật của thư mục")
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{key}: {path} đã tồn tại nhưng không phải thư mục")
    if st.st_mode & stat.S_IWOTH:
        raise ConfigError(
            f"{key}: thư mục {path} cho phép mọi người ghi vào; hãy chạy 'chmod o-w {path}' rồi thử lại"
        )
    return False


def prepare_folder(path: Path, key: str) -> bool:
    """Check ``path`` and create it (mode 0770) if missing; returns whether it was created."""
    if not _check_folder(path, key):
        return False
    path.mkdir(mode=0o770, parents=True, exist_ok=True)
    os.chmod(path, 0o770)  # mkdir's mode is filtered by the umask
    fsync_dir(path.parent)
    return True


def add_scanner(
    data_dir: str | Path, *, name: str, folder: Path, desk: str, polling: bool = False
) -> tuple[NodeConfig, bool]:
    """Add a ``[[scanner]]``; refuses a duplicate name or folder. Returns (config, folder created)."""
    folder = Path(folder).absolute()

    def change(config: NodeConfig) -> NodeConfig:
        if any(s.name == name for s in config.scanners):
            raise ConfigError(f"--name: đã có máy quét tên {name!r}")
        table = {"name": name, "folder": str(folder), "desk": desk, "polling": polling}
        scanner = parse_scanner(table, len(config.scanners))
        return dataclasses.replace(config, scanners=(*config.scanners, scanner))

    _check_folder(folder, "--folder")  # refuse before writing anything
    config = rewrite_config(data_dir, change)
    return config, prepare_folder(folder, "--folder")


def add_printer(
    data_dir: str | Path,
    *,
    name: str,
    cups_queue: str | None = None,
    folder: Path | None = None,
    cups_server: str = "",
    desk: str | None = None,
) -> tuple[NodeConfig, bool]:
    """Add a ``[[printer]]`` (a CUPS queue or a folder); with ``desk``, it prints that desk's receipts."""
    if (cups_queue is None) == (folder is None):
        raise ConfigError("--cups-queue/--folder: chọn đúng một trong hai")
    table: dict[str, object] = {"name": name}
    if cups_queue is not None:
        table.update(kind="cups", queue=cups_queue, **({"cups_server": cups_server} if cups_server else {}))
    else:
        assert folder is not None
        folder = Path(folder).absolute()
        table.update(kind="folder", folder=str(folder))

    def change(config: NodeConfig) -> NodeConfig:
        if any(p.name == name for p in config.printers):
            raise ConfigError(f"--name: đã có máy in tên {name!r}")
        printer = parse_printer(table, len(config.printers))
        by_desk = dict(config.receipt_printers)
        if desk is not None:
            by_desk[desk] = name
        return dataclasses.replace(
            config, printers=(*config.printers, printer), receipt_printers=tuple(sorted(by_desk.items()))
        )

    if folder is not None:
        _check_folder(folder, "--folder")
    config = rewrite_config(data_dir, change)
    created = prepare_folder(folder, "--folder") if folder is not None else False
    return config, created


def describe_scanner(s: ScannerConfig) -> dict[str, object]:
    return {"name": s.name, "desk": s.desk, "folder": str(s.folder), "polling": s.polling}


def describe_printer(p: PrinterConfig, receipt_desks: list[str]) -> dict[str, object]:
    out: dict[str, object] = {"name": p.name, "kind": p.kind}
    if p.kind == "cups":
        out["queue"] = p.queue
        if p.cups_server:
            out["cups_server"] = p.cups_server
    else:
        out["folder"] = str(p.folder)
    out["receipt_desks"] = receipt_desks
    return out
