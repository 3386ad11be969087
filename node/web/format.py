"""Vietnamese formatting for pages: dates ``dd/MM/yyyy``, the administrative long form, money, labels."""

from __future__ import annotations

from protocol.calendar import local_datetime
from protocol.dossier.events import CHANNELS, Kind
from protocol.dossier.status import InternalState

__all__ = ["FILTERS", "KIND_LABELS", "date_long", "date_short", "datetime_short", "money"]

KIND_LABELS: dict[str, str] = {
    Kind.SUBMITTED: "Nộp trực tuyến / bưu chính",
    Kind.RECEIVED: "Tiếp nhận hồ sơ",
    Kind.REFUSED: "Từ chối tiếp nhận",
    Kind.SUPPLEMENT_REQUESTED: "Yêu cầu bổ sung hồ sơ",
    Kind.SUPPLEMENT_PROVIDED: "Nhận hồ sơ bổ sung",
    Kind.TRANSFERRED: "Chuyển cơ quan giải quyết",
    Kind.PROCESSING: "Đang xử lý",
    Kind.FINANCIAL_OBLIGATION: "Yêu cầu thực hiện nghĩa vụ tài chính",
    Kind.FINANCIAL_OBLIGATION_MET: "Đã thực hiện nghĩa vụ tài chính",
    Kind.RESULT_READY: "Có kết quả giải quyết",
    Kind.RETURNED: "Trả kết quả",
    Kind.WITHDRAWAL_REQUESTED: "Công dân xin rút hồ sơ",
    Kind.WITHDRAWN: "Xác nhận rút hồ sơ",
    Kind.STOPPED: "Dừng xử lý",
    Kind.APOLOGY: "Văn bản xin lỗi, hẹn lại ngày trả",
    Kind.RATING: "Đánh giá mức độ hài lòng",
    Kind.ATTACHMENT: "Đính kèm bản quét",
    Kind.ATTACHMENT_DISCARDED: "Hủy bản quét",
    Kind.CONFLICT_RESOLVED: "Giải quyết xung đột",
}


def datetime_short(ms: int | None) -> str:
    """``22/11/2026 14:05`` in Vietnam time; empty for None."""
    return "" if ms is None else local_datetime(ms).strftime("%d/%m/%Y %H:%M")


def date_short(ms: int | None) -> str:
    return "" if ms is None else local_datetime(ms).strftime("%d/%m/%Y")


def date_long(ms: int | None) -> str:
    """``17 giờ 00 phút, ngày 22 tháng 11 năm 2026`` (the receipt's administrative form)."""
    if ms is None:
        return ""
    t = local_datetime(ms)
    return f"{t.hour:02d} giờ {t.minute:02d} phút, ngày {t.day:02d} tháng {t.month:02d} năm {t.year}"


def money(amount: int | None) -> str:
    """``150.000 ₫``."""
    return "" if amount is None else f"{amount:,}".replace(",", ".") + " ₫"


def state_label(state: str | None) -> str:
    try:
        return InternalState(state).label if state else ""
    except ValueError:
        return state or ""


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def channel_label(channel: int | None) -> str:
    return CHANNELS.get(channel or 0, "")


FILTERS = {
    "datetime_short": datetime_short,
    "date_short": date_short,
    "date_long": date_long,
    "money": money,
    "state_label": state_label,
    "kind_label": kind_label,
    "channel_label": channel_label,
}
