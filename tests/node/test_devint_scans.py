"""Scans into dossiers, end to end on a served node: hot folder -> signed attachment, inbox, rejections."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from node.app import make_app
from node.config import NodeConfig
from node.devices import DEVICES, devices_status
from node.scan_attach import SCAN_DISCARDED
from node.verify import verify_node
from node.web.keys import NODE
from protocol.encoding import canonical
from protocol.entry import Entry
from tests.node.conftest import FAST_LOOKUP, login, page_csrf
from tests.node.devint import DESK, code_of, drop, receive, wait_for, with_devices
from tests.node.samples import make_image, make_pdf
from tests.tools import require

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]
FORM_1 = "Tờ khai đăng ký khai sinh (theo mẫu)"


async def _served(
    config: NodeConfig, tmp_path: Path, aiohttp_client: ClientFactory, **changes: Any
) -> Client:
    client = await aiohttp_client(
        make_app(with_devices(config, tmp_path, **changes), lookup_iterations=FAST_LOOKUP, print_poll=0.2)
    )
    await login(client)
    return client


async def _state(client: Client, code: str) -> dict[str, Any]:
    row = await client.app[NODE].store.fetchone("SELECT state_json FROM dossiers WHERE code = ?", (code,))
    assert row is not None
    return dict(json.loads(row[0]))


async def _entries(client: Client, kind: str) -> list[Entry]:
    rows = await client.app[NODE].store.fetchall(
        "SELECT raw FROM entries WHERE kind = ? ORDER BY seq", (kind,)
    )
    return [Entry.parse(bytes(r[0])) for r in rows]


async def test_open_dossier_then_scan_attaches_a_signed_entry_with_thumbnail_and_download(
    config: NodeConfig, token: str, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    require("pdftoppm")
    client = await _served(config, tmp_path, aiohttp_client)
    code = code_of(await receive(client))
    page = await (await client.get(f"/ho-so/{code}")).text()
    assert "Quét vào hồ sơ này" in page and "Chưa có bản quét nào." in page
    csrf = await page_csrf(client, f"/ho-so/{code}")
    opened = await client.post(
        "/quay/mo",
        data={"csrf": csrf, "desk": DESK, "dossier": code, "document": FORM_1},
        allow_redirects=False,
    )
    assert opened.status == 303 and opened.cookies["motcua_desk"].value == DESK
    assert "đang quét vào hồ sơ này" in await (await client.get(f"/ho-so/{code}")).text()

    pdf = make_pdf(pages=3, label="to khai")
    jpeg = make_image("JPEG", seed=3)
    folder = tmp_path / "scan-q1"
    drop(folder, "to-khai.pdf", pdf)
    drop(folder, "CCCD mặt trước.jpg", jpeg)

    async def two_attached() -> list[Any]:
        attachments = (await _state(client, code)).get("attachments") or []
        return attachments if len(attachments) == 2 else []

    attachments = await wait_for(two_attached, what="two attachments")
    entries = await _entries(client, "dossier.attachment")
    assert len(entries) == 2 and all(
        e.body["actor"] == "an.nv" and e.body["dossier"] == code for e in entries
    )
    by_name = {e.body["note"].split("“")[1].split("”")[0]: e for e in entries}
    pdf_entry, jpeg_entry = by_name["to-khai.pdf"], by_name["CCCD mặt trước.jpg"]
    assert pdf_entry.body["document"] == FORM_1 and pdf_entry.body["manifest"]["pages"] == 3
    devices = client.app[DEVICES]
    assert devices.blobs.read_bytes(pdf_entry.body["manifest"]["sha256"]) == pdf  # the PDF is kept as is
    jpeg_manifest = jpeg_entry.body["manifest"]
    assert jpeg_manifest["media_type"] == "application/pdf" and jpeg_manifest["size"] > len(jpeg) // 2
    assert "image/jpeg" in jpeg_entry.body["note"]  # the original is kept and named in the entry
    assert {a["sha256"] for a in attachments} == {
        pdf_entry.body["manifest"]["sha256"],
        jpeg_manifest["sha256"],
    }
    await wait_for(lambda: _no_files(folder), what="the hot folder to be emptied")
    report = await verify_node(client.app[NODE].store, config.node_id)
    assert report.ok, report.differences

    sha = pdf_entry.body["manifest"]["sha256"]
    page = await (await client.get(f"/ho-so/{code}")).text()
    assert f"/ban-quet/{sha}/anh.png" in page and FORM_1 in page
    thumb = await client.get(f"/ban-quet/{sha}/anh.png")
    body = await thumb.read()
    assert thumb.status == 200 and thumb.content_type == "image/png" and body.startswith(b"\x89PNG")
    assert thumb.headers["X-Content-Type-Options"] == "nosniff"
    download = await client.get(f"/ban-quet/{sha}/tep?ho-so={code}")
    assert download.status == 200 and await download.read() == pdf
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    access = await client.app[NODE].store.fetchall("SELECT actor, sha256, dossier, action FROM scan_access")
    assert [tuple(r) for r in access] == [("an.nv", sha, code, "download")]
    assert (await client.get(f"/ban-quet/{'0' * 64}/anh.png")).status == 404  # only scans are served

    closed = await client.post(
        "/quay/dong", data={"csrf": csrf, "desk": DESK, "dossier": code}, allow_redirects=False
    )
    assert closed.status == 303
    drop(folder, "sau-khi-dong.pdf", make_pdf(pages=1, label="later", seed=9))
    await wait_for(lambda: _inbox(client, 1), what="a scan in the inbox after closing the desk")
    assert len((await _state(client, code))["attachments"]) == 2


async def _no_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.is_file()]


async def _inbox(client: Client, n: int) -> list[Any]:
    rows = await client.app[NODE].store.fetchall("SELECT scan_id FROM unassigned_scans ORDER BY scan_id")
    return [r[0] for r in rows] if len(rows) == n else []


async def test_without_open_dossier_scans_wait_in_the_inbox_then_attach_or_discard_logged(
    config: NodeConfig, token: str, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    require("pdftoppm")
    client = await _served(config, tmp_path, aiohttp_client)
    code = code_of(await receive(client))
    folder = tmp_path / "scan-q1"
    drop(folder, "giay-chung-sinh.pdf", make_pdf(pages=1, label="chung sinh", seed=1))
    drop(folder, "nham.png", make_image("PNG", seed=2))
    first, second = await wait_for(lambda: _inbox(client, 2), what="two scans in the inbox")
    page = await (await client.get("/ban-quet")).text()
    assert "Chưa gán hồ sơ (2)" in page and "giay-chung-sinh.pdf" in page and "/anh.png" in page
    assert (
        await client.get(page.split('src="')[1].split('"')[0])
    ).status == 200  # a thumbnail from the inbox
    csrf = await page_csrf(client, "/ban-quet")

    wrong = await client.post(
        f"/ban-quet/{first}/gan", data={"csrf": csrf, "dossier": code, "document": "Sổ hộ khẩu"}
    )
    assert wrong.status == 422 and "chưa phân loại" in await wrong.text()
    attached = await client.post(
        f"/ban-quet/{first}/gan",
        data={
            "csrf": csrf,
            "dossier": code,
            "document": "Giấy chứng sinh hoặc giấy tờ thay thế Giấy chứng sinh",
        },
        allow_redirects=False,
    )
    assert attached.status == 303 and attached.headers["Location"].startswith(f"/ho-so/{code}")
    [attachment] = (await _state(client, code))["attachments"]
    assert attachment["document"].startswith("Giấy chứng sinh")
    again = await client.post(f"/ban-quet/{first}/gan", data={"csrf": csrf, "dossier": code})
    assert again.status == 404  # no longer in the inbox: attached once

    empty = await client.post(f"/ban-quet/{second}/huy", data={"csrf": csrf, "reason": "  "})
    assert empty.status == 422
    discarded = await client.post(
        f"/ban-quet/{second}/huy", data={"csrf": csrf, "reason": "Quét nhầm giấy tờ"}, allow_redirects=False
    )
    assert discarded.status == 303
    [entry] = await _entries(client, SCAN_DISCARDED)
    assert entry.body["actor"] == "an.nv" and entry.body["reason"] == "Quét nhầm giấy tờ"
    assert entry.body["desk"] == DESK and len(entry.body["sha256"]) == 64
    assert not await client.app[NODE].store.fetchall("SELECT * FROM unassigned_scans")
    report = await verify_node(client.app[NODE].store, config.node_id)
    assert report.ok, report.differences
    assert "Chưa gán hồ sơ (0)" in await (await client.get("/ban-quet")).text()


async def test_bad_file_is_rejected_with_a_vietnamese_reason_on_the_inbox_page(
    config: NodeConfig, token: str, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    client = await _served(config, tmp_path, aiohttp_client)
    folder = tmp_path / "scan-q1"
    drop(folder, "khong-phai-pdf.pdf", b"Day khong phai la tep PDF\n" * 20)
    drop(folder, "cut.pdf", make_pdf(pages=2)[:900])  # truncated: retried, then rejected

    async def both_rejected() -> bool:
        return len(list((folder / "rejected").glob("*.reason.txt"))) == 2

    await wait_for(both_rejected, what="two rejections")
    page = await (await client.get("/ban-quet")).text()
    assert "Tệp bị từ chối (2)" in page and "khong-phai-pdf.pdf" in page and "cut.pdf" in page
    reasons = page.split('id="tu-choi"')[1]
    assert "không" in reasons.lower()  # the Vietnamese reason, not a code
    assert not await client.app[NODE].store.fetchall("SELECT * FROM scans")  # never half-registered
    status = await devices_status(client.app)
    assert status["scanners"][0]["rejected_files"] == 2 and status["scanners"][0]["pending_files"] == 0


async def test_low_disk_stops_scan_intake_with_a_banner_and_the_file_waits(
    config: NodeConfig, token: str, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    client = await _served(config, tmp_path, aiohttp_client, low_disk_mb=10**7)  # watermark 10 TB
    folder = tmp_path / "scan-q1"
    drop(folder, "cho.pdf", make_pdf(pages=1))
    devices = client.app[DEVICES]

    async def deferred() -> bool:
        return "sắp đầy" in devices.scanners["quay-1"].message

    await wait_for(deferred, what="the scanner to report the full disk")
    page = await (await client.get("/hom-nay")).text()
    assert 'id="thiet-bi"' in page and "Tạm dừng nhận bản quét" in page
    assert (folder / "cho.pdf").exists() and not await client.app[NODE].store.fetchall("SELECT * FROM scans")
    status = await devices_status(client.app)
    canonical(status)  # plain JSON for the heartbeat: no floats
    assert status["scan_intake"]["ok"] is False and "sắp đầy" in status["scan_intake"]["message"]
    assert status["scanners"] == [
        {
            "name": "quay-1",
            "desk": DESK,
            "ok": False,
            "message": devices.scanners["quay-1"].message,
            "pending_files": 1,
            "rejected_files": 0,
        }
    ]
    [printer] = status["printers"]
    assert printer["name"] == "may-in-q1" and printer["ok"] is True and printer["failed_jobs"] == 0
