"""Citizen id numbers (số định danh cá nhân, CCCD / căn cước) and the legacy 9-digit CMND (DOMAIN.md §3.3).

A 12-digit number is: 3 digits for the province where the birth was registered (the 63-province map
before 2025; numbers did not change when provinces merged), 1 digit for century and sex, 2 digits for
the year of birth, 6 random digits. There is no check digit, so nothing else is checked. Errors carry a
Vietnamese ``reason`` for the clerk and an English ``problem`` code for programs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache
from importlib import resources

from protocol.errors import CitizenIdInvalid

__all__ = [
    "CitizenId",
    "IdKind",
    "Sex",
    "is_valid_citizen_id",
    "mask_id",
    "parse_citizen_id",
    "provinces",
]


class IdKind(StrEnum):
    """The 12-digit personal id (CCCD, căn cước) or the 9-digit identity card of old (CMND)."""

    CCCD = "cccd"
    CMND = "cmnd"


class Sex(StrEnum):
    """Sex as encoded by the century digit (even: male, odd: female)."""

    MALE = "male"
    FEMALE = "female"


@dataclass(frozen=True, slots=True)
class CitizenId:
    """A validated id number with what it encodes (nothing is decoded from a legacy CMND)."""

    number: str
    kind: IdKind
    province_code: str | None = None
    province: str | None = None
    sex: Sex | None = None
    birth_year: int | None = None

    @property
    def legacy(self) -> bool:
        """A 9-digit CMND: accepted on old documents, to be replaced by a căn cước."""
        return self.kind is IdKind.CMND

    @property
    def masked(self) -> str:
        """The number as shown in lists (``001*******45``)."""
        return mask_id(self.number)


@cache
def provinces() -> Mapping[str, str]:
    """Province code (``001``) to province name, from ``protocol/data/cccd-provinces.json``."""
    text = resources.files("protocol").joinpath("data/cccd-provinces.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return dict(data["provinces"])


def parse_citizen_id(
    number: str, *, birth_year: int | None = None, sex: Sex | None = None, today: date | None = None
) -> CitizenId:
    """Validate ``number`` (digits only, no spaces) and decode it; check it against ``birth_year`` and
    ``sex`` when given, and that the encoded birth year is not after ``today`` when given.
    """
    if not isinstance(number, str):
        raise CitizenIdInvalid("Số định danh cá nhân phải là chuỗi chữ số", problem="not_string")
    if not number.isascii() or not number.isdigit():
        raise CitizenIdInvalid("Số định danh cá nhân chỉ gồm chữ số", problem="not_digits")
    if len(number) == 9:
        return CitizenId(number=number, kind=IdKind.CMND)
    if len(number) != 12:
        raise CitizenIdInvalid(
            f"Số định danh cá nhân phải gồm 12 chữ số (số CMND cũ gồm 9 chữ số); số đã nhập có {len(number)}",
            problem="length",
        )
    province_code = number[:3]
    province = provinces().get(province_code)
    if province is None:
        raise CitizenIdInvalid(
            f"Mã tỉnh {province_code} (3 chữ số đầu) không thuộc danh sách 63 tỉnh, thành phố",
            problem="province",
        )
    digit = int(number[3])
    if digit > 3:
        raise CitizenIdInvalid(
            f"Chữ số thứ tư ({digit}) không phải mã thế kỷ sinh và giới tính hợp lệ (0–3)", problem="century"
        )
    decoded_year = 1900 + 100 * (digit // 2) + int(number[4:6])
    decoded_sex = Sex.FEMALE if digit % 2 else Sex.MALE
    if today is not None and decoded_year > today.year:
        raise CitizenIdInvalid(
            f"Năm sinh mã hóa trong số định danh ({decoded_year}) ở sau năm hiện tại",
            problem="future_birth_year",
        )
    if birth_year is not None and birth_year != decoded_year:
        raise CitizenIdInvalid(
            f"Năm sinh {birth_year} không khớp với số định danh (số này mã hóa năm {decoded_year})",
            problem="birth_year",
        )
    if sex is not None and sex is not decoded_sex:
        raise CitizenIdInvalid("Giới tính không khớp với chữ số thứ tư của số định danh", problem="sex")
    return CitizenId(
        number=number,
        kind=IdKind.CCCD,
        province_code=province_code,
        province=province,
        sex=decoded_sex,
        birth_year=decoded_year,
    )


def is_valid_citizen_id(number: object) -> bool:
    """Whether ``number`` is a valid CCCD or legacy CMND (no birth-year or sex cross-check)."""
    if not isinstance(number, str):
        return False
    try:
        parse_citizen_id(number)
    except CitizenIdInvalid:
        return False
    return True


def mask_id(number: str) -> str:
    """Keep the first 3 and last 2 characters, star the rest (``001*******45``); short values all stars."""
    if len(number) < 8:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]
