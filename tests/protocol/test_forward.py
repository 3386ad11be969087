"""``hub.forward``: hub mailbox entries under the hub key, node entries under the key the hub vouches for."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import (
    BadSignature,
    BodyInvalid,
    Entry,
    generate_private_key,
    genesis_body,
    open_forward,
    parse_public_key,
    public_key_text,
    sign_entry,
    validate_body,
)
from tests.protocol.helpers import received


def _entry(key: Any, log: str, kind: str = "dossier.received", body: dict[str, Any] | None = None) -> Entry:
    return sign_entry(
        key,
        log=log,
        epoch=1,
        seq=2,
        prev="0" * 64,
        time=(1, 0),
        kind=kind,
        body=body if body is not None else received(),
    )


def test_hub_entry_forward_verifies_under_the_hub_key() -> None:
    hub = generate_private_key()
    hub_pub = parse_public_key(public_key_text(hub))
    inner = _entry(hub, "hub.CN01")
    body = {"entry": inner.to_dict()}
    validate_body("hub.forward", body)
    assert open_forward(body, hub_pub).hash == inner.hash
    other = parse_public_key(public_key_text(generate_private_key()))
    with pytest.raises(BadSignature):
        open_forward(body, other)


def test_node_entry_forward_needs_the_key_and_verifies_under_it() -> None:
    hub_pub = parse_public_key(public_key_text(generate_private_key()))
    node = generate_private_key()
    inner = _entry(node, "CN01")
    with pytest.raises(BodyInvalid):  # a node entry without its key is refused
        validate_body("hub.forward", {"entry": inner.to_dict()})
    body = {"entry": inner.to_dict(), "key": public_key_text(node)}
    validate_body("hub.forward", body)
    assert open_forward(body, hub_pub).hash == inner.hash
    wrong = {"entry": inner.to_dict(), "key": public_key_text(generate_private_key())}
    with pytest.raises(BadSignature):
        open_forward(wrong, hub_pub)
    with pytest.raises(BodyInvalid):  # a key is only for node entries
        hub_entry = _entry(node, "hub.CN01").to_dict()
        validate_body("hub.forward", {"entry": hub_entry, "key": public_key_text(node)})
    with pytest.raises(BodyInvalid):
        validate_body("hub.forward", {"entry": inner.to_dict(), "key": "short"})
    genesis = _entry(node, "CN01", "log.genesis", genesis_body("CN01", 1, public_key_text(node), None))
    opened = open_forward({"entry": genesis.to_dict(), "key": public_key_text(node)}, hub_pub)
    assert opened.kind == "log.genesis"
