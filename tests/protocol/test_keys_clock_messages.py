from __future__ import annotations

import os

import pytest

from protocol import (
    Head,
    HubState,
    HybridClock,
    KeyError_,
    LogHead,
    PushResult,
    Receipt,
    fingerprint,
    generate_private_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    save_private_key,
    sign_receipt,
)
from protocol.errors import BadShape, BadSignature
from tests.protocol.chains import make_key


def test_key_file_round_trip_and_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = generate_private_key()
    path = tmp_path / "node.key"
    save_private_key(key, path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert public_key_text(load_private_key(path)) == public_key_text(key)
    with pytest.raises(KeyError_, match="refusing to overwrite"):
        save_private_key(generate_private_key(), path)
    assert public_key_text(load_private_key(path)) == public_key_text(key)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640])
def test_refuses_readable_key(tmp_path, mode: int) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "node.key"
    save_private_key(generate_private_key(), path)
    os.chmod(path, mode)
    with pytest.raises(KeyError_, match="chmod 600"):
        load_private_key(path)


def test_refuses_symlink_and_garbage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    real = tmp_path / "real.key"
    save_private_key(generate_private_key(), real)
    (tmp_path / "link.key").symlink_to(real)
    with pytest.raises(KeyError_):
        load_private_key(tmp_path / "link.key")
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    os.chmod(junk, 0o600)
    with pytest.raises(KeyError_, match="not a PEM"):
        load_private_key(junk)
    with pytest.raises(KeyError_, match="no key file"):
        load_private_key(tmp_path / "missing.key")


def test_public_key_text_and_fingerprint() -> None:
    key = make_key()
    text = public_key_text(key)
    assert len(text) == 43 and "=" not in text
    assert parse_public_key(text).text == text
    fp = fingerprint(text)
    assert len(fp) == 24 and fp.count("-") == 4
    assert fp != fingerprint(public_key_text(make_key(2)))


@pytest.mark.parametrize(
    "raw_hex",
    [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ],
)
def test_small_order_public_keys_refused(raw_hex: str) -> None:
    from protocol.encoding import b64url_encode

    with pytest.raises(KeyError_, match="small order"):
        parse_public_key(b64url_encode(bytes.fromhex(raw_hex)))


@pytest.mark.parametrize("text", ["", "abc", "A" * 44, "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="])
def test_bad_public_key_text(text: str) -> None:
    with pytest.raises(KeyError_):
        parse_public_key(text)


def test_hybrid_clock_never_goes_backwards() -> None:
    clock = HybridClock()
    a = clock.now(1000)
    b = clock.now(900)  # wall clock stepped back
    c = clock.now(900)
    assert a < b < c and b == (1000, 1)
    assert clock.observe((5000, 3), wall_ms=1000)
    assert clock.now(1000) == (5000, 4)  # orders after what it observed
    assert not clock.observe((10**9, 0), wall_ms=6000)  # far future: refused, not adopted
    assert clock.last == (5000, 4)
    assert clock.skew_ms(1000) == 4000


def test_hybrid_clock_counter_overflow_borrows_next_ms() -> None:
    from protocol.hlc import MAX_COUNTER

    clock = HybridClock(last=(7, MAX_COUNTER))
    assert clock.now(7) == (8, 0)


def test_receipt_sign_verify_and_wire() -> None:
    hub = make_key(7)
    receipt = sign_receipt(hub, Head("CN01", 1, 42, "a" * 64), hub_time=1_795_000_000_000)
    receipt.verify(parse_public_key(public_key_text(hub)))
    again = Receipt.from_wire(receipt.to_wire())
    assert again == receipt
    with pytest.raises(BadSignature):
        again.verify(parse_public_key(public_key_text(make_key(8))))
    forged = Receipt.from_wire({**receipt.to_wire(), "seq": 43})
    with pytest.raises(BadSignature):
        forged.verify(parse_public_key(public_key_text(hub)))
    with pytest.raises(BadShape):
        Receipt.from_wire({**receipt.to_wire(), "extra": 1})


def test_push_result_and_hub_state_wire() -> None:
    hub = make_key(7)
    receipt = sign_receipt(hub, Head("CN01", 1, 3, "b" * 64), hub_time=5)
    result = PushResult(accepted=2, duplicates=1, quarantined=(3,), receipt=receipt)
    assert PushResult.from_wire(result.to_wire()) == result
    state = HubState(
        hub_time=9,
        node="CN01",
        epoch=1,
        status="active",
        logs=(LogHead("CN01", 1, 3, "b" * 64),),
        mailboxes=(LogHead("hub.CN01", 1, 0, None),),
    )
    assert HubState.from_wire(state.to_wire()) == state
    with pytest.raises(BadShape):
        LogHead.from_wire({"log": "cn01", "epoch": 1, "seq": 0, "head": None})
