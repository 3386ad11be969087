"""TOTP second factor for hub web users (ASVS 2.8 / 4.3.1 for the administrative interface).

- RFC 6238 TOTP (SHA-1, 6 digits, 30 s steps) with ``cryptography``'s ``TOTP``; a code is accepted for the
  current step and one step either side, and **once**: the last step used is stored, a code for that step
  or an earlier one is refused (``replayed``) even if it is the right code.
- The 20-byte secret is stored encrypted (AES-GCM, key from the caller, associated data = the user name)
  and never logged; it is shown once at enrolment as an ``otpauth://`` URI (and a QR code of it).
- Enrolment is confirmed by a first valid code; until then the secret is pending and login asks again.
- Ten recovery codes (10 random base32 characters each), stored as SHA-256 digests, each usable once.

Storage in the hub database (``web_user_mfa``, ``web_mfa_recovery``); pure helpers are separate from the
store so the TOTP window, replay and recovery rules are tested without HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from central.store import SqliteStore

__all__ = [
    "KEY_FILE",
    "load_wrap_key",
    "STEP_S",
    "MfaError",
    "MfaStore",
    "code_at",
    "new_recovery_codes",
    "new_secret",
    "otpauth_uri",
]

STEP_S = 30
DIGITS = 6
SKEW_STEPS = 1
RECOVERY_CODES = 10
ISSUER = "motcua"
KEY_FILE = "web-mfa.key"  # 32 random bytes, mode 0600, next to hub.key (separate: hub key rotation keeps it)


def load_wrap_key(data_dir: Path) -> bytes:
    """The AES-GCM key sealing TOTP secrets; made (0600, fsynced) on first use."""
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
    if len(key) != 32:
        raise MfaError("mfa_key", f"{path} must hold 32 bytes, not {len(key)}")
    return key


class MfaError(ValueError):
    """A second-factor code is wrong, reused, or the account has no (confirmed) second factor."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def new_secret() -> bytes:
    return os.urandom(20)


def _totp(secret: bytes) -> TOTP:
    return TOTP(secret, DIGITS, SHA1(), STEP_S)


def code_at(secret: bytes, unix_s: float) -> str:
    return _totp(secret).generate(int(unix_s)).decode()


def otpauth_uri(secret: bytes, username: str) -> str:
    return _totp(secret).get_provisioning_uri(username, ISSUER)


def matching_step(secret: bytes, code: str, unix_s: float) -> int | None:
    """The time step (current ± 1) whose code equals ``code``, else None."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = _totp(secret)
    step = int(unix_s) // STEP_S
    for candidate in (step, step - 1, step + 1):
        try:
            totp.verify(code.encode(), candidate * STEP_S)
        except InvalidToken:
            continue
        return candidate
    return None


def _norm_recovery(code: str) -> str:
    return code.strip().replace("-", "").replace(" ", "").upper()


def _recovery_digest(code: str) -> str:
    return hashlib.sha256(b"motcua/mfa-recovery/v1\x00" + _norm_recovery(code).encode()).hexdigest()


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode()[:10]
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


@dataclass
class MfaStore:
    """Second factors of web users in the hub database; ``wrap_key``: 32 bytes for AES-GCM."""

    store: SqliteStore
    wrap_key: bytes

    def _seal(self, username: str, secret: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.wrap_key).encrypt(nonce, secret, username.encode())

    def _open(self, username: str, blob: bytes) -> bytes:
        return AESGCM(self.wrap_key).decrypt(blob[:12], blob[12:], username.encode())

    async def status(self, username: str) -> str:
        """'none', 'pending' (secret made, not confirmed) or 'active'."""
        row = await self.store.fetchone(
            "SELECT confirmed_ms FROM web_user_mfa WHERE username = ?", (username,)
        )
        if row is None:
            return "none"
        return "pending" if row[0] is None else "active"

    async def begin(self, username: str, *, now_ms: int) -> tuple[str, bytes]:
        """A new pending secret (replaces a pending one; refused if active): (otpauth URI, secret)."""
        if await self.status(username) == "active":
            raise MfaError("mfa_active", f"{username} already has a second factor; reset it first")
        secret = new_secret()
        async with self.store.write() as db:
            await db.execute(
                "INSERT OR REPLACE INTO web_user_mfa (username, secret, created_ms, confirmed_ms, last_step)"
                " VALUES (?, ?, ?, NULL, 0)",
                (username, self._seal(username, secret), now_ms),
            )
        return otpauth_uri(secret, username), secret

    async def _secret(self, username: str) -> tuple[bytes, int, bool] | None:
        row = await self.store.fetchone(
            "SELECT secret, last_step, confirmed_ms FROM web_user_mfa WHERE username = ?", (username,)
        )
        if row is None:
            return None
        try:
            secret = self._open(username, bytes(row[0]))
        except InvalidTag:  # sealed under another web-mfa.key (restored without it): reset needed
            raise MfaError(
                "mfa_key", f"the second factor of {username} cannot be opened; run mfa-reset"
            ) from None
        return secret, int(row[1]), row[2] is not None

    async def _use_step(self, username: str, code: str, *, now_ms: int, confirming: bool) -> None:
        found = await self._secret(username)
        if found is None or found[2] == confirming:
            raise MfaError("mfa_missing", "no second factor in this state for this account")
        secret, last_step, _ = found
        step = matching_step(secret, code, now_ms / 1000)
        if step is None:
            raise MfaError("mfa_wrong", "wrong code")
        async with self.store.write() as db:
            # compare-and-set: a code for the last used step (or earlier) is a replay, even concurrently
            cursor = await db.execute(
                "UPDATE web_user_mfa SET last_step = ?, confirmed_ms = coalesce(confirmed_ms, ?)"
                " WHERE username = ? AND last_step < ?",
                (step, now_ms, username, step),
            )
            if cursor.rowcount != 1:
                raise MfaError("mfa_replayed", "this code was already used")

    async def confirm(self, username: str, code: str, *, now_ms: int) -> list[str]:
        """Confirm a pending enrolment with a first code; returns the recovery codes (shown once)."""
        await self._use_step(username, code, now_ms=now_ms, confirming=True)
        codes = new_recovery_codes()
        async with self.store.write() as db:
            await db.execute("DELETE FROM web_mfa_recovery WHERE username = ?", (username,))
            await db.executemany(
                "INSERT INTO web_mfa_recovery (username, digest, used_ms) VALUES (?, ?, NULL)",
                [(username, _recovery_digest(c)) for c in codes],
            )
        return codes

    async def verify(self, username: str, code: str, *, now_ms: int) -> str:
        """Check a login code (TOTP, or a recovery code, each once). Returns 'totp' or 'recovery'."""
        if len(_norm_recovery(code)) == 10 and not code.strip().isdigit():
            digest = _recovery_digest(code)
            async with self.store.write() as db:
                cursor = await db.execute(
                    "UPDATE web_mfa_recovery SET used_ms = ?"
                    " WHERE username = ? AND digest = ? AND used_ms IS NULL",
                    (now_ms, username, digest),
                )
                if cursor.rowcount == 1:
                    return "recovery"
            raise MfaError("mfa_wrong", "wrong or used recovery code")
        await self._use_step(username, code, now_ms=now_ms, confirming=False)
        return "totp"

    async def reset(self, username: str) -> bool:
        """Remove a user's second factor and recovery codes (lockout); they enrol again at next login."""
        async with self.store.write() as db:
            cursor = await db.execute("DELETE FROM web_user_mfa WHERE username = ?", (username,))
            await db.execute("DELETE FROM web_mfa_recovery WHERE username = ?", (username,))
        return bool(cursor.rowcount)
