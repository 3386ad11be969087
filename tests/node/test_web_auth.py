"""Staff login: sessions, fixation, CSRF and origin checks, throttling, logout, timeouts, password hashes."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from node.auth import verify_password
from node.config import NodeConfig
from node.store import Store
from tests.node.conftest import PASSWORD, csrf_of, login, page_csrf


def _session_cookie(client: TestClient[Any, Any]) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == "motcua_session":
            return cookie.value
    return None


async def test_login_sets_a_strict_httponly_cookie_and_lands_on_today(client: TestClient[Any, Any]) -> None:
    redirect = await client.get("/ho-so/moi", allow_redirects=False)
    assert redirect.status == 303 and redirect.headers["Location"] == "/dang-nhap?next=/ho-so/moi"
    response = await login(client)
    assert response.status == 303 and response.headers["Location"] == "/hom-nay"
    header = response.headers.getall("Set-Cookie")
    session = next(h for h in header if h.startswith("motcua_session="))
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
    assert "Secure" not in session  # plain HTTP on loopback in tests; secure_cookies or HTTPS add it
    today = await client.get("/hom-nay")
    html = await today.text()
    assert today.status == 200 and '<html lang="vi">' in html and "Nguyễn Văn An" in html
    assert "Ngoại tuyến từ" in html and "bản ghi chưa gửi lên trung tâm" in html
    assert (
        today.headers["Cache-Control"] == "no-store"
        and "frame-ancestors 'none'" in today.headers["Content-Security-Policy"]
    )


async def test_wrong_password_is_401_in_vietnamese(client: TestClient[Any, Any]) -> None:
    response = await login(client, password="sai-mat-khau-123")
    assert response.status == 401
    assert "Tên đăng nhập hoặc mật khẩu không đúng" in await response.text()
    assert _session_cookie(client) is None


async def test_new_session_token_at_login_and_the_old_one_dies(client: TestClient[Any, Any]) -> None:
    await login(client)
    first = _session_cookie(client)
    assert first
    client.session.cookie_jar.clear()
    page = await client.get("/dang-nhap")  # a fresh login form, then log in again carrying the old cookie
    pre = csrf_of(await page.text())
    client.session.cookie_jar.update_cookies({"motcua_session": first})
    again = await client.post(
        "/dang-nhap", data={"csrf": pre, "username": "truong.bp", "password": PASSWORD}, allow_redirects=False
    )
    assert again.status == 303
    second = again.cookies["motcua_session"].value
    assert second and second != first
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"motcua_session": first})
    assert (await client.get("/hom-nay", allow_redirects=False)).status == 303  # the old session was deleted
    # a token planted by an attacker before login is never adopted
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"motcua_session": "attacker-chosen-token"})
    planted = await login(client)
    assert planted.cookies["motcua_session"].value not in ("", "attacker-chosen-token")


async def test_csrf_missing_or_wrong_is_403_and_nothing_is_written(client: TestClient[Any, Any]) -> None:
    await login(client)
    for data in ({}, {"csrf": "wrong"}):
        response = await client.post("/ho-so/moi", data={**data, "procedure": "1.001193"})
        assert response.status == 403
        assert "không hợp lệ" in await response.text()
    count = await client.get("/api/v1/status")  # bearer-less API call: 401, not a page
    assert count.status == 401


async def test_cross_site_post_is_refused_even_with_the_token(client: TestClient[Any, Any]) -> None:
    await login(client)
    csrf = await page_csrf(client)
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        response = await client.post("/dang-xuat", data={"csrf": csrf}, headers=headers)
        assert response.status == 403
    assert (await client.get("/hom-nay", allow_redirects=False)).status == 200
    login_page = await client.get("/dang-nhap")
    pre = csrf_of(await login_page.text())
    cross = await client.post(
        "/dang-nhap",
        data={"csrf": pre, "username": "an.nv", "password": PASSWORD},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status == 403


async def test_login_form_needs_its_prelogin_token(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/dang-nhap", data={"username": "an.nv", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 403 and _session_cookie(client) is None


async def test_logout_deletes_the_session(client: TestClient[Any, Any]) -> None:
    await login(client)
    token = _session_cookie(client)
    csrf = await page_csrf(client)
    response = await client.post("/dang-xuat", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/dang-nhap"
    client.session.cookie_jar.update_cookies({"motcua_session": token or ""})
    assert (await client.get("/hom-nay", allow_redirects=False)).status == 303


async def test_throttling_per_account_then_429_with_retry_after(
    client: TestClient[Any, Any], config: NodeConfig
) -> None:
    from node.web.keys import NODE

    node = client.app[NODE]
    now = __import__("time").time_ns() // 1_000_000
    async with node.store.write() as db:  # failures against this account from another address
        for _ in range(config.login_max_failures):
            await db.execute(
                "INSERT INTO login_failures (username, address, at) VALUES ('an.nv', '10.0.0.9', ?)", (now,)
            )
    blocked = await login(client)  # even the right password
    assert blocked.status == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= config.login_window_minutes * 60
    assert "thử lại sau" in await blocked.text()
    assert (await login(client, "truong.bp")).status == 303  # this address is not blocked


async def test_throttling_per_address(client: TestClient[Any, Any], config: NodeConfig) -> None:
    for i in range(config.login_max_failures):
        await login(client, f"nobody{i}", "khong-dung-nhe-1")
    assert (await login(client)).status == 429


async def test_idle_timeout_ends_the_session(client: TestClient[Any, Any], config: NodeConfig) -> None:
    await login(client)
    from node.web.keys import NODE

    node = client.app[NODE]
    async with node.store.write() as db:
        await db.execute(
            "UPDATE sessions SET last_seen = last_seen - ?", (config.session_idle_minutes * 60_000 + 1,)
        )
    assert (await client.get("/hom-nay", allow_redirects=False)).status == 303
    assert await node.store.fetchall("SELECT * FROM sessions") == []


async def test_passwords_are_argon2id_at_owasp_minimum(config: NodeConfig, token: str) -> None:
    store = await Store.open(config.db_path)
    try:
        row = await store.fetchone("SELECT password_hash FROM users WHERE username = 'an.nv'")
    finally:
        await store.close()
    phc = str(row[0])
    assert phc.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(PASSWORD, phc) and not verify_password(PASSWORD + "x", phc)
