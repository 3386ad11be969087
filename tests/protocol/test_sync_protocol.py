"""Request auth, enrollment tokens, blob manifests and hub entry kinds (SPEC.md §7)."""

from __future__ import annotations

import hashlib

import pytest

from protocol import (
    BadSignature,
    BlobMismatch,
    BodyInvalid,
    Enrollment,
    EnrollmentRequest,
    Head,
    InviteToken,
    ReplayCache,
    TokenInvalid,
    body_digest,
    manifest_for_bytes,
    parse_auth_headers,
    parse_public_key,
    private_key_from_seed,
    public_key_text,
    sign_enrollment,
    sign_request,
    validate_body,
    verify_request,
)
from protocol.auth import AuthMalformed, AuthMissing, BadRequestSignature, ReplayedRequest, StaleRequest
from protocol.blobs import Manifest

NODE_KEY = private_key_from_seed(bytes(range(32)))
OTHER_KEY = private_key_from_seed(bytes(range(1, 33)))
HUB_KEY = private_key_from_seed(bytes(32))
NOW = 1_767_225_600_000


def _headers(**overrides: object) -> dict[str, str]:
    args: dict = dict(
        node="CN01",
        epoch=1,
        method="POST",
        target="/v1/sync/logs/CN01/1?x=1",
        time_ms=NOW,
        body_sha256=body_digest(b"abc"),
        nonce=b"n" * 16,
    )
    args.update(overrides)
    return sign_request(NODE_KEY, **args)


def _verify(
    headers: dict[str, str],
    *,
    target: str = "/v1/sync/logs/CN01/1?x=1",
    now: int = NOW,
    replay: ReplayCache | None = None,
    key=NODE_KEY,
) -> None:
    claims = parse_auth_headers(headers, method="POST", target=target)
    verify_request(claims, parse_public_key(public_key_text(key)), now_ms=now, replay=replay)


def test_signed_request_verifies_once() -> None:
    cache = ReplayCache()
    headers = _headers()
    _verify(headers, replay=cache)
    with pytest.raises(ReplayedRequest):
        _verify(headers, replay=cache)
    _verify(_headers(nonce=b"m" * 16), replay=cache)  # same request, new nonce: fine
    assert len(cache) == 2


@pytest.mark.parametrize("skew", [-300_001, 300_001])
def test_stale_requests_are_refused_either_way(skew: int) -> None:
    with pytest.raises(StaleRequest) as info:
        _verify(_headers(time_ms=NOW + skew))
    assert info.value.retryable


def test_every_signed_part_matters() -> None:
    with pytest.raises(BadRequestSignature):
        _verify(_headers(), target="/v1/sync/logs/CN01/1?x=2")
    with pytest.raises(BadRequestSignature):
        _verify(_headers(), key=OTHER_KEY)
    headers = _headers()
    headers["X-Motcua-Body"] = body_digest(b"abd")
    with pytest.raises(BadRequestSignature):
        _verify(headers)
    headers = _headers()
    headers["X-Motcua-Epoch"] = "2"
    with pytest.raises(BadRequestSignature):
        _verify(headers)


def test_missing_and_malformed_headers() -> None:
    headers = _headers()
    del headers["X-Motcua-Nonce"]
    with pytest.raises(AuthMissing):
        _verify(headers)
    for name, value in [
        ("X-Motcua-Time", "-5"),
        ("X-Motcua-Epoch", "01"),
        ("X-Motcua-Node", "cn01"),
        ("X-Motcua-Body", "A" * 64),
        ("X-Motcua-Signature", "x"),
    ]:
        headers = _headers()
        headers[name] = value
        with pytest.raises(AuthMalformed):
            _verify(headers)


def test_replay_cache_is_bounded() -> None:
    cache = ReplayCache(window_ms=1000, max_entries=3)
    for i in range(10):
        assert cache.check_and_add(f"s{i}", NOW, NOW)
    assert len(cache) <= 3
    cache.check_and_add("late", NOW + 5000, NOW + 5000)
    assert len(cache) == 1


def test_token_round_trip_and_damage() -> None:
    hub_pub = parse_public_key(public_key_text(HUB_KEY))
    token = InviteToken.new("http://127.0.0.1:8470/", hub_pub, "CN01")
    parsed = InviteToken.parse(token.encode())
    assert parsed == token and parsed.hub == "http://127.0.0.1:8470"
    text = token.encode()
    for bad in ("x" + text, text[:-3], text.replace("motcua1.", "motcua2."), "motcua1.e30"):
        with pytest.raises(TokenInvalid):
            InviteToken.parse(bad)


def test_enrollment_exchange_pins_the_hub_key() -> None:
    hub_pub = parse_public_key(public_key_text(HUB_KEY))
    token = InviteToken.new("http://hub", hub_pub, "CN01")
    request = EnrollmentRequest.from_wire(EnrollmentRequest.make(token, NODE_KEY).to_wire())
    assert request.verify().text == public_key_text(NODE_KEY)
    assert hashlib.sha256(request.secret_bytes()).hexdigest() == token.secret_sha256
    forged = EnrollmentRequest(request.node, public_key_text(OTHER_KEY), request.secret, request.proof)
    with pytest.raises(BadSignature):
        forged.verify()
    answer = sign_enrollment(
        HUB_KEY,
        node="CN01",
        epoch=2,
        key=request.key,
        kind="branch",
        name="Chi nhánh 1",
        hub_time=NOW,
        previous=Head("CN01", 1, 7, "a" * 64),
    )
    answer = Enrollment.from_wire(answer.to_wire())
    assert answer.verify(token, request.key) == hub_pub
    impostor = sign_enrollment(
        OTHER_KEY, node="CN01", epoch=2, key=request.key, kind="branch", name="x", hub_time=NOW, previous=None
    )
    with pytest.raises(BadSignature):
        impostor.verify(token, request.key)
    with pytest.raises(BadSignature):
        answer.verify(token, public_key_text(OTHER_KEY))


def test_manifest_checks_chunks_and_whole() -> None:
    data = bytes(range(256)) * 9000  # 2.2 MiB: three chunks, the last short
    manifest = Manifest.from_body(manifest_for_bytes(data, "application/pdf", 3).to_body())
    assert manifest.count == 3 and manifest.chunk_length(2) == len(data) - 2 * 1_048_576
    for i in range(3):
        manifest.check_chunk(i, data[i * 1_048_576 : (i + 1) * 1_048_576])
    flipped = bytearray(data[:1_048_576])
    flipped[100] ^= 1
    with pytest.raises(BlobMismatch):
        manifest.check_chunk(0, bytes(flipped))
    with pytest.raises(BlobMismatch):
        manifest.check_chunk(2, data[-10:])
    with pytest.raises(BlobMismatch):
        manifest.chunk_length(3)
    body = manifest.to_body()
    with pytest.raises(BlobMismatch):
        Manifest.from_body({**body, "chunks": body["chunks"][:2]})
    with pytest.raises(BlobMismatch):
        Manifest.from_body({**body, "chunk_size": 4096})


def test_hub_kind_validators() -> None:
    validate_body("hub.revocation", {"node": "VAN03", "epoch": 1, "after_seq": 40, "reason": "stolen"})
    with pytest.raises(BodyInvalid):
        validate_body("hub.revocation", {"node": "VAN03", "epoch": 0, "after_seq": 40, "reason": "x"})
    validate_body("hub.calendar", {"version": "2026.1", "calendar": {}})
    with pytest.raises(BodyInvalid):
        validate_body("hub.calendar", {"version": "2026.1", "calendar": []})
    decision = {"log": "CN01", "epoch": 1, "seq": 3, "hash": "a" * 64, "decision": "accepted", "note": ""}
    validate_body("hub.quarantine_decision", decision)
    with pytest.raises(BodyInvalid):
        validate_body("hub.quarantine_decision", {**decision, "decision": "maybe"})
    with pytest.raises(BodyInvalid):
        validate_body("hub.forward", {"entry": {"log": "CN01"}})
