"""Canonical encoding (protocol v1): RFC 8785 (JCS) restricted to what motcua needs.

- values: objects with string keys, arrays, strings, integers within ±(2**53-1), true, false, null;
- no floats (money is integer đồng, time is integer milliseconds);
- strings in Unicode NFC, no lone surrogates; UTF-8 output; no insignificant whitespace;
- object keys sorted by their UTF-16 code units (RFC 8785 §3.2.3), no duplicates;
- string escaping as ECMAScript JSON.stringify: ``\\"``, ``\\\\``, ``\\b \\t \\n \\f \\r``, other
  control characters as ``\\u00xx`` (lower-case hex), everything else literal.

``decode`` is strict: it accepts a byte string only if it is exactly the canonical encoding of the
value it holds, and names the first problem it finds otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from protocol.errors import (
    DecodeError,
    DuplicateKey,
    FloatNotAllowed,
    IntegerOutOfRange,
    InvalidJSON,
    LoneSurrogate,
    NotCanonical,
    NotNFC,
    TooDeep,
    TooLarge,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_ENTRY_BYTES",
    "MAX_SAFE_INT",
    "b64url_decode",
    "b64url_encode",
    "canonical",
    "decode",
    "nfc",
]

MAX_SAFE_INT = 2**53 - 1
MAX_ENTRY_BYTES = 64 * 1024
MAX_DEPTH = 32

JSONValue = Any  # dict[str, JSONValue] | list[JSONValue] | str | int | bool | None

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode


def _is_surrogate_free(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: object, depth: int) -> bool:
    """Validate a decoded or caller-built value; return True if some key needs UTF-16 ordering.

    ``depth`` counts the containers enclosing ``value``; at most MAX_DEPTH containers may nest.
    """
    if isinstance(value, str):
        _check_str(value)
        return False
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise IntegerOutOfRange(f"integer {value} is outside ±(2**53-1)")
        return False
    if isinstance(value, float):
        raise FloatNotAllowed(f"float {value!r}: only integers are allowed")
    astral = False
    if depth >= MAX_DEPTH:
        raise TooDeep(f"more than {MAX_DEPTH} nested arrays/objects")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidJSON(f"object key {key!r} is not a string")
            _check_str(key)
            if not astral and not key.isascii() and max(key) > "\uffff":  # C-speed; most keys are ASCII
                astral = True
            if _check(item, depth + 1):
                astral = True
        return astral
    if isinstance(value, list | tuple):
        for item in value:
            if _check(item, depth + 1):
                astral = True
        return astral
    raise InvalidJSON(f"{type(value).__name__} is not a JSON value")


def _check_str(s: str) -> None:
    if s.isascii():
        return
    if not _is_surrogate_free(s):
        raise LoneSurrogate(f"string {s[:40]!r} holds a lone surrogate")
    if not unicodedata.is_normalized("NFC", s):
        raise NotNFC(f"string {s[:40]!r} is not in Unicode NFC")


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _slow_encode(value: object) -> str:
    """Encoder used only when some object key holds a character above U+FFFF (UTF-16 ordering differs)."""
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: _utf16_key(kv[0]))
        return "{" + ",".join(_dumps(k) + ":" + _slow_encode(v) for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_slow_encode(v) for v in value) + "]"
    return _dumps(value)


def canonical(value: JSONValue) -> bytes:
    """The canonical bytes of ``value``; raises a DecodeError subclass for anything not allowed."""
    astral = _check(value, 0)
    text = _slow_encode(value) if astral else _dumps(value)
    return text.encode("utf-8")


def _parse_float(text: str) -> float:
    raise FloatNotAllowed(f"number {text[:40]} has a fraction or exponent")


def _parse_int(text: str) -> int:
    digits = text[1:] if text.startswith("-") else text
    if len(digits) > 16:
        raise IntegerOutOfRange(f"integer {text[:40]} is outside ±(2**53-1)")
    value = int(text)
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise IntegerOutOfRange(f"integer {text} is outside ±(2**53-1)")
    return value


def _parse_constant(text: str) -> float:
    raise InvalidJSON(f"{text} is not allowed")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"key {key!r} appears twice")
            seen.add(key)
    return result


_decoder = json.JSONDecoder(
    object_pairs_hook=_pairs,
    parse_float=_parse_float,
    parse_int=_parse_int,
    parse_constant=_parse_constant,
)


def _float_hook(text: str) -> float:
    raise ValueError("float")


# The fast path: msgspec's C decoder and encoder (UTF-8 validated by the decoder, floats refused by
# the hook, keys sorted by code point, the same escapes as ``_dumps``: ``\" \\ \b \t \n \f \r`` and
# ``\u00xx`` lower-case for the other control characters, everything else literal).
_fast_decode = msgspec.json.Decoder(float_hook=_float_hook).decode
_fast_encode = msgspec.json.Encoder(order="sorted").encode
# One pass over the bytes: every digit becomes "9", the lead bytes of characters above U+FFFF (F0..F4)
# "!", "[" and "{" become "[", everything else a space. A run of 16 nines marks a number that may be
# outside ±(2**53-1) (or a long digit string inside a text): such input takes the strict path, and so
# does any character above U+FFFF (UTF-16 key order) or nesting that may be deeper than MAX_DEPTH.
_SCAN = bytes(
    0x39 if 0x30 <= b <= 0x39 else 0x21 if 0xF0 <= b <= 0xF4 else 0x5B if b in b"[{" else 0x20
    for b in range(256)
)
_SIXTEEN_DIGITS = b"9" * 16


def _depth_ok(value: object, depth: int = 0) -> bool:
    if depth >= MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_depth_ok(v, depth + 1) for v in value.values() if isinstance(v, dict | list))
    if isinstance(value, list):
        return all(_depth_ok(v, depth + 1) for v in value if isinstance(v, dict | list))
    return True


def _decode_fast(data: bytes) -> JSONValue | None:
    """Accept ``data`` cheaply when it is certainly canonical; None means "let the strict path decide".

    Sound because: the text is valid UTF-8 without surrogates (msgspec refuses anything else, and an
    escaped lone surrogate); if it is NFC as a whole, every string in it is (strings are delimited by
    ASCII quotes, which compose with nothing); no run of 16 digits means every integer is within
    ±(2**53-1); floats raise in the hook and NaN is not JSON; without characters above U+FFFF,
    code-point key order equals UTF-16 order; msgspec's encoding of a value without floats, big integers
    or astral characters is ``_dumps``'s, so duplicate keys, whitespace, other escapes, ``-0`` or any other
    deviation make the re-encoding differ from the input. tests/protocol/test_encoding.py checks this
    path against the strict one on mutated inputs.
    """
    scan = data.translate(_SCAN)
    if b"!" in scan or _SIXTEEN_DIGITS in scan:
        return None
    if not data.isascii():
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not unicodedata.is_normalized("NFC", text):
            return None
    try:
        value = _fast_decode(data)
        if _fast_encode(value) != data or (scan.count(b"[") > MAX_DEPTH and not _depth_ok(value)):
            return None
    except (ValueError, RecursionError, UnicodeError, msgspec.MsgspecError):
        return None
    return value


def decode(data: bytes, *, max_bytes: int | None = MAX_ENTRY_BYTES) -> JSONValue:
    """Strictly decode canonical bytes; raise the DecodeError subclass naming the first problem."""
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge(f"{len(data)} bytes is over the limit of {max_bytes}")
    value = _decode_fast(data)
    if value is not None:
        return value
    return _decode_strict(data)


def _decode_strict(data: bytes) -> JSONValue:
    try:
        text = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise InvalidJSON(f"not UTF-8 at byte {exc.start}") from None
    try:
        value = _decoder.decode(text)
    except DecodeError:
        raise
    except RecursionError:
        raise TooDeep(f"more than {MAX_DEPTH} nested arrays/objects") from None
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} at offset {exc.pos}") from None
    except ValueError as exc:  # e.g. int() digit limits
        raise InvalidJSON(str(exc)) from None
    if canonical(value) != data:
        raise NotCanonical("input is not byte-identical to its canonical encoding")
    return value


def nfc(value: JSONValue) -> JSONValue:
    """Deep-normalise every string (keys too) to NFC. Use at input edges: forms, API bodies, CLI."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, Mapping):
        return {unicodedata.normalize("NFC", k): nfc(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [nfc(v) for v in value]
    return value


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, length: int | None = None) -> bytes:
    """Strict base64url without padding: rejects padding, other alphabets and non-canonical trailing bits."""
    if not isinstance(text, str) or not text.isascii() or "=" in text:
        raise ValueError("not unpadded base64url text")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not unpadded base64url text") from None
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url (trailing bits set)")
    if length is not None and len(data) != length:
        raise ValueError(f"expected {length} bytes, got {len(data)}")
    return data
