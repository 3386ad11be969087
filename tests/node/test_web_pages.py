"""Staff pages over a real server: receive through the form, errors, search, detail, actions."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from node.web.keys import NODE
from tests.node.conftest import login, page_csrf


async def _receive(client: TestClient[Any, Any], **fields: Any) -> Any:
    csrf = await page_csrf(client, "/ho-so/moi?procedure=1.001193")
    data = {
        "csrf": csrf,
        "procedure": "1.001193",
        "applicant.name": "Trần Thị Bình",
        "applicant.id_type": "cccd",
        "applicant.id_number": "001 190 012 345",
        "applicant.phone": "+84912345678",
        "doc": ["0", "1", "2"],
        "action": "receive",
        "idempotency_key": "form-abcdef-1",
    }
    data.update(fields)
    return await client.post("/ho-so/moi", data=data, allow_redirects=False)


async def test_new_dossier_page_shows_checklist_and_due_date(client: TestClient[Any, Any]) -> None:
    await login(client)
    picker = await (await client.get("/ho-so/moi")).text()
    assert "Đăng ký khai sinh" in picker and 'id="procedure-picker"' in picker
    page = await (await client.get("/ho-so/moi?procedure=1.001193")).text()
    assert "Giấy chứng sinh" in page and "bắt buộc" in page
    assert re.search(r"Hẹn trả kết quả nếu tiếp nhận bây giờ: <strong[^>]*>\d\d giờ \d\d phút, ngày", page)
    preview = await client.get("/ho-so/han-tra?procedure=1.001193")
    body = await preview.json()
    assert preview.status == 200 and body["due_at"] > body["received_at"] and "tháng" in body["due_long"]
    assert (await client.get("/ho-so/han-tra?procedure=0.000000")).status == 422


async def test_receive_through_the_form_then_detail_and_double_submit(client: TestClient[Any, Any]) -> None:
    await login(client)
    response = await _receive(client)
    assert response.status == 303
    location = response.headers["Location"]
    code = location.split("/")[2].split("?")[0]
    detail = await (await client.get(location)).text()
    assert code in detail and "Trạng thái 2 · Được tiếp nhận" in detail
    assert re.search(r'id="ma-tra-cuu">[2-9A-Z]{4}-[2-9A-Z]{4}<', detail)
    assert "001190012345" in detail and "✓ đã xác minh chữ ký" in detail
    again = await _receive(client)  # the same form submitted twice (double click / back button)
    assert again.status == 303 and again.headers["Location"] == location
    node = client.app[NODE]
    assert len(await node.store.fetchall("SELECT code FROM dossiers")) == 1
    views = await node.store.fetchall("SELECT actor, dossier FROM access_log")
    assert ("an.nv", code) in [tuple(v) for v in views]


async def test_form_errors_are_shown_in_vietnamese_and_nothing_is_written(
    client: TestClient[Any, Any],
) -> None:
    await login(client)
    response = await _receive(
        client,
        **{"applicant.id_number": "12345", "applicant.phone": "99", "doc": ["0"], "idempotency_key": ""},
    )
    html = await response.text()
    assert response.status == 422
    assert "Số định danh cá nhân phải gồm 12 chữ số" in html
    assert "Số điện thoại không hợp lệ" in html and "Thiếu giấy tờ bắt buộc" in html
    assert 'aria-invalid="true"' in html and 'value="Trần Thị Bình"' in html  # input kept
    node = client.app[NODE]
    assert await node.store.fetchall("SELECT 1 FROM entries WHERE kind != 'log.genesis'") == []


async def test_refuse_at_reception_needs_a_reason(client: TestClient[Any, Any]) -> None:
    await login(client)
    missing = await _receive(client, action="refuse", reason="", idempotency_key="")
    assert missing.status == 422 and "Vui lòng nhập lý do từ chối" in await missing.text()
    done = await _receive(client, action="refuse", reason="Không thuộc thẩm quyền", idempotency_key="")
    assert done.status == 303
    detail = await (await client.get(done.headers["Location"])).text()
    assert "Trạng thái 3 · Không được tiếp nhận" in detail and "Không thuộc thẩm quyền" in detail


async def test_search_by_name_with_and_without_diacritics_and_masks_ids(client: TestClient[Any, Any]) -> None:
    await login(client)
    code = (await _receive(client)).headers["Location"].split("/")[2].split("?")[0]
    for query in ("Trần Thị Bình", "tran thi binh", "TRAN", code, "001190012345"):
        html = await (await client.get("/tim-kiem", params={"q": query})).text()
        assert code in html, query
        assert "001*******45" in html and "001190012345" not in html.split("<tbody>")[1]
    empty = await (await client.get("/tim-kiem", params={"q": "không có ai"})).text()
    assert "Không tìm thấy hồ sơ phù hợp" in empty


async def test_actions_through_to_return_and_rating(client: TestClient[Any, Any]) -> None:
    await login(client)
    location = (await _receive(client)).headers["Location"]
    code = location.split("/")[2].split("?")[0]
    steps = [
        ("transfer", {"agency": "UBND phường Tây Hồ"}),
        ("result_ready", {"outcome": "approved"}),
        ("return", {"recipient.name": "Trần Thị Bình", "channel": "1"}),
        ("rating", {"scale": "three_level", "value": "3"}),
    ]
    for action, fields in steps:
        csrf = await page_csrf(client, f"/ho-so/{code}")
        response = await client.post(
            f"/ho-so/{code}/{action}", data={"csrf": csrf, **fields}, allow_redirects=False
        )
        assert response.status == 303, await response.text()
    html = await (await client.get(f"/ho-so/{code}")).text()
    assert "Trạng thái 10 · Đã trả kết quả" in html and "Đã trả cho" in html
    assert html.count("✓ đã xác minh chữ ký") == 5
    csrf = await page_csrf(client, f"/ho-so/{code}")
    late = await client.post(f"/ho-so/{code}/transfer", data={"csrf": csrf, "agency": "X"})
    assert late.status == 409 and "Không thể" in await late.text()
    bad = await client.post(f"/ho-so/{code}/rating", data={"csrf": csrf, "value": "9"})
    assert bad.status == 422 and "Mức đánh giá phải là số nguyên từ 1 đến 3" in await bad.text()


async def test_today_lists_and_404(client: TestClient[Any, Any]) -> None:
    await login(client)
    code = (await _receive(client)).headers["Location"].split("/")[2].split("?")[0]
    html = await (await client.get("/hom-nay")).text()
    assert code in html and "Tiếp nhận hôm nay" in html
    missing = await client.get("/ho-so/000.00.01.H26-261122-9999")
    assert missing.status == 404 and "Không tìm thấy hồ sơ" in await missing.text()
    assert (await client.get("/khong-co")).status == 404
    css = await client.get("/static/app.css")
    assert css.status == 200 and "http" not in (await css.text()).replace("https://", "")


async def test_the_form_records_whether_the_fee_was_collected(client: TestClient[Any, Any]) -> None:
    """Chứng thực chữ ký (10.000 đồng): the checkbox is offered; ticked → fee_paid true, else false. A
    procedure without a fee does not show it."""
    import json

    await login(client)
    assert 'name="fee_paid"' not in await (await client.get("/ho-so/moi?procedure=1.001193")).text()
    page = await (await client.get("/ho-so/moi?procedure=2.000884")).text()
    assert 'name="fee_paid"' in page and "Đã thu phí, lệ phí khi tiếp nhận" in page
    node = client.app[NODE]
    for key, extra, paid in (("form-fee-paid-1", {"fee_paid": "1"}, True), ("form-fee-unpaid-1", {}, False)):
        csrf = await page_csrf(client, "/ho-so/moi?procedure=2.000884")
        data = {
            "csrf": csrf,
            "procedure": "2.000884",
            "applicant.name": "Trần Thị Bình",
            "applicant.id_type": "cccd",
            "applicant.id_number": "001 190 012 345",
            "doc": ["0", "1"],
            "action": "receive",
            "idempotency_key": key,
            **extra,
        }
        response = await client.post("/ho-so/moi", data=data, allow_redirects=False)
        assert response.status == 303, await response.text()
        code = response.headers["Location"].split("/")[2].split("?")[0]
        row = await node.store.fetchone(
            "SELECT raw FROM entries WHERE dossier = ? AND kind = 'dossier.received'", (code,)
        )
        body = json.loads(bytes(row[0]))["body"]
        assert body["fee"] == 10000 and body["fee_paid"] is paid
