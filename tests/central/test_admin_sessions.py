"""Web sessions, CSRF, login throttling and password hashes (RELIABILITY.md W1, W2, W4)."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from central.cli import main as central_main
from central.config import load
from central.web import WEB
from tests.central.helpers import hub_clock
from tests.central.webhelpers import PASSWORD, add_user, csrf_of, login

COOKIE = "motcua_session"


def _plant(client: TestClient, value: str) -> None:
    client.session.cookie_jar.update_cookies({COOKIE: value}, response_url=client.make_url("/"))


def _token(client: TestClient) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == COOKIE:
            return cookie.value
    return None


async def test_login_sets_a_strict_httponly_cookie_and_a_new_token_each_time(client: TestClient) -> None:
    await add_user(client, "admin1", "admin")
    _plant(client, "planted-by-an-attacker")
    resp = await login(client, "admin1")
    assert resp.status == 303 and resp.headers["Location"] == "/admin"
    header = resp.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert "Secure" not in header  # the test hub's public URL is http://
    first = _token(client)
    assert first and first != "planted-by-an-attacker" and len(first) >= 43  # 256 bits, base64url
    await login(client, "admin1")
    second = _token(client)
    assert second != first
    _plant(client, first or "")  # the old token died at the new login
    assert (await client.get("/admin", allow_redirects=False)).status == 303
    db = sqlite3.connect(client.server.app[WEB].config.db_path)
    stored = [r[0] for r in db.execute("SELECT token_sha256 FROM web_sessions")]
    assert second not in stored and len(stored) == 1  # only the hash is kept


async def test_secure_cookie_when_the_hub_is_served_over_https(hub_dir: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    from central.app import make_app

    config = load(hub_dir, environ={}, public_url="https://hub.example.vn")
    https_client = await aiohttp_client(make_app(config, clock=hub_clock))
    await add_user(https_client, "admin1", "admin")
    resp = await login(https_client, "admin1")
    assert resp.status == 303
    assert "Secure" in resp.headers["Set-Cookie"] and "__Host-motcua_session=" in resp.headers["Set-Cookie"]


async def test_logout_deletes_the_session(client: TestClient) -> None:
    await add_user(client, "viewer1", "viewer")
    await login(client, "viewer1")
    token = _token(client)
    csrf = await csrf_of(client, "/admin")
    assert (await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)).status == 303
    _plant(client, token or "")
    assert (await client.get("/admin", allow_redirects=False)).status == 303


async def test_idle_and_absolute_timeouts(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    config = client.server.app[WEB].config
    await add_user(client, "viewer1", "viewer")
    start = hub_clock.now
    await login(client, "viewer1")
    step = (config.session_idle_s - 60) * 1000
    for i in range(1, 4):  # active use keeps the session alive past the idle time
        monkeypatch.setattr(hub_clock, "now", start + i * step)
        assert (await client.get("/admin", allow_redirects=False)).status == 200
    monkeypatch.setattr(hub_clock, "now", start + 3 * step + config.session_idle_s * 1000 + 1000)
    assert (await client.get("/admin", allow_redirects=False)).status == 303  # idle
    monkeypatch.setattr(hub_clock, "now", start)
    await login(client, "viewer1")
    t = start
    while t < start + config.session_max_s * 1000 - step:
        t += step
        monkeypatch.setattr(hub_clock, "now", t)
        assert (await client.get("/admin", allow_redirects=False)).status == 200
    monkeypatch.setattr(hub_clock, "now", start + config.session_max_s * 1000 + 1000)
    assert (await client.get("/admin", allow_redirects=False)).status == 303  # absolute


@pytest.mark.parametrize(
    "case", ["missing", "wrong", "other_session", "cross_site_origin", "cross_site_fetch", "null_origin"]
)
async def test_state_changes_need_the_sessions_csrf_token_and_same_origin(
    client: TestClient, case: str
) -> None:
    await add_user(client, "admin1", "admin")
    await add_user(client, "admin2", "admin")
    await login(client, "admin2")
    other = await csrf_of(client, "/admin")
    await login(client, "admin1")
    csrf = await csrf_of(client, "/admin")
    data = {"csrf": csrf, "node": "VAN09", "kind": "van", "name": "Xe 09"}
    headers: dict[str, str] = {}
    if case == "missing":
        del data["csrf"]
    elif case == "wrong":
        data["csrf"] = csrf[:-2] + "xx"
    elif case == "other_session":
        data["csrf"] = other
    elif case == "cross_site_origin":
        headers["Origin"] = "https://evil.example"
    elif case == "cross_site_fetch":
        headers["Sec-Fetch-Site"] = "cross-site"
    else:
        headers["Origin"] = "null"
    resp = await client.post("/admin/nodes/invite", data=data, headers=headers)
    assert resp.status == 403
    hub = client.server.app[WEB].hub
    assert await hub.registry.node("VAN09") is None  # nothing happened
    ok = {"csrf": csrf, "node": "VAN09", "kind": "van", "name": "Xe 09"}
    same = {"Origin": str(client.make_url("")).rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    assert (await client.post("/admin/nodes/invite", data=ok, headers=same)).status == 200
    assert await hub.registry.node("VAN09") is not None


async def test_login_throttled_per_account_even_with_the_right_password(client: TestClient) -> None:
    await add_user(client, "admin1", "admin")
    statuses = [(await login(client, "admin1", "wrong password " + str(i))).status for i in range(10)]
    assert statuses == [401] * 10
    resp = await login(client, "admin1")  # right password, but the account is throttled
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert "Đăng nhập sai quá nhiều lần" in await resp.text()
    assert (await client.get("/admin", allow_redirects=False)).status == 303


async def test_login_throttled_per_ip_across_accounts(client: TestClient) -> None:
    statuses = [(await login(client, f"user{i}", "wrong password!")).status for i in range(40)]
    assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}


async def test_passwords_are_argon2id_phc_strings_with_owasp_parameters(client: TestClient) -> None:
    await add_user(client, "officer1", "officer", agency="UBND phường Ba Đình")
    db = sqlite3.connect(client.server.app[WEB].config.db_path)
    (phc,) = db.execute("SELECT phc FROM web_users WHERE username = 'officer1'").fetchone()
    assert phc.startswith("$argon2id$v=19$")
    params = dict(p.split("=") for p in phc.split("$")[3].split(","))
    assert int(params["m"]) >= 19456 and int(params["t"]) >= 2 and int(params["p"]) == 1
    assert PASSWORD not in phc
    with pytest.raises(ValueError, match="12"):
        await client.server.app[WEB].users.add("short", "viewer", "ngắn quá", agency=None, now=0)
    with pytest.raises(ValueError, match="agency"):
        await client.server.app[WEB].users.add("v2", "viewer", PASSWORD, agency="X", now=0)


def test_cli_user_add_reads_the_password_from_stdin(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = central_main(
        [
            "user",
            "add",
            "--data",
            str(hub_dir),
            "--username",
            "Lan.Nguyen",
            "--role",
            "officer",
            "--agency",
            "Sở Tư pháp",
            "--password-stdin",
        ]
    )
    assert code == 0
    db = sqlite3.connect(hub_dir / "hub.sqlite3")
    assert db.execute("SELECT username, role, agency FROM web_users").fetchall() == [
        ("lan.nguyen", "officer", "Sở Tư pháp")
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert (
        central_main(
            ["user", "add", "--data", str(hub_dir), "--username", "x2", "--role", "admin", "--password-stdin"]
        )
        == 1
    )
