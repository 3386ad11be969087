"""Procedure catalog (danh mục thủ tục hành chính) as versioned data (DOMAIN.md §3.2, §9).

Each procedure is keyed by its national code (``1.001193``; a provincial suffix such as ``.H26`` is
allowed) or, where none exists, by a clearly local code ``LOCAL.<name>``. A procedure can have several
versions, one per publication decision (quyết định công bố) with its effective date; a received dossier
names the version it was received under and keeps it. The shipped catalog is
``protocol/data/catalog.json``; the hub may push a newer one (``Catalog.from_data``).

Fee rules are data too: a flat amount (per dossier or per copy), a per-page tiered rule with a cap per
copy (certified copies: 2,000 đ for each of pages 1–2, 1,000 đ from page 3, at most 200,000 đ a copy),
or ``assessed`` when the resolving agency sets the amount later (financial obligations).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Literal

from protocol.deadline import StatutoryTime, TimeUnit
from protocol.errors import CatalogInvalid, DomainError, UnknownProcedure
from protocol.schema import Fields

__all__ = [
    "AssessedFee",
    "Catalog",
    "FeeRule",
    "FeeTier",
    "FlatFee",
    "Forms",
    "PROCEDURE_CODE_PATTERN",
    "PerPageFee",
    "Procedure",
    "RequiredDocument",
    "default_catalog",
]

FORMAT = 1
PROCEDURE_CODE_PATTERN = r"\d\.\d{6}(?:\.[A-Z0-9]{1,8})?|LOCAL(?:\.[A-Z0-9]{1,16}){1,3}"
"""A national TTHC code with an optional provincial suffix, or a local code ``LOCAL.X[.Y[.Z]]``."""
_FORM_ID = r"[a-z0-9_-]{1,32}"
_MAX_MONEY = 1_000_000_000_000


@dataclass(frozen=True, slots=True)
class RequiredDocument:
    """One component of the dossier (thành phần hồ sơ): original or copy, how many, and whether required."""

    name: str
    form: Literal["original", "copy"]
    count: int
    required: bool
    note: str | None = None


@dataclass(frozen=True, slots=True)
class FlatFee:
    """A fixed amount in đồng, per dossier or per copy requested."""

    amount: int
    per: Literal["dossier", "copy"] = "dossier"

    def amount_for(self, *, pages: int = 0, copies: int = 1) -> int:
        """The fee for a request of ``copies`` copies (pages do not matter)."""
        return self.amount * (copies if self.per == "copy" else 1)


@dataclass(frozen=True, slots=True)
class FeeTier:
    """Price per page for pages ``first_page``..``last_page`` (``None``: every page after)."""

    first_page: int
    last_page: int | None
    amount: int


@dataclass(frozen=True, slots=True)
class PerPageFee:
    """Price by page of the original, in tiers, capped per copy (chứng thực bản sao)."""

    tiers: tuple[FeeTier, ...]
    max_per_copy: int | None = None

    def amount_for(self, *, pages: int = 0, copies: int = 1) -> int:
        """The fee for ``copies`` copies of an original of ``pages`` pages."""
        if pages < 1 or copies < 1:
            raise DomainError("số trang và số bản phải từ 1 trở lên")
        per_copy = 0
        for tier in self.tiers:
            last = pages if tier.last_page is None else min(pages, tier.last_page)
            if last >= tier.first_page:
                per_copy += (last - tier.first_page + 1) * tier.amount
        if self.max_per_copy is not None:
            per_copy = min(per_copy, self.max_per_copy)
        return per_copy * copies


@dataclass(frozen=True, slots=True)
class AssessedFee:
    """Nothing is collected at reception; the resolving agency assesses the amount later."""

    def amount_for(self, *, pages: int = 0, copies: int = 1) -> int:
        """Always 0 at reception."""
        return 0


FeeRule = FlatFee | PerPageFee | AssessedFee


@dataclass(frozen=True, slots=True)
class Forms:
    """Printed form templates: receipt (``mau01``, police ``ct04``) and refusal (``mau03``, ``ct06``)."""

    receipt: str
    refusal: str


@dataclass(frozen=True, slots=True)
class Procedure:
    """One version of an administrative procedure as the counter needs it."""

    code: str
    version: str
    effective: date
    name: str
    level: Literal["commune", "province"]
    agency: str
    time: StatutoryTime
    documents: tuple[RequiredDocument, ...]
    fee: FeeRule
    forms: Forms
    pauses_for_financial_obligation: bool = False
    max_time: StatutoryTime | None = None
    decision: str | None = None
    legal_basis: str | None = None
    note: str | None = None

    @property
    def is_local(self) -> bool:
        """Whether the code is a local one (no national code was found for this procedure)."""
        return self.code.startswith("LOCAL.")


@dataclass(frozen=True, slots=True)
class Catalog:
    """A versioned set of procedure versions, looked up by code (and effective date)."""

    version: str
    published: date
    procedures: tuple[Procedure, ...]

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> Catalog:
        """Build and validate a catalog from its JSON form; ``CatalogInvalid`` names the first bad field."""
        top = Fields.of(data, "", _fail, required={"format", "version", "published", "procedures"})
        top.int_choice("format", {FORMAT})
        procedures: list[Procedure] = []
        seen: set[tuple[str, str]] = set()
        for where, raw in top.items("procedures", min_items=1, max_items=5000):
            procedure = _procedure(raw, where)
            if (procedure.code, procedure.version) in seen:
                raise _fail(f"{procedure.code} version {procedure.version} is listed twice", where)
            seen.add((procedure.code, procedure.version))
            procedures.append(procedure)
        return cls(
            version=top.text("version", max_len=64),
            published=top.date("published"),
            procedures=tuple(sorted(procedures, key=lambda p: (p.code, p.effective, p.version))),
        )

    @property
    def codes(self) -> tuple[str, ...]:
        """Every procedure code, sorted."""
        return tuple(sorted({p.code for p in self.procedures}))

    def lookup(self, code: str, on: date | None = None) -> Procedure:
        """The version of ``code`` in force on ``on`` (the latest effective one if ``on`` is ``None``)."""
        versions = [p for p in self.procedures if p.code == code and (on is None or p.effective <= on)]
        if not versions:
            when = f" có hiệu lực ngày {on.isoformat()}" if on is not None else ""
            raise UnknownProcedure(f"danh mục {self.version} không có thủ tục mã {code}{when}")
        return max(versions, key=lambda p: (p.effective, p.version))

    def version_of(self, code: str, version: str) -> Procedure:
        """Exactly version ``version`` of ``code`` (what a received dossier refers to)."""
        for procedure in self.procedures:
            if procedure.code == code and procedure.version == version:
                return procedure
        raise UnknownProcedure(f"danh mục {self.version} không có thủ tục mã {code} phiên bản {version}")


@cache
def default_catalog() -> Catalog:
    """The catalog shipped with this package (``protocol/data/catalog.json``)."""
    text = resources.files("protocol").joinpath("data/catalog.json").read_text(encoding="utf-8")
    return Catalog.from_data(json.loads(text))


def _fail(reason: str, where: str) -> CatalogInvalid:
    return CatalogInvalid(reason, field=where or None)


_PROCEDURE_FIELDS = {
    "code",
    "version",
    "effective",
    "name",
    "level",
    "agency",
    "time",
    "documents",
    "fee",
    "forms",
}
_PROCEDURE_OPTIONAL = {"pauses_for_financial_obligation", "max_time", "decision", "legal_basis", "note"}


def _procedure(raw: object, where: str) -> Procedure:
    f = Fields.of(raw, where, _fail, required=_PROCEDURE_FIELDS, optional=_PROCEDURE_OPTIONAL)
    forms = f.obj("forms", required={"receipt", "refusal"})
    time = _time(f, "time")
    max_time = _time(f, "max_time") if f.has("max_time") else None
    documents = []
    for doc_where, doc_raw in f.items("documents", min_items=1, max_items=100):
        d = Fields.of(
            doc_raw, doc_where, _fail, required={"name", "form", "count", "required"}, optional={"note"}
        )
        documents.append(
            RequiredDocument(
                name=d.text("name", max_len=300),
                form="original" if d.choice("form", {"original", "copy"}) == "original" else "copy",
                count=d.integer("count", 1, 99),
                required=d.boolean("required"),
                note=d.opt_text("note", max_len=500),
            )
        )
    level = f.choice("level", {"commune", "province"})
    return Procedure(
        code=f.text("code", max_len=40, pattern=PROCEDURE_CODE_PATTERN),
        version=f.text("version", max_len=64),
        effective=f.date("effective"),
        name=f.text("name", max_len=300),
        level="commune" if level == "commune" else "province",
        agency=f.text("agency", max_len=300),
        time=time,
        documents=tuple(documents),
        fee=_fee(f.obj("fee", required={"type"}, optional={"amount", "per", "tiers", "max_per_copy"})),
        forms=Forms(
            receipt=forms.text("receipt", max_len=32, pattern=_FORM_ID),
            refusal=forms.text("refusal", max_len=32, pattern=_FORM_ID),
        ),
        pauses_for_financial_obligation=(
            f.boolean("pauses_for_financial_obligation")
            if f.has("pauses_for_financial_obligation")
            else False
        ),
        max_time=max_time,
        decision=f.opt_text("decision", max_len=100),
        legal_basis=f.opt_text("legal_basis", max_len=500),
        note=f.opt_text("note", max_len=1000),
    )


def _time(f: Fields, name: str) -> StatutoryTime:
    t = f.obj(name, required={"value", "unit"})
    unit = TimeUnit(t.choice("unit", {u.value for u in TimeUnit}))
    try:
        return StatutoryTime(t.integer("value", 0, 10_000), unit)
    except DomainError as exc:
        raise _fail(exc.reason, t.where("value")) from None


def _fee(f: Fields) -> FeeRule:
    kind = f.choice("type", {"flat", "per_page", "assessed"})
    allowed = {"flat": {"amount", "per"}, "per_page": {"tiers", "max_per_copy"}, "assessed": set()}[kind]
    for name in ("amount", "per", "tiers", "max_per_copy"):
        if f.has(name) and name not in allowed:
            raise _fail(f"is not allowed for a {kind} fee", f.where(name))
    if kind == "flat":
        per = f.choice("per", {"dossier", "copy"}) if f.has("per") else "dossier"
        return FlatFee(f.integer("amount", 0, _MAX_MONEY), "copy" if per == "copy" else "dossier")
    if kind == "assessed":
        return AssessedFee()
    tiers: list[FeeTier] = []
    for where, raw in f.items("tiers", min_items=1, max_items=10):
        t = Fields.of(raw, where, _fail, required={"first_page", "amount"}, optional={"last_page"})
        first = t.integer("first_page", 1, 100_000)
        last = t.opt_integer("last_page", first, 100_000)
        expected = 1 if not tiers else (tiers[-1].last_page or 0) + 1
        if first != expected or (tiers and tiers[-1].last_page is None):
            raise _fail(f"tiers must be contiguous from page 1; expected first_page {expected}", where)
        tiers.append(FeeTier(first, last, t.integer("amount", 0, _MAX_MONEY)))
    if tiers[-1].last_page is not None:
        raise _fail("the last tier must be open-ended (no last_page)", f.where("tiers"))
    return PerPageFee(tuple(tiers), f.opt_integer("max_per_copy", 0, _MAX_MONEY))
