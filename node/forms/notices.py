"""The other one-stop forms (DOMAIN.md §2.3): supplement request, refusal, apology with a new date,
and the result return slip. One page each in the common case; long lists flow onto more pages."""

from __future__ import annotations

from node.forms.data import ApologyData, Applicant, RefusalData, ResultReturnData, SupplementRequestData
from node.forms.layout import FormPDF, clock_time, long_date, money, two_digits

__all__ = [
    "APOLOGY_TITLE",
    "REFUSAL_TITLE",
    "RESULT_RETURN_TITLE",
    "SUPPLEMENT_TITLE",
    "render_apology",
    "render_refusal",
    "render_result_return",
    "render_supplement_request",
]

SUPPLEMENT_TITLE = "PHIẾU YÊU CẦU BỔ SUNG, HOÀN THIỆN HỒ SƠ"
REFUSAL_TITLE = "PHIẾU TỪ CHỐI TIẾP NHẬN GIẢI QUYẾT HỒ SƠ"
APOLOGY_TITLE = "VĂN BẢN XIN LỖI VÀ ĐỀ NGHỊ GIA HẠN THỜI GIAN GIẢI QUYẾT"
RESULT_RETURN_TITLE = "PHIẾU TRẢ KẾT QUẢ GIẢI QUYẾT HỒ SƠ"
_DOTS = "................................................"


def _applicant(pdf: FormPDF, a: Applicant, label: str = "Hồ sơ của: ") -> None:
    pdf.field(label, a.name)
    pdf.field("Địa chỉ: ", a.address or _DOTS)
    contact = a.phone or "...................."
    if a.email:
        contact += f"    Email: {a.email}"
    pdf.field("Số điện thoại: ", contact)


def render_supplement_request(d: SupplementRequestData) -> bytes:
    """Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ."""
    pdf = FormPDF(title=f"{SUPPLEMENT_TITLE} - {d.dossier_code}", created=d.issued_at)
    pdf.add_page()
    pdf.header_block(d.agency, d.number, "PYCBS", d.issued_at)
    pdf.form_title(SUPPLEMENT_TITLE)
    pdf.codes(d.dossier_code)
    _applicant(pdf, d.applicant)
    pdf.field("Nội dung yêu cầu giải quyết: ", d.procedure_name)
    pdf.para(
        f"Căn cứ quy định hiện hành, {d.agency.unit[:1].upper()}{d.agency.unit[1:].lower()} yêu cầu "
        "bổ sung, hoàn thiện hồ sơ gồm những nội dung sau:"
    )
    rows = [(str(i), item.content, item.reason or "") for i, item in enumerate(d.items, 1)]
    pdf.grid(
        ("STT", "Nội dung cần bổ sung, hoàn thiện", "Lý do"), (12, 90, 63), rows, ("CENTER", "LEFT", "LEFT")
    )
    contact = d.contact_name or d.officer_name
    phone = f", số điện thoại {d.contact_phone}" if d.contact_phone else ""
    pdf.para(
        f"Trong quá trình hoàn thiện hồ sơ, nếu có vướng mắc, ông/bà liên hệ với {contact}{phone} để được "
        "hướng dẫn. Thời gian giải quyết được tính lại từ khi nhận đủ hồ sơ hợp lệ."
    )
    pdf.signatures(("", ""), ("NGƯỜI HƯỚNG DẪN", d.officer_name))
    return pdf.finish()


def render_refusal(d: RefusalData) -> bytes:
    """Phiếu từ chối tiếp nhận giải quyết hồ sơ; the reason is the legal reason as free text."""
    pdf = FormPDF(title=f"{REFUSAL_TITLE} - {d.applicant.name}", created=d.issued_at)
    pdf.add_page()
    pdf.header_block(d.agency, d.number, "PTC", d.issued_at)
    pdf.form_title(REFUSAL_TITLE)
    if d.dossier_code:
        pdf.codes(d.dossier_code)
    _applicant(pdf, d.applicant, "Tiếp nhận hồ sơ của: ")
    pdf.field("Nội dung yêu cầu giải quyết: ", d.procedure_name)
    pdf.para(
        f"Qua xem xét, {d.agency.unit[:1].upper()}{d.agency.unit[1:].lower()} thông báo không tiếp nhận, "
        "giải quyết hồ sơ này với lý do cụ thể như sau:"
    )
    pdf.para(d.reason, indent=8)
    pdf.para("Xin thông báo để ông/bà được biết và thực hiện.")
    pdf.signatures(("", ""), ("NGƯỜI TIẾP NHẬN HỒ SƠ", d.officer_name))
    return pdf.finish()


def render_apology(d: ApologyData) -> bytes:
    """Văn bản xin lỗi và đề nghị gia hạn thời gian giải quyết, with the new return date."""
    pdf = FormPDF(title=f"{APOLOGY_TITLE} - {d.dossier_code}", created=d.issued_at)
    pdf.add_page()
    pdf.header_block(d.agency, d.number, "XL", d.issued_at)
    pdf.form_title(APOLOGY_TITLE)
    pdf.codes(d.dossier_code)
    pdf.field("Kính gửi: ", f"Ông/Bà {d.applicant.name}.")
    if d.applicant.address:
        pdf.field("Địa chỉ: ", d.applicant.address)
    pdf.para(
        f"Ngày {long_date(d.received_at).removeprefix('ngày ')}, {d.agency.unit[:1].upper()}"
        f"{d.agency.unit[1:].lower()} tiếp nhận hồ sơ của ông/bà đề nghị giải quyết thủ tục "
        f"“{d.procedure_name}”, mã hồ sơ {d.dossier_code}. Thời hạn trả kết quả theo giấy hẹn là "
        f"{clock_time(d.original_due_at)}."
    )
    pdf.field("Lý do chậm trả kết quả: ", d.reason)
    pdf.para(
        "Sự chậm trễ này đã gây phiền hà cho ông/bà. Chúng tôi thành thật xin lỗi ông/bà và đề nghị được "
        "gia hạn thời gian giải quyết, hẹn trả kết quả vào:"
    )
    pdf.centered(clock_time(d.new_due_at) + ".", "B")
    pdf.para("Rất mong nhận được sự thông cảm của ông/bà.")
    pdf.signatures(("", ""), (d.signer_title, d.signer_name))
    return pdf.finish()


def render_result_return(d: ResultReturnData) -> bytes:
    """Phiếu trả kết quả: results handed over, against the due date (trước hạn/đúng hạn/quá hạn)."""
    pdf = FormPDF(title=f"{RESULT_RETURN_TITLE} - {d.dossier_code}", created=d.returned_at)
    pdf.add_page()
    pdf.header_block(d.agency, d.number, "PTKQ", d.returned_at)
    pdf.form_title(RESULT_RETURN_TITLE)
    pdf.codes(d.dossier_code)
    _applicant(pdf, d.applicant)
    pdf.field("Nội dung yêu cầu giải quyết: ", d.procedure_name)
    pdf.para("Kết quả giải quyết hồ sơ trả cho ông/bà gồm:")
    rows = [(str(i), r.name, r.form, two_digits(r.quantity)) for i, r in enumerate(d.results, 1)]
    pdf.grid(("STT", "Tên kết quả, giấy tờ", "Hình thức", "Số lượng"), (12, 101, 30, 22), rows)
    pdf.field("Thời hạn trả kết quả theo giấy hẹn: ", f"{clock_time(d.due_at)}.")
    pdf.field("Thời gian trả kết quả: ", f"{clock_time(d.returned_at)}.")
    pdf.field("Tình trạng: ", _timeliness(d) + ".")
    if d.fee is not None:
        pdf.field("Phí, lệ phí: ", f"{money(d.fee.amount_vnd)} ({'đã nộp' if d.fee.paid else 'chưa nộp'}).")
    for note in d.notes:
        pdf.para(f"- {note}", "I", 12)
    pdf.signatures(
        ("NGƯỜI NHẬN KẾT QUẢ", d.recipient_name or d.applicant.name), ("NGƯỜI TRẢ KẾT QUẢ", d.officer_name)
    )
    return pdf.finish()


def _timeliness(d: ResultReturnData) -> str:
    """Early / on time / late by calendar day of the return against the due day."""
    due, got = d.due_at.date(), d.returned_at.date()
    if got < due:
        return "Trả trước hạn"
    if got == due:
        return "Trả đúng hạn"
    return "Trả quá hạn"
