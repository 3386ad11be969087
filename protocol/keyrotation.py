"""Node key rotation as a threshold decision (SPEC §7.11): the request a node signs with its old and new
keys, and the status the hub answers while hub admins approve it.

A ``RotationRequest`` names (node, old epoch, old key, new key, new epoch = old epoch + 1, the old epoch's
final head, the node's time). The old key signs ``ROTATE_DOMAIN`` + canonical(fields) as ``sig`` (the
node that holds the key in force asks) and the new key signs the same bytes as ``new_sig`` (proof of
possession: nobody can rotate a node onto a key it does not hold). The hub binds the new key only after
``threshold`` distinct hub admins approved (node + new key fingerprint), then writes a signed
``hub.node_key_rotation`` entry (``protocol.hubkinds``) carrying the request and the approvals, and answers
the node's status query with the ``Enrollment`` of the new epoch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.encoding import b64url_decode, b64url_encode, canonical
from protocol.entry import HASH_RE, NODE_ID_RE
from protocol.errors import BadShape, BadSignature, ProtocolError
from protocol.keys import PublicKey, fingerprint, parse_public_key, public_key_text
from protocol.position import Head

__all__ = [
    "ROTATE_DOMAIN",
    "ROTATION_STATES",
    "RotationRequest",
    "RotationStatus",
]

ROTATE_DOMAIN = b"motcua/rotate/v1\x00"
ROTATION_STATES = ("pending", "accepted", "refused")
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{86}")
_ID_RE = re.compile(r"[0-9a-f]{64}")
_FP_RE = re.compile(r"[0-9a-f]{4}(?:-[0-9a-f]{4}){4}")
_MAX_INT = 2**53 - 1
_REQUEST_FIELDS = frozenset(
    {"node", "epoch", "key", "new_key", "new_epoch", "final", "time", "sig", "new_sig"}
)


def _int(value: object, low: int) -> bool:
    return type(value) is int and low <= value <= _MAX_INT


@dataclass(frozen=True, slots=True)
class RotationRequest:
    """A node's request to replace the key of ``epoch`` by ``new_key`` from ``new_epoch`` on.

    ``final_seq`` / ``final_head`` are the old epoch's last entry (where it ends: the hub must hold
    exactly that); ``time`` is the node's clock (ms, corrected by the hub offset), checked for freshness
    when the hub first sees the request."""

    node: str
    epoch: int
    key: str
    new_key: str
    new_epoch: int
    final_seq: int
    final_head: str | None
    time: int
    sig: str
    new_sig: str

    def fields(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "final": {"head": self.final_head, "seq": self.final_seq},
            "key": self.key,
            "new_epoch": self.new_epoch,
            "new_key": self.new_key,
            "node": self.node,
            "time": self.time,
        }

    def signable(self) -> bytes:
        return ROTATE_DOMAIN + canonical(self.fields())

    def to_wire(self) -> dict[str, Any]:
        return {**self.fields(), "new_sig": self.new_sig, "sig": self.sig}

    @property
    def id(self) -> str:
        """The request's identity: lower-case hex SHA-256 of its canonical wire form (signatures included)."""
        return hashlib.sha256(canonical(self.to_wire())).hexdigest()

    @property
    def final(self) -> Head:
        return Head(self.node, self.epoch, self.final_seq, self.final_head)

    @property
    def new_fingerprint(self) -> str:
        return fingerprint(self.new_key)

    @classmethod
    def make(
        cls,
        *,
        node: str,
        epoch: int,
        old_key: Ed25519PrivateKey,
        new_key: Ed25519PrivateKey,
        final: Head,
        time: int,
    ) -> RotationRequest:
        """Build and sign (old key, then new key) a request for (node, epoch) -> epoch + 1."""
        unsigned = cls(
            node=node,
            epoch=epoch,
            key=public_key_text(old_key),
            new_key=public_key_text(new_key),
            new_epoch=epoch + 1,
            final_seq=final.seq,
            final_head=final.hash,
            time=time,
            sig="",
            new_sig="",
        )
        message = unsigned.signable()
        return cls.from_wire(
            {
                **unsigned.fields(),
                "sig": b64url_encode(old_key.sign(message)),
                "new_sig": b64url_encode(new_key.sign(message)),
            }
        )

    @classmethod
    def from_wire(cls, value: object) -> RotationRequest:
        """Strict shape: exactly the fields, each of its type and form; ``BadShape`` names what is wrong."""
        if type(value) is not dict or value.keys() != _REQUEST_FIELDS:
            raise BadShape("rotation request must have exactly " + ", ".join(sorted(_REQUEST_FIELDS)))
        if type(value["node"]) is not str or not NODE_ID_RE.fullmatch(value["node"]):
            raise BadShape("rotation request node id is malformed")
        if not _int(value["epoch"], 1):
            raise BadShape("rotation request epoch must be an integer >= 1")
        if not _int(value["new_epoch"], 2) or value["new_epoch"] != value["epoch"] + 1:
            raise BadShape("rotation request new_epoch must be epoch + 1")
        for name in ("key", "new_key"):
            if type(value[name]) is not str or not _KEY_RE.fullmatch(value[name]):
                raise BadShape(f"rotation request {name} must be a public key (43 characters of base64url)")
        if value["key"] == value["new_key"]:
            raise BadShape("rotation request new_key must differ from key")
        for name in ("sig", "new_sig"):
            if type(value[name]) is not str or not _SIG_RE.fullmatch(value[name]):
                raise BadShape(f"rotation request {name} must be 64 bytes of base64url")
        if not _int(value["time"], 0):
            raise BadShape("rotation request time must be an integer >= 0 (ms)")
        final = value["final"]
        if type(final) is not dict or final.keys() != {"seq", "head"} or not _int(final["seq"], 0):
            raise BadShape("rotation request final must be {seq, head}")
        head = final["head"]
        if final["seq"] == 0:
            if head is not None:
                raise BadShape("rotation request final head must be null at seq 0")
        elif type(head) is not str or not HASH_RE.fullmatch(head):
            raise BadShape("rotation request final head must be a lower-case hex SHA-256")
        return cls(
            node=value["node"],
            epoch=value["epoch"],
            key=value["key"],
            new_key=value["new_key"],
            new_epoch=value["new_epoch"],
            final_seq=final["seq"],
            final_head=head,
            time=value["time"],
            sig=value["sig"],
            new_sig=value["new_sig"],
        )

    def verify(self) -> tuple[PublicKey, PublicKey]:
        """Check both signatures; return (old key, new key). ``BadSignature`` names the one that fails."""
        message = self.signable()
        keys: list[PublicKey] = []
        for name, key_text, sig in (("key", self.key, self.sig), ("new_key", self.new_key, self.new_sig)):
            try:
                key = parse_public_key(key_text)
            except ProtocolError as exc:
                reason = f"rotation request {name} is not a usable public key: {exc.reason}"
                raise BadSignature(reason) from None
            if not key.verify(b64url_decode(sig, length=64), message):
                which = "the old key (sig)" if name == "key" else "the new key (new_sig: proof of possession)"
                raise BadSignature(f"rotation request is not signed by {which}")
            keys.append(key)
        return keys[0], keys[1]


_STATUS_FIELDS = frozenset(
    {"id", "node", "status", "reason", "fingerprint", "approvals", "threshold", "enrollment"}
)


@dataclass(frozen=True, slots=True)
class RotationStatus:
    """The hub's answer about one request: ``pending`` (approvals so far, of ``threshold``), ``accepted``
    (with the hub-signed ``Enrollment`` of the new epoch, wire form) or ``refused`` (``reason`` names why:
    a stable code, a colon, words)."""

    id: str
    node: str
    status: str
    reason: str
    fingerprint: str
    approvals: int
    threshold: int
    enrollment: dict[str, Any] | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "approvals": self.approvals,
            "enrollment": self.enrollment,
            "fingerprint": self.fingerprint,
            "id": self.id,
            "node": self.node,
            "reason": self.reason,
            "status": self.status,
            "threshold": self.threshold,
        }

    @classmethod
    def from_wire(cls, value: object) -> RotationStatus:
        if type(value) is not dict or value.keys() != _STATUS_FIELDS:
            raise BadShape("rotation status must have exactly " + ", ".join(sorted(_STATUS_FIELDS)))
        ok = (
            type(value["id"]) is str
            and bool(_ID_RE.fullmatch(value["id"]))
            and type(value["node"]) is str
            and bool(NODE_ID_RE.fullmatch(value["node"]))
            and value["status"] in ROTATION_STATES
            and type(value["reason"]) is str
            and len(value["reason"]) <= 500
            and type(value["fingerprint"]) is str
            and bool(_FP_RE.fullmatch(value["fingerprint"]))
            and _int(value["approvals"], 0)
            and _int(value["threshold"], 1)
        )
        if not ok:
            raise BadShape("rotation status field types")
        enrollment = value["enrollment"]
        if (value["status"] == "accepted") != (type(enrollment) is dict):
            raise BadShape("rotation status carries an enrollment exactly when accepted")
        return cls(
            id=value["id"],
            node=value["node"],
            status=value["status"],
            reason=value["reason"],
            fingerprint=value["fingerprint"],
            approvals=value["approvals"],
            threshold=value["threshold"],
            enrollment=enrollment,
        )
