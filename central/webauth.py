"""Hub web users, server-side sessions, CSRF tokens and login throttling (RELIABILITY.md §4.2–4.6).

- Users have one role: ``admin`` (every page and action), ``officer`` (the officers' workspace, scoped to
  their agency when they have one), ``viewer`` (the dashboard, read only). Passwords are Argon2id PHC
  strings (OWASP parameters or stronger), at least 12 characters; hashing runs in threads, two at a time.
- A session is a row keyed by the SHA-256 of a 256-bit random token; the cookie (HttpOnly,
  SameSite=Strict, Secure when the hub's public URL is HTTPS) holds the token. Login always makes a new
  token (no fixation); sessions end after an idle time and an absolute time; logout deletes the row.
- Each session has a CSRF synchronizer token, checked (constant time) on every state-changing request
  by ``central.web``'s middleware, together with ``Origin`` and ``Sec-Fetch-Site``.
- ``LoginThrottle`` counts failures per account and per client IP in a sliding window, in SQLite (a
  restart does not reset it); over the limit the
  login answers 429 with ``Retry-After``, without checking the password.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from central.store import SqliteStore

__all__ = [
    "MIN_PASSWORD",
    "ROLES",
    "LoginThrottle",
    "Session",
    "Sessions",
    "User",
    "UserError",
    "Users",
    "hash_password",
    "verify_password",
]

ROLES = ("admin", "officer", "viewer")
MIN_PASSWORD = 12
MAX_PASSWORD = 256
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")
# Argon2id, 64 MiB, 2 passes, 1 lane: above the OWASP minimum (19 MiB, 2 passes), ~100-200 ms per check.
_ARGON = {"length": 32, "iterations": 2, "lanes": 1, "memory_cost": 64 * 1024}
# Two threads at most: a burst of logins cannot take every core (loop-independent, unlike a Semaphore).
_HASHING = ThreadPoolExecutor(2, thread_name_prefix="argon2")


class UserError(ValueError):
    """A user cannot be created as asked (bad name, role, password, or the name is taken)."""


def _hash_sync(password: str) -> str:
    kdf = Argon2id(salt=os.urandom(16), **_ARGON)
    return kdf.derive_phc_encoded(password.encode("utf-8"))


def _verify_sync(password: str, phc: str) -> bool:
    try:
        Argon2id.verify_phc_encoded(password.encode("utf-8"), phc)
    except (InvalidKey, ValueError):
        return False
    return True


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, _hash_sync, password)


async def verify_password(password: str, phc: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, _verify_sync, password, phc)


@cache
def _dummy_phc() -> str:
    """Checked when the account does not exist, so the answer takes as long as a real check."""
    return _hash_sync(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    agency: str | None


def normalize_username(name: str) -> str:
    return unicodedata.normalize("NFC", name).strip().lower()


@dataclass
class Users:
    store: SqliteStore

    async def add(self, username: str, role: str, password: str, *, agency: str | None, now: int) -> User:
        name = normalize_username(username)
        if not 2 <= len(name) <= 64 or not set(name) <= USERNAME_CHARS:
            raise UserError("a username is 2-64 of a-z, 0-9, '.', '_' and '-'")
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        password = unicodedata.normalize("NFC", password)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise UserError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        if agency is not None:
            agency = unicodedata.normalize("NFC", agency).strip() or None
        if agency is not None and role != "officer":
            raise UserError("only officers belong to an agency")
        phc = await hash_password(password)
        async with self.store.write() as db:
            taken = await db.execute_fetchall("SELECT 1 FROM web_users WHERE username = ?", (name,))
            if taken:
                raise UserError(f"user {name} already exists")
            await db.execute(
                "INSERT INTO web_users (username, role, agency, phc, created_ms) VALUES (?, ?, ?, ?, ?)",
                (name, role, agency, phc, now),
            )
        return User(name, role, agency)

    async def disable(self, username: str, *, now: int) -> None:
        async with self.store.write() as db:
            await db.execute(
                "UPDATE web_users SET disabled_ms = ? WHERE username = ?", (now, normalize_username(username))
            )
            await db.execute("DELETE FROM web_sessions WHERE username = ?", (normalize_username(username),))

    async def authenticate(self, username: str, password: str) -> User | None:
        name = normalize_username(username)
        row = await self.store.fetchone(
            "SELECT username, role, agency, phc FROM web_users WHERE username = ? AND disabled_ms IS NULL",
            (name,),
        )
        phc = row[3] if row is not None else _dummy_phc()
        ok = await verify_password(unicodedata.normalize("NFC", password)[:MAX_PASSWORD], phc)
        return User(row[0], row[1], row[2]) if ok and row is not None else None

    async def list(self) -> list[tuple[str, str, str | None, int, int | None]]:
        rows = await self.store.fetchall(
            "SELECT username, role, agency, created_ms, disabled_ms FROM web_users ORDER BY username"
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf: str
    token_sha256: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass
class Sessions:
    """Server-side sessions with idle and absolute timeouts (milliseconds)."""

    store: SqliteStore
    idle_ms: int
    absolute_ms: int
    touch_every_ms: int = 60_000

    async def create(self, user: User, *, now: int) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)  # 256 bits
        csrf = secrets.token_urlsafe(32)
        digest = _digest(token)
        async with self.store.write() as db:
            await db.execute(
                "DELETE FROM web_sessions WHERE seen_ms < ? OR created_ms < ?",
                (now - self.idle_ms, now - self.absolute_ms),
            )
            await db.execute(
                "INSERT INTO web_sessions (token_sha256, username, csrf, created_ms, seen_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (digest, user.username, csrf, now, now),
            )
        return token, Session(user, csrf, digest)

    async def get(self, token: str, *, now: int) -> Session | None:
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        row = await self.store.fetchone(
            "SELECT s.token_sha256, s.csrf, s.created_ms, s.seen_ms, u.username, u.role, u.agency "
            "FROM web_sessions s JOIN web_users u ON u.username = s.username "
            "WHERE s.token_sha256 = ? AND u.disabled_ms IS NULL",
            (digest,),
        )
        if row is None or not hmac.compare_digest(row[0], digest):
            return None
        created, seen = row[2], row[3]
        if now - seen > self.idle_ms or now - created > self.absolute_ms:
            await self.delete(token)
            return None
        if now - seen > self.touch_every_ms:
            async with self.store.write() as db:
                await db.execute("UPDATE web_sessions SET seen_ms = ? WHERE token_sha256 = ?", (now, digest))
        return Session(User(row[4], row[5], row[6]), row[1], digest)

    async def delete(self, token: str) -> None:
        async with self.store.write() as db:
            await db.execute("DELETE FROM web_sessions WHERE token_sha256 = ?", (_digest(token),))


def csrf_matches(session: Session, candidate: str | None) -> bool:
    return bool(candidate) and hmac.compare_digest(session.csrf.encode(), (candidate or "").encode())


@dataclass
class LoginThrottle:
    """Failed logins per account and per IP in a sliding window, in SQLite (a restart does not reset it).

    Small volume: one row per failed attempt, pruned after a day; the successful path writes only the
    account's reset. ``clock``: wall time in ms (the hub clock).
    """

    store: SqliteStore
    clock: Callable[[], int]
    per_account: int = 10
    per_ip: int = 30
    window_s: float = 900.0

    @staticmethod
    def _keys(username: str, ip: str) -> tuple[str, str]:
        return f"u:{normalize_username(username)}", f"ip:{ip}"

    async def retry_after(self, username: str, ip: str) -> int:
        """0 if a login attempt may go ahead, else the seconds to wait."""
        now = self.clock()
        window_ms = int(self.window_s * 1000)
        waits = []
        for key, limit in zip(self._keys(username, ip), (self.per_account, self.per_ip), strict=True):
            rows = await self.store.fetchall(
                "SELECT at_ms FROM web_login_failures WHERE key = ? AND at_ms > ?"
                " ORDER BY at_ms DESC LIMIT ?",
                (key, now - window_ms, limit),
            )
            if len(rows) >= limit:
                waits.append((int(rows[-1][0]) + window_ms - now) / 1000)
        return max(1, int(max(waits)) + 1) if waits else 0

    async def failed(self, username: str, ip: str) -> None:
        now = self.clock()
        async with self.store.write() as db:
            await db.executemany(
                "INSERT INTO web_login_failures (key, at_ms) VALUES (?, ?)",
                [(key, now) for key in self._keys(username, ip)],
            )
            await db.execute("DELETE FROM web_login_failures WHERE at_ms < ?", (now - 86_400_000,))

    async def succeeded(self, username: str) -> None:
        async with self.store.write() as db:
            await db.execute("DELETE FROM web_login_failures WHERE key = ?", (self._keys(username, "")[0],))


__all__ += ["csrf_matches", "normalize_username"]
