from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import DecodeError, canonical, decode, nfc
from protocol.encoding import (
    MAX_ENTRY_BYTES,
    MAX_SAFE_INT,
    _decode_fast,
    _decode_strict,
    b64url_decode,
    b64url_encode,
)
from protocol.errors import FloatNotAllowed, IntegerOutOfRange, NotNFC, TooLarge
from protocol.vectors import load_vectors
from tests.protocol.strategies import json_values

VECTORS = load_vectors()


@pytest.mark.parametrize("case", VECTORS["canonical_good"], ids=lambda c: c["canonical"][:30])
def test_canonical_vectors(case: dict) -> None:
    assert canonical(case["input"]).decode("utf-8") == case["canonical"]
    assert decode(case["canonical"].encode("utf-8")) == case["input"]


def test_rfc8785_key_order_is_utf16() -> None:
    # RFC 8785 §3.2.3 example (U+FB33 swapped for the NFC-stable U+FB00).
    value = {"\u20ac": 1, "\r": 2, "\ufb00": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    keys = list(json.loads(canonical(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb00"]


@pytest.mark.parametrize("case", VECTORS["decode_bad"], ids=lambda c: c["name"])
def test_decode_rejects_with_named_error(case: dict) -> None:
    with pytest.raises(DecodeError) as info:
        decode(case["input"].encode("utf-8"))
    assert info.value.code == case["error"]


@pytest.mark.parametrize("case", VECTORS["decode_bad_hex"], ids=lambda c: c["name"])
def test_decode_rejects_bytes_with_named_error(case: dict) -> None:
    with pytest.raises(DecodeError) as info:
        decode(bytes.fromhex(case["input_hex"]))
    assert info.value.code == case["error"]


def test_encoder_refuses_what_decoder_refuses() -> None:
    with pytest.raises(FloatNotAllowed):
        canonical({"fee": 1.5})
    with pytest.raises(IntegerOutOfRange):
        canonical([2**53])
    with pytest.raises(NotNFC):
        canonical({"name": "Nguye\u0302\u0303n"})
    assert canonical(nfc({"name": "Nguye\u0302\u0303n"})) == '{"name":"Nguyễn"}'.encode()


def test_size_limit() -> None:
    big = canonical({"a": "x" * MAX_ENTRY_BYTES})
    with pytest.raises(TooLarge):
        decode(big)
    assert decode(big, max_bytes=None) == {"a": "x" * MAX_ENTRY_BYTES}


@given(json_values)
def test_round_trip(value: object) -> None:
    data = canonical(value)
    assert decode(data, max_bytes=None) == value
    assert canonical(decode(data, max_bytes=None)) == data


def _outcome(fn, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(data))
    except DecodeError as exc:
        return ("error", exc.code)


@given(json_values, st.data())
def test_fast_path_agrees_with_strict_path(value: object, data: st.DataObject) -> None:
    raw = bytearray(canonical(value))
    for _ in range(data.draw(st.integers(0, 3))):
        if not raw:
            break
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if op == "flip":
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "delete":
            del raw[i]
        else:
            raw.insert(i, data.draw(st.sampled_from(b' ",:[]{}0\\e\xcc\xf0')))
    mutated = bytes(raw)
    fast, strict = _outcome(decode, mutated), _outcome(_decode_strict, mutated)
    if fast[0] == "ok" or strict[0] == "ok":
        assert fast == strict


def _corpus() -> list[bytes]:
    seeds = [e["canonical"].encode() for e in VECTORS["chain"]["entries"]]
    seeds += [c["canonical"].encode() for c in VECTORS["canonical_good"]]
    return seeds


def _fuzz(count: int, seed: int) -> None:
    rng = random.Random(seed)
    corpus = _corpus()
    slowest = 0.0
    for _ in range(count):
        raw = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            i = rng.randrange(len(raw)) if raw else 0
            if op < 0.4 and raw:
                raw[i] ^= 1 << rng.randrange(8)
            elif op < 0.6 and raw:
                del raw[i : i + rng.randint(1, 8)]
            elif op < 0.8:
                raw[i:i] = bytes(
                    rng.choice(b'[]{}",:0123456789-.eE\\u\xc3\xa1\xcc\x81\xed\xa0\x80 ntf')
                    for _ in range(rng.randint(1, 6))
                )
            else:
                j = rng.randrange(len(raw)) if raw else 0
                raw[i:i] = raw[j : j + rng.randint(1, 32)]
        start = time.perf_counter()
        try:
            decode(bytes(raw))
        except DecodeError:
            pass
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 1.0


def test_fuzz_decoder_100k_inputs_only_declared_errors() -> None:
    _fuzz(100_000, seed=20261122)


@pytest.mark.slow
def test_fuzz_decoder_long() -> None:
    _fuzz(2_000_000, seed=7)


def test_b64url_strict() -> None:
    assert b64url_decode(b64url_encode(b"\xff\xfe")) == b"\xff\xfe"
    for bad in ["//8", "__8=", "__9", "ab c", "é"]:
        with pytest.raises(ValueError):
            b64url_decode(bad)


# Keys and texts around the places where a fast encoder could disagree with RFC 8785: characters above
# U+FFFF against U+E000..U+FFFF (code-point order differs from UTF-16 order), combining marks (NFC),
# control characters (escapes), quotes and backslashes.
_TRICKY = (
    "aZ0_é\u0301\u00e9\u1ebf\ue000\ufb00\uffeb\ufffd\U00010000\U0001f600"
    "\u20ac\r\n\t\x00\x1f\x7f\u2028\"\\/"
)
_tricky_text = st.text(alphabet=st.sampled_from(_TRICKY), max_size=6)
_tricky_int = st.sampled_from([0, 1, -1, MAX_SAFE_INT, -MAX_SAFE_INT, MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1])
_tricky_values = st.recursive(
    st.none() | st.booleans() | _tricky_int | st.integers(-(2**70), 2**70) | _tricky_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_tricky_text, children, max_size=4),
    max_leaves=12,
)
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


@st.composite
def _sloppy_json(draw: st.DrawFn) -> bytes:
    """Mostly-canonical JSON text with, now and then, one of the deviations the strict path names."""

    def rare() -> bool:
        return draw(st.integers(0, 7)) == 0

    def text(s: str) -> str:
        out = []
        for ch in s:
            if rare():
                forms = [f"\\u{ord(ch):04x}", f"\\u{ord(ch):04X}", "\\ud800", "\\/"]
                out.append(draw(st.sampled_from(forms)))
            elif ch in _SHORT:
                out.append(_SHORT[ch])
            elif ord(ch) < 0x20:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'

    def number(n: int) -> str:
        if rare():
            return draw(st.sampled_from([f"{n}.0", f"{n}e0", f"-{abs(n)}", f"0{abs(n)}", f"{n}E+0", "-0.0"]))
        return str(n)

    def enc(value: object) -> str:
        if isinstance(value, dict):
            by_utf16 = not rare()
            items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be") if by_utf16 else kv[0])
            pairs = [text(k) + ":" + enc(v) for k, v in items]
            if pairs and rare():
                i = draw(st.integers(0, len(pairs) - 1))
                pairs.insert(i, pairs[i])  # a duplicate key
            return "{" + ",".join(pairs) + "}"
        if isinstance(value, list):
            return "[" + ",".join(enc(v) for v in value) + "]"
        if value is None or isinstance(value, bool):
            return json.dumps(value)
        if isinstance(value, int):
            return number(value)
        assert isinstance(value, str)
        return text(value)

    raw = bytearray(enc(draw(_tricky_values)).encode("utf-8", "surrogatepass"))
    if rare():
        raw[0:0] = b"\xef\xbb\xbf"  # BOM
    if rare() and raw:
        i = draw(st.integers(0, len(raw)))
        raw[i:i] = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b" ", b"\n"]))
    return bytes(raw)


@settings(max_examples=1000, deadline=None)
@given(_sloppy_json())
def test_fast_path_agrees_with_strict_path_on_crafted_inputs(data: bytes) -> None:
    """decode (fast path first) and the strict decoder give the same value or the same error code, and
    whatever is accepted is exactly the canonical encoding of what it holds."""
    fast, strict = _outcome(decode, data), _outcome(_decode_strict, data)
    assert fast == strict
    if fast[0] == "ok":
        assert canonical(fast[1]) == data
        assert _decode_fast(data) in (None, fast[1])


def test_fast_path_takes_canonical_entries() -> None:
    """The fast path is not dead code: a canonical entry with Vietnamese text is accepted by it."""
    for entry in VECTORS["chain"]["entries"]:
        data = entry["canonical"].encode()
        assert _decode_fast(data) == _decode_strict(data)
    assert _decode_fast(canonical({"tên": "Nguyễn", "n": [10**15 - 1, -1, None, True]})) is not None
    for refused in (b'{"a":1,"a":1}', b'{"a":-0}', b'{"a":1.0}', b'{"\\ud800":1}', b'\xef\xbb\xbf{}'):
        assert _decode_fast(refused) is None
    # U+E000 sorts before U+10000 by code point, after it by UTF-16 code units: only the latter is canonical.
    utf16 = '{"\U00010000":1,"\ue000":2}'.encode()
    assert _decode_fast(utf16) is None and decode(utf16) == {"\U00010000": 1, "\ue000": 2}
    with pytest.raises(DecodeError):
        decode('{"\ue000":2,"\U00010000":1}'.encode())
