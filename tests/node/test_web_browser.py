"""The staff UI in Debian's chromium (Playwright): log in, receive, search with and without diacritics,
record the return. Screenshots go to test-artifacts/node-browser/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from node.app import make_app
from node.config import NodeConfig
from tests.node.conftest import FAST_LOOKUP, PASSWORD
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


async def test_receive_search_and_return_in_chromium(
    config: NodeConfig, token: str, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    require("chromium")
    from playwright.async_api import async_playwright, expect

    server = await aiohttp_server(make_app(config, lookup_iterations=FAST_LOOKUP), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    shots = artifact_dir("node-browser")
    external: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="vi-VN")
            page.on("request", lambda r: external.append(r.url) if not r.url.startswith(base) else None)
            await page.goto(f"{base}/hom-nay")
            await expect(page.get_by_role("heading", name="Đăng nhập")).to_be_visible()
            await page.get_by_label("Tên đăng nhập").fill("an.nv")
            await page.get_by_label("Mật khẩu").fill(PASSWORD)
            await page.screenshot(path=str(shots / "01-dang-nhap.png"))
            await page.get_by_role("button", name="Đăng nhập").click()
            await expect(page.get_by_role("heading", level=1)).to_contain_text("Hôm nay")
            await expect(page.get_by_role("status").first).to_contain_text("Ngoại tuyến từ")

            await page.get_by_role("link", name="Tiếp nhận hồ sơ", exact=True).click()
            await page.get_by_label("Thủ tục hành chính").select_option(
                "1.001193"
            )  # JS reloads with checklist
            await expect(page.get_by_text("Hẹn trả kết quả nếu tiếp nhận bây giờ")).to_be_visible()
            await page.get_by_label("Họ và tên").fill("Lê Thị Thu Hà")
            await page.get_by_label("Số giấy tờ").fill("001185004321")
            await page.get_by_label("Số điện thoại").fill("0987 654 321")
            await page.get_by_role("button", name="Tiếp nhận hồ sơ").click()  # nothing ticked: errors
            await expect(page.get_by_text("Thiếu giấy tờ bắt buộc", exact=False).first).to_be_visible()
            await page.screenshot(path=str(shots / "02-loi-thieu-giay-to.png"), full_page=True)
            for i in range(3):
                await page.locator(f"#doc-{i}").check()
            await page.get_by_role("button", name="Tiếp nhận hồ sơ").click()
            await expect(page.locator("#trang-thai")).to_have_text("Trạng thái 2 · Được tiếp nhận")
            code = (await page.locator("#ma-ho-so").inner_text()).strip()
            await expect(page.locator("#ma-tra-cuu")).to_have_text(re.compile(r"^[2-9A-Z]{4}-[2-9A-Z]{4}$"))
            await page.screenshot(path=str(shots / "03-da-tiep-nhan.png"), full_page=True)

            for query in ("Lê Thị Thu Hà", "le thi thu ha"):
                await page.get_by_role("link", name="Tra cứu").click()
                await page.get_by_label("Mã hồ sơ, họ tên").fill(query)
                await page.keyboard.press("Enter")
                row = page.get_by_role("row").filter(has_text=code)
                await expect(row).to_contain_text("001*******21")
            await page.screenshot(path=str(shots / "04-tra-cuu-khong-dau.png"), full_page=True)
            await page.get_by_role("link", name=code).click()

            for label, fill in (
                ("Chuyển cơ quan giải quyết", {"Cơ quan giải quyết": "UBND phường Tây Hồ"}),
                ("Nhận kết quả từ cơ quan giải quyết", {}),
                ("Trả kết quả", {"Họ và tên người nhận": "Lê Thị Thu Hà"}),
            ):
                details = page.locator("details.action").filter(has_text=label)
                await details.locator("summary").click()
                for field, value in fill.items():
                    await details.get_by_label(field).fill(value)
                await details.get_by_role("button", name=label).click()
            await expect(page.locator("#trang-thai")).to_have_text("Trạng thái 10 · Đã trả kết quả")
            await expect(page.get_by_text("✓ đã xác minh chữ ký")).to_have_count(4)
            await page.screenshot(path=str(shots / "05-da-tra-ket-qua.png"), full_page=True)
        finally:
            await browser.close()
    assert external == [], f"the UI fetched something off the node: {external}"
    assert any(shots.glob("05-*.png"))
