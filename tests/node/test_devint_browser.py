"""In Debian's chromium (Playwright): open a dossier for scanning, drop a scan into the hot folder, see it
attached with its first-page thumbnail; the printed receipt is listed. Screenshots: test-artifacts/devint/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from node.app import make_app
from node.config import NodeConfig
from tests.node.conftest import FAST_LOOKUP, PASSWORD
from tests.node.devint import drop, with_devices
from tests.node.samples import make_pdf
from tests.node.test_web_browser import ARGS
from tests.tools import artifact_dir, require

pytestmark = pytest.mark.browser


async def test_scan_into_an_open_dossier_in_chromium(
    config: NodeConfig, token: str, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    require("chromium")
    require("pdftoppm")
    from playwright.async_api import async_playwright, expect

    app = make_app(with_devices(config, tmp_path), lookup_iterations=FAST_LOOKUP, print_poll=0.2)
    server = await aiohttp_server(app, host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    shots = artifact_dir("devint")
    external: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
            page.on("request", lambda r: external.append(r.url) if not r.url.startswith(base) else None)
            await page.goto(f"{base}/hom-nay")
            await page.get_by_label("Tên đăng nhập").fill("an.nv")
            await page.get_by_label("Mật khẩu").fill(PASSWORD)
            await page.get_by_role("button", name="Đăng nhập").click()
            await page.get_by_role("link", name="Tiếp nhận hồ sơ", exact=True).click()
            await page.get_by_label("Thủ tục hành chính").select_option("1.001193")
            await expect(page.get_by_text("Hẹn trả kết quả nếu tiếp nhận bây giờ")).to_be_visible()
            await page.get_by_label("Họ và tên").fill("Phạm Thị Hương")
            await page.get_by_label("Số giấy tờ").fill("001185004321")
            for i in range(3):
                await page.locator(f"#doc-{i}").check()
            await page.get_by_role("button", name="Tiếp nhận hồ sơ").click()
            await expect(page.locator("#trang-thai")).to_have_text("Trạng thái 2 · Được tiếp nhận")
            code = (await page.locator("#ma-ho-so").inner_text()).strip()

            await page.get_by_label("Giấy tờ sắp quét").select_option("Tờ khai đăng ký khai sinh (theo mẫu)")
            await page.get_by_role("button", name="Quét vào hồ sơ này").click()
            await expect(page.get_by_text("đang quét vào hồ sơ này")).to_be_visible()
            await page.screenshot(path=str(shots / "01-mo-ho-so-de-quet.png"), full_page=True)

            drop(tmp_path / "scan-q1", "to-khai.pdf", make_pdf(pages=2, label="to khai khai sinh"))
            thumb = page.locator("#ban-quet img")
            deadline = time.monotonic() + 20
            while await thumb.count() == 0:  # the page is server-rendered: reload until the scan is in
                assert time.monotonic() < deadline, "the scan did not appear on the dossier page"
                await page.wait_for_timeout(300)
                await page.reload()
            await expect(thumb).to_have_count(1)
            await expect(page.locator("#ban-quet")).to_contain_text("Tờ khai đăng ký khai sinh (theo mẫu)")
            await expect(page.locator("#ban-quet")).to_contain_text("2 trang")
            await thumb.scroll_into_view_if_needed()  # loading="lazy": it loads once on screen
            loaded = "img => img.complete && img.naturalWidth > 100"  # rendered by pdftoppm on first request
            await page.wait_for_function(loaded, arg=await thumb.element_handle(), timeout=20_000)
            await expect(page.locator("#lenh-in")).to_contain_text("Giấy tiếp nhận " + code)
            await page.locator("#ban-quet").scroll_into_view_if_needed()
            await page.screenshot(path=str(shots / "02-ban-quet-da-dinh-kem.png"), full_page=True)

            await page.get_by_role("link", name="Máy in").click()
            await expect(page.locator("#may-in")).to_contain_text("Sẵn sàng")
            await page.screenshot(path=str(shots / "03-may-in.png"), full_page=True)
        finally:
            await browser.close()
    assert external == [], f"the UI loaded something from outside: {external}"
