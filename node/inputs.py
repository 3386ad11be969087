"""Reading what staff and clients type: NFC at the edge, Vietnamese messages per field.

An ``InputReader`` wraps one JSON-like mapping (an API body, or a web form converted to the same shape)
and collects every field problem before failing, so a form shows all its errors at once. Field names
are dotted paths (``applicant.id_number``, ``documents[1].count``), the same in the API's 422 answer and
in the web form.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any, TypeVar

from node.errors import InvalidInput
from protocol.dossier.citizen_id import parse_citizen_id
from protocol.errors import CitizenIdInvalid

__all__ = ["ID_TYPES", "InputReader", "normalize_phone"]

T = TypeVar("T")
ID_TYPES = {
    "cccd": "Căn cước / CCCD (12 số)",
    "cmnd": "Chứng minh nhân dân cũ (9 số)",
    "passport": "Hộ chiếu",
    "tax_code": "Mã số thuế",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
_PASSPORT = re.compile(r"[A-Z0-9]{6,20}")
_TAX_CODE = re.compile(r"[0-9]{10}(?:-[0-9]{3})?")


def normalize_phone(text: str) -> str | None:
    """A Vietnamese phone number without spaces/dots/dashes, or None if it is not one.

    Mobile 0xxxxxxxxx (10 digits), landline 02xxxxxxxxx (11 digits), or the same with +84 instead of 0.
    """
    compact = re.sub(r"[\s.\-()]", "", text)
    if compact.startswith("+84"):
        compact = "0" + compact[3:]
    if re.fullmatch(r"0[1-9][0-9]{8,9}", compact):
        return compact
    return None


class InputReader:
    """Reads fields of ``data`` with Vietnamese errors, collected in ``errors`` until ``check()``."""

    def __init__(
        self, data: Mapping[str, Any], prefix: str = "", errors: dict[str, str] | None = None
    ) -> None:
        self.data = data if isinstance(data, Mapping) else {}
        self.prefix = prefix
        self.errors: dict[str, str] = {} if errors is None else errors

    def path(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(self.path(name), message)

    def child(self, name: str) -> InputReader:
        value = self.data.get(name)
        if value is not None and not isinstance(value, Mapping):
            self.fail(name, "Phải là một đối tượng.")
        return InputReader(value if isinstance(value, Mapping) else {}, f"{self.path(name)}.", self.errors)

    def items(self, name: str) -> list[InputReader]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(name, "Phải là một danh sách.")
            return []
        return [
            InputReader(item if isinstance(item, Mapping) else {}, f"{self.path(name)}[{i}].", self.errors)
            for i, item in enumerate(value)
        ]

    def text(
        self, name: str, label: str, *, required: bool = True, max_len: int = 300, multiline: bool = False
    ) -> str | None:
        value = self.data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(name, f"Vui lòng nhập {label}.")
            return None
        if not isinstance(value, str):
            self.fail(name, f"{label.capitalize()} phải là chuỗi ký tự.")
            return None
        text = unicodedata.normalize("NFC", value.replace("\r\n", "\n")).strip()
        if not multiline:
            text = " ".join(text.split())
        if _CONTROL.search(text) or (not multiline and "\n" in text):
            self.fail(name, f"{label.capitalize()} chứa ký tự không hợp lệ.")
            return None
        if len(text) > max_len:
            self.fail(name, f"{label.capitalize()} dài tối đa {max_len} ký tự.")
            return None
        return text

    def integer(
        self, name: str, label: str, low: int, high: int, *, default: int | None = None
    ) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            if default is None:
                self.fail(name, f"Vui lòng nhập {label}.")
            return default
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,15}\s*", value):
            value = int(value)
        if type(value) is not int or not low <= value <= high:
            self.fail(name, f"{label.capitalize()} phải là số nguyên từ {low} đến {high}.")
            return None
        return value

    def choice(
        self, name: str, label: str, options: Mapping[str, str] | Sequence[str], *, default: str | None = None
    ) -> str | None:
        value = self.data.get(name)
        if value is None or value == "":
            if default is None:
                self.fail(name, f"Vui lòng chọn {label}.")
            return default
        if not isinstance(value, str) or value not in options:
            self.fail(name, f"{label.capitalize()} không hợp lệ.")
            return None
        return value

    def boolean(self, name: str) -> bool:
        value = self.data.get(name)
        if isinstance(value, bool):
            return value
        return isinstance(value, str) and value.lower() in {"1", "true", "on", "yes", "có"}

    def phone(self, name: str, *, required: bool = False) -> str | None:
        text = self.text(name, "số điện thoại", required=required, max_len=20)
        if text is None:
            return None
        phone = normalize_phone(text)
        if phone is None:
            self.fail(name, "Số điện thoại không hợp lệ: 10–11 chữ số, bắt đầu bằng 0 hoặc +84.")
        return phone

    def email(self, name: str) -> str | None:
        text = self.text(name, "thư điện tử", required=False, max_len=254)
        if text is not None and not _EMAIL.fullmatch(text):
            self.fail(name, "Địa chỉ thư điện tử không hợp lệ (ví dụ: ten@example.vn).")
            return None
        return text

    def id_number(self, name: str, id_type: str | None, today: date) -> str | None:
        raw = self.text(name, "số giấy tờ tùy thân", max_len=24)
        if raw is None or id_type is None:
            return None
        number = re.sub(r"[\s.\-]", "", raw) if id_type in ("cccd", "cmnd") else raw.replace(" ", "").upper()
        if id_type in ("cccd", "cmnd"):
            try:
                parsed = parse_citizen_id(number, today=today)
            except CitizenIdInvalid as exc:
                self.fail(name, exc.reason)
                return None
            if parsed.kind.value != id_type:
                expected = "12 chữ số" if id_type == "cccd" else "9 chữ số"
                self.fail(name, f"Số {ID_TYPES[id_type].split(' (')[0]} phải gồm {expected}.")
                return None
        elif id_type == "passport" and not _PASSPORT.fullmatch(number):
            self.fail(name, "Số hộ chiếu gồm 6–20 chữ cái in hoa và chữ số.")
            return None
        elif id_type == "tax_code" and not _TAX_CODE.fullmatch(number):
            self.fail(name, "Mã số thuế gồm 10 chữ số (hoặc 10 chữ số, dấu '-', 3 chữ số).")
            return None
        return number

    def check(self) -> None:
        """Raise ``InvalidInput`` with every collected field error, if any."""
        if self.errors:
            raise InvalidInput(self.errors)

    def guard(self, fn: Callable[[], T], name: str, message: str) -> T | None:
        """Run ``fn``; on a domain error record ``message`` (or the error's reason) for ``name``."""
        try:
            return fn()
        except Exception as exc:  # domain errors carry Vietnamese reasons; anything else gets ``message``
            reason = getattr(exc, "reason", None)
            self.fail(name, reason if isinstance(reason, str) and reason else message)
            return None
