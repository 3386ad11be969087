"""Dossier codes, daily code blocks, the offline allocator and lookup codes."""

from __future__ import annotations

import itertools
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.dossier.codes import (
    LOOKUP_ALPHABET,
    CodeBlock,
    DossierCode,
    allocate_code,
    format_lookup_code,
    hash_lookup_code,
    is_dossier_code,
    new_lookup_code,
    verify_lookup_code,
)
from protocol.errors import CodeBlockExhausted, DomainError, DossierCodeInvalid

UNIT = "000.00.01.H26"
DAY = date(2026, 9, 30)


@pytest.mark.parametrize(
    "text", ["000.A0.01.H26-210212-9090", "000.00.01.H26-260930-0012", "H26-251231-0001"]
)
def test_parse_format_round_trip(text: str) -> None:
    code = DossierCode.parse(text)
    assert str(code) == text
    assert is_dossier_code(text)


def test_parse_parts() -> None:
    code = DossierCode.parse("000.00.01.H26-260930-0012")
    assert code == DossierCode("000.00.01.H26", date(2026, 9, 30), 12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "000.00.01.H26-260930-0000",  # sequence starts at 0001
        "000.00.01.H26-260931-0001",  # no 31 September
        "000.00.01.H26-26093-0001",
        "000.00.01.H26-260930-12345",
        "000.00.01.h26-260930-0001",  # lower case
        ".000.00.01.H26-260930-0001",
        "000.00.01.H26-260930-0001 ",
        "X" * 19 + "-260930-0001",  # over 30 characters
        "000 00 01 H26-260930-0001",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(DossierCodeInvalid):
        DossierCode.parse(text)
    assert not is_dossier_code(text)


def test_is_dossier_code_on_non_strings() -> None:
    assert not is_dossier_code(None)
    assert not is_dossier_code(12)


def test_indexed_blocks() -> None:
    assert CodeBlock.indexed(0) == CodeBlock(1, 999)
    assert CodeBlock.indexed(3) == CodeBlock(3000, 1000)
    assert CodeBlock.indexed(9).last == 9999
    assert CodeBlock.indexed(19, size=500) == CodeBlock(9500, 500)
    with pytest.raises(DomainError):
        CodeBlock.indexed(10)
    with pytest.raises(DomainError):
        CodeBlock(9990, 11)
    with pytest.raises(DomainError):
        CodeBlock(0, 10)


def test_indexed_blocks_are_disjoint() -> None:
    blocks = [CodeBlock.indexed(k) for k in range(10)]
    for a, b in itertools.combinations(blocks, 2):
        assert not a.overlaps(b)
    assert CodeBlock(100, 50).overlaps(CodeBlock(149, 10))
    assert not CodeBlock(100, 50).overlaps(CodeBlock(150, 10))
    assert 150 in CodeBlock(150, 10) and 160 not in CodeBlock(150, 10)


def test_allocation_starts_at_block_start_and_continues() -> None:
    block = CodeBlock.indexed(2)
    assert allocate_code(UNIT, DAY, block, None) == DossierCode(UNIT, DAY, 2000)
    assert allocate_code(UNIT, DAY, block, 2000).seq == 2001
    assert allocate_code(UNIT, DAY, block, 17).seq == 2000  # numbers of an old block do not matter
    assert str(allocate_code(UNIT, DAY, block, 2041)) == "000.00.01.H26-260930-2042"


def test_allocation_exhausts_the_block() -> None:
    block = CodeBlock(5, 3)
    assert allocate_code(UNIT, DAY, block, 6).seq == 7
    with pytest.raises(CodeBlockExhausted, match="0005–0007"):
        allocate_code(UNIT, DAY, block, 7)
    with pytest.raises(CodeBlockExhausted):
        allocate_code(UNIT, DAY, block, 9000)


def test_two_offline_nodes_never_collide() -> None:
    issued: set[str] = set()
    for block in (CodeBlock.indexed(1), CodeBlock.indexed(2)):
        used: int | None = None
        for _ in range(block.size):
            code = allocate_code(UNIT, DAY, block, used)
            assert str(code) not in issued
            issued.add(str(code))
            used = code.seq
    assert len(issued) == 2000


@given(used=st.lists(st.integers(min_value=3000, max_value=3998), min_size=1, max_size=30))
def test_never_reuses_given_the_highest_used(used: list[int]) -> None:
    """A restored node (new epoch) passes the max over all epochs: the next code is above every used one."""
    code = allocate_code(UNIT, DAY, CodeBlock.indexed(3), max(used))
    assert code.seq not in used and code.seq > max(used)


def test_lookup_code_generation_is_deterministic_and_uses_the_alphabet() -> None:
    code = new_lookup_code(bytes(range(16)))
    assert code == new_lookup_code(bytes(range(16)))
    assert len(code) == 8 and all(c in LOOKUP_ALPHABET for c in code)
    assert new_lookup_code(bytes(range(1, 17))) != code
    assert format_lookup_code("ABCDEFGH") == "ABCD-EFGH"
    with pytest.raises(DomainError):
        new_lookup_code(b"short")


def test_lookup_alphabet_has_no_lookalikes() -> None:
    assert not set("01OIL") & set(LOOKUP_ALPHABET)
    assert len(set(LOOKUP_ALPHABET)) == 31


def test_lookup_hash_verifies_only_the_right_code_for_the_right_dossier() -> None:
    dossier = "000.00.01.H26-260930-0012"
    stored = hash_lookup_code(dossier, "K7M2-QX9P", iterations=1000)
    assert stored.alg == "pbkdf2-sha256" and len(stored.hash) == 64
    assert verify_lookup_code(dossier, "K7M2QX9P", stored)
    assert verify_lookup_code(dossier, "k7m2 qx9p", stored)
    assert not verify_lookup_code(dossier, "K7M2QX9R", stored)
    assert not verify_lookup_code("000.00.01.H26-260930-0013", "K7M2QX9P", stored)
    assert not verify_lookup_code(dossier, "not a code", stored)
    assert hash_lookup_code(dossier, "K7M2QX9P", iterations=1000) == stored
    assert stored.to_body() == {"alg": "pbkdf2-sha256", "hash": stored.hash, "iterations": 1000}
    with pytest.raises(DomainError):
        hash_lookup_code(dossier, "K7M2QX9O")


def test_lookup_hash_is_plain_pbkdf2_hmac_sha256() -> None:
    """The hash is computed by ``cryptography`` (faster); it must stay the spec's PBKDF2 byte for byte."""
    import hashlib

    dossier = "000.00.01.H26-260930-0012"
    for iterations in (1000, 10_000):
        expected = hashlib.pbkdf2_hmac(
            "sha256", b"K7M2QX9P", b"motcua/lookup/v1\0" + dossier.encode(), iterations
        ).hex()
        assert hash_lookup_code(dossier, "K7M2-QX9P", iterations=iterations).hash == expected
    known = "42f4ba0f96d374aea56cefe1fa8809886255c69dd128efac8259e3c4259f32b0"  # 10^4 iterations
    assert hash_lookup_code(dossier, "K7M2QX9P", iterations=10_000).hash == known
