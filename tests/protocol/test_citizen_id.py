"""Citizen id numbers: CCCD structure, province list, century/sex digit, legacy CMND, masking."""

from __future__ import annotations

from datetime import date

import pytest

from protocol.dossier.citizen_id import (
    IdKind,
    Sex,
    is_valid_citizen_id,
    mask_id,
    parse_citizen_id,
    provinces,
)
from protocol.errors import CitizenIdInvalid


def test_province_list_is_the_63_pre_2025_provinces() -> None:
    table = provinces()
    assert len(table) == 63
    assert table["001"] == "Hà Nội" and table["079"] == "Hồ Chí Minh" and table["096"] == "Cà Mau"
    assert "003" not in table


@pytest.mark.parametrize(
    ("number", "sex", "year"),
    [
        ("001085012345", Sex.MALE, 1985),
        ("001185012345", Sex.FEMALE, 1985),
        ("079203000001", Sex.MALE, 2003),
        ("031399999999", Sex.FEMALE, 2099),
    ],
)
def test_decodes_century_sex_and_year(number: str, sex: Sex, year: int) -> None:
    cid = parse_citizen_id(number)
    assert cid.kind is IdKind.CCCD and not cid.legacy
    assert cid.sex is sex and cid.birth_year == year
    assert cid.province_code == number[:3]


def test_hanoi_province() -> None:
    assert parse_citizen_id("001203012345").province == "Hà Nội"


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("00120301234", "length"),
        ("0012030123456", "length"),
        ("00120301234a", "not_digits"),
        ("001 03012345", "not_digits"),
        ("００１２０３０１２３４５", "not_digits"),
        ("003203012345", "province"),
        ("100203012345", "province"),
        ("001403012345", "century"),
        ("001903012345", "century"),
    ],
)
def test_rejections_have_a_problem_code_and_vietnamese_reason(number: str, problem: str) -> None:
    with pytest.raises(CitizenIdInvalid) as info:
        parse_citizen_id(number)
    assert info.value.problem == problem
    assert info.value.code == "citizen_id"
    assert any(ch in info.value.reason for ch in "ốịạủữ")
    assert not is_valid_citizen_id(number)


def test_birth_year_and_sex_cross_checks() -> None:
    assert parse_citizen_id("001085012345", birth_year=1985, sex=Sex.MALE).birth_year == 1985
    with pytest.raises(CitizenIdInvalid) as info:
        parse_citizen_id("001085012345", birth_year=2085)
    assert info.value.problem == "birth_year" and "1985" in info.value.reason
    with pytest.raises(CitizenIdInvalid) as info:
        parse_citizen_id("001085012345", sex=Sex.FEMALE)
    assert info.value.problem == "sex"


def test_encoded_year_in_the_future() -> None:
    with pytest.raises(CitizenIdInvalid) as info:
        parse_citizen_id("001230012345", today=date(2026, 11, 22))
    assert info.value.problem == "future_birth_year"
    assert parse_citizen_id("001226012345", today=date(2026, 11, 22)).birth_year == 2026


def test_legacy_cmnd() -> None:
    cid = parse_citizen_id("012345678")
    assert cid.kind is IdKind.CMND and cid.legacy
    assert cid.province is None and cid.birth_year is None


def test_non_string() -> None:
    with pytest.raises(CitizenIdInvalid) as info:
        parse_citizen_id(1234567890)  # type: ignore[arg-type]
    assert info.value.problem == "not_string"
    assert not is_valid_citizen_id(None)


def test_masking() -> None:
    assert mask_id("001203012345") == "001*******45"
    assert parse_citizen_id("001203012345").masked == "001*******45"
    assert mask_id("012345678") == "012****78"
    assert mask_id("12345") == "*****"
