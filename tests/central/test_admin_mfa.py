"""Login with a TOTP second factor over HTTP: enrol on /admin/mfa, then password + code; wrong code,
reused code, recovery code, and the throttle shared with passwords."""

from __future__ import annotations

import re
import urllib.parse

from aiohttp.test_utils import TestClient

from central.mfa import code_at
from tests.central.helpers import hub_clock
from tests.central.webhelpers import PASSWORD, add_user, csrf_of, login

PENDING_RE = re.compile(r'name="pending" value="([^"]+)"')


def _secret(text: str) -> bytes:
    import base64

    uri = re.search(r"otpauth://[^<\"]+", text)
    assert uri, "no otpauth URI on the page"
    query = urllib.parse.parse_qs(urllib.parse.urlparse(uri.group(0).replace("&amp;", "&")).query)
    raw = query["secret"][0]
    return base64.b32decode(raw + "=" * (-len(raw) % 8))


async def _enrol(client: TestClient) -> tuple[bytes, list[str]]:
    csrf = await csrf_of(client, "/admin/mfa")
    resp = await client.post("/admin/mfa", data={"csrf": csrf, "action": "begin"})
    text = await resp.text()
    assert resp.status == 200 and "<svg" in text
    secret = _secret(text)
    resp = await client.post(
        "/admin/mfa", data={"csrf": csrf, "action": "confirm", "code": code_at(secret, hub_clock.now / 1000)}
    )
    text = await resp.text()
    assert resp.status == 200, text
    codes = re.findall(r"<code>([A-Z2-7]{5}-[A-Z2-7]{5})</code>", text)
    assert len(codes) == 10
    return secret, codes


async def _second(client: TestClient, first: object, code: str) -> object:
    text = await first.text()  # type: ignore[attr-defined]
    match = PENDING_RE.search(text)
    assert match, text
    return await client.post(
        "/login/mfa", data={"pending": match.group(1), "code": code}, allow_redirects=False
    )


async def test_enrolled_admin_logs_in_with_password_then_code(client: TestClient) -> None:
    await add_user(client, "admin1", "admin")
    assert (await login(client, "admin1")).status == 303  # not enrolled: password only
    secret, codes = await _enrol(client)
    client.session.cookie_jar.clear()
    first = await login(client, "admin1")
    assert first.status == 200 and "Mã xác thực hai bước" in await first.text()
    assert (await client.get("/admin", allow_redirects=False)).status == 303  # no session yet
    hub_clock.now += 30_000  # next step: the enrolment code's step is used
    try:
        wrong = await _second(
            client, first, "000000" if code_at(secret, hub_clock.now / 1000) != "000000" else "111111"
        )
        assert wrong.status == 401  # type: ignore[attr-defined]
        good = await _second(client, wrong, code_at(secret, hub_clock.now / 1000))
        assert good.status == 303 and good.headers["Location"] == "/admin"  # type: ignore[attr-defined]
        assert (await client.get("/admin", allow_redirects=False)).status == 200
        # the same code again (same step) is refused, a recovery code works once
        client.session.cookie_jar.clear()
        again = await _second(client, await login(client, "admin1"), code_at(secret, hub_clock.now / 1000))
        assert again.status == 401 and "đã được dùng" in await again.text()  # type: ignore[attr-defined]
        rec = await _second(client, again, codes[0])
        assert rec.status == 303  # type: ignore[attr-defined]
        client.session.cookie_jar.clear()
        reused = await _second(client, await login(client, "admin1"), codes[0])
        assert reused.status == 401  # type: ignore[attr-defined]
    finally:
        hub_clock.now -= 30_000


async def test_wrong_codes_are_throttled_like_passwords(client: TestClient) -> None:
    await add_user(client, "admin2", "admin")
    await login(client, "admin2")
    secret, _ = await _enrol(client)
    bad = "000000" if code_at(secret, hub_clock.now / 1000) != "000000" else "111111"
    client.session.cookie_jar.clear()
    first = await login(client, "admin2")
    statuses = []
    page = first
    for _ in range(10):
        page = await _second(client, page, bad)
        statuses.append(page.status)  # type: ignore[attr-defined]
    assert set(statuses[:9]) <= {401} and statuses[-1] in (401, 429)
    resp = await login(client, "admin2", PASSWORD)
    assert resp.status == 429
