"""In Debian's chromium (Playwright): a van past its offline lease shows why its dossier views are locked,
and still takes a new dossier. Screenshot: test-artifacts/lease/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from node.app import make_app
from node.config import NodeConfig
from node.store import Store
from protocol import canonical, generate_private_key, sign_lease
from tests.node.conftest import FAST_LOOKUP, PASSWORD
from tests.node.test_web_browser import ARGS
from tests.tools import artifact_dir, require

pytestmark = pytest.mark.browser
HOUR = 3_600_000


async def test_expired_lease_locks_pii_pages_in_chromium(
    config: NodeConfig, token: str, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    require("chromium")
    from playwright.async_api import async_playwright, expect

    issued = time.time_ns() // 1_000_000 - 80 * HOUR  # last sync 80 h ago, a 72 h lease
    lease = sign_lease(generate_private_key(), config.node_id, 1, issued, issued + 72 * HOUR)
    store = await Store.open(config.db_path)
    try:
        async with store.write() as db:
            await db.execute(
                "INSERT INTO sync_state (key, value) VALUES ('lease', ?)",
                (canonical(lease.to_wire()).decode(),),
            )
    finally:
        await store.close()
    server = await aiohttp_server(make_app(config, lookup_iterations=FAST_LOOKUP), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    shots = artifact_dir("lease")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
            await page.goto(f"{base}/ho-so/moi")
            await page.get_by_label("Tên đăng nhập").fill("an.nv")
            await page.get_by_label("Mật khẩu").fill(PASSWORD)
            await page.get_by_role("button", name="Đăng nhập").click()
            await expect(page.get_by_label("Thủ tục hành chính")).to_be_visible()  # intake still open
            response = await page.goto(f"{base}/tim-kiem")
            assert response is not None and response.status == 423
            await expect(page.get_by_text("Giấy phép ngoại tuyến đã hết hạn")).to_be_visible()
            await expect(page.get_by_role("heading", name="Đã khóa xem dữ liệu cá nhân")).to_be_visible()
            await page.screenshot(path=str(shots / "01-tra-cuu-bi-khoa.png"), full_page=True)
            await page.get_by_role("link", name="Tiếp nhận hồ sơ mới").click()
            await expect(page.get_by_label("Thủ tục hành chính")).to_be_visible()
        finally:
            await browser.close()
