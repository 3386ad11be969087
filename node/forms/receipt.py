"""Mẫu 01: GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ, two copies (liên) in one PDF (DOMAIN.md §2.2)."""

from __future__ import annotations

from node.forms.data import ReceiptData
from node.forms.layout import FormPDF, clock_time, money, two_digits

__all__ = ["COPIES", "RECEIPT_TITLE", "render_receipt"]

RECEIPT_TITLE = "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ"
COPIES = (
    "Liên 1: Giao cho cá nhân, tổ chức nộp hồ sơ",
    "Liên 2: Lưu tại Bộ phận Tiếp nhận và Trả kết quả (kèm Phiếu kiểm soát)",
)
_NOTE = (
    "Giấy tiếp nhận hồ sơ và hẹn trả kết quả được lập thành 02 liên; một liên chuyển kèm theo Phiếu "
    "kiểm soát quá trình giải quyết hồ sơ và được lưu tại Bộ phận Tiếp nhận và Trả kết quả; một liên giao "
    "cho cá nhân, tổ chức nộp hồ sơ. Cá nhân, tổ chức có thể đăng ký nhận kết quả tại Bộ phận Tiếp nhận và "
    "Trả kết quả hoặc tại nhà (trụ sở tổ chức) qua dịch vụ bưu chính."
)


def render_receipt(data: ReceiptData) -> bytes:
    """The Mẫu 01 receipt as PDF bytes; identical input gives identical bytes."""
    pdf = FormPDF(
        title=f"{RECEIPT_TITLE} - {data.dossier_code}",
        created=data.received_at,
        subject="Mẫu 01 - Giấy tiếp nhận hồ sơ và hẹn trả kết quả",
        body_size=12.5,
        line=5.7,
    )
    for copy in COPIES:
        pdf.add_page()
        _one_copy(pdf, data, copy)
    return pdf.finish()


def _one_copy(pdf: FormPDF, d: ReceiptData, copy: str) -> None:
    pdf.header_block(d.agency, d.number, "TNHS", d.received_at)
    pdf.form_title(RECEIPT_TITLE, copy)
    pdf.codes(d.dossier_code)

    pdf.para(f"{d.agency.unit[:1].upper()}{d.agency.unit[1:].lower()} {d.agency.parent}")
    pdf.field("Tiếp nhận hồ sơ của: ", d.applicant.name)
    if d.applicant.id_number:
        pdf.field("Số định danh cá nhân/CCCD/Mã số thuế: ", d.applicant.id_number)
    pdf.field("Địa chỉ: ", d.applicant.address or "................................................")
    contact = f"{d.applicant.phone or '....................'}"
    if d.applicant.email:
        contact += f"    Email: {d.applicant.email}"
    pdf.field("Số điện thoại: ", contact)
    pdf.field("Nội dung yêu cầu giải quyết: ", d.procedure_name)

    pdf.para("1. Thành phần hồ sơ nộp gồm:", "B")
    rows = [(str(i), doc.name, doc.form, two_digits(doc.quantity)) for i, doc in enumerate(d.documents, 1)]
    pdf.grid(("STT", "Tên giấy tờ", "Hình thức", "Số lượng"), (12, 101, 30, 22), rows)
    pdf.field("2. Số lượng hồ sơ: ", f"{two_digits(d.sets)} bộ.")
    pdf.field(
        "3. Thời gian giải quyết hồ sơ theo quy định là: ",
        f"{two_digits(d.processing_days)} {d.processing_unit}.",
    )
    pdf.field("4. Thời gian nhận hồ sơ: ", f"{clock_time(d.received_at)}.")
    pdf.field("5. Thời gian trả kết quả giải quyết hồ sơ: ", f"{clock_time(d.due_at)}.")
    pdf.field("6. Đăng ký nhận kết quả tại: ", f"{d.return_place}.")
    if d.fee is None:
        fee = "Không thu."
    else:
        fee = f"{money(d.fee.amount_vnd)} ({'đã nộp' if d.fee.paid else 'chưa nộp'})"
        fee += f"; {d.fee.note}." if d.fee.note else "."
    pdf.field("7. Phí, lệ phí (nếu có): ", fee)
    pdf.field("Vào Sổ theo dõi hồ sơ, ", f"Quyển số: {d.register_book}    Số thứ tự: {d.register_line}")

    _lookup(pdf, d)
    pdf.signatures(("NGƯỜI NỘP HỒ SƠ", d.applicant.name), ("NGƯỜI TIẾP NHẬN HỒ SƠ", d.receiver_name), 16)
    pdf.para("Ghi chú: " + _NOTE, "I", 10.5, 4.6)


def _lookup(pdf: FormPDF, d: ReceiptData) -> None:
    """Lookup code and tracking QR (link with dossier code and lookup code), plus the hotline."""
    qr = 24.0
    if pdf.will_page_break(qr + 4):
        pdf.add_page()
    y = pdf.get_y() + 1
    pdf.qr(d.tracking_link(), x=pdf.w - pdf.r_margin - qr, y=y, size=qr)
    pdf.set_y(y + 2)
    width = pdf.w - pdf.l_margin - pdf.r_margin - qr - 4
    pdf.font("B")
    pdf.multi_cell(width, 6.2, f"Mã tra cứu: {d.lookup_code}", new_x="LMARGIN", new_y="NEXT")
    pdf.font("", 12)
    text = f"Tra cứu tình trạng hồ sơ tại {d.tracking_url} (nhập mã hồ sơ và mã tra cứu) hoặc quét mã QR."
    if d.agency.hotline:
        text += f" Đường dây hỗ trợ: {d.agency.hotline}."
    pdf.multi_cell(width, 5.6, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), y + qr) + 1)
