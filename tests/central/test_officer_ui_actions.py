"""The officers' workspace: agency-scoped lists and actions, each a signed hub entry routed to the
receiving and pickup branches; the result upload is size-limited, streamed and checked by content."""

from __future__ import annotations

import hashlib

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from tests.central.helpers import hub_of
from tests.central.test_admin_review import mailbox
from tests.central.webhelpers import Branch, add_user, csrf_of, login, settle

AGENCY = "Ủy ban nhân dân cấp xã"  # what the catalog gives procedure 1.001193
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


async def _officer(client: TestClient, agency: str | None = AGENCY) -> tuple[str, str]:
    branch = await Branch.enroll(client)
    code = branch.receive(pickup="CN02")
    other = branch.receive(procedure="1.000894")  # marriage: same agency in the catalog
    await branch.push()
    await settle(client)
    await add_user(client, "officer1", "officer", agency=agency)
    assert (await login(client, "officer1")).status == 303
    return code, other


@pytest.fixture
async def small_upload_client(hub_dir, aiohttp_client) -> TestClient:  # type: ignore[no-untyped-def]
    from central.app import make_app
    from central.config import load
    from tests.central.helpers import hub_clock

    config = load(hub_dir, environ={}, result_max_bytes=256 * 1024)
    return await aiohttp_client(make_app(config, clock=hub_clock))  # type: ignore[no-any-return]


def _upload(csrf: str, data: bytes, **fields: str) -> FormData:
    form = FormData()
    form.add_field("csrf", csrf)  # first part: the middleware checks it before any file byte is read
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename="ket-qua.pdf", content_type="application/pdf")
    return form


async def test_officer_moves_a_dossier_to_result_ready_with_a_file(client: TestClient) -> None:
    code, _ = await _officer(client)
    listing = await (await client.get("/officer")).text()
    assert code in listing and "N. V. A." in listing and "Nguyễn Văn An" not in listing
    csrf = await csrf_of(client, f"/officer/dossiers/{code}")
    detail = await (await client.get(f"/officer/dossiers/{code}")).text()
    assert "001*******45" in detail and "001090012345" not in detail
    assert 'id="action-transfer"' in detail and 'id="action-result_ready"' not in detail  # not yet valid
    resp = await client.post(f"/officer/dossiers/{code}/transfer", data={"csrf": csrf, "agency": AGENCY})
    assert resp.status == 200 and "Đã chuyển cơ quan giải quyết" in await resp.text()
    resp = await client.post(
        f"/officer/dossiers/{code}/processing",
        data={"csrf": csrf, "step": "awaiting_signature", "note": "trình ký"},
    )
    assert "Chờ ký duyệt" in await resp.text()
    resp = await client.post(
        f"/officer/dossiers/{code}/result_ready", data=_upload(csrf, PDF, document_number="123/QĐ", pages="2")
    )
    page = await resp.text()
    assert resp.status == 200 and "Chờ trả kết quả" in page and "kết quả</strong>" in page
    box = await mailbox(client, "hub.CN01")
    kinds = [e.kind for e in box]
    assert kinds[-4:] == [
        "dossier.transferred",
        "dossier.processing",
        "dossier.attachment",
        "dossier.result_ready",
    ]
    ready = box[-1].body
    assert ready["actor"] == "officer:officer1" and ready["result_sha256"] == hashlib.sha256(PDF).hexdigest()
    assert ready["document_number"] == "123/QĐ"
    forwarded = [
        e.body["entry"]["kind"] for e in await mailbox(client, "hub.CN02") if e.kind == "hub.forward"
    ]
    # the pickup branch gets the reception first (to fold the dossier), then every decision
    assert forwarded == ["dossier.received", *kinds[-4:]]
    stored = hub_of(client).blobs.path_for(ready["result_sha256"])
    assert stored.read_bytes() == PDF
    audit = await hub_of(client).store.fetchall(
        "SELECT action FROM web_access_log WHERE username = 'officer1'"
    )
    assert ("view_dossier",) in audit and ("officer_result_ready",) in audit


@pytest.mark.parametrize(
    "data, status",
    [
        (b"<html><script>alert(1)</script></html>", 415),  # HTML named .pdf
        (PDF[:-7], 415),  # truncated: no %%EOF
        (b"", 400),
        (b"%PDF-" + b"0" * (300 * 1024) + b"%%EOF", 413),
    ],
)
async def test_bad_result_files_are_refused_and_nothing_is_written(
    small_upload_client: TestClient, data: bytes, status: int
) -> None:
    client = small_upload_client
    code, _ = await _officer(client)
    csrf = await csrf_of(client, f"/officer/dossiers/{code}")
    await client.post(f"/officer/dossiers/{code}/transfer", data={"csrf": csrf, "agency": AGENCY})
    before = len(await mailbox(client, "hub.CN01"))
    resp = await client.post(f"/officer/dossiers/{code}/result_ready", data=_upload(csrf, data))
    assert resp.status == status
    assert len(await mailbox(client, "hub.CN01")) == before
    assert await hub_of(client).store.fetchall("SELECT sha256 FROM blobs") == []


async def test_a_multipart_form_without_its_csrf_part_first_is_refused(client: TestClient) -> None:
    code, _ = await _officer(client)
    csrf = await csrf_of(client, f"/officer/dossiers/{code}")
    await client.post(f"/officer/dossiers/{code}/transfer", data={"csrf": csrf, "agency": AGENCY})
    form = FormData()
    form.add_field("file", PDF, filename="a.pdf")
    form.add_field("csrf", csrf)
    assert (await client.post(f"/officer/dossiers/{code}/result_ready", data=form)).status == 403


async def test_actions_not_valid_in_the_current_state_are_refused(client: TestClient) -> None:
    code, _ = await _officer(client)
    csrf = await csrf_of(client, f"/officer/dossiers/{code}")
    resp = await client.post(f"/officer/dossiers/{code}/stop", data={"csrf": csrf, "reason": "x"})
    assert resp.status == 409
    assert (await client.post(f"/officer/dossiers/{code}/delete", data={"csrf": csrf})).status == 404
    await client.post(f"/officer/dossiers/{code}/transfer", data={"csrf": csrf, "agency": AGENCY})
    assert (
        await client.post(f"/officer/dossiers/{code}/refuse", data={"csrf": csrf, "reason": ""})
    ).status == 400
    resp = await client.post(
        f"/officer/dossiers/{code}/refuse", data={"csrf": csrf, "reason": "Không đủ điều kiện theo luật"}
    )
    assert resp.status == 200
    last = (await mailbox(client, "hub.CN01"))[-1]
    assert last.kind == "dossier.result_ready" and last.body["outcome"] == "refused"


async def test_officer_scoped_to_an_agency_after_a_transfer(client: TestClient) -> None:
    code, other = await _officer(client)
    csrf = await csrf_of(client, f"/officer/dossiers/{code}")
    await client.post(f"/officer/dossiers/{code}/transfer", data={"csrf": csrf, "agency": "Sở Tư pháp"})
    assert (await client.get(f"/officer/dossiers/{code}")).status == 404  # now another agency's
    listing = await (await client.get("/officer")).text()
    assert code not in listing and other in listing
