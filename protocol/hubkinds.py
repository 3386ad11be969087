"""Entry kinds the hub writes in its own logs (``hub`` and ``hub.<NODE>``), with their body validators.

- ``hub.catalog``: ``{"version": str, "catalog": object}``, a new procedure catalog (broadcast);
- ``hub.calendar``: ``{"version": str, "calendar": object}``, a new working-day calendar (broadcast);
- ``hub.revocation``: ``{"node", "epoch", "after_seq", "reason"}``: entries of (node, epoch) after
  ``after_seq`` are not trusted; the node's key is refused from now on (broadcast);
- ``hub.quarantine_decision``: ``{"log", "epoch", "seq", "hash", "decision", "note"}``: a person's decision
  (``accepted`` or ``rejected``) on an entry quarantined for its body (to the node's mailbox);
- ``hub.node_released``: ``{"node", "reason"}``: a person reviewed the fork evidence of a quarantined node
  and lets it push again (to the node's mailbox);
- ``hub.forward``: ``{"entry": <entry object>}``: an entry of another hub mailbox, copied so that the
  pickup branch of a dossier received elsewhere sees the decision; or ``{"entry", "key"}``: an entry of
  another *node's* log (the reception of a dossier to be handed back here), with the public key the hub
  registered for that (node, epoch). Readers verify the inner entry with the hub key (or with ``key``,
  which the hub vouches for by signing the forward) and fold it under its own position (so it counts
  once, wherever it is read).
- ``hub.key_rotation``: ``{"key", "previous", "effective"}``: the hub's signing key changes from
  ``previous`` (which signs this entry) to ``key`` at hub time ``effective`` (ms). Written in ``hub`` and in
  every existing ``hub.<NODE>``; within a hub log every entry after it is signed by ``key`` (SPEC §7.10).
  ``rotated_key`` / ``verify_hub_chain`` follow it.
- ``hub.node_key_rotation``: ``{"request", "approvals", "effective"}``: the hub bound a node's new key
  (SPEC §7.11): ``request`` is the node's ``RotationRequest`` (signed by its old and new keys, both checked
  here), ``approvals`` the hub admins who approved it ``[{"admin", "at"}]`` (distinct, at least one),
  ``effective`` the hub time (ms) of the decision (broadcast).

Officer decisions on dossiers are ``dossier.*`` kinds (SPEC-dossier.md), written by the hub in mailboxes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from protocol.chain import ChainState, verify_chain
from protocol.encoding import b64url_decode, canonical
from protocol.entry import ENTRY_FIELDS, HASH_RE, LOG_RE, NODE_ID_RE, Entry
from protocol.errors import BadSignature, BodyInvalid, KeyMismatch, ProtocolError
from protocol.keyrotation import RotationRequest
from protocol.keys import PublicKey, parse_public_key

__all__ = [
    "HUB_KINDS",
    "HUB_VALIDATORS",
    "QUARANTINE_DECISIONS",
    "KEY_ROTATION",
    "NODE_KEY_ROTATION",
    "is_hub_log",
    "mailbox_log",
    "open_forward",
    "rotated_key",
    "verify_hub_chain",
]

KEY_ROTATION = "hub.key_rotation"
NODE_KEY_ROTATION = "hub.node_key_rotation"
_ADMIN_RE = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
QUARANTINE_DECISIONS = ("accepted", "rejected")
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def mailbox_log(node: str) -> str:
    """The hub's mailbox log for ``node``."""
    return f"hub.{node}"


def is_hub_log(log: str) -> bool:
    return log == "hub" or log.startswith("hub.")


def _exact(body: Mapping[str, Any], fields: set[str], kind: str) -> None:
    if body.keys() != fields:
        raise BodyInvalid(f"{kind} body has exactly " + ", ".join(sorted(fields)))


def _text(body: Mapping[str, Any], name: str, max_len: int, pattern: re.Pattern[str] | None = None) -> str:
    value = body[name]
    if (
        type(value) is not str
        or len(value) > max_len
        or (pattern is not None and not pattern.fullmatch(value))
    ):
        raise BodyInvalid(f"{name} is not a valid string", field=name)
    return value


def _int(body: Mapping[str, Any], name: str, low: int) -> int:
    value = body[name]
    if type(value) is not int or value < low:
        raise BodyInvalid(f"{name} must be an integer >= {low}", field=name)
    return value


def _versioned(payload: str) -> Callable[[Mapping[str, Any]], None]:
    def check(body: Mapping[str, Any]) -> None:
        _exact(body, {"version", payload}, f"hub.{payload}")
        _text(body, "version", 64, _VERSION_RE)
        if type(body[payload]) is not dict:
            raise BodyInvalid(f"{payload} must be an object", field=payload)

    return check


def _revocation(body: Mapping[str, Any]) -> None:
    _exact(body, {"node", "epoch", "after_seq", "reason"}, "hub.revocation")
    _text(body, "node", 32, NODE_ID_RE)
    _int(body, "epoch", 1)
    _int(body, "after_seq", 0)
    _text(body, "reason", 500)


def _quarantine_decision(body: Mapping[str, Any]) -> None:
    _exact(body, {"log", "epoch", "seq", "hash", "decision", "note"}, "hub.quarantine_decision")
    _text(body, "log", 40, LOG_RE)
    _int(body, "epoch", 1)
    _int(body, "seq", 1)
    _text(body, "hash", 64, HASH_RE)
    if body["decision"] not in QUARANTINE_DECISIONS:
        raise BodyInvalid("decision must be accepted or rejected", field="decision")
    _text(body, "note", 2000)


def _node_released(body: Mapping[str, Any]) -> None:
    _exact(body, {"node", "reason"}, "hub.node_released")
    _text(body, "node", 32, NODE_ID_RE)
    if not _text(body, "reason", 2000).strip():
        raise BodyInvalid("reason must not be blank", field="reason")


def _forward(body: Mapping[str, Any]) -> None:
    if body.keys() != {"entry"} and body.keys() != {"entry", "key"}:
        raise BodyInvalid("hub.forward body has exactly entry (and key for a node entry)")
    inner = body["entry"]
    if type(inner) is not dict or inner.keys() != ENTRY_FIELDS:
        raise BodyInvalid("entry must be a whole entry object", field="entry")
    log = inner["log"]
    if "key" not in body:
        if type(log) is not str or not log.startswith("hub."):
            raise BodyInvalid("only hub mailbox entries are forwarded without a key", field="entry")
        return
    if type(log) is not str or not NODE_ID_RE.fullmatch(log):
        raise BodyInvalid("a forward with a key carries an entry of a node log", field="entry")
    key = body["key"]
    if type(key) is not str or not _KEY_RE.fullmatch(key):
        raise BodyInvalid("key must be a public key (43 characters of base64url)", field="key")


def _key_rotation(body: Mapping[str, Any]) -> None:
    _exact(body, {"key", "previous", "effective"}, KEY_ROTATION)
    key = _text(body, "key", 43, _KEY_RE)
    if _text(body, "previous", 43, _KEY_RE) == key:
        raise BodyInvalid("key must differ from previous", field="key")
    _int(body, "effective", 0)


def _node_key_rotation(body: Mapping[str, Any]) -> None:
    _exact(body, {"request", "approvals", "effective"}, NODE_KEY_ROTATION)
    try:
        RotationRequest.from_wire(body["request"]).verify()
    except ProtocolError as exc:
        raise BodyInvalid(f"request: {exc.reason}", field="request") from None
    approvals = body["approvals"]
    if type(approvals) is not list or not 1 <= len(approvals) <= 64:
        raise BodyInvalid("approvals must be a list of 1 to 64 approvals", field="approvals")
    seen: set[str] = set()
    for approval in approvals:
        if (
            type(approval) is not dict
            or approval.keys() != {"admin", "at"}
            or type(approval["admin"]) is not str
            or not _ADMIN_RE.fullmatch(approval["admin"])
            or type(approval["at"]) is not int
            or approval["at"] < 0
        ):
            raise BodyInvalid("each approval is {admin, at}", field="approvals")
        if approval["admin"] in seen:
            raise BodyInvalid(f"admin {approval['admin']} approves twice", field="approvals")
        seen.add(approval["admin"])
    _int(body, "effective", 0)


HUB_VALIDATORS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "hub.catalog": _versioned("catalog"),
    "hub.calendar": _versioned("calendar"),
    "hub.revocation": _revocation,
    "hub.quarantine_decision": _quarantine_decision,
    "hub.node_released": _node_released,
    "hub.forward": _forward,
    KEY_ROTATION: _key_rotation,
    NODE_KEY_ROTATION: _node_key_rotation,
}
HUB_KINDS = frozenset(HUB_VALIDATORS)


def open_forward(body: Mapping[str, Any], hub_key: PublicKey) -> Entry:
    """The entry a ``hub.forward`` body carries, its signature checked: under the hub key for a hub
    mailbox entry, under the body's ``key`` (vouched for by the hub's signature on the forward) for a
    node entry. Raises ``BodyInvalid`` or ``BadSignature`` (or the decoding error of the inner entry)."""
    _forward(body)
    inner = Entry.parse(canonical(body["entry"]))
    key = hub_key if "key" not in body else parse_public_key(body["key"])
    try:
        signature = b64url_decode(inner.sig, length=64)
    except ValueError:
        raise BadSignature("forwarded entry: sig is not 64 bytes of base64url") from None
    if not key.verify(signature, inner.signable()):
        who = "the hub key" if "key" not in body else "the key the hub registered for it"
        raise BadSignature(f"forwarded entry {inner.log}/{inner.epoch}:{inner.seq} is not signed by {who}")
    return inner


def rotated_key(entry: Entry, current: PublicKey) -> PublicKey | None:
    """The key in force after ``entry`` in a hub log whose key in force was ``current``: None if ``entry``
    is not a ``hub.key_rotation`` (nothing changes), else its new ``key``. The caller has verified the
    entry's signature under ``current``. Raises ``BodyInvalid`` (malformed body, or a weak new key) or
    ``KeyMismatch`` (``previous`` is not ``current``: a rotation must name the key that signs it)."""
    if entry.kind != KEY_ROTATION:
        return None
    _key_rotation(entry.body)
    if entry.body["previous"] != current.text:
        raise KeyMismatch("hub.key_rotation names another previous key than the one that signs it")
    try:
        return parse_public_key(entry.body["key"])
    except ProtocolError as exc:
        raise BodyInvalid(f"key is not a usable public key: {exc.reason}", field="key") from None


def verify_hub_chain(state: ChainState, entries: Sequence[bytes | Entry]) -> ChainState:
    """``verify_chain`` for a hub log (SPEC §7.10): after each verified ``hub.key_rotation`` the next
    entries are verified under its new key. Failures carry ``index`` (0-based in ``entries``) as in
    ``verify_chain``; a bad rotation body is a ``BodyInvalid`` / ``KeyMismatch`` at its index."""
    marker = b'"kind":"' + KEY_ROTATION.encode() + b'"'
    start = 0
    for index, item in enumerate(entries):
        candidate = item.kind == KEY_ROTATION if isinstance(item, Entry) else marker in item
        if not candidate and index + 1 < len(entries):
            continue
        parsed: list[Entry] = []
        try:
            state = verify_chain(state, entries[start : index + 1], parsed=parsed)
        except ProtocolError as exc:
            exc.index = start + getattr(exc, "index", 0)  # type: ignore[attr-defined]
            raise
        start = index + 1
        try:
            new = rotated_key(parsed[-1], state.key)
        except ProtocolError as exc:
            exc.index = index  # type: ignore[attr-defined]
            raise
        if new is not None:
            state = replace(state, key=new)
    return state
