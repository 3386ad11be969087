"""JSON API: bearer tokens, 201 after commit, 422 with field errors and nothing written, 409, idempotency."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from node.web.keys import NODE
from tests.node.conftest import reception


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _entries(client: TestClient[Any, Any]) -> int:
    return len(await client.app[NODE].store.fetchall("SELECT 1 FROM entries"))


async def test_bearer_token_required(client: TestClient[Any, Any], token: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
        response = await client.get("/api/v1/dossiers", headers=headers)
        assert response.status == 401
        body = await response.json()
        assert body["error"] == "auth_required" and body["message"]
    assert (await client.get("/api/v1/dossiers", headers=_auth(token))).status == 200
    assert (await client.get("/api/v1/openapi.json")).status == 200  # the description is public


async def test_create_dossier_201_with_entry_reference(client: TestClient[Any, Any], token: str) -> None:
    response = await client.post("/api/v1/dossiers", json=reception(), headers=_auth(token))
    assert response.status == 201
    body = await response.json()
    assert body["code"].startswith("000.00.01.H26-") and body["code"].endswith("-1000")
    assert body["status"] == 2 and body["state"] == "received" and isinstance(body["due_at"], int)
    entry = body["entry"]
    assert entry["log"] == "CN01" and entry["epoch"] == 1 and entry["seq"] == 2 and len(entry["hash"]) == 64
    row = await client.app[NODE].store.fetchone("SELECT hash, actor FROM entries WHERE seq = 2")
    assert tuple(row) == (entry["hash"], "api:kiosk1")  # committed before the answer
    detail = await (await client.get(f"/api/v1/dossiers/{body['code']}", headers=_auth(token))).json()
    assert detail["status"] == 2 and detail["dossier"]["applicant"]["id_number"] == "001090012345"
    assert detail["timeline"][0]["verified"] is True and "transfer" in detail["actions"]
    listed = await (
        await client.get("/api/v1/dossiers", params={"q": "nguyen van an"}, headers=_auth(token))
    ).json()
    assert [d["code"] for d in listed["dossiers"]] == [body["code"]]
    assert listed["dossiers"][0]["id_number_masked"] == "001*******45"


async def test_invalid_input_422_with_fields_and_nothing_written(
    client: TestClient[Any, Any], token: str
) -> None:
    before = await _entries(client)
    cases = [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (
            b'{"procedure": "1.001193", "applicant": {"name": "A", "id_number": "001090012345"}, "fee": 1.5}',
            "body",
        ),
    ]
    for raw, field in cases:
        response = await client.post(
            "/api/v1/dossiers", data=raw, headers={**_auth(token), "Content-Type": "application/json"}
        )
        assert response.status == 422, raw
        assert field in (await response.json())["fields"]
    response = await client.post(
        "/api/v1/dossiers",
        json=reception(applicant={"name": "", "id_type": "cccd", "id_number": "999090012345"}, channel=7),
        headers=_auth(token),
    )
    body = await response.json()
    assert response.status == 422 and body["error"] == "invalid_input"
    assert set(body["fields"]) == {"applicant.name", "applicant.id_number", "channel"}
    assert "Mã tỉnh 999" in body["fields"]["applicant.id_number"]
    assert await _entries(client) == before


async def test_events_409_and_404(client: TestClient[Any, Any], token: str) -> None:
    code = (await (await client.post("/api/v1/dossiers", json=reception(), headers=_auth(token))).json())[
        "code"
    ]
    wrong_state = await client.post(
        f"/api/v1/dossiers/{code}/events",
        json={"action": "return", "recipient": {"name": "A"}},
        headers=_auth(token),
    )
    assert wrong_state.status == 409 and (await wrong_state.json())["error"] == "conflict"
    unknown = await client.post(
        f"/api/v1/dossiers/{code}/events", json={"action": "fly"}, headers=_auth(token)
    )
    assert unknown.status == 422 and "action" in (await unknown.json())["fields"]
    missing = await client.get("/api/v1/dossiers/000.00.01.H26-261122-9999", headers=_auth(token))
    assert missing.status == 404
    withdraw = await client.post(
        f"/api/v1/dossiers/{code}/events", json={"action": "withdrawal_request"}, headers=_auth(token)
    )
    assert withdraw.status == 201
    staff_only = await client.post(
        f"/api/v1/dossiers/{code}/events", json={"action": "withdraw"}, headers=_auth(token)
    )
    assert staff_only.status == 403  # the kiosk token has the staff role


async def test_idempotency_key_header(client: TestClient[Any, Any], token: str) -> None:
    headers = {**_auth(token), "Idempotency-Key": "kiosk-req-000001"}
    first = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
    second = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
    assert first.status == 201 and second.status == 200
    assert (await first.json())["code"] == (await second.json())["code"]
    other = await client.post("/api/v1/dossiers", json=reception(note="khác"), headers=headers)
    assert other.status == 409
    short = await client.post(
        "/api/v1/dossiers", json=reception(), headers={**_auth(token), "Idempotency-Key": "x"}
    )
    assert short.status == 422


async def test_health_and_readiness(client: TestClient[Any, Any], token: str) -> None:
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"
    status = await (await client.get("/api/v1/status", headers=_auth(token))).json()
    assert status["head"]["seq"] == 1 and status["unsent"] == 1 and status["offline_since"]
    await client.app[NODE].store.close()
    down = await client.get("/readyz")
    assert down.status == 503 and (await down.json())["problems"]
