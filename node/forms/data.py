"""Plain typed inputs of the printed forms. The node maps its dossier state into these.

Every string is NFC-normalised on construction (``__post_init__``): NFD text, as some input methods
produce, renders with misplaced accents (ECOSYSTEM.md §3.2). Times are local wall-clock times of the
branch (Asia/Ho_Chi_Minh); aware datetimes are converted to +07:00, naive ones are taken as local.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "VN_TZ",
    "Agency",
    "ApologyData",
    "Applicant",
    "DocumentItem",
    "Fee",
    "ReceiptData",
    "RefusalData",
    "ResultReturnData",
    "SupplementItem",
    "SupplementRequestData",
    "local_time",
]

VN_TZ = timezone(timedelta(hours=7), "ICT")


def local_time(value: datetime) -> datetime:
    """``value`` as an aware +07:00 datetime (naive values are already local)."""
    return value.replace(tzinfo=VN_TZ) if value.tzinfo is None else value.astimezone(VN_TZ)


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, tuple):
        return tuple(_nfc(v) for v in value)
    return value


class _NFC:
    """Mixin: normalise every str / tuple-of-str field to NFC after construction."""

    __slots__ = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            normalised = _nfc(value)
            if normalised is not value:
                object.__setattr__(self, f.name, normalised)


@dataclass(frozen=True, slots=True)
class Agency(_NFC):
    """Who issues the form: parent agency, receiving unit, place name for the date line."""

    parent: str  # e.g. "UBND QUẬN TÂY HỒ"
    unit: str  # e.g. "BỘ PHẬN TIẾP NHẬN VÀ TRẢ KẾT QUẢ"
    place: str  # e.g. "Tây Hồ" in "Tây Hồ, ngày 22 tháng 11 năm 2026"
    hotline: str = ""


@dataclass(frozen=True, slots=True)
class Applicant(_NFC):
    """The person or organisation submitting the dossier."""

    name: str
    address: str = ""
    phone: str = ""
    email: str = ""
    id_number: str = ""  # số định danh cá nhân / CCCD / MST


@dataclass(frozen=True, slots=True)
class DocumentItem(_NFC):
    """One row of "Thành phần hồ sơ": document, form (bản chính/bản sao), quantity."""

    name: str
    form: str = "Bản chính"
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class Fee(_NFC):
    """Phí, lệ phí: integer đồng; ``paid`` prints "đã nộp" / "chưa nộp"."""

    amount_vnd: int
    paid: bool = True
    note: str = ""


@dataclass(frozen=True, slots=True)
class ReceiptData(_NFC):
    """Mẫu 01: Giấy tiếp nhận hồ sơ và hẹn trả kết quả (DOMAIN.md §2.2)."""

    agency: Agency
    number: str  # "125/TNHS"
    dossier_code: str
    procedure_name: str
    applicant: Applicant
    documents: tuple[DocumentItem, ...]
    received_at: datetime
    due_at: datetime
    processing_days: int
    return_place: str
    register_book: str  # Quyển số
    register_line: str  # Số thứ tự
    receiver_name: str
    lookup_code: str
    tracking_url: str  # base URL of the public lookup page
    sets: int = 1
    processing_unit: str = "ngày làm việc"
    fee: Fee | None = None
    template: str = "mau01"

    def tracking_link(self) -> str:
        """URL encoded in the tracking QR: the lookup page with dossier code and lookup code."""
        sep = "&" if "?" in self.tracking_url else "?"
        return self.tracking_url + sep + urlencode({"ma": self.dossier_code, "tra_cuu": self.lookup_code})


@dataclass(frozen=True, slots=True)
class SupplementItem(_NFC):
    """One thing to add or complete, and why."""

    content: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SupplementRequestData(_NFC):
    """Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ."""

    agency: Agency
    number: str
    dossier_code: str
    procedure_name: str
    applicant: Applicant
    items: tuple[SupplementItem, ...]
    issued_at: datetime
    officer_name: str  # NGƯỜI HƯỚNG DẪN
    contact_name: str = ""
    contact_phone: str = ""


@dataclass(frozen=True, slots=True)
class RefusalData(_NFC):
    """Phiếu từ chối tiếp nhận giải quyết hồ sơ. ``reason`` is the legal reason, as free text."""

    agency: Agency
    number: str
    procedure_name: str
    applicant: Applicant
    reason: str
    issued_at: datetime
    officer_name: str
    dossier_code: str = ""


@dataclass(frozen=True, slots=True)
class ApologyData(_NFC):
    """Văn bản xin lỗi và đề nghị gia hạn thời gian giải quyết (hẹn lại ngày trả kết quả)."""

    agency: Agency
    number: str
    dossier_code: str
    procedure_name: str
    applicant: Applicant
    received_at: datetime
    original_due_at: datetime
    new_due_at: datetime
    reason: str
    issued_at: datetime
    signer_title: str = "THỦ TRƯỞNG CƠ QUAN"
    signer_name: str = ""


@dataclass(frozen=True, slots=True)
class ResultReturnData(_NFC):
    """Phiếu trả kết quả: what was handed back to the applicant, when, and against which due date."""

    agency: Agency
    number: str
    dossier_code: str
    procedure_name: str
    applicant: Applicant
    results: tuple[DocumentItem, ...]
    due_at: datetime
    returned_at: datetime
    officer_name: str
    recipient_name: str = ""  # who collected it, if not the applicant
    fee: Fee | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
