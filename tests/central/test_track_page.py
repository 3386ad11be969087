"""Public tracking: status, timeline, due date and pickup place with no personal data; the same 404 for a
wrong code and a wrong lookup code; per-IP limits, so 10,000 guesses find nothing."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from protocol.dossier import LOOKUP_ALPHABET
from tests.central.webhelpers import LOOKUP, Branch, settle

FORM = {"ma": "", "tra_cuu": ""}


async def _received(client: TestClient) -> str:
    branch = await Branch.enroll(client)
    code = branch.receive(name="Trần Thị Bích Ngọc")
    branch.sim.append("dossier.transferred", {"dossier": code, "actor": "clerk1", "agency": "UBND phường"})
    await branch.push()
    await settle(client)
    return code


def _body(html: str) -> str:
    """The page without what differs per request (nothing personal may differ)."""
    return re.sub(r'value="[^"]*"', "", html)


async def test_the_qr_link_and_the_form_show_status_without_personal_data(client: TestClient) -> None:
    code = await _received(client)
    resp = await client.get(f"/tra-cuu?ma={code}&tra_cuu={LOOKUP}")
    page = await resp.text()
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    for text in (
        "Đang xử lý",
        "Đăng ký khai sinh",
        "T. T. B. N.",
        "Chi nhánh CN01",
        "Tiếp nhận hồ sơ",
        "Chuyển cơ quan giải quyết",
        "Hẹn trả kết quả",
    ):
        assert text in page, text
    for secret in ("Trần", "Ngọc", "001090012345", "001*", "clerk1", "UBND phường", LOOKUP):
        assert secret not in page, secret
    lower = f"{LOOKUP[:4].lower()}-{LOOKUP[4:].lower()}"  # as typed from the receipt
    form = await client.post("/tra-cuu", data={"ma": code.lower(), "tra_cuu": lower})
    assert form.status == 200 and "Đang xử lý" in await form.text()


async def test_wrong_code_and_wrong_lookup_code_get_the_same_answer(client: TestClient) -> None:
    code = await _received(client)
    wrong_key = await client.post("/tra-cuu", data={"ma": code, "tra_cuu": "ZZZZ2222"})
    wrong_code = await client.post("/tra-cuu", data={"ma": code[:-1] + "9", "tra_cuu": LOOKUP})
    assert wrong_key.status == wrong_code.status == 404
    a, b = _body(await wrong_key.text()), _body(await wrong_code.text())
    assert a == b and "Không tìm thấy hồ sơ" in a
    api_key = await client.get(f"/api/v1/track/{code}?k=ZZZZ2222")
    api_code = await client.get(f"/api/v1/track/{code[:-1]}9?k={LOOKUP}")
    assert api_key.status == api_code.status == 404
    assert (await api_key.json())["error"] == (await api_code.json())["error"]


async def test_ten_thousand_guesses_find_nothing(client: TestClient) -> None:
    code = await _received(client)
    statuses: dict[int, int] = {}
    guesses = 0
    for i in range(5000):  # the page: guessed lookup codes for a real dossier code
        key = "".join(LOOKUP_ALPHABET[(i * 7 + j * 13) % len(LOOKUP_ALPHABET)] for j in range(8))
        if key == LOOKUP:
            continue
        resp = await client.get(f"/tra-cuu?ma={code}&tra_cuu={key}")
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        guesses += 1
        if resp.status == 429:
            assert int(resp.headers["Retry-After"]) >= 1
    for i in range(5000):  # the JSON API: guessed dossier codes with the real lookup code
        resp = await client.get(f"/api/v1/track/{code[:-4]}{(i + 2) % 10000:04d}?k={LOOKUP}")
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        guesses += 1
    assert guesses >= 9999 and statuses.get(200, 0) == 0
    assert statuses[404] <= 30 and statuses[429] == guesses - statuses[404]  # 30 a minute per IP
    assert (await client.get(f"/tra-cuu?ma={code}&tra_cuu={LOOKUP}")).status == 429  # even the right one


async def test_the_page_is_vietnamese_and_mobile_ready(client: TestClient) -> None:
    page = await (await client.get("/tra-cuu?ma=ABC")).text()
    assert '<html lang="vi">' in page and 'name="viewport"' in page and 'value="ABC"' in page
    assert "Tra cứu tình trạng hồ sơ" in page and "http" not in page.split("<body>")[1].replace(
        "https://", ""
    )
