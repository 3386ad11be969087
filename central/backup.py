"""Backups of the hub's state directory, and restoring one (``motcua-central backup`` / ``restore-backup``).

The archive has the same format as a node's (``motcua-backup/1``: a tar with ``MANIFEST.json`` last,
listing every member's SHA-256 and size); the code is duplicated from ``node/backup.py`` on purpose
(central never imports node):

- ``hub.sqlite3`` through SQLite's online backup API (one consistent snapshot, integrity-checked), while
  the hub serves;
- ``blobs/sha256/..`` (complete scans, checked against their names while they stream) and
  ``blobs/chunks/<sha>/<i>`` (chunks of uploads in progress);
- ``central.toml`` if present; ``hub.key`` (and ``web-mfa.key``, which seals the admins' TOTP secrets) only
  with ``--with-key``. Without it, the restore needs the
  key from its offline copy (``--key FILE``), and checks it is the key that signed this hub's logs.

Restore puts everything in an empty folder, then reconciles uploads in progress: a chunk row whose file
did not make it into the archive (assembled between the snapshot and the copy) is forgotten, so the hub
asks the node for it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from central.config import CONFIG_FILE
from protocol import load_private_key, public_key_text

__all__ = ["BackupError", "BackupManifest", "create_backup", "restore_backup"]

FORMAT = "motcua-backup/1"
MANIFEST_NAME = "MANIFEST.json"
DB_NAME = "hub.sqlite3"
KEY_NAME = "hub.key"
MFA_KEY_NAME = "web-mfa.key"  # central.mfa.KEY_FILE: seals the admins' TOTP secrets; a secret like hub.key
_BLOB_RE = re.compile(r"blobs/sha256/([0-9a-f]{2})/([0-9a-f]{64})")
_CHUNK_RE = re.compile(r"blobs/chunks/([0-9a-f]{64})/(\d{1,6})")
_COPY = 1 << 20

Progress = Callable[[int], None]


class BackupError(Exception):
    """A backup could not be written, or an archive is not a sound hub backup (names the member)."""


@dataclass(frozen=True, slots=True)
class BackupManifest:
    format: str
    kind: str
    ident: str
    created_ms: int
    with_key: bool
    heads: list[dict[str, Any]]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BackupManifest:
        try:
            manifest = cls(**json.loads(data))
        except (ValueError, TypeError) as exc:
            raise BackupError(f"{MANIFEST_NAME} is unreadable: {exc}") from None
        if manifest.format != FORMAT:
            raise BackupError(f"{MANIFEST_NAME}: format {manifest.format!r}, expected {FORMAT!r}")
        return manifest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot_database(source: Path, target: Path) -> None:
    """A consistent, integrity-checked copy of the live hub database (online backup API)."""
    if not source.exists():
        raise BackupError(f"no hub database at {source}")
    src = sqlite3.connect(source, timeout=30)
    try:
        src.execute("PRAGMA query_only=1")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            (result,) = dst.execute("PRAGMA integrity_check").fetchone()
            if result != "ok":
                raise BackupError(f"the database copy fails integrity_check: {result}")
        finally:
            dst.close()
    finally:
        src.close()
    with target.open("rb") as handle:
        os.fsync(handle.fileno())


def _heads(db_path: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute("SELECT log, epoch, seq, hash FROM heads ORDER BY log, epoch").fetchall()
    finally:
        db.close()
    return [{"log": r[0], "epoch": r[1], "seq": r[2], "hash": r[3]} for r in rows]


def _blob_files(blob_dir: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(blob_dir.glob("sha256/*/*")) + sorted(blob_dir.glob("chunks/*/*")):
        name = path.relative_to(blob_dir.parent).as_posix()
        if (
            (_BLOB_RE.fullmatch(name) or _CHUNK_RE.fullmatch(name))
            and path.is_file()
            and not path.is_symlink()
        ):
            yield name, path


class _Hashing:
    def __init__(self, handle: BinaryIO, progress: Progress | None) -> None:
        self.handle, self.digest, self.size, self.progress = handle, hashlib.sha256(), 0, progress

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(n)
        self.digest.update(data)
        self.size += len(data)
        if self.progress is not None and data:
            self.progress(len(data))
        return data


def _write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
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
    _fsync_dir(target.parent)


def create_backup(
    data_dir: Path, target: Path, *, with_key: bool = False, progress: Progress | None = None
) -> BackupManifest:
    """Write a backup of the hub in ``data_dir`` to ``target`` (atomically, mode 0600)."""
    data_dir, target = data_dir.absolute(), target.absolute()
    if target.is_relative_to(data_dir):
        raise BackupError(f"--to {target}: refusing to write the backup inside the state directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=target.parent) as tmp:
        snapshot = Path(tmp) / DB_NAME
        snapshot_database(data_dir / DB_NAME, snapshot)
        manifest = BackupManifest(
            FORMAT, "central", "hub", time.time_ns() // 1_000_000, with_key, _heads(snapshot)
        )
        members: list[tuple[str, Path]] = [(DB_NAME, snapshot)]
        if (data_dir / CONFIG_FILE).exists():
            members.append((CONFIG_FILE, data_dir / CONFIG_FILE))
        if with_key:
            members.append((KEY_NAME, data_dir / KEY_NAME))
            if (data_dir / MFA_KEY_NAME).exists():  # without it, restored admins need `user mfa-reset`
                members.append((MFA_KEY_NAME, data_dir / MFA_KEY_NAME))
        members.extend(_blob_files(data_dir / "blobs"))

        def write(handle: BinaryIO) -> None:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, path in members:
                    with path.open("rb") as source:
                        size = os.fstat(source.fileno()).st_size
                        info = tarfile.TarInfo(name)
                        info.size, info.mode, info.mtime = size, 0o600, int(time.time())
                        reader = _Hashing(source, progress)
                        tar.addfile(info, reader)  # type: ignore[arg-type]
                    digest = reader.digest.hexdigest()
                    blob = _BLOB_RE.fullmatch(name)
                    if blob is not None and digest != blob[2]:
                        raise BackupError(f"{path} is damaged: its content hashes to {digest}, not its name")
                    manifest.files[name] = {"sha256": digest, "size": size}
                data = manifest.to_json()
                info = tarfile.TarInfo(MANIFEST_NAME)
                info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(data))

        _write_atomically(target, write)
    return manifest


def _allowed(name: str) -> bool:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or str(path) != name:
        return False
    return name in (DB_NAME, CONFIG_FILE, KEY_NAME, MFA_KEY_NAME) or bool(
        _BLOB_RE.fullmatch(name) or _CHUNK_RE.fullmatch(name)
    )


def _extract(archive: Path, staging: Path, progress: Progress | None) -> BackupManifest:
    seen: dict[str, dict[str, Any]] = {}
    manifest: BackupManifest | None = None
    try:
        tar = tarfile.open(archive, mode="r:")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{archive}: not a backup archive: {exc}") from None
    with tar:
        for member in tar:
            if member.name == MANIFEST_NAME:
                handle = tar.extractfile(member)
                assert handle is not None
                manifest = BackupManifest.from_json(handle.read(1 << 24))
                continue
            if not _allowed(member.name) or not member.isreg() or member.name in seen:
                raise BackupError(f"{archive}: member {member.name!r} is not allowed in a hub backup")
            source = tar.extractfile(member)
            assert source is not None
            out = staging / member.name
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            digest, size = hashlib.sha256(), 0
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
            seen[member.name] = {"sha256": digest.hexdigest(), "size": size}
    if manifest is None:
        raise BackupError(f"{archive}: no {MANIFEST_NAME} (a truncated archive?)")
    if manifest.kind != "central":
        raise BackupError(f"{archive}: a backup of a {manifest.kind}, not of a hub")
    for name, expected in manifest.files.items():
        if seen.get(name) is None:
            raise BackupError(f"{archive}: {name} is listed in {MANIFEST_NAME} but missing")
        if seen[name] != expected:
            raise BackupError(f"{archive}: {name} does not match its SHA-256/size in {MANIFEST_NAME}")
    extra = sorted(set(seen) - set(manifest.files))
    if extra:
        raise BackupError(f"{archive}: {extra[0]} is not listed in {MANIFEST_NAME}")
    for name, got in seen.items():
        blob = _BLOB_RE.fullmatch(name)
        if blob is not None and got["sha256"] != blob[2]:
            raise BackupError(f"{archive}: {name} does not match its content address")
    return manifest


def _hub_key_of(db_path: Path) -> str | None:
    """The hub key in force: named by the genesis of the broadcast log or its last ``hub.key_rotation``
    (None if the hub never wrote one)."""
    from central.rotation import key_in_force

    return key_in_force(db_path)


def _reconcile_chunks(db_path: Path, blob_dir: Path) -> int:
    """Forget chunk rows of unfinished uploads whose file is not here; return how many."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        rows = db.execute(
            "SELECT c.sha256, c.idx FROM blob_chunks c JOIN blobs b USING (sha256) WHERE b.state = 'partial'"
        ).fetchall()
        gone = [(sha, idx) for sha, idx in rows if not (blob_dir / "chunks" / sha / str(idx)).is_file()]
        db.executemany("DELETE FROM blob_chunks WHERE sha256 = ? AND idx = ?", gone)
        missing = db.execute("SELECT sha256 FROM blobs WHERE state = 'complete'").fetchall()
        lost = [sha for (sha,) in missing if not (blob_dir / "sha256" / sha[:2] / sha).is_file()]
        if lost:
            db.execute("ROLLBACK")
            raise BackupError(f"the backup lacks complete blob {lost[0]} that its database lists")
        db.execute("COMMIT")
    finally:
        db.close()
    return len(gone)


def restore_backup(
    archive: Path, data_dir: Path, *, key_file: Path | None = None, progress: Progress | None = None
) -> BackupManifest:
    """Restore a hub backup into ``data_dir`` (absent or empty). The hub key comes from the archive
    (``--with-key`` backups) or ``key_file``; it must be the key that signed this hub's logs."""
    data_dir = data_dir.absolute()
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty; restore into a new folder")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = data_dir / ".restore-staging"
    staging.mkdir(mode=0o700)
    try:
        manifest = _extract(archive, staging, progress)
        key_path = staging / KEY_NAME
        if key_file is not None:
            if key_path.exists():
                key_path.unlink()
            shutil.copyfile(key_file, key_path)
            os.chmod(key_path, 0o600)
        if not key_path.exists():
            raise BackupError("this backup has no hub.key: give the offline copy with --key FILE")
        key = public_key_text(load_private_key(key_path))
        signed_with = _hub_key_of(staging / DB_NAME)
        if signed_with is not None and signed_with != key:
            raise BackupError(f"the key given ({key[:12]}…) is not the key of this hub ({signed_with[:12]}…)")
        (staging / "blobs").mkdir(exist_ok=True)
        _reconcile_chunks(staging / DB_NAME, staging / "blobs")
        if (staging / MFA_KEY_NAME).exists():
            os.chmod(staging / MFA_KEY_NAME, 0o600)
        for name in ("blobs", DB_NAME, CONFIG_FILE, MFA_KEY_NAME, KEY_NAME):  # the key last: no key, no hub
            if (staging / name).exists():
                os.replace(staging / name, data_dir / name)
        _fsync_dir(data_dir)
    except BaseException:
        for name in ("blobs", DB_NAME, CONFIG_FILE, MFA_KEY_NAME, KEY_NAME):
            target = data_dir / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
