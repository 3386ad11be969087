"""Node key rotation messages (SPEC §7.11): strict shapes, both signatures, the hub's decision entry."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import (
    NODE_KEY_ROTATION,
    BadShape,
    BadSignature,
    BodyInvalid,
    Head,
    RotationRequest,
    RotationStatus,
    b64url_encode,
    canonical,
    fingerprint,
    private_key_from_seed,
    public_key_text,
    validate_body,
)
from protocol.keyrotation import ROTATE_DOMAIN

OLD = private_key_from_seed(bytes(range(32)))
NEW = private_key_from_seed(bytes(range(32, 64)))
OTHER = private_key_from_seed(bytes(range(64, 96)))
FINAL = Head("CN01", 1, 42, "ab" * 32)


def _request(**changes: Any) -> dict[str, Any]:
    made = RotationRequest.make(
        node="CN01", epoch=1, old_key=OLD, new_key=NEW, final=FINAL, time=1_767_225_600_000
    )
    return {**made.to_wire(), **changes}


def test_a_request_is_signed_by_both_keys_and_round_trips() -> None:
    request = RotationRequest.from_wire(_request())
    assert request.new_epoch == 2 and request.final == FINAL
    old, new = request.verify()
    assert old.text == public_key_text(OLD) and new.text == public_key_text(NEW)
    assert request.signable().startswith(ROTATE_DOMAIN)
    assert RotationRequest.from_wire(request.to_wire()) == request
    assert request.id == RotationRequest.from_wire(_request()).id  # deterministic (Ed25519)
    assert len(request.id) == 64 and request.new_fingerprint == fingerprint(public_key_text(NEW))
    assert b'"final":{"head":"' in canonical(request.to_wire())


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"extra": 1}, "exactly"),
        ({"node": "cn01"}, "node id"),
        ({"epoch": 0}, "epoch"),
        ({"epoch": True}, "epoch"),
        ({"new_epoch": 3}, "new_epoch"),
        ({"key": "short"}, "key must be a public key"),
        ({"new_key": public_key_text(OLD)}, "differ"),
        ({"sig": "x" * 86 + "="}, "sig"),
        ({"new_sig": 5}, "new_sig"),
        ({"time": -1}, "time"),
        ({"time": 2**53}, "time"),
        ({"final": {"seq": 42}}, "final"),
        ({"final": {"seq": 0, "head": "ab" * 32}}, "null at seq 0"),
        ({"final": {"seq": 3, "head": None}}, "hex SHA-256"),
        ({"final": {"seq": 3, "head": "AB" * 32}}, "hex SHA-256"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(BadShape, match=words):
        RotationRequest.from_wire(_request(**changes))


def test_not_a_dict_is_refused() -> None:
    with pytest.raises(BadShape):
        RotationRequest.from_wire([_request()])


def test_a_forged_new_key_signature_is_refused_as_such() -> None:
    good = RotationRequest.from_wire(_request())
    forged = RotationRequest.from_wire(_request(new_sig=b64url_encode(OTHER.sign(good.signable()))))
    with pytest.raises(BadSignature, match="new key"):
        forged.verify()
    stolen = RotationRequest.from_wire(_request(sig=b64url_encode(OTHER.sign(good.signable()))))
    with pytest.raises(BadSignature, match="old key"):
        stolen.verify()
    changed = RotationRequest.from_wire(_request(time=1))  # any field changed: the signatures break
    with pytest.raises(BadSignature):
        changed.verify()


def test_a_request_signed_for_another_domain_does_not_verify() -> None:
    good = RotationRequest.from_wire(_request())
    body = canonical(good.fields())
    other = _request(sig=b64url_encode(OLD.sign(body)), new_sig=b64url_encode(NEW.sign(body)))
    with pytest.raises(BadSignature):
        RotationRequest.from_wire(other).verify()


def _status(**changes: Any) -> dict[str, Any]:
    value = RotationStatus(
        id="a" * 64,
        node="CN01",
        status="pending",
        reason="",
        fingerprint=fingerprint(public_key_text(NEW)),
        approvals=1,
        threshold=2,
        enrollment=None,
    ).to_wire()
    return {**value, **changes}


def test_status_is_strict() -> None:
    assert RotationStatus.from_wire(_status()).approvals == 1
    assert RotationStatus.from_wire(_status(status="accepted", enrollment={"x": 1})).enrollment == {"x": 1}
    for bad in (
        _status(status="maybe"),
        _status(status="accepted"),  # accepted without its enrollment
        _status(enrollment={"x": 1}),  # pending with one
        _status(threshold=0),
        _status(id="A" * 64),
        _status(fingerprint="nope"),
        {**_status(), "more": 1},
    ):
        with pytest.raises(BadShape):
            RotationStatus.from_wire(bad)


def _decision(**changes: Any) -> dict[str, Any]:
    body = {
        "request": _request(),
        "approvals": [{"admin": "an.admin", "at": 1}, {"admin": "binh.admin", "at": 2}],
        "effective": 3,
    }
    return {**body, **changes}


def test_the_hub_decision_entry_is_validated() -> None:
    validate_body(NODE_KEY_ROTATION, _decision())
    forged = _request(new_sig=b64url_encode(OTHER.sign(RotationRequest.from_wire(_request()).signable())))
    for bad, field in (
        (_decision(request=forged), "request"),
        (_decision(request={**_request(), "node": "x"}), "request"),
        (_decision(approvals=[]), "approvals"),
        (_decision(approvals=[{"admin": "an.admin", "at": 1}, {"admin": "an.admin", "at": 2}]), "approvals"),
        (_decision(approvals=[{"admin": "", "at": 1}]), "approvals"),
        (_decision(approvals=[{"admin": "a", "at": -1}]), "approvals"),
        (_decision(effective=-5), "effective"),
    ):
        with pytest.raises(BodyInvalid) as info:
            validate_body(NODE_KEY_ROTATION, bad)
        assert info.value.field == field
    with pytest.raises(BodyInvalid):
        validate_body(NODE_KEY_ROTATION, {"request": _request()})
