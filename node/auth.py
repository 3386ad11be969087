"""Staff accounts, sessions, login throttling and API tokens (RELIABILITY.md §4.2–4.4; OWASP ASVS V2, V3).

- Passwords: Argon2id PHC strings (``cryptography``), m = 19 MiB, t = 2, p = 1 (the OWASP minimum), at
  least 12 characters; verification runs in a thread, at most two at a time.
- Sessions: server-side rows; the cookie holds a 256-bit random token, the table only its SHA-256. A new
  token at every login (no fixation); idle and absolute timeouts; logout deletes the row. Each session
  has its CSRF synchronizer token.
- Throttling: failed logins are counted per account and per address over a sliding window; past the limit
  the answer is 429 with ``Retry-After``, whether or not the password is right.
- API tokens (kiosks, scripts): 256-bit random, shown once; only the SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass, field

import aiosqlite
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from node.errors import AuthRequired, InvalidInput, NotFound, Throttled
from node.store import Store

__all__ = [
    "AUTH_SQL",
    "ROLES",
    "Auth",
    "Principal",
    "Session",
    "add_user",
    "create_token",
    "hash_password",
    "verify_password",
]

AUTH_SQL = """
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('staff', 'supervisor')),
    password_hash TEXT NOT NULL,            -- Argon2id PHC string
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,            -- SHA-256 of the cookie value
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    address    TEXT
) STRICT;

CREATE TABLE login_failures (
    id       INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    address  TEXT NOT NULL,
    at       INTEGER NOT NULL
) STRICT;

CREATE INDEX login_failures_user ON login_failures (username, at);
CREATE INDEX login_failures_addr ON login_failures (address, at);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_hash   TEXT NOT NULL UNIQUE,      -- SHA-256 of the token
    role         TEXT NOT NULL CHECK (role IN ('staff', 'supervisor')),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;
"""

ROLES = ("staff", "supervisor")
USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
TOKEN_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD = 12
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_ITERATIONS = 2
ARGON2_LANES = 1
# Verifying against this hash when the user does not exist keeps the timing of both cases alike.
_DUMMY_HASH: str | None = None


def _ms() -> int:
    return time.time_ns() // 1_000_000


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    """An Argon2id PHC string for ``password`` (fresh 16-byte salt)."""
    kdf = Argon2id(
        salt=os.urandom(16),
        length=32,
        iterations=ARGON2_ITERATIONS,
        lanes=ARGON2_LANES,
        memory_cost=ARGON2_MEMORY_KIB,
    )
    return kdf.derive_phc_encoded(password.encode("utf-8"))


def verify_password(password: str, phc: str) -> bool:
    try:
        Argon2id.verify_phc_encoded(password.encode("utf-8"), phc)
    except (InvalidKey, ValueError):
        return False
    return True


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput({"password": f"Mật khẩu phải có ít nhất {MIN_PASSWORD} ký tự."})
    if len(password) > 256:
        raise InvalidInput({"password": "Mật khẩu dài tối đa 256 ký tự."})


async def add_user(
    store: Store, username: str, password: str, role: str, display_name: str | None = None
) -> int:
    """Create a staff account; 422 for a bad name, role or password, 409-like 422 if the name is taken."""
    if not USERNAME_RE.fullmatch(username):
        raise InvalidInput({"username": "Tên đăng nhập gồm 2–32 ký tự a–z, 0–9, '.', '_', '-'."})
    if role not in ROLES:
        raise InvalidInput({"role": "Vai trò phải là staff hoặc supervisor."})
    check_password_policy(password)
    phc = await asyncio.to_thread(hash_password, password)
    async with store.write() as db:
        async with db.execute("SELECT 1 FROM users WHERE username = ?", (username,)) as cursor:
            if await cursor.fetchone() is not None:
                raise InvalidInput({"username": f"Tên đăng nhập {username} đã tồn tại."})
        cursor = await db.execute(
            "INSERT INTO users (username, display_name, role, password_hash, created_at) VALUES (?,?,?,?,?)",
            (username, display_name or username, role, phc, _ms()),
        )
        return int(cursor.lastrowid or 0)


async def create_token(store: Store, name: str, role: str = "staff") -> str:
    """A new API token (printed once by the CLI); only its SHA-256 is stored."""
    if not TOKEN_NAME_RE.fullmatch(name):
        raise InvalidInput({"name": "Tên token gồm 2–32 ký tự a–z, 0–9, '.', '_', '-'."})
    if role not in ROLES:
        raise InvalidInput({"role": "Vai trò phải là staff hoặc supervisor."})
    token = "mct_" + secrets.token_urlsafe(32)
    async with store.write() as db:
        async with db.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)) as cursor:
            if await cursor.fetchone() is not None:
                raise InvalidInput({"name": f"Token tên {name} đã tồn tại."})
        await db.execute(
            "INSERT INTO api_tokens (name, token_hash, role, created_at) VALUES (?,?,?,?)",
            (name, _sha256(token), role, _ms()),
        )
    return token


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a staff user (session) or an API token. ``actor`` goes into event bodies."""

    actor: str
    display_name: str
    role: str
    kind: str  # "user" or "token"

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"


@dataclass(frozen=True, slots=True)
class Session:
    """A live staff session: the principal and the CSRF token of its forms."""

    principal: Principal
    csrf: str
    token_hash: str


@dataclass(slots=True)
class Auth:
    """Sessions, login and tokens over the store, with the configured timeouts and limits."""

    store: Store
    idle_ms: int
    absolute_ms: int
    max_failures: int
    window_ms: int
    kdf_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    async def _throttle(self, db: aiosqlite.Connection, username: str, address: str, now: int) -> None:
        since = now - self.window_ms
        for column, value in (("username", username), ("address", address)):
            async with db.execute(
                f"SELECT count(*), min(at) FROM login_failures WHERE {column} = ? AND at > ?", (value, since)
            ) as cursor:
                row = await cursor.fetchone()
            count, oldest = (int(row[0]), row[1]) if row else (0, None)
            if count >= self.max_failures and oldest is not None:
                retry = -(-(int(oldest) + self.window_ms - now) // 1000)
                who = "tài khoản này" if column == "username" else "địa chỉ máy này"
                raise Throttled(
                    retry,
                    f"Đăng nhập sai quá {self.max_failures} lần từ {who}. Vui lòng thử lại sau {retry} giây.",
                )

    async def login(self, username: str, password: str, address: str) -> tuple[str, Session]:
        """Check credentials; return (cookie token, session). 401 wrong, 429 throttled."""
        username = username.strip().lower()[:64]
        now = _ms()
        async with self.store.read() as db:
            await self._throttle(db, username, address, now)
            async with db.execute(
                "SELECT id, password_hash, disabled FROM users WHERE username = ?", (username,)
            ) as cursor:
                row = await cursor.fetchone()
        phc = str(row[1]) if row else _dummy_hash()
        async with self.kdf_slots:
            good = await asyncio.to_thread(verify_password, password[:256], phc)
        if row is None or not good or row[2]:
            async with self.store.write() as db:
                await db.execute(
                    "INSERT INTO login_failures (username, address, at) VALUES (?,?,?)",
                    (username, address, now),
                )
                await db.execute("DELETE FROM login_failures WHERE at < ?", (now - 24 * 3_600_000,))
            raise AuthRequired("Tên đăng nhập hoặc mật khẩu không đúng.")
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        async with self.store.write() as db:
            await db.execute("DELETE FROM login_failures WHERE username = ?", (username,))
            await db.execute("DELETE FROM sessions WHERE last_seen < ?", (now - self.idle_ms,))
            await db.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_at, last_seen, address)"
                " VALUES (?,?,?,?,?,?)",
                (_sha256(token), int(row[0]), csrf, now, now, address),
            )
        session = await self.session(token)
        assert session is not None
        return token, session

    async def session(self, token: str | None) -> Session | None:
        """The live session for a cookie token, touching its idle timer; None if absent or expired."""
        if not token or len(token) > 128:
            return None
        now = _ms()
        token_hash = _sha256(token)
        async with self.store.read() as db:
            async with db.execute(
                "SELECT u.username, u.display_name, u.role, s.csrf, s.created_at, s.last_seen, u.disabled"
                " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
                (token_hash,),
            ) as cursor:
                row = await cursor.fetchone()
        if row is None:
            return None
        expired = now - int(row[4]) > self.absolute_ms or now - int(row[5]) > self.idle_ms or row[6]
        async with self.store.write() as db:
            if expired:
                await db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
            elif now - int(row[5]) > 30_000:  # touch at most every 30 s
                await db.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, token_hash))
        if expired:
            return None
        return Session(Principal(str(row[0]), str(row[1]), str(row[2]), "user"), str(row[3]), token_hash)

    async def logout(self, token: str | None) -> None:
        if token:
            async with self.store.write() as db:
                await db.execute("DELETE FROM sessions WHERE token_hash = ?", (_sha256(token),))

    async def bearer(self, token: str) -> Principal:
        """The principal of an API token; 401 if unknown or revoked."""
        row = await self.store.fetchone(  # one trip to the reader: this runs on every API request
            "SELECT name, role, revoked_at, last_used_at FROM api_tokens WHERE token_hash = ?",
            (_sha256(token),),
        )
        if row is None or row[2] is not None:
            raise AuthRequired("Token API không hợp lệ hoặc đã bị thu hồi.")
        now = _ms()
        if row[3] is None or now - int(row[3]) > 60_000:
            async with self.store.write() as db:
                await db.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", (now, row[0]))
        return Principal(f"api:{row[0]}", f"API {row[0]}", str(row[1]), "token")

    async def revoke_token(self, name: str) -> None:
        async with self.store.write() as db:
            cursor = await db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (_ms(), name)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"Không có token đang hoạt động tên {name}.")


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
