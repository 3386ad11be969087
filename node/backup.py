"""Backups of a node's state directory: one tar archive with a manifest of SHA-256s.

``motcua-node backup --data DIR --to FILE [--with-key]`` may run while the node serves:

- the database is copied with SQLite's online backup API (``Connection.backup``), which reads one
  consistent snapshot through SQLite's own locks; the live file is never copied byte by byte
  (RELIABILITY.md §1.2: copying a database mid-transaction is a documented way to corrupt it). The copy
  passes ``PRAGMA integrity_check`` before it goes into the archive;
- blobs are content-addressed and never modified after their rename, so each file is read as it is; its
  SHA-256 is checked against its name while it streams into the archive (a damaged scan stops the backup
  with the file named, rather than producing a backup nobody can restore);
- ``node.toml`` goes in; the private key ``node.key`` only with ``--with-key`` (and a restore never
  signs with it: see ``node.reprovision``);
- ``MANIFEST.json`` comes last: format, node, time, each epoch's head, and name → (sha256, size) of
  every other member;
- the archive is written under a temporary name (mode 0600: it holds personal data), fsynced, renamed
  over ``FILE`` and the directory fsynced: a crash leaves either the old file or the complete new one.

``read_archive`` is the other half: it checks every member against the manifest (names, types, sizes,
hashes, nothing missing, nothing extra) while extracting into a staging folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from node.atrest import DATAKEY_FILE, KEK_FILE, keyring_for, read_info
from node.blobs import BlobStore, fsync_dir
from node.config import CONFIG_FILE
from node.dbcipher import connect
from node.errors import NodeError

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "BackupError",
    "BackupManifest",
    "create_backup",
    "read_archive",
    "snapshot_database",
]

FORMAT = "motcua-backup/1"
MANIFEST_NAME = "MANIFEST.json"
DB_NAME = "node.sqlite3"
KEY_NAME = "node.key"
_BLOB_RE = re.compile(r"blobs/sha256/([0-9a-f]{2})/([0-9a-f]{64})")
_COPY = 1 << 20

Progress = Callable[[int], None]


class BackupError(NodeError):
    """A backup could not be written, or an archive is not a sound backup (the message names the member)."""

    status = 422
    default_message = "Bản sao lưu không hợp lệ."


@dataclass(frozen=True, slots=True)
class BackupManifest:
    """What ``MANIFEST.json`` says: who, when, heads, and every member's SHA-256 and size."""

    format: str
    kind: str  # "node" or "central"
    ident: str  # node id, or "hub"
    created_ms: int
    with_key: bool
    heads: list[dict[str, Any]]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BackupManifest:
        try:
            value = json.loads(data)
            manifest = cls(**value)
        except (ValueError, TypeError) as exc:
            raise BackupError(f"{MANIFEST_NAME} không đọc được: {exc}") from None
        if manifest.format != FORMAT:
            raise BackupError(f"{MANIFEST_NAME}: định dạng {manifest.format!r}, cần {FORMAT!r}")
        return manifest


class _Hashing:
    """A read-only file wrapper that hashes what tarfile reads from it."""

    def __init__(self, handle: BinaryIO, progress: Progress | None) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(n)
        self.digest.update(data)
        self.size += len(data)
        if self.progress is not None and data:
            self.progress(len(data))
        return data


def snapshot_database(source: Path, target: Path, key: bytes | None = None) -> None:
    """A consistent copy of a live SQLite database via the online backup API, integrity-checked.

    The copy is encrypted with the same database key (SQLCipher pages are copied as they are): no
    plaintext copy of the database exists at any point. ``key`` defaults to the unlocked keyring's.
    """
    if not source.exists():
        raise BackupError(f"không tìm thấy cơ sở dữ liệu {source}")
    key = key or keyring_for(source.parent).db_key
    src = connect(source, key, timeout=30)
    try:
        src.execute("PRAGMA query_only=1")
        dst = connect(target, key)
        try:
            src.backup(dst)  # pages=-1: one step, one read transaction, one consistent snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # a standalone file, no -wal beside it
            (result,) = dst.execute("PRAGMA integrity_check").fetchone()
            if result != "ok":
                raise BackupError(f"bản sao cơ sở dữ liệu không toàn vẹn: {result}")
            dst.commit()
        finally:
            dst.close()
    finally:
        src.close()
    with target.open("rb") as handle:
        os.fsync(handle.fileno())


def _heads(db_path: Path, node_id: str, key: bytes) -> list[dict[str, Any]]:
    db = connect(db_path, key)
    try:
        rows = db.execute(
            "SELECT e.epoch, max(e.seq), (SELECT hash FROM entries x WHERE x.log = e.log"
            " AND x.epoch = e.epoch ORDER BY seq DESC LIMIT 1)"
            " FROM entries e WHERE e.log = ? GROUP BY e.epoch ORDER BY e.epoch",
            (node_id,),
        ).fetchall()
    finally:
        db.close()
    return [{"epoch": int(r[0]), "seq": int(r[1]), "hash": str(r[2])} for r in rows]


def _blob_files(blob_dir: Path) -> Iterator[tuple[str, Path]]:
    root = blob_dir / "sha256"
    if not root.is_dir():
        return
    for sub in sorted(root.iterdir()):
        if not sub.is_dir():
            continue
        for path in sorted(sub.iterdir()):
            name = f"blobs/sha256/{sub.name}/{path.name}"
            if _BLOB_RE.fullmatch(name) and path.is_file() and not path.is_symlink():
                yield name, path


def _add(tar: tarfile.TarFile, name: str, path: Path, progress: Progress | None) -> dict[str, Any]:
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, int(time.time())
        reader = _Hashing(handle, progress)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    if reader.size != size:
        raise BackupError(f"{name} đổi kích thước trong khi sao lưu")
    return {"sha256": reader.digest.hexdigest(), "size": size}


def write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``target`` under a temporary name (0600), fsync, rename, fsync the directory."""
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def create_backup(
    data_dir: Path,
    target: Path,
    *,
    node_id: str,
    with_key: bool = False,
    progress: Progress | None = None,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> BackupManifest:
    """Write a backup of the node in ``data_dir`` to ``target``; return its manifest."""
    data_dir = data_dir.absolute()
    target = target.absolute()
    if target.is_relative_to(data_dir):
        raise BackupError(f"--to {target}: không ghi bản sao lưu vào chính thư mục dữ liệu {data_dir}")
    with tempfile.TemporaryDirectory(
        prefix=".backup-", dir=target.parent if target.parent.exists() else None
    ) as tmp:
        snapshot = Path(tmp) / DB_NAME
        ring = keyring_for(data_dir)
        snapshot_database(data_dir / DB_NAME, snapshot, ring.db_key)
        manifest = BackupManifest(
            format=FORMAT,
            kind="node",
            ident=node_id,
            created_ms=now_ms(),
            with_key=with_key,
            heads=_heads(snapshot, node_id, ring.db_key),
        )
        members: list[tuple[str, Path]] = [(DB_NAME, snapshot), (CONFIG_FILE, data_dir / CONFIG_FILE)]
        members += _key_members(data_dir)
        if with_key:
            members.append((KEY_NAME, data_dir / KEY_NAME))
        blobs = BlobStore(data_dir, low_disk_bytes=0, keyring=ring)
        members.extend(_blob_files(data_dir / "blobs"))

        def write(handle: BinaryIO) -> None:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, path in members:
                    entry = _add(tar, name, path, progress)
                    blob = _BLOB_RE.fullmatch(name)
                    if blob is not None and not blobs.verify_file(path, blob[2]):
                        raise BackupError(
                            f"tệp {path} bị hỏng: không giải mã/xác thực được hoặc SHA-256 khác tên tệp; "
                            "chạy 'motcua-node verify' và kiểm tra đĩa"
                        )
                    manifest.files[name] = entry
                data = manifest.to_json()
                info = tarfile.TarInfo(MANIFEST_NAME)
                info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(data))

        write_atomically(target, write)
    return manifest


def _key_members(data_dir: Path) -> list[tuple[str, Path]]:
    """The wrapped data key always (the archive is ciphertext without it); the key file of the
    'file' source when it lives in the data folder (that source protects nothing anyway)."""
    out = [(DATAKEY_FILE, data_dir / DATAKEY_FILE)]
    info = read_info(data_dir)
    if info["source"] == "file" and not info.get("key_file") and (data_dir / KEK_FILE).exists():
        out.append((KEK_FILE, data_dir / KEK_FILE))
    return out


def _safe_name(name: str, allowed: Callable[[str], bool]) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or str(path) != name or not allowed(name):
        raise BackupError(f"bản sao lưu chứa tệp không được phép: {name!r}")
    return name


def read_archive(
    archive: Path,
    staging: Path,
    *,
    kind: str,
    allowed: Callable[[str], bool],
    progress: Progress | None = None,
) -> BackupManifest:
    """Extract ``archive`` into ``staging`` (fsynced), checking every member against the manifest."""
    seen: dict[str, dict[str, Any]] = {}
    manifest: BackupManifest | None = None
    try:
        tar = tarfile.open(archive, mode="r:")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{archive}: không mở được bản sao lưu: {exc}") from None
    with tar:
        for member in tar:
            if member.name == MANIFEST_NAME:
                handle = tar.extractfile(member)
                assert handle is not None
                manifest = BackupManifest.from_json(handle.read(1 << 24))
                continue
            name = _safe_name(member.name, allowed)
            if not member.isreg():
                raise BackupError(f"{name}: không phải tệp thông thường")
            if name in seen:
                raise BackupError(f"{name}: xuất hiện hai lần trong bản sao lưu")
            source = tar.extractfile(member)
            assert source is not None
            out = staging / name
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            digest = hashlib.sha256()
            size = 0
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                while chunk := source.read(_COPY):
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
                handle.flush()
                os.fsync(handle.fileno())
            seen[name] = {"sha256": digest.hexdigest(), "size": size}
    if manifest is None:
        raise BackupError(f"{archive}: thiếu {MANIFEST_NAME} (bản sao lưu bị cắt cụt?)")
    if manifest.kind != kind:
        raise BackupError(f"{archive}: là bản sao lưu của {manifest.kind}, không phải {kind}")
    for name, expected in manifest.files.items():
        got = seen.get(name)
        if got is None:
            raise BackupError(f"{archive}: thiếu tệp {name} mà {MANIFEST_NAME} liệt kê")
        if got != expected:
            raise BackupError(f"{archive}: {name} không khớp SHA-256/kích thước trong {MANIFEST_NAME}")
    extra = sorted(set(seen) - set(manifest.files))
    if extra:
        raise BackupError(f"{archive}: tệp {extra[0]} không có trong {MANIFEST_NAME}")
    return manifest  # blob files are ciphertext: the restore authenticates each against its name
