"""The hub's pages in real Chromium (Debian's, through Playwright): the dashboard following a node from
healthy to offline to alarm without a reload, resolving a quarantined entry, an officer recording a
result with its file, and a citizen tracking a dossier on a phone. Screenshots go to
test-artifacts/admin-ui/. Every page must run under the CSP with no console error."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.central.helpers import hub_clock
from tests.central.webhelpers import LOOKUP, PASSWORD, Branch, add_user, forked, settle
from tests.tools import artifact_dir, require

pytestmark = pytest.mark.browser
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = "admin-ui"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require("chromium")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _page(browser: Any, client: TestClient, **options: Any) -> tuple[Any, list[str]]:
    context = await browser.new_context(
        base_url=str(client.make_url("")).rstrip("/"), locale="vi-VN", **options
    )
    context.set_default_timeout(10_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


async def _login(page: Any, username: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Tên đăng nhập").fill(username)
    await page.get_by_label("Mật khẩu").fill(PASSWORD)
    await page.get_by_role("button", name="Đăng nhập").click()


def _shot(name: str) -> Path:
    return artifact_dir(SHOTS) / f"{name}.png"


async def test_dashboard_follows_a_node_from_healthy_to_offline_to_alarm(
    client: TestClient, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_user(client, "admin1", "admin")
    branch = await Branch.enroll(client)
    branch.receive()
    await branch.push()
    await branch.heartbeat(unacked_entries=3, oldest_unacked_ms=hub_clock.now - 60_000)
    await (await Branch.enroll(client, "VAN03", "van")).heartbeat()
    page, errors = await _page(browser, client, viewport={"width": 1400, "height": 800})
    await _login(page, "admin1")
    row = page.locator('tr[data-node="CN01"]')
    await row.locator("text=Bình thường").wait_for()
    await page.evaluate("window.__notReloaded = true")
    await page.screenshot(path=_shot("1-dashboard-healthy"), full_page=True)
    monkeypatch.setattr(hub_clock, "now", hub_clock.now + 4 * 60_000)  # CN01 falls silent
    await (await Branch.enroll(client, "CN09")).heartbeat()
    await row.locator("text=Mất kết nối").wait_for(timeout=8000)  # the htmx refresh, every 5 s
    assert await page.evaluate("window.__notReloaded === true")
    await page.screenshot(path=_shot("2-dashboard-offline"), full_page=True)
    status, _ = await branch.sim.push([forked(branch, 2)])
    assert status == 409
    await row.locator("text=Rẽ nhánh nhật ký").wait_for(timeout=8000)
    assert await page.evaluate("window.__notReloaded === true")
    assert await page.locator("#node-table tbody tr").first.get_attribute("data-node") == "CN01"
    await page.screenshot(path=_shot("3-dashboard-alarm"), full_page=True)
    await row.get_by_role("link", name="CN01").click()
    await page.locator("text=Bằng chứng rẽ nhánh").wait_for()
    assert await page.locator(".fork pre.entry").count() == 2
    await page.screenshot(path=_shot("4-node-fork-evidence"), full_page=True)
    assert errors == []


async def test_an_admin_accepts_a_quarantined_entry(client: TestClient, browser: Any) -> None:
    await add_user(client, "admin1", "admin")
    branch = await Branch.enroll(client)
    code = branch.receive()
    branch.sim.append("dossier.stopped", {"dossier": code, "actor": "clerk1"})  # no reason: quarantined
    await branch.push()
    page, errors = await _page(browser, client)
    await _login(page, "admin1")
    await page.get_by_role("link", name="Xem xét").click()
    card = page.locator('[id="q-CN01-1-3"]')
    await card.get_by_label("Lý do quyết định").fill("Đã gọi chi nhánh xác nhận; giữ làm bằng chứng")
    await page.screenshot(path=_shot("5-review-quarantine"), full_page=True)
    await card.get_by_role("button", name="Giữ loại trừ").click()
    await page.locator("#no-quarantine").wait_for()
    await page.screenshot(path=_shot("6-review-done"), full_page=True)
    assert errors == []


async def test_an_officer_records_a_result_with_its_file(
    client: TestClient, browser: Any, tmp_path: Path
) -> None:
    await add_user(client, "officer1", "officer", agency="Ủy ban nhân dân cấp xã")
    branch = await Branch.enroll(client)
    code = branch.receive()
    await branch.push()
    await settle(client)
    result = tmp_path / "ket-qua.pdf"
    result.write_bytes(b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n")
    page, errors = await _page(browser, client)
    await _login(page, "officer1")
    await page.get_by_role("link", name=code).click()
    await page.locator("summary", has_text="Chuyển cơ quan giải quyết").click()
    await page.get_by_role("button", name="Chuyển cơ quan giải quyết").click()
    await page.locator("#state", has_text="Đã chuyển cơ quan giải quyết").wait_for()
    await page.locator("summary", has_text="Có kết quả (kèm tệp)").click()
    await page.get_by_label("Số văn bản kết quả").fill("15/QĐ-UBND")
    await page.get_by_label("Tệp kết quả (PDF, JPEG, PNG, TIFF)").set_input_files(str(result))
    await page.screenshot(path=_shot("7-officer-result-form"), full_page=True)
    await page.get_by_role("button", name="Ghi nhận có kết quả").click()
    await page.locator("#state", has_text="Chờ trả kết quả").wait_for()
    assert "kết quả" in await page.locator("#attachments").inner_text()
    await page.screenshot(path=_shot("8-officer-result-ready"), full_page=True)
    assert errors == []


async def test_a_citizen_tracks_a_dossier_on_a_phone(client: TestClient, browser: Any) -> None:
    branch = await Branch.enroll(client)
    code = branch.receive(name="Hoàng Thị Mai")
    await branch.push()
    await settle(client)
    page, errors = await _page(browser, client, viewport={"width": 390, "height": 844}, is_mobile=True)
    await page.goto("/tra-cuu")
    await page.get_by_label("Mã hồ sơ").fill(code)
    await page.get_by_label("Mã tra cứu (in trên giấy tiếp nhận)").fill(LOOKUP.lower())
    await page.get_by_role("button", name="Tra cứu").click()
    await page.locator("#status", has_text="Được tiếp nhận").wait_for()
    text = await page.locator("#result").inner_text()
    assert "H. T. M." in text and "Hoàng" not in text and "Chi nhánh CN01" in text
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    await page.screenshot(path=_shot("9-tracking-phone"), full_page=True)
    assert errors == []
    await page.goto(f"/tra-cuu?ma={code}&tra_cuu=WRONG222")
    await page.locator("#not-found").wait_for()
    await page.screenshot(path=_shot("10-tracking-not-found"), full_page=True)
    assert errors == ["Failed to load resource: the server responded with a status of 404 (Not Found)"]
