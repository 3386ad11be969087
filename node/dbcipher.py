"""The one way to open the node's SQLite database: SQLCipher 4 keyed with the node's database key.

Every connection to ``node.sqlite3`` (the store's writer and reader, the online backup, ``verify``,
``status``, restore, migrations, tests) goes through ``connect`` (blocking, DB-API) or ``aconnect``
(aiosqlite, whose ``Connection(connector, iter_chunk_size)`` accepts any DB-API connector). Each
connection:

1. sets ``PRAGMA key = "x'<64 hex>'"`` first: a raw 256-bit key, so no per-open KDF (the key comes
   from the unwrapped keyring, node.atrest);
2. reads the schema once, which fails on a wrong key or a plaintext file with ``WrongDataKey``;
3. sets ``temp_store=MEMORY`` so sorts and temp indices never spill plaintext to a temp file.

SQLCipher 4 defaults stay: AES-256-CBC pages with a per-page HMAC-SHA512, 4096-byte pages;
``PRAGMA cipher_integrity_check`` checks every page's HMAC (``integrity_errors``). The journal mode (WAL)
and ``synchronous=FULL`` are the store's own pragmas, unchanged.

``DB_ERRORS``/``OperationalError``... are the error classes of both drivers, so ``except`` clauses work
on connections of either (a few hub-side and test helpers still use the stdlib ``sqlite3``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
from sqlcipher3 import dbapi2 as sqlcipher

from node.errors import WrongDataKey

__all__ = [
    "DB_ERRORS",
    "HEADER",
    "IntegrityError",
    "OperationalError",
    "Row",
    "aconnect",
    "connect",
    "integrity_errors",
    "is_plaintext",
]

Row = sqlcipher.Row
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, sqlcipher.Error)
OperationalError: tuple[type[Exception], ...] = (sqlite3.OperationalError, sqlcipher.OperationalError)
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError, sqlcipher.IntegrityError)
HEADER = b"SQLite format 3\x00"


def is_plaintext(path: Path) -> bool:
    """True when ``path`` is an unencrypted SQLite file (its first 16 bytes are the SQLite header)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == HEADER
    except FileNotFoundError:
        return False


def connect(path: str | Path, key: bytes | None, **kwargs: Any) -> sqlcipher.Connection:
    """A DB-API connection to ``path`` keyed with ``key`` (32 bytes; None only for ``:memory:``)."""
    kwargs.setdefault("isolation_level", None)
    kwargs.setdefault("check_same_thread", False)  # aiosqlite opens in its thread and stays there
    con = sqlcipher.connect(str(path), **kwargs)
    try:
        if key is not None:
            if len(key) != 32:
                raise WrongDataKey("khóa cơ sở dữ liệu phải dài 32 byte", detail=str(len(key)))
            con.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        elif str(path) != ":memory:":
            raise WrongDataKey("cơ sở dữ liệu của máy trạm chỉ mở bằng khóa dữ liệu", detail=str(path))
        con.execute("PRAGMA cipher_log_level = NONE")
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlcipher.DatabaseError as exc:
            raise WrongDataKey(
                "Khóa dữ liệu không mở được cơ sở dữ liệu (sai khóa, tệp chưa mã hóa hoặc tệp hỏng).",
                detail=f"{path}: {exc}",
            ) from None
        con.execute("PRAGMA temp_store = MEMORY")
    except BaseException:
        con.close()
        raise
    return con


async def aconnect(path: str | Path, key: bytes | None, **kwargs: Any) -> aiosqlite.Connection:
    """The aiosqlite connection (its own thread) over ``connect``."""
    return await aiosqlite.Connection(lambda: connect(path, key, **kwargs), 64)  # type: ignore[arg-type,return-value]


def integrity_errors(path: str | Path, key: bytes) -> list[str]:
    """Pages whose HMAC fails (``cipher_integrity_check``) plus ``integrity_check`` problems; [] = ok."""
    con = connect(path, key)
    try:
        out = [str(r[0]) for r in con.execute("PRAGMA cipher_integrity_check").fetchall()]
        if out:  # a page that fails its HMAC cannot be read: integrity_check would only fail on it
            return out
        rows = con.execute("PRAGMA integrity_check").fetchall()
        return [str(r[0]) for r in rows if r[0] != "ok"]
    finally:
        con.close()


def encrypt_plaintext(path: Path, key: bytes) -> None:
    """Encrypt an existing plaintext database in place (``sqlcipher_export``; temp copy, fsync, rename)."""
    import os

    tmp = path.with_name(path.name + ".enc-tmp")
    tmp.unlink(missing_ok=True)
    con = sqlcipher.connect(str(path), isolation_level=None)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute(f"ATTACH DATABASE ? AS enc KEY \"x'{key.hex()}'\"", (str(tmp),))
        con.execute("SELECT sqlcipher_export('enc')")
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.execute(f"PRAGMA enc.user_version = {int(version)}")
        con.execute("DETACH DATABASE enc")
    finally:
        con.close()
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
