"""Access-control matrix (RELIABILITY.md W3): every web route × anonymous, viewer, officer, admin.

POSTs carry the session's valid CSRF token, so what is checked here is authorization alone; input that
reaches a handler is deliberately incomplete (400/404), which proves the request got past the role check
without changing anything.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.central.webhelpers import Branch, add_user, csrf_of, login, settle

ANON, VIEWER, OFFICER, ADMIN = "anonymous", "viewer", "officer", "admin"
ROLES = (ANON, VIEWER, OFFICER, ADMIN)

# (method, path, {role: expected status}); {code} is a received dossier, CN01 an enrolled branch.
MATRIX: list[tuple[str, str, dict[str, int]]] = [
    ("GET", "/admin", {ANON: 303, VIEWER: 200, OFFICER: 403, ADMIN: 200}),
    ("GET", "/admin/table", {ANON: 303, VIEWER: 200, OFFICER: 403, ADMIN: 200}),
    ("GET", "/admin/nodes/CN01", {ANON: 303, VIEWER: 200, OFFICER: 403, ADMIN: 200}),
    ("GET", "/admin/nodes", {ANON: 303, VIEWER: 200, OFFICER: 403, ADMIN: 200}),
    ("GET", "/admin/review", {ANON: 303, VIEWER: 200, OFFICER: 403, ADMIN: 200}),
    ("GET", "/admin/late", {ANON: 303, VIEWER: 200, OFFICER: 403, ADMIN: 200}),
    ("GET", "/admin/nodes/CN01/revoke", {ANON: 303, VIEWER: 403, OFFICER: 403, ADMIN: 200}),
    ("GET", "/admin/nodes/CN01/release", {ANON: 303, VIEWER: 403, OFFICER: 403, ADMIN: 404}),
    ("POST", "/admin/nodes/invite", {ANON: 401, VIEWER: 403, OFFICER: 403, ADMIN: 400}),
    ("POST", "/admin/nodes/CN01/revoke", {ANON: 401, VIEWER: 403, OFFICER: 403, ADMIN: 400}),
    ("POST", "/admin/nodes/CN01/release", {ANON: 401, VIEWER: 403, OFFICER: 403, ADMIN: 400}),
    ("GET", "/admin/rotations", {ANON: 303, VIEWER: 200, OFFICER: 403, ADMIN: 200}),
    ("GET", "/admin/rotations/" + "a" * 64, {ANON: 303, VIEWER: 403, OFFICER: 403, ADMIN: 404}),
    ("POST", "/admin/rotations/" + "a" * 64 + "/approve", {ANON: 401, VIEWER: 403, OFFICER: 403, ADMIN: 404}),
    ("POST", "/admin/nodes/CN01/lease", {ANON: 401, VIEWER: 403, OFFICER: 403, ADMIN: 303}),
    ("POST", "/admin/review/quarantine/CN01/1/2", {ANON: 401, VIEWER: 403, OFFICER: 403, ADMIN: 400}),
    (
        "POST",
        "/admin/review/conflicts/{code}/" + "a" * 64,
        {ANON: 401, VIEWER: 403, OFFICER: 403, ADMIN: 400},
    ),
    ("POST", "/admin/late/{code}/apology", {ANON: 401, VIEWER: 403, OFFICER: 403, ADMIN: 400}),
    ("GET", "/officer", {ANON: 303, VIEWER: 403, OFFICER: 200, ADMIN: 403}),
    ("GET", "/officer/dossiers/{code}", {ANON: 303, VIEWER: 403, OFFICER: 200, ADMIN: 403}),
    ("POST", "/officer/dossiers/{code}/transfer", {ANON: 401, VIEWER: 403, OFFICER: 400, ADMIN: 403}),
    ("GET", "/tra-cuu", {ANON: 200, VIEWER: 200, OFFICER: 200, ADMIN: 200}),
    ("POST", "/tra-cuu", {ANON: 404, VIEWER: 404, OFFICER: 404, ADMIN: 404}),
    ("GET", "/login", {ANON: 200, VIEWER: 200, OFFICER: 200, ADMIN: 200}),
    ("GET", "/", {ANON: 303, VIEWER: 303, OFFICER: 303, ADMIN: 303}),
    ("POST", "/logout", {ANON: 401, VIEWER: 303, OFFICER: 303, ADMIN: 303}),
    ("GET", "/healthz", {ANON: 200, VIEWER: 200, OFFICER: 200, ADMIN: 200}),
    ("GET", "/readyz", {ANON: 200, VIEWER: 200, OFFICER: 200, ADMIN: 200}),
    ("GET", "/metrics", {ANON: 200, VIEWER: 200, OFFICER: 200, ADMIN: 200}),
    ("GET", "/static/admin.css", {ANON: 200, VIEWER: 200, OFFICER: 200, ADMIN: 200}),
]


@pytest.mark.parametrize("role", ROLES)
async def test_every_route_answers_each_role_as_the_table_says(client: TestClient, role: str) -> None:
    branch = await Branch.enroll(client)
    code = branch.receive()
    await branch.push()
    await settle(client)
    csrf = ""
    if role != ANON:
        await add_user(client, "u1", role, agency="Ủy ban nhân dân cấp xã" if role == OFFICER else None)
        assert (await login(client, "u1")).status == 303
        csrf = await csrf_of(client, "/tra-cuu")
    got: dict[tuple[str, str], int] = {}
    want: dict[tuple[str, str], int] = {}
    for method, template, expected in MATRIX:
        path = template.replace("{code}", code)
        if path == "/logout":
            continue  # checked last: it ends the session
        data = {"csrf": csrf} if method == "POST" else None
        resp = await client.request(method, path, data=data, allow_redirects=False)
        got[(method, template)] = resp.status
        want[(method, template)] = expected[role]
    resp = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    got[("POST", "/logout")] = resp.status
    want[("POST", "/logout")] = dict((p, e) for _, p, e in MATRIX)["/logout"][role]
    assert got == want


async def test_anonymous_pages_redirect_to_login_with_the_page_to_return_to(client: TestClient) -> None:
    resp = await client.get("/admin/late", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/admin/late"
    resp = await client.get("/admin/table", headers={"HX-Request": "true"}, allow_redirects=False)
    assert resp.status == 401 and resp.headers["HX-Redirect"] == "/login"


async def test_officer_of_another_agency_gets_the_same_404_as_for_a_missing_dossier(
    client: TestClient,
) -> None:
    branch = await Branch.enroll(client)
    code = branch.receive()
    await branch.push()
    await settle(client)
    await add_user(client, "o-tax", "officer", agency="Chi cục Thuế")
    assert (await login(client, "o-tax")).status == 303
    mine = await client.get(f"/officer/dossiers/{code}")
    missing = await client.get(f"/officer/dossiers/{code[:-1]}9")
    assert mine.status == missing.status == 404
    assert code not in await (await client.get("/officer")).text()
    csrf = await csrf_of(client, "/officer")
    resp = await client.post(
        f"/officer/dossiers/{code}/processing", data={"csrf": csrf, "step": "processing"}
    )
    assert resp.status == 404


async def test_pages_carry_security_headers(client: TestClient) -> None:
    resp = await client.get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Frame-Options"] == "DENY"
