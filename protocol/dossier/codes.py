"""Dossier codes (mã hồ sơ), offline allocation in disjoint daily blocks, and receipt lookup codes.

A dossier code is ``<unit code>-<YYMMDD>-<NNNN>`` (TT 01/2018/TT-VPCP Điều 19; DOMAIN.md §3.1): the
receiving unit's code, kept opaque; the reception date in Vietnam time; a 4-digit sequence of that
unit's dossiers of the day. Several offline nodes share one unit code, so each node draws only from its
own ``CodeBlock`` of the daily sequence and two nodes can never issue the same code. A node passes the
highest sequence it has used that day in *any* of its epochs, so a restored node never reuses one.

A restore (from a backup or from the hub) cannot see the receptions the lost disk answered after its last
sync or backup: their receipts are printed, their codes unknown. The new epoch therefore writes a
``node.code_floor`` entry right after its genesis (``CodeFloor``): on the day of the restore, numbering
continues only above ``seq`` = (highest number known used that day, or an earlier floor of that day, or
the block start − 1) + a safety margin (``RESTORE_CODE_MARGIN`` by default). Being in the signed log, a
floor survives a further restore, which starts past it again.

The lookup code (mã tra cứu) is a short secret printed on the receipt, the second factor of the public
tracking page. Only its PBKDF2 hash, salted with the dossier code, goes into the log
(``dossier.received`` field ``lookup``); the plain code exists on paper and, for reprints, in the
receiving node's local store, never in an entry. PBKDF2-HMAC-SHA256 is computed by ``cryptography``
(its bundled OpenSSL runs it in about half the time of ``hashlib.pbkdf2_hmac`` here, with the GIL
released); the result is the same bytes (a test checks it against ``hashlib``).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from protocol.errors import BodyInvalid, CodeBlockExhausted, DomainError, DossierCodeInvalid

__all__ = [
    "CODE_FLOOR_KIND",
    "CODE_PATTERN",
    "CodeBlock",
    "CodeFloor",
    "DossierCode",
    "LOOKUP_ALPHABET",
    "LOOKUP_ITERATIONS",
    "LOOKUP_ITERATIONS_MAX",
    "LOOKUP_ITERATIONS_MIN",
    "LOOKUP_LENGTH",
    "LookupHash",
    "MAX_CODE_LENGTH",
    "RESTORE_CODE_MARGIN",
    "allocate_code",
    "floor_after_restore",
    "format_lookup_code",
    "hash_lookup_code",
    "is_dossier_code",
    "new_lookup_code",
    "verify_lookup_code",
]

MAX_CODE_LENGTH = 30
_UNIT = r"[A-Z0-9](?:[A-Z0-9.-]{0,16}[A-Z0-9])?"
CODE_PATTERN = rf"(?P<unit>{_UNIT})-(?P<day>\d{{6}})-(?P<seq>\d{{4}})"
"""Full-match pattern of a dossier code; the unit part is 1–18 of ``A-Z 0-9 . -``."""
_CODE_RE = re.compile(CODE_PATTERN)
_UNIT_RE = re.compile(_UNIT)
SEQ_MAX = 9999

LOOKUP_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
"""31 characters without the look-alikes 0/O, 1/I/L."""
LOOKUP_LENGTH = 8
LOOKUP_ITERATIONS = 1_000
"""Default PBKDF2 iterations for new receipts. The hash sits in the ``dossier.received`` entry, next to
the applicant's name, ID number and phone in clear: whoever can attack it offline already holds more than
the tracking page shows. Its job is to keep the plain code (the second factor) out of the log, exports
and backups; online guessing is stopped by the hub's rate limit. 10^3 iterations cost ~0.1 ms at intake."""
LOOKUP_ITERATIONS_MIN = 1_000
LOOKUP_ITERATIONS_MAX = 10_000_000
_LOOKUP_SALT = b"motcua/lookup/v1\0"
_LOOKUP_ALG = "pbkdf2-sha256"


@dataclass(frozen=True, slots=True, order=True)
class DossierCode:
    """A parsed dossier code: unit code (opaque), reception day (UTC+7), daily sequence 1..9999."""

    unit: str
    day: date
    seq: int

    def __post_init__(self) -> None:
        if not _UNIT_RE.fullmatch(self.unit):
            raise DossierCodeInvalid(
                f"mã đơn vị {self.unit!r} không hợp lệ "
                "(1–18 ký tự A–Z, 0–9, '.', '-', không bắt đầu/kết thúc bằng dấu)"
            )
        if not 2000 <= self.day.year <= 2099:
            raise DossierCodeInvalid(f"ngày tiếp nhận {self.day.isoformat()} ngoài khoảng 2000–2099")
        if type(self.seq) is not int or not 1 <= self.seq <= SEQ_MAX:
            raise DossierCodeInvalid(f"số thứ tự {self.seq!r} phải từ 0001 đến 9999")

    def __str__(self) -> str:
        day = self.day  # not strftime: this runs several times per reception
        return f"{self.unit}-{day.year % 100:02d}{day.month:02d}{day.day:02d}-{self.seq:04d}"

    @classmethod
    def parse(cls, text: str) -> DossierCode:
        """Parse a code, raising ``DossierCodeInvalid`` (Vietnamese reason) when it is malformed."""
        if not isinstance(text, str) or len(text) > MAX_CODE_LENGTH:
            raise DossierCodeInvalid(f"mã hồ sơ phải là chuỗi tối đa {MAX_CODE_LENGTH} ký tự")
        match = _CODE_RE.fullmatch(text)
        if match is None:
            raise DossierCodeInvalid(f"mã hồ sơ {text!r} không đúng dạng <mã đơn vị>-<YYMMDD>-<NNNN>")
        digits = match["day"]
        try:
            day = date(2000 + int(digits[:2]), int(digits[2:4]), int(digits[4:]))
        except ValueError:
            raise DossierCodeInvalid(f"mã hồ sơ {text!r} có ngày {digits} không tồn tại") from None
        return cls(match["unit"], day, int(match["seq"]))


def is_dossier_code(text: object) -> bool:
    """Whether ``text`` is a well-formed dossier code."""
    if not isinstance(text, str):
        return False
    try:
        DossierCode.parse(text)
    except DossierCodeInvalid:
        return False
    return True


@dataclass(frozen=True, slots=True)
class CodeBlock:
    """A node's own range of the daily sequence, ``start``..``last``, inside 0001..9999."""

    start: int
    size: int

    def __post_init__(self) -> None:
        if type(self.start) is not int or type(self.size) is not int or self.start < 1 or self.size < 1:
            raise DomainError("a code block needs start >= 1 and size >= 1")
        if self.last > SEQ_MAX:
            raise DomainError(f"code block {self.start}..{self.last} does not fit in 1..{SEQ_MAX}")

    @classmethod
    def indexed(cls, index: int, size: int = 1000) -> CodeBlock:
        """Block ``index`` of equal blocks: ``index*size`` .. ``index*size+size-1`` (block 0 starts at 1)."""
        if index < 0 or size < 1:
            raise DomainError("block index must be >= 0 and size >= 1")
        first = index * size
        start = max(1, first)
        return cls(start, first + size - start)

    @property
    def last(self) -> int:
        """The highest sequence number of the block."""
        return self.start + self.size - 1

    def __contains__(self, seq: object) -> bool:
        return type(seq) is int and self.start <= seq <= self.last

    def overlaps(self, other: CodeBlock) -> bool:
        """Whether two blocks share a sequence number (configuration must keep nodes' blocks disjoint)."""
        return self.start <= other.last and other.start <= self.last


def allocate_code(unit: str, day: date, block: CodeBlock, used_max: int | None) -> DossierCode:
    """The next code for a node: the sequence after ``used_max`` (the highest one this node used on ``day``
    across all its epochs, ``None`` if none), or the block start when ``used_max`` lies below the block.

    Raises ``CodeBlockExhausted`` when the block has no number left that day.
    """
    if used_max is None or used_max < block.start:
        seq = block.start
    else:
        seq = used_max + 1
    if seq > block.last:
        raise CodeBlockExhausted(
            f"đã dùng hết dải số {block.start:04d}–{block.last:04d} của ngày {day:%d/%m/%Y} cho đơn vị {unit}"
        )
    return DossierCode(unit, day, seq)


CODE_FLOOR_KIND = "node.code_floor"
"""Entry kind of a new epoch's code floor (after a restore that may have lost printed receipts)."""
RESTORE_CODE_MARGIN = 100
"""Default numbers skipped on the restore day: the lost disk may have answered up to this many receptions
that day after its last sync or backup without any of them being reused."""


@dataclass(frozen=True, slots=True)
class CodeFloor:
    """Body of ``node.code_floor``: numbers up to ``seq`` of ``unit`` on ``day`` may be on receipts a lost
    disk printed; this log allocates above ``seq`` that day (``margin`` = how many were skipped)."""

    unit: str
    day: date
    seq: int
    margin: int

    def __post_init__(self) -> None:
        try:
            DossierCode(self.unit, self.day, max(1, self.seq) if type(self.seq) is int else self.seq)
        except DossierCodeInvalid as exc:
            raise BodyInvalid(f"{CODE_FLOOR_KIND}: {exc.reason}") from None
        if type(self.seq) is not int or not 0 <= self.seq <= SEQ_MAX:
            raise BodyInvalid(f"{CODE_FLOOR_KIND}: seq must be 0..{SEQ_MAX}", field="seq")
        if type(self.margin) is not int or not 0 <= self.margin <= SEQ_MAX:
            raise BodyInvalid(f"{CODE_FLOOR_KIND}: margin must be 0..{SEQ_MAX}", field="margin")

    def to_body(self) -> dict[str, object]:
        return {"day": self.day.isoformat(), "margin": self.margin, "seq": self.seq, "unit": self.unit}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CodeFloor:
        """Parse and validate a ``node.code_floor`` body (exactly ``unit, day, seq, margin``)."""
        if not isinstance(body, Mapping) or set(body) != {"unit", "day", "seq", "margin"}:
            raise BodyInvalid(f"{CODE_FLOOR_KIND} body must have exactly unit, day, seq, margin")
        unit, day = body["unit"], body["day"]
        if (
            not isinstance(unit, str)
            or not isinstance(day, str)
            or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day)
        ):
            raise BodyInvalid(f"{CODE_FLOOR_KIND}: unit must be text, day YYYY-MM-DD", field="day")
        try:
            parsed = date.fromisoformat(day)
        except ValueError:
            raise BodyInvalid(f"{CODE_FLOOR_KIND}: day {day!r} does not exist", field="day") from None
        return cls(unit, parsed, body["seq"], body["margin"])


def validate_code_floor(body: Mapping[str, Any]) -> None:
    """Body validator of ``node.code_floor``."""
    CodeFloor.from_body(body)


def floor_after_restore(
    used_max: int | None, earlier_floor: int | None, block: CodeBlock, margin: int = RESTORE_CODE_MARGIN
) -> int:
    """The floor a new epoch sets on the restore day: past everything known used that day in the block
    (``used_max``) or reserved by an earlier floor, plus ``margin`` numbers a lost disk may have printed.
    Capped at the block end (then the block is spent for that day: no code may be reused)."""
    if margin < 0:
        raise DomainError("the restore margin must be >= 0")
    known = max(block.start - 1, used_max or 0, earlier_floor or 0)
    return min(block.last, known + margin)


@dataclass(frozen=True, slots=True)
class LookupHash:
    """What the log keeps of a lookup code: PBKDF2-HMAC-SHA256 over it, salted with the dossier code."""

    hash: str
    iterations: int = LOOKUP_ITERATIONS
    alg: str = _LOOKUP_ALG

    def to_body(self) -> dict[str, object]:
        """The ``lookup`` object of a ``dossier.received`` body."""
        return {"alg": self.alg, "hash": self.hash, "iterations": self.iterations}


def new_lookup_code(entropy: bytes) -> str:
    """A fresh lookup code from at least 16 bytes of OS randomness (pass ``os.urandom(16)``)."""
    if len(entropy) < 16:
        raise DomainError("a lookup code needs at least 16 bytes of randomness")
    number = int.from_bytes(entropy[:16], "big")
    chars = []
    for _ in range(LOOKUP_LENGTH):
        number, index = divmod(number, len(LOOKUP_ALPHABET))
        chars.append(LOOKUP_ALPHABET[index])
    return "".join(chars)


def format_lookup_code(lookup: str) -> str:
    """The code as printed, in two groups of four: ``ABCD-EFGH``."""
    return f"{lookup[:4]}-{lookup[4:]}"


def _normalize(candidate: str) -> str:
    return re.sub(r"[\s-]", "", candidate).upper()


def hash_lookup_code(dossier_code: str, lookup: str, *, iterations: int = LOOKUP_ITERATIONS) -> LookupHash:
    """Hash a lookup code for the ``dossier.received`` body (accepts the printed ``ABCD-EFGH`` form)."""
    plain = _normalize(lookup)
    if len(plain) != LOOKUP_LENGTH or any(c not in LOOKUP_ALPHABET for c in plain):
        raise DomainError(f"mã tra cứu phải gồm {LOOKUP_LENGTH} ký tự trong bảng {LOOKUP_ALPHABET}")
    salt = _LOOKUP_SALT + dossier_code.encode("utf-8")
    digest = PBKDF2HMAC(SHA256(), 32, salt, iterations).derive(plain.encode("ascii"))
    return LookupHash(hash=digest.hex(), iterations=iterations)


def verify_lookup_code(dossier_code: str, candidate: str, stored: LookupHash) -> bool:
    """Whether ``candidate`` (as typed: any case, with spaces or a dash) is the dossier's lookup code."""
    if stored.alg != _LOOKUP_ALG:
        return False
    try:
        computed = hash_lookup_code(dossier_code, candidate, iterations=stored.iterations)
    except DomainError:
        return False
    return hmac.compare_digest(computed.hash, stored.hash)
