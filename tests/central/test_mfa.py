"""TOTP second factor (central.mfa): window, replay, recovery codes, sealed secret; real hub database."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.config import load
from central.hub import Hub
from central.mfa import STEP_S, MfaError, MfaStore, code_at, matching_step, new_secret
from tests.central.helpers import hub_clock

T = 1_767_225_600  # a step boundary (divisible by 30)


@pytest.fixture
async def mfa(hub_dir: Path) -> AsyncIterator[MfaStore]:
    hub = await Hub.open(load(hub_dir, environ={}), hub_clock)
    try:
        yield MfaStore(hub.store, b"k" * 32)
    finally:
        await hub.close()


def _secret_of(uri: str) -> bytes:
    import base64
    import urllib.parse

    query = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    text = query["secret"][0]
    return base64.b32decode(text + "=" * (-len(text) % 8))


def test_totp_window_is_one_step_either_side() -> None:
    secret = new_secret()
    now = T + 10
    assert matching_step(secret, code_at(secret, now), now) == T // STEP_S
    assert matching_step(secret, code_at(secret, now - STEP_S), now) == T // STEP_S - 1
    assert matching_step(secret, code_at(secret, now + STEP_S), now) == T // STEP_S + 1
    assert matching_step(secret, code_at(secret, now - 2 * STEP_S), now) is None
    assert matching_step(secret, code_at(secret, now + 2 * STEP_S), now) is None
    assert matching_step(secret, "12345", now) is None and matching_step(secret, "abcdef", now) is None


async def test_enrol_confirm_verify_and_replay_refused(mfa: MfaStore, hub_dir: Path) -> None:
    assert await mfa.status("admin1") == "none"
    uri, secret = await mfa.begin("admin1", now_ms=T * 1000)
    assert uri.startswith("otpauth://totp/motcua:admin1?") and _secret_of(uri) == secret
    assert await mfa.status("admin1") == "pending"
    with pytest.raises(MfaError) as wrong:
        await mfa.confirm("admin1", "000000" if code_at(secret, T) != "000000" else "111111", now_ms=T * 1000)
    assert wrong.value.code == "mfa_wrong"
    codes = await mfa.confirm("admin1", code_at(secret, T), now_ms=T * 1000)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert await mfa.status("admin1") == "active"
    # the confirming code's step is used: the same code at login is a replay
    with pytest.raises(MfaError) as replay:
        await mfa.verify("admin1", code_at(secret, T), now_ms=(T + 5) * 1000)
    assert replay.value.code == "mfa_replayed"
    later = T + STEP_S
    assert await mfa.verify("admin1", code_at(secret, later), now_ms=later * 1000) == "totp"
    with pytest.raises(MfaError, match="already used"):
        await mfa.verify("admin1", code_at(secret, later), now_ms=later * 1000)
    with pytest.raises(MfaError):  # an older step's code, still inside the window, is refused too
        await mfa.verify("admin1", code_at(secret, later - STEP_S), now_ms=later * 1000)
    with pytest.raises(MfaError, match="already has"):
        await mfa.begin("admin1", now_ms=later * 1000)
    # the secret is sealed: its bytes and its base32 do not appear in the database file
    raw = sqlite3.connect(hub_dir / "hub.sqlite3").execute("SELECT secret FROM web_user_mfa").fetchone()[0]
    assert secret not in raw and len(raw) == 12 + 20 + 16


async def test_recovery_codes_are_hashed_and_single_use(mfa: MfaStore, hub_dir: Path) -> None:
    _, secret = await mfa.begin("admin2", now_ms=T * 1000)
    codes = await mfa.confirm("admin2", code_at(secret, T), now_ms=T * 1000)
    stored = [
        r[0] for r in sqlite3.connect(hub_dir / "hub.sqlite3").execute("SELECT digest FROM web_mfa_recovery")
    ]
    assert len(stored) == 10 and not any(c.replace("-", "") in d for c in codes for d in stored)
    assert await mfa.verify("admin2", codes[0].lower(), now_ms=T * 1000) == "recovery"
    with pytest.raises(MfaError):
        await mfa.verify("admin2", codes[0], now_ms=T * 1000)
    with pytest.raises(MfaError):
        await mfa.verify("admin2", "AAAAA-BBBBB", now_ms=T * 1000)
    assert await mfa.verify("admin2", codes[1], now_ms=T * 1000) == "recovery"
    assert await mfa.reset("admin2") and await mfa.status("admin2") == "none"
    with pytest.raises(MfaError):
        await mfa.verify("admin2", codes[2], now_ms=T * 1000)


async def test_cli_mfa_reset_removes_the_factor(hub_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from central import cli as central_cli
    from central.mfa import KEY_FILE, load_wrap_key

    hub = await Hub.open(load(hub_dir, environ={}), hub_clock)
    try:
        store = MfaStore(hub.store, load_wrap_key(hub_dir))
        _, secret = await store.begin("admin1", now_ms=T * 1000)
        await store.confirm("admin1", code_at(secret, T), now_ms=T * 1000)
    finally:
        await hub.close()
    assert (hub_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600
    argv = ["--data", str(hub_dir), "user", "mfa-reset", "--username", "admin1"]
    assert await asyncio.to_thread(central_cli.main, argv) == 0
    assert "removed" in capsys.readouterr().out
    hub = await Hub.open(load(hub_dir, environ={}), hub_clock)
    try:
        assert await MfaStore(hub.store, load_wrap_key(hub_dir)).status("admin1") == "none"
    finally:
        await hub.close()
