"""Value types carried inside dossier event bodies, each read strictly from JSON and written back.

``read(fields)`` validates one JSON object (raising through the reader's error factory, ``BodyInvalid``
for bodies) and returns the value; ``to_body()`` gives the JSON object again. Limits are in
SPEC-dossier.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, cast

from protocol.catalog import PROCEDURE_CODE_PATTERN
from protocol.dossier.citizen_id import IdKind, parse_citizen_id
from protocol.errors import CitizenIdInvalid
from protocol.schema import Fields

__all__ = [
    "Applicant",
    "BlobManifest",
    "CHUNK_SIZE",
    "DocumentItem",
    "MAX_CHUNKS",
    "MEDIA_TYPES",
    "ProcedureRef",
    "Recipient",
    "RegisterLine",
]

ID_TYPES = ("cccd", "cmnd", "passport", "tax_code")
IdType = Literal["cccd", "cmnd", "passport", "tax_code"]
_PHONE = r"\+?[0-9]{8,15}"
_EMAIL = r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+"
_PASSPORT = r"[A-Z0-9]{6,20}"
_TAX_CODE = r"[0-9]{10}(?:-[0-9]{3})?"
_SHA256 = r"[0-9a-f]{64}"
CHUNK_SIZE = 1_048_576
MAX_CHUNKS = 900
"""Keeps an attachment entry under the 64 KiB entry limit (files up to 900 MiB)."""
MEDIA_TYPES = ("application/pdf", "image/jpeg", "image/png", "image/tiff")


def _id_number(f: Fields, id_type: str) -> str:
    """Read ``id_number`` and check it against ``id_type`` (CCCD and CMND through ``parse_citizen_id``)."""
    number = f.text("id_number", max_len=20)
    if id_type in ("cccd", "cmnd"):
        try:
            parsed = parse_citizen_id(number)
        except CitizenIdInvalid as exc:
            raise f.fail(f"{exc.problem}: {exc.reason}", f.where("id_number")) from None
        if parsed.kind is not IdKind(id_type):
            raise f.fail(f"is not a {id_type} number", f.where("id_number"))
    elif id_type == "passport":
        f.text("id_number", max_len=20, pattern=_PASSPORT)
    else:
        f.text("id_number", max_len=20, pattern=_TAX_CODE)
    return number


def _id_type(value: str) -> IdType:
    if value not in ID_TYPES:
        raise ValueError(value)
    return cast(IdType, value)


@dataclass(frozen=True, slots=True)
class Applicant:
    """The person or organisation filing the dossier, as given at the counter."""

    name: str
    id_type: IdType
    id_number: str
    phone: str | None = None
    email: str | None = None
    address: str | None = None

    FIELDS: ClassVar[frozenset[str]] = frozenset({"name", "id_type", "id_number"})
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"phone", "email", "address"})

    @classmethod
    def read(cls, f: Fields) -> Applicant:
        """Validate and read an applicant object."""
        id_type = _id_type(f.choice("id_type", ID_TYPES))
        return cls(
            name=f.text("name", max_len=200),
            id_type=id_type,
            id_number=_id_number(f, id_type),
            phone=f.opt_text("phone", max_len=16, pattern=_PHONE),
            email=f.opt_text("email", max_len=254, pattern=_EMAIL),
            address=f.opt_text("address", max_len=300),
        )

    def to_body(self) -> dict[str, object]:
        """The JSON object."""
        body: dict[str, object] = {"name": self.name, "id_type": self.id_type, "id_number": self.id_number}
        for key, value in (("phone", self.phone), ("email", self.email), ("address", self.address)):
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True, slots=True)
class ProcedureRef:
    """The procedure and the catalog version the dossier is received under (kept for its whole life)."""

    code: str
    version: str

    FIELDS: ClassVar[frozenset[str]] = frozenset({"code", "version"})

    @classmethod
    def read(cls, f: Fields) -> ProcedureRef:
        """Validate and read a procedure reference."""
        return cls(f.text("code", max_len=40, pattern=PROCEDURE_CODE_PATTERN), f.text("version", max_len=64))

    def to_body(self) -> dict[str, object]:
        """The JSON object."""
        return {"code": self.code, "version": self.version}


@dataclass(frozen=True, slots=True)
class DocumentItem:
    """One line of the checklist of documents handed in: name, original or copy, how many."""

    name: str
    form: Literal["original", "copy"]
    count: int

    FIELDS: ClassVar[frozenset[str]] = frozenset({"name", "form", "count"})

    @classmethod
    def read(cls, f: Fields) -> DocumentItem:
        """Validate and read a checklist line."""
        form = f.choice("form", ("original", "copy"))
        return cls(
            f.text("name", max_len=300),
            "original" if form == "original" else "copy",
            f.integer("count", 1, 99),
        )

    def to_body(self) -> dict[str, object]:
        """The JSON object."""
        return {"name": self.name, "form": self.form, "count": self.count}


@dataclass(frozen=True, slots=True)
class RegisterLine:
    """Where the dossier is written in the paper register (Sổ theo dõi hồ sơ): book and line number."""

    book: str
    line: int

    FIELDS: ClassVar[frozenset[str]] = frozenset({"book", "line"})

    @classmethod
    def read(cls, f: Fields) -> RegisterLine:
        """Validate and read a register reference."""
        return cls(f.text("book", max_len=32, pattern=r"[A-Za-z0-9./-]{1,32}"), f.integer("line", 1, 999_999))

    def to_body(self) -> dict[str, object]:
        """The JSON object."""
        return {"book": self.book, "line": self.line}


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who collected the result; an id is recorded as a pair (type and number) or not at all."""

    name: str
    id_type: IdType | None = None
    id_number: str | None = None

    FIELDS: ClassVar[frozenset[str]] = frozenset({"name"})
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"id_type", "id_number"})

    @classmethod
    def read(cls, f: Fields) -> Recipient:
        """Validate and read a recipient."""
        name = f.text("name", max_len=200)
        if f.has("id_type") != f.has("id_number"):
            raise f.fail(
                "id_type and id_number go together", f.where("id_number" if f.has("id_type") else "id_type")
            )
        if not f.has("id_type"):
            return cls(name)
        id_type = _id_type(f.choice("id_type", ID_TYPES))
        return cls(name, id_type, _id_number(f, id_type))

    def to_body(self) -> dict[str, object]:
        """The JSON object."""
        body: dict[str, object] = {"name": self.name}
        if self.id_type is not None and self.id_number is not None:
            body["id_type"] = self.id_type
            body["id_number"] = self.id_number
        return body


@dataclass(frozen=True, slots=True)
class BlobManifest:
    """A scanned file: SHA-256 and size of the whole, media type, pages, SHA-256 of each 1 MiB chunk."""

    sha256: str
    size: int
    media_type: str
    pages: int
    chunks: tuple[str, ...]
    chunk_size: int = CHUNK_SIZE

    FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"sha256", "size", "media_type", "pages", "chunk_size", "chunks"}
    )

    @classmethod
    def read(cls, f: Fields) -> BlobManifest:
        """Validate and read a manifest; the chunk count must match the size."""
        size = f.integer("size", 1, MAX_CHUNKS * CHUNK_SIZE)
        f.int_choice("chunk_size", (CHUNK_SIZE,))
        chunks = []
        for where, value in f.items("chunks", min_items=1, max_items=MAX_CHUNKS):
            if (
                not isinstance(value, str)
                or len(value) != 64
                or any(c not in "0123456789abcdef" for c in value)
            ):
                raise f.fail("must be a lower-case hex SHA-256", where)
            chunks.append(value)
        if len(chunks) != -(-size // CHUNK_SIZE):
            raise f.fail(f"a file of {size} bytes has {-(-size // CHUNK_SIZE)} chunks", f.where("chunks"))
        return cls(
            sha256=f.text("sha256", max_len=64, pattern=_SHA256),
            size=size,
            media_type=f.choice("media_type", MEDIA_TYPES),
            pages=f.integer("pages", 1, 10_000),
            chunks=tuple(chunks),
        )

    def to_body(self) -> dict[str, object]:
        """The JSON object."""
        return {
            "sha256": self.sha256,
            "size": self.size,
            "media_type": self.media_type,
            "pages": self.pages,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
        }
