"""The hub's offline lease: how long a node may show personal data without hearing from the hub (SPEC §7.12).

``{"node","epoch","issued","expires","sig"}``: ``sig`` is the hub's Ed25519 signature over
``"motcua/lease/v1" 0x00`` + canonical(lease without ``sig``). The hub issues a fresh lease in its answer
to every heartbeat of an active node; a revoked node gets none (its requests are refused). Past
``expires`` (by the node's clock) the node locks its personal-data views until a new lease arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.encoding import MAX_SAFE_INT, b64url_decode, b64url_encode, canonical
from protocol.entry import NODE_ID_RE
from protocol.errors import BadShape, BadSignature
from protocol.keys import PublicKey

__all__ = ["LEASE_DOMAIN", "LEASE_FIELDS", "MAX_LEASE_MS", "Lease", "sign_lease"]

LEASE_DOMAIN = b"motcua/lease/v1\x00"
LEASE_FIELDS = frozenset({"node", "epoch", "issued", "expires", "sig"})
MAX_LEASE_MS = 90 * 24 * 3600 * 1000  # a lease longer than 90 days is refused as malformed


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise BadShape(what)


@dataclass(frozen=True, slots=True)
class Lease:
    """The hub lets ``node`` (at ``epoch``) show personal data until ``expires`` (UTC ms)."""

    kind: ClassVar[str] = "lease"
    node: str
    epoch: int
    issued: int
    expires: int
    sig: str

    def fields(self) -> dict[str, Any]:
        return {"node": self.node, "epoch": self.epoch, "issued": self.issued, "expires": self.expires}

    def signable(self) -> bytes:
        return LEASE_DOMAIN + canonical(self.fields())

    def to_wire(self) -> dict[str, Any]:
        return {**self.fields(), "sig": self.sig}

    @classmethod
    def from_wire(cls, value: object) -> Lease:
        """Strict shape: exactly the five fields, a node id, integers in range, issued < expires."""
        _require(isinstance(value, dict), "lease must be an object")
        assert isinstance(value, dict)
        _require(value.keys() == LEASE_FIELDS, "lease fields")
        _require(type(value["node"]) is str and bool(NODE_ID_RE.fullmatch(value["node"])), "lease node")
        for name in ("epoch", "issued", "expires"):
            _require(type(value[name]) is int and 0 <= value[name] <= MAX_SAFE_INT, f"lease {name}")
        _require(value["epoch"] >= 1, "lease epoch")
        _require(value["issued"] < value["expires"] <= value["issued"] + MAX_LEASE_MS, "lease duration")
        _require(type(value["sig"]) is str and len(value["sig"]) == 86, "lease sig")
        return cls(value["node"], value["epoch"], value["issued"], value["expires"], value["sig"])

    def verify(self, hub_key: PublicKey) -> None:
        """Raise BadSignature unless the hub's key signed this lease."""
        try:
            signature = b64url_decode(self.sig, length=64)
        except ValueError as exc:
            raise BadSignature(f"lease sig: {exc}") from None
        if not hub_key.verify(signature, self.signable()):
            raise BadSignature(f"lease for {self.node}/{self.epoch} is not signed by the hub key")

    def valid_at(self, now_ms: int) -> bool:
        return now_ms < self.expires


def sign_lease(key: Ed25519PrivateKey, node: str, epoch: int, issued: int, expires: int) -> Lease:
    """The hub signs a lease (shape checked: the signed value is one ``from_wire`` accepts)."""
    unsigned = Lease(node, epoch, issued, expires, sig="")
    lease = Lease(node, epoch, issued, expires, b64url_encode(key.sign(unsigned.signable())))
    return Lease.from_wire(lease.to_wire())
