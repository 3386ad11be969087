"""Vietnamese formatting for the web pages: dates in Vietnam time, durations, sizes, numbers, statuses."""

from __future__ import annotations

from typing import Any

import jinja2

from protocol.calendar import local_datetime
from protocol.dossier import InternalState, NationalStatus

__all__ = ["age", "bytes_vi", "dt", "install_filters", "num", "percent"]

TIMELINESS = {"early": "Trước hạn", "on_time": "Đúng hạn", "late": "Quá hạn"}
NODE_STATUS = {
    "invited": "Đã mời",
    "active": "Hoạt động",
    "quarantined": "Bị cách ly",
    "revoked": "Đã thu hồi",
}
KIND_LABELS = {
    "dossier.submitted": "Nộp trực tuyến",
    "dossier.received": "Tiếp nhận hồ sơ",
    "dossier.refused": "Từ chối tiếp nhận",
    "dossier.supplement_requested": "Yêu cầu bổ sung",
    "dossier.supplement_provided": "Đã bổ sung hồ sơ",
    "dossier.transferred": "Chuyển cơ quan giải quyết",
    "dossier.processing": "Đang xử lý",
    "dossier.financial_obligation": "Yêu cầu nghĩa vụ tài chính",
    "dossier.financial_obligation_met": "Đã thực hiện nghĩa vụ tài chính",
    "dossier.result_ready": "Có kết quả",
    "dossier.returned": "Đã trả kết quả",
    "dossier.withdrawal_requested": "Yêu cầu rút hồ sơ",
    "dossier.withdrawn": "Đã rút hồ sơ",
    "dossier.stopped": "Dừng xử lý",
    "dossier.apology": "Thư xin lỗi, hẹn lại ngày trả",
    "dossier.rating": "Đánh giá",
    "dossier.attachment": "Số hóa giấy tờ",
    "dossier.attachment_discarded": "Hủy tệp số hóa",
    "dossier.conflict_resolved": "Xử lý xung đột",
}


def dt(ms: int | None, with_time: bool = True) -> str:
    """``dd/mm/yyyy HH:MM`` in Vietnam time (or ``—``)."""
    if ms is None:
        return "—"
    moment = local_datetime(ms)
    return moment.strftime("%d/%m/%Y %H:%M" if with_time else "%d/%m/%Y")


def age(ms: int | None) -> str:
    """A duration in words: ``vừa xong``, ``12 phút``, ``3 giờ``, ``2 ngày``."""
    if ms is None:
        return "—"
    seconds = max(0, ms) // 1000
    if seconds < 60:
        return "vừa xong" if seconds < 5 else f"{seconds} giây"
    if seconds < 3600:
        return f"{seconds // 60} phút"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} giờ"
    return f"{seconds // 86400} ngày"


def num(value: float | int | None) -> str:
    """``1.234.567`` (Vietnamese grouping)."""
    if value is None:
        return "—"
    return f"{int(value):,}".replace(",", ".")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%".replace(".", ",")


def bytes_vi(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            text = f"{size:.0f}" if unit == "B" else f"{size:.1f}".replace(".", ",")
            return f"{text} {unit}"
        size /= 1024
    return f"{value} B"


def skew(ms: int | None) -> str:
    if ms is None:
        return "—"
    sign = "+" if ms >= 0 else "−"
    return f"{sign}{age(abs(ms))}" if abs(ms) >= 1000 else "±0"


def status_name(code: int | None) -> str:
    return "—" if code is None else NationalStatus(code).label


def state_name(value: str | None) -> str:
    return "—" if value is None else InternalState(value).label


def install_filters(env: jinja2.Environment) -> None:
    filters: dict[str, Any] = {
        "dt": dt,
        "age": age,
        "num": num,
        "percent": percent,
        "bytes": bytes_vi,
        "skew": skew,
        "status_name": status_name,
        "state_name": state_name,
        "timeliness": lambda v: TIMELINESS.get(v or "", "—"),
        "node_status": lambda v: NODE_STATUS.get(v, v),
        "kind_label": lambda v: KIND_LABELS.get(v, v),
    }
    env.filters.update(filters)
