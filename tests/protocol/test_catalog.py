"""Procedure catalog: the shipped procedures, fee rules, version lookup and validation."""

from __future__ import annotations

import copy
import json
from datetime import date
from importlib import resources
from typing import Any

import pytest

from protocol.catalog import AssessedFee, Catalog, FlatFee, PerPageFee, default_catalog
from protocol.deadline import StatutoryTime, TimeUnit
from protocol.errors import CatalogInvalid, DomainError, UnknownProcedure
from tests.protocol.helpers import DELETE, set_path

DOMAIN_SECTION_9 = [
    "1.001193",
    "1.000894",
    "1.000656",
    "2.000815",
    "2.000884",
    "2.000635",
    "1.004222",
    "1.004194",
    "1.001612",
    "1.012753",
    "1.013225",
    "LOCAL.LLTP.01",
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return default_catalog()


def test_ships_every_sample_procedure(catalog: Catalog) -> None:
    assert sorted(catalog.codes) == sorted(DOMAIN_SECTION_9)
    for code in DOMAIN_SECTION_9:
        procedure = catalog.lookup(code)
        assert procedure.name and procedure.agency and procedure.documents
        assert any(d.required for d in procedure.documents)


def test_statutory_times(catalog: Catalog) -> None:
    assert catalog.lookup("1.001193").time == StatutoryTime(0, TimeUnit.SAME_DAY)
    assert catalog.lookup("1.004222").time == StatutoryTime(7, TimeUnit.WORKING_DAYS)
    assert catalog.lookup("1.004194").time == StatutoryTime(3, TimeUnit.WORKING_DAYS)
    assert catalog.lookup("1.012753").time == StatutoryTime(20, TimeUnit.WORKING_DAYS)
    assert catalog.lookup("1.012753").pauses_for_financial_obligation
    assert catalog.lookup("1.013225").time == StatutoryTime(15, TimeUnit.CALENDAR_DAYS)
    assert catalog.lookup("1.000894").max_time == StatutoryTime(5, TimeUnit.WORKING_DAYS)


def test_local_code_is_marked(catalog: Catalog) -> None:
    lltp = catalog.lookup("LOCAL.LLTP.01")
    assert lltp.is_local and lltp.level == "province" and "MÃ NỘI BỘ" in (lltp.note or "")
    assert not catalog.lookup("1.001193").is_local


def test_police_procedures_use_police_forms(catalog: Catalog) -> None:
    assert catalog.lookup("1.004222").forms.receipt == "ct04"
    assert catalog.lookup("1.004222").forms.refusal == "ct06"
    assert catalog.lookup("1.001193").forms.receipt == "mau01"


@pytest.mark.parametrize(
    ("pages", "copies", "expected"),
    [
        (1, 1, 2000),
        (2, 1, 4000),
        (3, 1, 5000),
        (10, 1, 12000),
        (10, 3, 36000),
        (500, 1, 200_000),
        (500, 2, 400_000),
    ],
)
def test_certified_copy_fee_per_page(catalog: Catalog, pages: int, copies: int, expected: int) -> None:
    fee = catalog.lookup("2.000815").fee
    assert isinstance(fee, PerPageFee)
    assert fee.amount_for(pages=pages, copies=copies) == expected


def test_per_page_fee_needs_pages(catalog: Catalog) -> None:
    with pytest.raises(DomainError):
        catalog.lookup("2.000815").fee.amount_for(pages=0)


def test_flat_and_assessed_fees(catalog: Catalog) -> None:
    assert catalog.lookup("1.001193").fee == FlatFee(0)
    assert catalog.lookup("1.004194").fee.amount_for() == 15000
    extract = catalog.lookup("2.000635").fee
    assert isinstance(extract, FlatFee) and extract.amount_for(copies=3) == 3 * extract.amount
    assert catalog.lookup("1.004222").fee.amount_for(copies=3) == 20000
    assert isinstance(catalog.lookup("1.012753").fee, AssessedFee)
    assert catalog.lookup("1.012753").fee.amount_for(pages=40) == 0


def test_names_are_vietnamese_nfc(catalog: Catalog) -> None:
    assert catalog.lookup("1.001193").name == "Đăng ký khai sinh"


def test_unknown_procedure(catalog: Catalog) -> None:
    with pytest.raises(UnknownProcedure, match="9.999999"):
        catalog.lookup("9.999999")
    with pytest.raises(UnknownProcedure):
        catalog.lookup("1.001193", on=date(2024, 1, 1))
    with pytest.raises(UnknownProcedure):
        catalog.version_of("1.001193", "1999")


def test_versions_by_effective_date() -> None:
    raw = _raw()
    newer = copy.deepcopy(raw["procedures"][0])
    newer.update(
        {"version": "2026-12-01", "effective": "2026-12-01", "time": {"value": 1, "unit": "working_days"}}
    )
    raw["procedures"].append(newer)
    two = Catalog.from_data(raw)
    assert two.lookup("1.001193", on=date(2026, 11, 30)).version == "2025-07-01"
    assert two.lookup("1.001193", on=date(2026, 12, 1)).version == "2026-12-01"
    assert two.lookup("1.001193").version == "2026-12-01"
    assert two.version_of("1.001193", "2025-07-01").time.unit is TimeUnit.SAME_DAY


def _raw() -> dict[str, Any]:
    text = resources.files("protocol").joinpath("data/catalog.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("format", 0, "format"),
        ("procedures", [], "procedures"),
        ("procedures.0.code", "1.1193", "procedures[0].code"),
        ("procedures.0.code", "LOCAL", "procedures[0].code"),
        ("procedures.0.name", DELETE, "procedures[0].name"),
        ("procedures.0.name", "Đa\u0306ng ký khai sinh", "procedures[0].name"),
        ("procedures.0.effective", "2025-13-01", "procedures[0].effective"),
        ("procedures.0.level", "district", "procedures[0].level"),
        ("procedures.0.time.unit", "months", "procedures[0].time.unit"),
        ("procedures.0.time.value", 3, "procedures[0].time.value"),
        ("procedures.3.time.value", 1.5, "procedures[3].time.value"),
        ("procedures.0.documents", [], "procedures[0].documents"),
        ("procedures.0.documents.0.form", "scan", "procedures[0].documents[0].form"),
        ("procedures.0.documents.0.count", 0, "procedures[0].documents[0].count"),
        ("procedures.0.documents.0.required", "yes", "procedures[0].documents[0].required"),
        ("procedures.0.fee", {"type": "flat"}, "procedures[0].fee.amount"),
        ("procedures.0.fee", {"type": "flat", "amount": 1.5}, "procedures[0].fee.amount"),
        ("procedures.0.fee", {"type": "flat", "amount": -1}, "procedures[0].fee.amount"),
        ("procedures.0.fee", {"type": "assessed", "amount": 1}, "procedures[0].fee.amount"),
        ("procedures.0.fee", {"type": "gift"}, "procedures[0].fee.type"),
        ("procedures.3.fee.tiers.1.first_page", 4, "procedures[3].fee.tiers[1]"),
        ("procedures.3.fee.tiers.1.last_page", 9, "procedures[3].fee.tiers"),
        ("procedures.0.forms.receipt", "Mẫu 01", "procedures[0].forms.receipt"),
        ("procedures.0.surprise", True, "procedures[0].surprise"),
        ("procedures.1", "__dup__", "procedures[1]"),
    ],
)
def test_invalid_catalog_names_the_field(path: str, value: object, field: str) -> None:
    raw = _raw()
    if value == "__dup__":
        value = copy.deepcopy(raw["procedures"][0])
    set_path(raw, path, value)
    with pytest.raises(CatalogInvalid) as info:
        Catalog.from_data(raw)
    assert info.value.field == field
