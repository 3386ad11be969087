"""Printed forms: real PDFs, text extracted with poppler, a page rendered to PNG for a human look."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import unicodedata
from datetime import datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from node import forms
from node.forms import (
    FORMS,
    Agency,
    ApologyData,
    Applicant,
    DocumentItem,
    Fee,
    ReceiptData,
    RefusalData,
    ResultReturnData,
    SupplementItem,
    SupplementRequestData,
    register_receipt_template,
    render,
)
from node.forms.layout import clock_time, long_date, money
from tests.tools import artifact_dir, require

AGENCY = Agency("UBND quận Tây Hồ", "Bộ phận Tiếp nhận và Trả kết quả", "Tây Hồ", "1900 1234")
APPLICANT = Applicant(
    "Nguyễn Thị Hồng Ánh",
    "Số 12 ngõ 45 phố Xuân Diệu, phường Quảng An, quận Tây Hồ, Hà Nội",
    "0912 345 678",
    "anh.nth@example.vn",
    "001190012345",
)
CODE = "000.00.17.H26-261122-0001"


def receipt(**changes: object) -> ReceiptData:
    data = ReceiptData(
        agency=AGENCY,
        number="125/TNHS",
        dossier_code=CODE,
        procedure_name="Đăng ký khai sinh",
        applicant=APPLICANT,
        documents=(
            DocumentItem("Tờ khai đăng ký khai sinh theo mẫu", "Bản chính", 1),
            DocumentItem("Giấy chứng sinh", "Bản chính", 1),
            DocumentItem("Giấy chứng nhận kết hôn của cha, mẹ", "Bản sao", 1),
        ),
        received_at=datetime(2026, 11, 22, 8, 30),
        due_at=datetime(2026, 11, 27, 14, 0),
        processing_days=5,
        return_place="Bộ phận Tiếp nhận và Trả kết quả UBND quận Tây Hồ",
        register_book="03",
        register_line="125",
        receiver_name="Trần Văn Bình",
        lookup_code="AB7K",
        tracking_url="https://dichvucong.hanoi.gov.vn/tra-cuu",
        fee=Fee(8000, paid=True),
    )
    return dataclasses.replace(data, **changes)  # type: ignore[arg-type]


def pdftotext(pdf: bytes, tmp_path: Path) -> str:
    exe = require("pdftotext")
    path = tmp_path / "form.pdf"
    path.write_bytes(pdf)
    out = subprocess.run([exe, "-layout", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True)
    return unicodedata.normalize("NFC", out.stdout.decode("utf-8"))


def test_vietnamese_dates_and_money() -> None:
    assert long_date(datetime(2026, 11, 22)) == "ngày 22 tháng 11 năm 2026"
    assert (
        long_date(datetime(2026, 2, 5)) == "ngày 05 tháng 02 năm 2026"
    )  # NĐ 30/2020: 0 before day<10, month 1-2
    assert long_date(datetime(2026, 3, 9)) == "ngày 09 tháng 3 năm 2026"
    assert clock_time(datetime(2026, 11, 22, 8, 5)) == "8 giờ 05 phút, ngày 22 tháng 11 năm 2026"
    assert money(1250000) == "1.250.000 đồng"


def test_receipt_text_survives_extraction(tmp_path: Path) -> None:
    pdf = render("receipt", receipt())
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 2  # two liên, one A4 page each
    assert [round(float(x)) for x in reader.pages[0].mediabox[2:]] == [595, 842]
    text = pdftotext(pdf, tmp_path)
    for needle in (
        "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ",
        "Nguyễn Thị Hồng Ánh",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
        "Tây Hồ, ngày 22 tháng 11 năm 2026",
        "8 giờ 30 phút, ngày 22 tháng 11 năm 2026",
        "14 giờ 00 phút, ngày 27 tháng 11 năm 2026",
        "Quyển số: 03",
        "Số thứ tự: 125",
        "Mã tra cứu: AB7K",
        "8.000 đồng (đã nộp)",
        CODE,
        "Liên 1",
        "Liên 2",
        "NGƯỜI NỘP HỒ SƠ",
        "NGƯỜI TIẾP NHẬN HỒ SƠ",
    ):
        assert needle in text, needle
    fonts = {str(f["/BaseFont"]) for page in reader.pages for f in page["/Resources"]["/Font"].values()}
    assert all("LiberationSerif" in f for f in fonts), fonts  # vendored font embedded


def test_receipt_is_deterministic_and_nfc(tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "Nguyễn Thị Hồng Ánh")
    a = render("receipt", receipt())
    b = render("receipt", receipt(applicant=dataclasses.replace(APPLICANT, name=nfd)))
    assert a == b  # NFD input normalised on construction; no clock in the output
    assert "Nguyễn Thị Hồng Ánh" in pdftotext(b, tmp_path)
    assert a != render("receipt", receipt(register_line="126"))


def test_tracking_link_carries_the_lookup_code() -> None:
    assert receipt().tracking_link() == (
        "https://dichvucong.hanoi.gov.vn/tra-cuu?ma=000.00.17.H26-261122-0001&tra_cuu=AB7K"
    )


def test_receipt_page_rendered_to_png() -> None:
    exe = require("pdftoppm")
    out = artifact_dir("forms")
    (out / "receipt.pdf").write_bytes(render("receipt", receipt()))
    subprocess.run([exe, "-png", "-r", "100", "-f", "1", "-l", "1", "-singlefile", str(out / "receipt.pdf"),
                    str(out / "receipt-page1")], check=True, timeout=60)  # fmt: skip
    png = out / "receipt-page1.png"
    assert png.stat().st_size > 10_000 and png.read_bytes().startswith(b"\x89PNG")


OTHERS = {
    "supplement_request": (
        SupplementRequestData(
            AGENCY, "12/PYCBS", CODE, "Đăng ký khai sinh", APPLICANT,
            (SupplementItem("Bản sao Giấy chứng nhận kết hôn có chứng thực", "Bản nộp không rõ nét"),),
            datetime(2026, 11, 22, 9, 0), "Trần Văn Bình", "", "024 3823 4567",
        ),
        ("PHIẾU YÊU CẦU BỔ SUNG, HOÀN THIỆN HỒ SƠ", "NGƯỜI HƯỚNG DẪN", "Bản nộp không rõ nét"),
    ),
    "refusal": (
        RefusalData(AGENCY, "3/PTC", "Đăng ký khai sinh", APPLICANT,
                    "Thủ tục không thuộc thẩm quyền giải quyết của UBND quận Tây Hồ.",
                    datetime(2026, 11, 22, 9, 0), "Trần Văn Bình"),
        ("PHIẾU TỪ CHỐI TIẾP NHẬN GIẢI QUYẾT HỒ SƠ", "không thuộc thẩm quyền", "với lý do cụ thể như sau"),
    ),
    "apology": (
        ApologyData(AGENCY, "7/XL", CODE, "Đăng ký khai sinh", APPLICANT, datetime(2026, 11, 22, 8, 30),
                    datetime(2026, 11, 27, 14, 0), datetime(2026, 12, 2, 10, 0),
                    "Cần xác minh thông tin hộ tịch tại địa phương khác.", datetime(2026, 11, 26, 15, 0),
                    "TRƯỞNG PHÒNG", "Lê Thị Mai"),
        ("VĂN BẢN XIN LỖI VÀ ĐỀ NGHỊ GIA HẠN THỜI GIAN GIẢI QUYẾT",
         "10 giờ 00 phút, ngày 02 tháng 12 năm 2026", "thành thật xin lỗi"),
    ),
    "result_return": (
        ResultReturnData(AGENCY, "90/PTKQ", CODE, "Đăng ký khai sinh", APPLICANT,
                         (DocumentItem("Giấy khai sinh", "Bản chính", 1),), datetime(2026, 11, 27, 14, 0),
                         datetime(2026, 11, 26, 10, 5), "Trần Văn Bình"),
        ("PHIẾU TRẢ KẾT QUẢ GIẢI QUYẾT HỒ SƠ", "Trả trước hạn", "NGƯỜI NHẬN KẾT QUẢ"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("form", sorted(OTHERS))
def test_other_forms(form: str, tmp_path: Path) -> None:
    data, needles = OTHERS[form]
    pdf = render(form, data)
    assert pdf == render(form, data)
    text = pdftotext(pdf, tmp_path)
    for needle in (*needles, "Nguyễn Thị Hồng Ánh", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"):
        assert needle in " ".join(text.split()), needle


def test_form_registry() -> None:
    assert set(FORMS) == {"receipt", *OTHERS}
    with pytest.raises(TypeError):
        render("refusal", receipt())
    with pytest.raises(ValueError):
        render("receipt", receipt(template="ct04"))
    register_receipt_template("ct04", lambda d: b"%PDF-ct04 " + d.dossier_code.encode())
    try:
        assert render("receipt", receipt(template="ct04")).startswith(b"%PDF-ct04")
    finally:
        forms._RECEIPT_TEMPLATES.pop("ct04")
