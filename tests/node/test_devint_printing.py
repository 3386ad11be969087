"""Receipts and forms printed by a served node through a folder printer; double clicks; restarts."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from node.app import make_app
from node.config import NodeConfig
from node.devices import DEVICES
from node.printing import PrinterConfig
from node.web.keys import NODE
from tests.node.conftest import FAST_LOOKUP, login, page_csrf
from tests.node.devint import code_of, receive, wait_for, with_devices
from tests.tools import artifact_dir, require

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]


async def _serve(config: NodeConfig, aiohttp_client: ClientFactory) -> Client:
    client = await aiohttp_client(make_app(config, lookup_iterations=FAST_LOOKUP, print_poll=0.2))
    await login(client)
    return client


async def _jobs(client: Client, *where: str) -> list[Any]:
    sql = "SELECT id, idempotency_key, form, status, pdf_sha256, reprint_of, last_error, attempts"
    sql += " FROM print_jobs"
    rows = await client.app[NODE].store.fetchall(sql + (" WHERE " + " AND ".join(where) if where else ""))
    return [tuple(r) for r in rows]


def _text(pdf: Path) -> str:
    exe = require("pdftotext")
    return subprocess.run(
        [exe, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True, timeout=30
    ).stdout


async def test_receipt_printed_at_intake_once_and_forms_from_the_dossier_page(
    config: NodeConfig, token: str, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    printed = tmp_path / "printed"
    client = await _serve(
        with_devices(config, tmp_path, scanner=False, tracking_url="https://tracuu.example.vn/ho-so"),
        aiohttp_client,
    )
    first = await receive(client, key="form-double-0001")
    again = await receive(client, key="form-double-0001")  # the form submitted twice (double click)
    code = code_of(first)
    assert code_of(again) == code
    assert len(await client.app[NODE].store.fetchall("SELECT code FROM dossiers")) == 1
    detail = await (await client.get(first.headers["Location"])).text()
    lookup = re.search(r'id="ma-tra-cuu">([2-9A-Z]{4}-[2-9A-Z]{4})<', detail)
    assert lookup is not None

    async def receipt_printed() -> list[Path]:
        done = await _jobs(client, "status = 'printed'")
        return sorted(printed.glob("*.pdf")) if done else []

    [pdf] = await wait_for(receipt_printed, what="the receipt in the printer folder")
    [job] = await _jobs(client)
    assert job[1] == f"receipt:{code}" and job[2] == "receipt" and job[3] == "printed"
    assert pdf.read_bytes() == client.app[DEVICES].blobs.read_bytes(job[4])
    text = _text(pdf)
    (artifact_dir("devint") / "receipt.txt").write_text(text, encoding="utf-8")
    flat = " ".join(text.split())
    assert code in flat and "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ" in flat and "Trần Thị Bình" in flat
    assert "Liên 1" in flat and "Liên 2" in flat and "Quyển số: CN01-" in flat
    assert lookup.group(1) in flat and "tracuu.example.vn" in flat
    plain = lookup.group(1).replace("-", "").encode()
    raws = await client.app[NODE].store.fetchall("SELECT raw FROM entries")
    assert not any(plain in bytes(r[0]) or lookup.group(1).encode() in bytes(r[0]) for r in raws)

    # Reprint from the dossier page: a double click (same request key) queues one job.
    page = await (await client.get(f"/ho-so/{code}")).text()
    assert "In lại" in page and "Đã in" in page
    csrf = await page_csrf(client, f"/ho-so/{code}")
    key = re.search(r'name="request_key" value="([^"]+)"', page.split('id="lenh-in"')[1])
    assert key is not None
    for _ in range(2):
        r = await client.post(
            f"/may-in/lenh/{job[0]}/in-lai",
            data={"csrf": csrf, "request_key": key.group(1), "next": f"/ho-so/{code}"},
            allow_redirects=False,
        )
        assert r.status == 303 and r.headers["Location"] == f"/ho-so/{code}"
    reprints = await _jobs(client, f"reprint_of = {job[0]}")
    assert len(reprints) == 1 and reprints[0][4] == job[4]
    await wait_for(lambda: _jobs(client, "status = 'printed'", f"reprint_of = {job[0]}"), what="reprint")

    # The dossier goes to the resolving agency, which asks for a supplement; its form is printed once.
    r = await client.post(
        f"/ho-so/{code}/transfer", data={"csrf": csrf, "agency": "Phòng Tư pháp"}, allow_redirects=False
    )
    assert r.status == 303
    r = await client.post(
        f"/ho-so/{code}/supplement_request",
        data={"csrf": csrf, "item_name": "Bản sao giấy chứng nhận kết hôn", "contact": "Nguyễn Văn An"},
        allow_redirects=False,
    )
    assert r.status == 303
    page = await (await client.get(f"/ho-so/{code}")).text()
    assert "In phiếu yêu cầu bổ sung, hoàn thiện hồ sơ" in page
    form_html = page.split('/supplement_request">')[1].split("</form>")[0]
    key = re.search(r'name="request_key" value="([^"]+)"', form_html)
    assert key is not None
    for _ in range(2):
        r = await client.post(
            f"/in/{code}/supplement_request",
            data={"csrf": csrf, "request_key": key.group(1)},
            allow_redirects=False,
        )
        assert r.status == 303
    [form_job] = await _jobs(client, "form = 'supplement_request'")
    await wait_for(lambda: _jobs(client, "status = 'printed'", f"id = {form_job[0]}"), what="supplement form")
    newest = max(printed.glob("*.pdf"), key=lambda p: p.stat().st_mtime_ns)
    flat = " ".join(_text(newest).split())
    assert "PHIẾU YÊU CẦU BỔ SUNG, HOÀN THIỆN HỒ SƠ" in flat and "Bản sao giấy chứng nhận kết hôn" in flat
    refusal = await client.post(f"/in/{code}/refusal", data={"csrf": csrf, "request_key": "k" * 20})
    assert refusal.status == 409  # nothing to print yet: no refusal recorded

    printers = await (await client.get("/may-in")).text()
    assert "Sẵn sàng" in printers and "Đã in" in printers and code in printers


async def test_queued_jobs_survive_a_restart_and_print_after_it(
    config: NodeConfig, token: str, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    blocked = tmp_path / "printer-out"
    devices_config = with_devices(
        config, tmp_path, scanner=False, printers=(PrinterConfig("may-in-q1", kind="folder", folder=blocked),)
    )
    blocked.write_bytes(b"")  # a file where the folder should be: every write fails
    client = await _serve(devices_config, aiohttp_client)
    code = code_of(await receive(client, key="form-restart-0001"))

    async def failed_once() -> list[Any]:
        return await _jobs(client, "attempts >= 1", "status = 'queued'")

    [job] = await wait_for(failed_once, what="a failed attempt")
    assert "Không ghi được tệp in" in job[6]
    page = await (await client.get("/may-in")).text()
    assert "Đang chờ in" in page and "Không ghi được tệp in" in page
    await client.close()

    blocked.unlink()
    blocked.mkdir()
    client = await _serve(devices_config, aiohttp_client)

    async def printed() -> list[Path]:
        done = await _jobs(client, "status = 'printed'")
        return sorted(blocked.glob(f"*{code}*.pdf")) if done else []

    await wait_for(printed, timeout=15, what="the queued receipt printed after the restart")
    [after] = await _jobs(client)
    assert after[0] == job[0] and after[3] == "printed"


async def test_receipt_of_a_dossier_received_without_printer_is_printed_from_the_dossier_page(
    config: NodeConfig, token: str, tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    client = await _serve(with_devices(config, tmp_path, scanner=False, printers=()), aiohttp_client)
    first = await receive(client, key="form-noprint-01")
    code = code_of(first)
    detail = await (await client.get(first.headers["Location"])).text()
    lookup = re.search(r'id="ma-tra-cuu">([2-9A-Z]{4}-[2-9A-Z]{4})<', detail)
    assert lookup is not None and "Máy trạm chưa có máy in" in detail
    assert await _jobs(client) == []
    await client.close()

    client = await _serve(with_devices(config, tmp_path, scanner=False), aiohttp_client)  # a printer added
    page = await (await client.get(f"/ho-so/{code}")).text()
    assert "In giấy tiếp nhận hồ sơ và hẹn trả kết quả" in page
    csrf = await page_csrf(client, f"/ho-so/{code}")
    for _ in range(2):  # double click
        r = await client.post(
            f"/in/{code}/receipt",
            data={"csrf": csrf, "request_key": "click-0001-receipt"},
            allow_redirects=False,
        )
        assert r.status == 303
    [job] = await wait_for(lambda: _jobs(client, "status = 'printed'"), what="the receipt printed")
    assert job[1] == f"receipt:{code}"
    [pdf] = sorted((tmp_path / "printed").glob("*.pdf"))
    flat = " ".join(_text(pdf).split())
    assert lookup.group(1) in flat and code in flat and "Nguyễn Văn An" in flat  # the receiving clerk
    page = await (await client.get(f"/ho-so/{code}")).text()
    assert "In giấy tiếp nhận hồ sơ" not in page.split('id="in-an"')[1].split("<table")[0]  # now "In lại"
