"""Typed sync messages and their wire form (canonical JSON through ``protocol.encoding`` only).

The hub answers every durable push with a ``Receipt``: a signed promise that it holds the log epoch up
to ``seq`` with head ``head``, as of ``hub_time``. Nodes keep receipts as proof; anyone with the hub's
public key can check them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.encoding import b64url_decode, b64url_encode, canonical
from protocol.entry import HASH_RE, LOG_RE
from protocol.errors import BadShape, BadSignature
from protocol.keys import PublicKey
from protocol.position import Head

__all__ = [
    "RECEIPT_DOMAIN",
    "HubState",
    "LogHead",
    "PushResult",
    "Receipt",
    "sign_receipt",
]

RECEIPT_DOMAIN = b"motcua/receipt/v1\x00"


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise BadShape(what)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Hub-signed acknowledgement: the hub durably holds ``log``/``epoch`` up to ``seq`` (hash ``head``)."""

    kind: ClassVar[str] = "receipt"
    log: str
    epoch: int
    seq: int
    head: str
    hub_time: int
    sig: str

    def fields(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "epoch": self.epoch,
            "seq": self.seq,
            "head": self.head,
            "hub_time": self.hub_time,
        }

    def signable(self) -> bytes:
        return RECEIPT_DOMAIN + canonical(self.fields())

    def to_wire(self) -> dict[str, Any]:
        return {**self.fields(), "sig": self.sig}

    @classmethod
    def from_wire(cls, value: object) -> Receipt:
        _require(isinstance(value, dict), "receipt must be an object")
        assert isinstance(value, dict)
        _require(value.keys() == {"log", "epoch", "seq", "head", "hub_time", "sig"}, "receipt fields")
        _require(type(value["log"]) is str and bool(LOG_RE.fullmatch(value["log"])), "receipt log")
        for name in ("epoch", "seq", "hub_time"):
            _require(type(value[name]) is int and value[name] >= 0, f"receipt {name}")
        _require(type(value["head"]) is str and bool(HASH_RE.fullmatch(value["head"])), "receipt head")
        _require(type(value["sig"]) is str, "receipt sig")
        return cls(**value)

    def verify(self, hub_key: PublicKey) -> None:
        """Raise BadSignature unless the hub's key signed this receipt."""
        try:
            signature = b64url_decode(self.sig, length=64)
        except ValueError as exc:
            raise BadSignature(f"receipt sig: {exc}") from None
        if not hub_key.verify(signature, self.signable()):
            raise BadSignature(f"receipt for {self.log}/{self.epoch}:{self.seq} is not signed by the hub key")

    @property
    def as_head(self) -> Head:
        return Head(self.log, self.epoch, self.seq, self.head)


def sign_receipt(key: Ed25519PrivateKey, head: Head, hub_time: int) -> Receipt:
    """The hub signs a receipt for a durably committed head."""
    if head.hash is None:
        raise BadShape("cannot sign a receipt for an empty log")
    unsigned = Receipt(head.log, head.epoch, head.seq, head.hash, hub_time, sig="")
    return Receipt(
        head.log, head.epoch, head.seq, head.hash, hub_time, b64url_encode(key.sign(unsigned.signable()))
    )


@dataclass(frozen=True, slots=True)
class LogHead:
    """What the hub holds of one log epoch (seq 0 and head None when nothing yet)."""

    log: str
    epoch: int
    seq: int
    head: str | None

    def to_wire(self) -> dict[str, Any]:
        return {"log": self.log, "epoch": self.epoch, "seq": self.seq, "head": self.head}

    @classmethod
    def from_wire(cls, value: object) -> LogHead:
        _require(
            isinstance(value, dict) and value.keys() == {"log", "epoch", "seq", "head"}, "log head fields"
        )
        assert isinstance(value, dict)
        _require(type(value["log"]) is str and bool(LOG_RE.fullmatch(value["log"])), "log head log")
        _require(type(value["epoch"]) is int and value["epoch"] >= 1, "log head epoch")
        _require(type(value["seq"]) is int and value["seq"] >= 0, "log head seq")
        head = value["head"]
        _require(head is None or (type(head) is str and bool(HASH_RE.fullmatch(head))), "log head hash")
        return cls(value["log"], value["epoch"], value["seq"], head)


@dataclass(frozen=True, slots=True)
class PushResult:
    """The hub's answer to one push batch."""

    kind: ClassVar[str] = "push_result"
    accepted: int
    duplicates: int
    quarantined: tuple[int, ...]
    receipt: Receipt | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": list(self.quarantined),
            "receipt": None if self.receipt is None else self.receipt.to_wire(),
        }

    @classmethod
    def from_wire(cls, value: object) -> PushResult:
        _require(isinstance(value, dict), "push result must be an object")
        assert isinstance(value, dict)
        _require(value.keys() == {"accepted", "duplicates", "quarantined", "receipt"}, "push result fields")
        _require(type(value["accepted"]) is int and type(value["duplicates"]) is int, "push result counts")
        q = value["quarantined"]
        _require(type(q) is list and all(type(s) is int for s in q), "push result quarantined")
        receipt = None if value["receipt"] is None else Receipt.from_wire(value["receipt"])
        return cls(value["accepted"], value["duplicates"], tuple(q), receipt)


@dataclass(frozen=True, slots=True)
class HubState:
    """Answer to hello: the hub's time, what it holds of the node's logs, and the node's mailbox heads."""

    kind: ClassVar[str] = "hub_state"
    hub_time: int
    logs: tuple[LogHead, ...] = field(default_factory=tuple)
    mailboxes: tuple[LogHead, ...] = field(default_factory=tuple)

    def to_wire(self) -> dict[str, Any]:
        return {
            "hub_time": self.hub_time,
            "logs": [h.to_wire() for h in self.logs],
            "mailboxes": [h.to_wire() for h in self.mailboxes],
        }

    @classmethod
    def from_wire(cls, value: object) -> HubState:
        _require(isinstance(value, dict) and value.keys() == {"hub_time", "logs", "mailboxes"}, "hub state")
        assert isinstance(value, dict)
        _require(type(value["hub_time"]) is int, "hub state hub_time")
        _require(type(value["logs"]) is list and type(value["mailboxes"]) is list, "hub state lists")
        return cls(
            value["hub_time"],
            tuple(LogHead.from_wire(h) for h in value["logs"]),
            tuple(LogHead.from_wire(h) for h in value["mailboxes"]),
        )
