"""Enrollment: the one-time invite token and the signed exchange that binds (node, epoch, key).

An admin runs ``motcua-central node invite CN01`` and hands the printed token to whoever installs the
node. The token is ``motcua1.`` + base64url(canonical({"fp","hub","node","secret"})): the hub URL, the
fingerprint of the hub's public key (so the node can pin the key it is given), the node id and 32 random
bytes. The hub keeps only SHA-256(secret).

The node proves it holds its new private key by signing ``ENROLL_DOMAIN`` + canonical({"key","node",
"secret_sha256"}) and posts ``{"node","key","secret","proof"}`` to ``/v1/enroll``. The hub answers with an
``Enrollment`` signed by the hub key: (node, epoch, key, hub key, sealed head of the previous epoch,
hub time). The node checks the hub key against the token's fingerprint, then the signature.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.encoding import b64url_decode, b64url_encode, canonical, decode
from protocol.entry import HASH_RE, NODE_ID_RE
from protocol.errors import BadShape, BadSignature, DecodeError, ProtocolError
from protocol.keys import PublicKey, fingerprint, parse_public_key, public_key_text
from protocol.position import Head

__all__ = [
    "ENROLL_DOMAIN",
    "ENROLLMENT_DOMAIN",
    "NODE_KINDS",
    "TOKEN_PREFIX",
    "Enrollment",
    "EnrollmentRequest",
    "InviteToken",
    "TokenInvalid",
    "sign_enrollment",
]

TOKEN_PREFIX = "motcua1."
ENROLL_DOMAIN = b"motcua/enroll/v1\x00"
ENROLLMENT_DOMAIN = b"motcua/enrollment/v1\x00"
_FP_RE = re.compile(r"[0-9a-f]{4}(?:-[0-9a-f]{4}){4}")
NODE_KINDS = ("branch", "van", "point")


class TokenInvalid(ProtocolError):
    """An enrollment token cannot be read (wrong prefix, encoding or fields)."""

    code = "token_invalid"


def _hub_url_ok(url: object) -> bool:
    if type(url) is not str or len(url) > 512:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.query and not parts.fragment


@dataclass(frozen=True, slots=True)
class InviteToken:
    """What an invite token carries; ``secret`` is 32 raw bytes."""

    hub: str
    fp: str
    node: str
    secret: bytes

    @classmethod
    def new(cls, hub: str, hub_key: PublicKey, node: str) -> InviteToken:
        return cls(hub=hub.rstrip("/"), fp=fingerprint(hub_key), node=node, secret=os.urandom(32))

    @property
    def secret_sha256(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()

    def encode(self) -> str:
        body = {"fp": self.fp, "hub": self.hub, "node": self.node, "secret": b64url_encode(self.secret)}
        return TOKEN_PREFIX + b64url_encode(canonical(body))

    @classmethod
    def parse(cls, text: str) -> InviteToken:
        text = text.strip()
        if not text.startswith(TOKEN_PREFIX):
            raise TokenInvalid(f"an enrollment token starts with {TOKEN_PREFIX}")
        try:
            value = decode(b64url_decode(text[len(TOKEN_PREFIX) :]), max_bytes=2048)
        except (ValueError, DecodeError):
            raise TokenInvalid("the token is damaged (copy it again, whole)") from None
        if type(value) is not dict or value.keys() != {"fp", "hub", "node", "secret"}:
            raise TokenInvalid("the token does not have the fields fp, hub, node, secret")
        if not _hub_url_ok(value["hub"]):
            raise TokenInvalid("the token's hub is not an http(s) URL")
        if type(value["fp"]) is not str or not _FP_RE.fullmatch(value["fp"]):
            raise TokenInvalid("the token's hub fingerprint is malformed")
        if type(value["node"]) is not str or not NODE_ID_RE.fullmatch(value["node"]):
            raise TokenInvalid("the token's node id is malformed")
        try:
            secret = b64url_decode(value["secret"], length=32)
        except (ValueError, TypeError):
            raise TokenInvalid("the token's secret is malformed") from None
        return cls(hub=value["hub"], fp=value["fp"], node=value["node"], secret=secret)


@dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    """What a node posts to ``/v1/enroll``: its id, new public key, the token secret and a proof."""

    node: str
    key: str
    secret: str
    proof: str

    @staticmethod
    def _signable(node: str, key: str, secret: bytes) -> bytes:
        digest = hashlib.sha256(secret).hexdigest()
        return ENROLL_DOMAIN + canonical({"key": key, "node": node, "secret_sha256": digest})

    @classmethod
    def make(cls, token: InviteToken, private_key: Ed25519PrivateKey) -> EnrollmentRequest:
        key = public_key_text(private_key)
        proof = b64url_encode(private_key.sign(cls._signable(token.node, key, token.secret)))
        return cls(node=token.node, key=key, secret=b64url_encode(token.secret), proof=proof)

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.key, "node": self.node, "proof": self.proof, "secret": self.secret}

    @classmethod
    def from_wire(cls, value: object) -> EnrollmentRequest:
        if type(value) is not dict or value.keys() != {"key", "node", "proof", "secret"}:
            raise BadShape("enrollment request must have exactly key, node, proof, secret")
        if not all(type(v) is str for v in value.values()):
            raise BadShape("enrollment request fields are strings")
        if not NODE_ID_RE.fullmatch(value["node"]):
            raise BadShape("enrollment request node id")
        return cls(node=value["node"], key=value["key"], secret=value["secret"], proof=value["proof"])

    def secret_bytes(self) -> bytes:
        try:
            return b64url_decode(self.secret, length=32)
        except ValueError:
            raise BadShape("enrollment secret must be 32 bytes of base64url") from None

    def verify(self) -> PublicKey:
        """Check the proof of possession; return the node's public key."""
        key = parse_public_key(self.key)
        try:
            signature = b64url_decode(self.proof, length=64)
        except ValueError:
            raise BadSignature("enrollment proof is not 64 bytes of base64url") from None
        if not key.verify(signature, self._signable(self.node, self.key, self.secret_bytes())):
            raise BadSignature("enrollment proof does not verify with the key offered")
        return key


@dataclass(frozen=True, slots=True)
class Enrollment:
    """The hub's signed answer: ``node`` is enrolled for ``epoch`` with ``key``; the hub's key is ``hub_key``.

    ``previous`` is the sealed head of the epoch before (None at epoch 1): the genesis of ``epoch``
    must name exactly it.
    """

    node: str
    epoch: int
    key: str
    kind: str
    name: str
    hub_key: str
    hub_time: int
    previous: Head | None
    sig: str

    def fields(self) -> dict[str, Any]:
        previous = None
        if self.previous is not None:
            previous = {"epoch": self.previous.epoch, "seq": self.previous.seq, "head": self.previous.hash}
        return {
            "epoch": self.epoch,
            "hub_key": self.hub_key,
            "hub_time": self.hub_time,
            "key": self.key,
            "kind": self.kind,
            "name": self.name,
            "node": self.node,
            "previous": previous,
        }

    def signable(self) -> bytes:
        return ENROLLMENT_DOMAIN + canonical(self.fields())

    def to_wire(self) -> dict[str, Any]:
        return {**self.fields(), "sig": self.sig}

    @classmethod
    def from_wire(cls, value: object) -> Enrollment:
        fields = {"epoch", "hub_key", "hub_time", "key", "kind", "name", "node", "previous", "sig"}
        if type(value) is not dict or value.keys() != fields:
            raise BadShape("enrollment must have exactly " + ", ".join(sorted(fields)))
        ok = (
            type(value["node"]) is str
            and bool(NODE_ID_RE.fullmatch(value["node"]))
            and type(value["epoch"]) is int
            and value["epoch"] >= 1
            and all(type(value[k]) is str for k in ("hub_key", "key", "kind", "name", "sig"))
            and type(value["hub_time"]) is int
        )
        if not ok:
            raise BadShape("enrollment field types")
        previous = value["previous"]
        head: Head | None = None
        if previous is not None:
            if (
                type(previous) is not dict
                or previous.keys() != {"epoch", "seq", "head"}
                or type(previous["epoch"]) is not int
                or type(previous["seq"]) is not int
                or not (
                    previous["head"] is None
                    or (type(previous["head"]) is str and HASH_RE.fullmatch(previous["head"]))
                )
            ):
                raise BadShape("enrollment previous must be {epoch, seq, head}")
            head = Head(value["node"], previous["epoch"], previous["seq"], previous["head"])
        return cls(
            node=value["node"],
            epoch=value["epoch"],
            key=value["key"],
            kind=value["kind"],
            name=value["name"],
            hub_key=value["hub_key"],
            hub_time=value["hub_time"],
            previous=head,
            sig=value["sig"],
        )

    def verify(self, token: InviteToken, node_key: str) -> PublicKey:
        """Pin the hub key by the token's fingerprint, check the signature and the binding; return it."""
        hub_key = parse_public_key(self.hub_key)
        if fingerprint(hub_key) != token.fp:
            raise BadSignature(
                f"the hub's key {fingerprint(hub_key)} is not the key {token.fp} named in the token"
            )
        try:
            signature = b64url_decode(self.sig, length=64)
        except ValueError:
            raise BadSignature("enrollment sig is not 64 bytes of base64url") from None
        if not hub_key.verify(signature, self.signable()):
            raise BadSignature("enrollment is not signed by the hub key")
        if self.node != token.node or self.key != node_key:
            raise BadSignature("enrollment binds another node or key than the one requested")
        return hub_key


def sign_enrollment(
    hub_key: Ed25519PrivateKey,
    *,
    node: str,
    epoch: int,
    key: str,
    kind: str,
    name: str,
    hub_time: int,
    previous: Head | None,
) -> Enrollment:
    unsigned = Enrollment(node, epoch, key, kind, name, public_key_text(hub_key), hub_time, previous, "")
    sig = b64url_encode(hub_key.sign(unsigned.signable()))
    return Enrollment(node, epoch, key, kind, name, unsigned.hub_key, hub_time, previous, sig)
