"""Strict reading of JSON-shaped data (calendar, catalog, event bodies), naming the path of the first fault.

A ``Fields`` wraps one JSON object: it refuses unknown and missing keys up front, then hands out typed
values one by one. Every failure goes through the caller's error factory with a path such as
``applicant.id_number`` or ``documents[2].count``, so calendar data raises ``CalendarInvalid``, catalog
data ``CatalogInvalid`` and an event body ``BodyInvalid``, from the same rules:

- strings are Unicode NFC, not blank, within a length limit, and free of control characters (free
  text may hold line breaks);
- integers are real integers (never ``bool``, never a float) inside the range given;
- dates are ``YYYY-MM-DD`` and real.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date

__all__ = [
    "ErrorFactory",
    "Fields",
    "check_text",
]

ErrorFactory = Callable[[str, str], Exception]
"""Builds the exception to raise from (reason, field path)."""

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_NEWLINE_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def check_text(
    value: object, where: str, fail: ErrorFactory, *, max_len: int, multiline: bool = False
) -> str:
    """``value`` as a string that is NFC, not blank, at most ``max_len`` characters, without control chars."""
    if not isinstance(value, str):
        raise fail("must be a string", where)
    if not value.strip():
        raise fail("must not be empty", where)
    if unicodedata.normalize("NFC", value) != value:
        raise fail("must be in Unicode NFC", where)
    if len(value) > max_len:
        raise fail(f"must be at most {max_len} characters", where)
    if (_CONTROL_EXCEPT_NEWLINE_RE if multiline else _CONTROL_RE).search(value):
        raise fail("must not contain control characters", where)
    return value


@dataclass(frozen=True, slots=True)
class Fields:
    """One JSON object being read field by field; failures name ``path.field``."""

    data: Mapping[str, object]
    path: str
    fail: ErrorFactory

    @classmethod
    def of(
        cls,
        value: object,
        path: str,
        fail: ErrorFactory,
        *,
        required: Collection[str],
        optional: Collection[str] = (),
    ) -> Fields:
        """Check ``value`` is an object with every ``required`` key and no key outside ``optional``."""
        if not isinstance(value, Mapping):
            raise fail("must be an object", path)
        keys = set(value)
        missing = sorted(set(required) - keys)
        if missing:
            raise fail("is required", _join(path, missing[0]))
        unknown = sorted(str(k) for k in keys - set(required) - set(optional))
        if unknown:
            raise fail("is not a known field", _join(path, unknown[0]))
        return cls(value, path, fail)

    def where(self, name: str) -> str:
        """The path of field ``name``."""
        return _join(self.path, name)

    def has(self, name: str) -> bool:
        """Whether the (optional) field is present."""
        return name in self.data

    def raw(self, name: str) -> object:
        """The field's value, unchecked (for nested readers)."""
        return self.data[name]

    def text(
        self, name: str, *, max_len: int = 200, multiline: bool = False, pattern: str | None = None
    ) -> str:
        """A required string field (see ``check_text``), optionally matching ``pattern`` in full."""
        value = check_text(
            self.data.get(name), self.where(name), self.fail, max_len=max_len, multiline=multiline
        )
        if pattern is not None and not re.fullmatch(pattern, value):
            raise self.fail("has an invalid format", self.where(name))
        return value

    def opt_text(
        self, name: str, *, max_len: int = 200, multiline: bool = False, pattern: str | None = None
    ) -> str | None:
        """An optional string field: ``None`` when absent."""
        if name not in self.data:
            return None
        return self.text(name, max_len=max_len, multiline=multiline, pattern=pattern)

    def integer(self, name: str, low: int, high: int) -> int:
        """A required integer field within [low, high]."""
        value = self.data.get(name)
        if type(value) is not int:
            raise self.fail("must be an integer", self.where(name))
        if not low <= value <= high:
            raise self.fail(f"must be between {low} and {high}", self.where(name))
        return value

    def opt_integer(self, name: str, low: int, high: int) -> int | None:
        """An optional integer field: ``None`` when absent."""
        return self.integer(name, low, high) if name in self.data else None

    def boolean(self, name: str) -> bool:
        """A required boolean field."""
        value = self.data.get(name)
        if not isinstance(value, bool):
            raise self.fail("must be true or false", self.where(name))
        return value

    def choice(self, name: str, values: Collection[str]) -> str:
        """A required string field that must be one of ``values``."""
        value = self.data.get(name)
        if not isinstance(value, str) or value not in values:
            raise self.fail(f"must be one of {', '.join(sorted(values))}", self.where(name))
        return value

    def int_choice(self, name: str, values: Collection[int]) -> int:
        """A required integer field that must be one of ``values``."""
        value = self.data.get(name)
        if type(value) is not int or value not in values:
            raise self.fail(f"must be one of {', '.join(map(str, sorted(values)))}", self.where(name))
        return value

    def date(self, name: str) -> date:
        """A required ``YYYY-MM-DD`` date field."""
        value = self.data.get(name)
        if not isinstance(value, str) or not _DATE_RE.match(value):
            raise self.fail("must be a date YYYY-MM-DD", self.where(name))
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.fail(f"{value!r} is not a real date", self.where(name)) from None

    def obj(self, name: str, *, required: Collection[str], optional: Collection[str] = ()) -> Fields:
        """A required nested object field."""
        return Fields.of(
            self.data.get(name), self.where(name), self.fail, required=required, optional=optional
        )

    def items(self, name: str, *, min_items: int = 0, max_items: int) -> Iterator[tuple[str, object]]:
        """The (path, value) pairs of a required list field with ``min_items``..``max_items`` elements."""
        value = self.data.get(name)
        if not isinstance(value, list):
            raise self.fail("must be a list", self.where(name))
        if not min_items <= len(value) <= max_items:
            raise self.fail(f"must hold {min_items} to {max_items} items", self.where(name))
        return ((f"{self.where(name)}[{i}]", item) for i, item in enumerate(value))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
