"""W1/W3 and S11 for the node's web UI and API, and S11 for the hub's sync API.

The access-control matrix is built from the router itself: every route the node serves must have a
rule here (a new route without one fails), and every route x principal (anonymous, staff and
supervisor sessions, staff and supervisor API tokens, a revoked token, a garbage token, a session
cookie on the API, a bearer token on a page) x own/other-branch dossier is requested and compared
with the expected outcome. Session fixation, CSRF, throttling and timeouts are tests/node/test_web_auth.py;
tracking-code enumeration is tests/central/test_track_page.py (10,000 guesses, 0 hits).
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from node.app import make_app
from node.auth import Auth, add_user, create_token
from node.config import load as load_node_config
from node.provision import init_node
from node.store import Store
from tests.node.conftest import FAST_LOOKUP, PASSWORD, csrf_of, reception

UNIT = "000.00.01.H26"
OTHER = "000.00.02.H26-261122-0001"  # a dossier of another unit/branch: never served here
PUBLIC_GET = {"/dang-nhap", "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}


@pytest.fixture
async def node_client(tmp_path: Path, aiohttp_client) -> tuple[TestClient, dict[str, str]]:  # type: ignore[no-untyped-def]
    data = tmp_path / "node"
    await init_node(data, node_id="CN01", unit_code=UNIT, name="Chi nhánh", code_block=1)
    store = await Store.open(data / "node.sqlite3")
    try:
        await add_user(store, "an.nv", PASSWORD, "staff", "Nguyễn Văn An")
        await add_user(store, "truong.bp", PASSWORD, "supervisor", "Lê Thị Trưởng")
        tokens = {
            "staff_token": await create_token(store, "kiosk1"),
            "supervisor_token": await create_token(store, "boss1", "supervisor"),
            "revoked_token": await create_token(store, "old1"),
        }
        await Auth(store, 0, 0, 0, 0).revoke_token("old1")
    finally:
        await store.close()
    client = await aiohttp_client(make_app(load_node_config(data, {}), lookup_iterations=FAST_LOOKUP))
    for who, user in (("staff_session", "an.nv"), ("supervisor_session", "truong.bp")):
        tokens[who] = await _login(client, user)
    return client, tokens


async def _login(client: TestClient, user: str) -> str:
    client.session.cookie_jar.clear()
    page = await client.get("/dang-nhap")
    resp = await client.post(
        "/dang-nhap", data={"csrf": csrf_of(await page.text()), "username": user, "password": PASSWORD,
                            "next": "/hom-nay"}, allow_redirects=False,
    )  # fmt: skip
    assert resp.status in (302, 303), await resp.text()
    session = next(c.value for c in client.session.cookie_jar if c.key == "motcua_session")
    client.session.cookie_jar.clear()
    return session


PRINCIPALS = [
    "anonymous", "staff_session", "supervisor_session", "staff_token", "supervisor_token", "revoked_token",
    "garbage_token", "session_on_api", "token_on_page",
]  # fmt: skip


def _headers(who: str, tokens: dict[str, str], api: bool) -> dict[str, str]:
    if who in ("staff_token", "supervisor_token", "revoked_token"):
        return {"Authorization": f"Bearer {tokens[who]}"}
    if who == "garbage_token":
        return {"Authorization": "Bearer mct_" + "A" * 40}
    if who in ("staff_session", "supervisor_session"):
        return {"Cookie": f"motcua_session={tokens[who]}"}
    if who == "session_on_api":
        return {"Cookie": f"motcua_session={tokens['staff_session']}"}
    if who == "token_on_page":
        return {"Authorization": f"Bearer {tokens['staff_token']}"}
    return {}


async def _new_dossier(client: TestClient, tokens: dict[str, str]) -> str:
    resp = await client.post(
        "/api/v1/dossiers", json=reception(), headers=_headers("staff_token", tokens, True)
    )
    assert resp.status == 201
    return str((await resp.json())["code"])


def _expected(method: str, path: str, who: str) -> set[int]:
    """The rule table: which statuses each principal may get for a route."""
    api = path.startswith("/api/") and path != "/api/v1/openapi.json"
    # a staff session cookie is worth nothing on the API, a staff token nothing on a page
    page_session = who in ("staff_session", "supervisor_session", "session_on_api")
    api_ok = who in ("staff_token", "supervisor_token", "token_on_page")
    if path == "/dang-nhap" and method == "GET":
        return {200, 303} if page_session else {200}
    if path in PUBLIC_GET and method == "GET" or path.startswith("/static"):
        return {200}
    if path == "/dang-nhap" and method == "POST":
        return {200, 303, 401, 403, 422}  # public, but needs its pre-login CSRF token
    if api:
        if not api_ok:
            return {401}
        allowed = {200, 201, 404, 409, 422}
        if path.endswith("/events") and who in ("staff_token", "token_on_page"):
            allowed = {403}  # the matrix sends the supervisor-only action
        return allowed
    if not page_session:
        return {303} if method == "GET" else {401, 403}
    if method == "POST":
        allowed = {200, 302, 303, 404, 409, 422}
        if path == "/ho-so/{code}/{action}" and who in ("staff_session", "session_on_api"):
            allowed = {403}
        return allowed
    return {200, 303, 404} if path == "/" else {200, 404, 422}  # 422: a page's query fails validation


async def test_access_control_matrix(node_client, figures) -> None:  # type: ignore[no-untyped-def]
    client, tokens = node_client
    routes = sorted(
        {(r.method, r.resource.canonical) for r in client.server.app.router.routes() if r.method != "HEAD"}
    )
    rows = 0
    mismatches = []
    for method, path in routes:
        for who in PRINCIPALS:
            for branch in ("own", "other") if "{code}" in path else ("own",):
                code = await _new_dossier(client, tokens) if branch == "own" else OTHER
                concrete = (path.replace("{code}", code).replace("{action}", "withdraw")
                            .replace("{filename}", "app.css").replace("{scan_id}", "1")
                            .replace("{sha256}", "0" * 64).replace("{form}", "bien-nhan")
                            .replace("{job_id}", "1").replace("{op}", "huy"))  # fmt: skip
                if concrete == "/static":
                    concrete = "/static/app.css"
                api = concrete.startswith("/api/")
                headers = _headers(who, tokens, api)
                if path == "/dang-xuat" and "session" in who:  # log out a throwaway session, not the matrix's
                    user = "truong.bp" if who == "supervisor_session" else "an.nv"
                    headers = {"Cookie": f"motcua_session={await _login(client, user)}"}
                data: Any = None
                if method == "POST":
                    if api:
                        body = (
                            {"action": "withdraw", "reason": "Công dân xin rút"} if "events" in path else {}
                        )
                        if path == "/api/v1/dossiers":
                            body = reception()
                        if path == "/api/v1/due-date":
                            body = {"procedure": "1.001193"}
                        data = json.dumps(body)
                        headers = {**headers, "Content-Type": "application/json"}
                    else:
                        csrf = ""
                        if "Cookie" in headers:  # a session on a page: its own synchronizer token
                            page = await client.get("/hom-nay", headers=headers)
                            csrf = csrf_of(await page.text())
                        data = {"csrf": csrf, "reason": "Công dân xin rút", **_form(path)}
                resp = await client.request(
                    method, concrete, headers=headers, data=data, allow_redirects=False
                )
                want = _expected(method, path, who)
                if branch == "other" and resp.status not in (401, 403, 303):
                    want = {404}
                rows += 1
                if resp.status not in want:
                    mismatches.append((method, path, who, branch, resp.status, sorted(want)))
                if resp.status == 303 and method == "GET" and "session" not in who:
                    assert resp.headers["Location"].startswith("/dang-nhap")
                assert resp.status != 500, (method, concrete, who, await resp.text())
    assert not mismatches, "\n".join(map(str, mismatches))
    figures("W3 node access-control matrix", routes=len(routes), principals=len(PRINCIPALS), requests=rows)


def _form(path: str) -> dict[str, str]:
    if path == "/ho-so/moi":
        return {
            "procedure": "1.001193",
            "applicant.name": "Nguyễn Văn An",
            "applicant.id_number": "001090012345",
        }
    if path == "/dang-nhap":
        return {"username": "an.nv", "password": "sai-mat-khau-123"}
    return {}


async def test_every_route_has_a_rule(node_client) -> None:  # type: ignore[no-untyped-def]
    """A route added later without a line in ``_expected`` would silently be 'session'; list them."""
    client, _ = node_client
    known = {
        "/dang-nhap", "/dang-xuat", "/", "/hom-nay", "/ho-so/moi", "/ho-so/han-tra", "/ho-so/{code}",
        "/ho-so/{code}/{action}", "/tim-kiem", "/api/v1/openapi.json", "/api/v1/procedures",
        "/api/v1/due-date", "/api/v1/dossiers", "/api/v1/refusals", "/api/v1/dossiers/{code}",
        "/api/v1/dossiers/{code}/events", "/api/v1/status", "/healthz", "/readyz", "/metrics",
        # devices (scans inbox, printers, the desk's open dossier): pages, session + CSRF like the rest
        "/ban-quet", "/ban-quet/{scan_id}/gan", "/ban-quet/{scan_id}/huy", "/ban-quet/{sha256}/anh.png",
        "/ban-quet/{sha256}/tep", "/in/{code}/{form}", "/may-in", "/may-in/lenh/{job_id}/{op}", "/quay/dong",
        "/quay/mo",
    }  # fmt: skip
    served = {
        r.resource.canonical
        for r in client.server.app.router.routes()
        if not r.resource.canonical.startswith("/static")
    }
    assert served - known == set(), f"routes without an access rule in this test: {sorted(served - known)}"


# -- S11: oversized bodies ---------------------------------------------------------------------------------


async def _chunked(n: int, piece: bytes = b"x" * 65536):  # type: ignore[no-untyped-def]
    sent = 0
    while sent < n:
        yield piece
        sent += len(piece)


async def test_node_upload_limits(node_client, figures) -> None:  # type: ignore[no-untyped-def]
    client, tokens = node_client
    api = {**_headers("staff_token", tokens, True), "Content-Type": "application/json"}
    cases: dict[str, tuple[int, float]] = {}

    async def timed(name: str, coro: Any, allowed: set[int]) -> None:
        started = time.perf_counter()
        resp = await coro
        await resp.read()
        spent = time.perf_counter() - started
        assert resp.status in allowed, (name, resp.status, await resp.text())
        assert spent < 1.0 or name.startswith("10,000"), (name, spent)
        cases[name] = (resp.status, round(spent, 3))

    big = io.BytesIO(json.dumps(reception(note="x" * 300_000)).encode())
    await timed("json over 256 KiB", client.post("/api/v1/dossiers", data=big, headers=api), {413, 422})
    await timed("chunked 8 MiB, no Content-Length",
                client.post("/api/v1/dossiers", data=_chunked(8 << 20), headers=api), {413, 422})  # fmt: skip
    session = _headers("staff_session", tokens, False)
    boundary = "----motcua-boundary"
    fields = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n{"x" * 30}\r\n'.encode()
            for i in range(30_000)
        )
        + f"--{boundary}--\r\n".encode()
    )
    multipart = {**session, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    post = client.post("/ho-so/moi", data=io.BytesIO(fields), headers=multipart)
    await timed("30,000 small multipart fields", post, {403, 413})
    b64 = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n".encode()
        + b"QUFB" * (3 << 18)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    post = client.post("/ho-so/moi", data=io.BytesIO(b64), headers=multipart)
    await timed("base64 part of 3 MiB", post, {400, 403, 413})
    huge = {**session, "X-Junk": "y" * 100_000}
    await timed("100 KB header", client.get("/hom-nay", headers=huge), {400, 431})
    many = {**session, **{f"X-H{i}": "z" for i in range(500)}}
    await timed("500 headers", client.get("/hom-nay", headers=many), {200, 400, 431})
    assert (await client.get("/healthz")).status == 200  # still serving
    figures("S11 node upload limits", cases={k: list(v) for k, v in cases.items()})


async def test_hub_upload_limits(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    from tests.reliability.hubsim import HubNode, new_hub
    from tests.reliability.procs import free_port, spawn_cli, wait_serving

    sim = HubNode("CN01")
    await new_hub(tmp_path / "hub", [sim])
    port = free_port()
    proc = spawn_cli("central", ["--data", str(tmp_path / "hub"), "serve", "--listen", f"127.0.0.1:{port}"],
                     port, tmp_path / "hub.log")  # fmt: skip
    cases: dict[str, Any] = {}
    try:
        await wait_serving(proc)
        rss_before = _rss(proc.pid)
        async with aiohttp.ClientSession() as session:
            # 64 MiB streamed without Content-Length at a push whose cap is 8 MiB; signed for the
            # digest of the first bytes only, so only the byte count can stop it early
            target = "/v1/sync/logs/CN01/1"
            headers = sim.headers("POST", target, b"")
            started = time.perf_counter()
            async with session.post(proc.url + target, data=_chunked(64 << 20), headers=headers) as resp:
                body = await resp.json()
            cases["push 64 MiB chunked"] = [
                resp.status,
                body["error"],
                round(time.perf_counter() - started, 2),
            ]
            assert (resp.status, body["error"]) == (413, "too_large"), body
            started = time.perf_counter()
            async with session.post(proc.url + "/v1/enroll", data=_chunked(4 << 20)) as resp:
                body = await resp.json()
            cases["enroll 4 MiB"] = [resp.status, body["error"], round(time.perf_counter() - started, 2)]
            assert resp.status == 413
            chunk_target = "/v1/sync/blobs/" + "a" * 64 + "/0"
            async with session.put(proc.url + chunk_target, data=_chunked(3 << 20),
                                   headers=sim.headers("PUT", chunk_target, b"")) as resp:  # fmt: skip
                body = await resp.json()
            cases["blob chunk 3 MiB"] = [resp.status, body["error"]]
            assert resp.status == 413
        growth = _rss(proc.pid) - rss_before
        cases["hub RSS growth MiB"] = round(growth / 1048576, 1)
        assert growth < 2 * 8 << 20, f"the hub grew {growth} bytes for refused bodies"
        assert proc.alive()
    finally:
        proc.stop()
    figures("S11 hub upload limits", **cases)


def _rss(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]
