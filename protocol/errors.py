"""The one error family of ``protocol``.

Every error carries a short machine-readable ``code`` (stable, used on the wire, in CLI output and in
test vectors) and a human ``reason``. ``retryable`` tells a sync loop whether trying again later can help.

    ProtocolError
    ├── DecodeError                 the bytes are not one canonical value
    │   ├── NotCanonical            re-encoding is not byte-identical
    │   ├── FloatNotAllowed
    │   ├── IntegerOutOfRange       outside ±(2**53-1)
    │   ├── NotNFC                  a string is not in Unicode NFC
    │   ├── LoneSurrogate
    │   ├── DuplicateKey
    │   ├── TooDeep                 nesting over MAX_DEPTH
    │   ├── TooLarge                entry over MAX_ENTRY_BYTES
    │   └── InvalidJSON             not JSON / not UTF-8 / forbidden value
    ├── EntryError                  an entry is malformed or does not follow its chain
    │   ├── BadShape                missing/extra/ill-typed fields
    │   ├── BadVersion
    │   ├── WrongLog
    │   ├── WrongEpoch
    │   ├── SequenceGap             seq != previous + 1 (carries the expected position)
    │   ├── ChainBroken             prev != hash of previous entry
    │   ├── TimeWentBackwards
    │   ├── BadGenesis              entry 1 is not a valid log.genesis
    │   ├── KeyMismatch             genesis names another key than the one registered
    │   └── BadSignature
    ├── KeyError_                   key files and key text (named to avoid the builtin)
    ├── BodyInvalid                 body fails validation for its kind: quarantine, not chain break
    └── DomainError                 dossier rules
        ├── CalendarInvalid         calendar data malformed (names the field)
        ├── CalendarNotCovered      a date outside the years the calendar covers
        ├── CatalogInvalid          catalog data malformed (names the field)
        ├── UnknownProcedure
        ├── DossierCodeInvalid
        ├── CodeBlockExhausted      a node used every code of its daily block
        └── CitizenIdInvalid
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadGenesis",
    "BadShape",
    "BadSignature",
    "BadVersion",
    "BodyInvalid",
    "CalendarInvalid",
    "CalendarNotCovered",
    "CatalogInvalid",
    "ChainBroken",
    "CitizenIdInvalid",
    "CodeBlockExhausted",
    "DecodeError",
    "DomainError",
    "DossierCodeInvalid",
    "DuplicateKey",
    "EntryError",
    "FloatNotAllowed",
    "IntegerOutOfRange",
    "InvalidJSON",
    "KeyError_",
    "KeyMismatch",
    "LoneSurrogate",
    "NotCanonical",
    "NotNFC",
    "ProtocolError",
    "SequenceGap",
    "TimeWentBackwards",
    "TooDeep",
    "TooLarge",
    "UnknownProcedure",
    "WrongEpoch",
    "WrongLog",
]


class ProtocolError(Exception):
    """Base of every error raised by ``protocol``."""

    code: ClassVar[str] = "protocol"
    retryable: ClassVar[bool] = False

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or self.code)
        self.reason = reason or self.code

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class DecodeError(ProtocolError):
    """The input is not exactly one canonical value."""

    code = "decode"


class NotCanonical(DecodeError):
    """The input decodes, but its canonical re-encoding differs byte for byte."""

    code = "not_canonical"


class FloatNotAllowed(DecodeError):
    """A number with a fraction or exponent: money is integer đồng, time is integer ms."""

    code = "float"


class IntegerOutOfRange(DecodeError):
    """An integer outside ±(2**53-1)."""

    code = "int_range"


class NotNFC(DecodeError):
    """A string (key or value) that is not in Unicode normalization form C."""

    code = "not_nfc"


class LoneSurrogate(DecodeError):
    """A string holding an unpaired UTF-16 surrogate, which UTF-8 cannot carry."""

    code = "lone_surrogate"


class DuplicateKey(DecodeError):
    """The same key twice in one object."""

    code = "duplicate_key"


class TooDeep(DecodeError):
    """Arrays/objects nested deeper than allowed."""

    code = "too_deep"


class TooLarge(DecodeError):
    """The encoded value is over the size limit."""

    code = "too_large"


class InvalidJSON(DecodeError):
    """Not UTF-8 JSON, or a JSON value the protocol forbids (NaN, Infinity, a bare top-level scalar...)."""

    code = "invalid_json"


class EntryError(ProtocolError):
    """An entry is malformed or does not continue its chain."""

    code = "entry"


class BadShape(EntryError):
    """Missing, extra or ill-typed entry fields."""

    code = "bad_shape"


class BadVersion(EntryError):
    """``v`` is not a version this implementation verifies."""

    code = "bad_version"


class WrongLog(EntryError):
    """The entry names another log than the one being verified."""

    code = "wrong_log"


class WrongEpoch(EntryError):
    """The entry names another epoch than the one being verified."""

    code = "wrong_epoch"


class SequenceGap(EntryError):
    """``seq`` is not the previous seq + 1. ``expected`` is the seq that would have continued the chain."""

    code = "seq_gap"
    retryable = True

    def __init__(self, reason: str = "", *, expected: int = 0, got: int = 0) -> None:
        super().__init__(reason or f"expected seq {expected}, got {got}")
        self.expected = expected
        self.got = got


class ChainBroken(EntryError):
    """``prev`` is not the hash of the previous entry."""

    code = "prev_mismatch"

    def __init__(self, reason: str = "", *, expected: str | None = None, got: str | None = None) -> None:
        super().__init__(reason or f"expected prev {expected}, got {got}")
        self.expected = expected
        self.got = got


class TimeWentBackwards(EntryError):
    """The entry's hybrid logical time is before the previous entry's."""

    code = "time_backwards"


class BadGenesis(EntryError):
    """Entry 1 of an epoch is not a well-formed ``log.genesis``."""

    code = "bad_genesis"


class KeyMismatch(EntryError):
    """The key named by genesis is not the key registered for (log, epoch)."""

    code = "key_mismatch"


class BadSignature(EntryError):
    """The Ed25519 signature does not verify (or is not 64 bytes of base64url)."""

    code = "bad_signature"


class KeyError_(ProtocolError):
    """A key file or key text cannot be used (bad format, unsafe permissions...)."""

    code = "key"


class BodyInvalid(ProtocolError):
    """The body fails validation for its kind: the entry is kept but quarantined for review."""

    code = "body_invalid"

    def __init__(self, reason: str = "", *, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


class DomainError(ProtocolError):
    """A dossier rule was broken (code allocation, calendar, catalog, citizen id, transition)."""

    code = "domain"


# Dossier-domain errors (protocol/calendar.py, catalog.py, dossier/). Each names what is wrong precisely;
# the ``reason`` of errors a clerk may see is in Vietnamese, the ``code`` stays English.


class CalendarInvalid(DomainError):
    """Working-day calendar data is malformed; ``field`` is the path of the first bad value."""

    code = "calendar_invalid"

    def __init__(self, reason: str = "", *, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field


class CalendarNotCovered(DomainError):
    """The calendar has no data for a date a computation needs (holidays unknown there)."""

    code = "calendar_not_covered"


class CatalogInvalid(DomainError):
    """Procedure catalog data is malformed; ``field`` is the path of the first bad value."""

    code = "catalog_invalid"

    def __init__(self, reason: str = "", *, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field


class UnknownProcedure(DomainError):
    """No procedure (or no version of it) with that code in the catalog."""

    code = "unknown_procedure"


class DossierCodeInvalid(DomainError):
    """A dossier code (mã hồ sơ) or a part of one does not follow ``<unit>-<YYMMDD>-<NNNN>``."""

    code = "dossier_code"


class CodeBlockExhausted(DomainError):
    """A node has used every sequence number of its daily block for that day."""

    code = "code_block_exhausted"


class CitizenIdInvalid(DomainError):
    """A citizen id number fails validation; ``problem`` is a stable English code, ``reason`` Vietnamese."""

    code = "citizen_id"

    def __init__(self, reason: str = "", *, problem: str = "invalid") -> None:
        super().__init__(reason)
        self.problem = problem
