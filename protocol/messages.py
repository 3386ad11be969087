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
from protocol.entry import HASH_RE, LOG_RE, NODE_ID_RE
from protocol.errors import BadShape, BadSignature
from protocol.keys import PublicKey
from protocol.position import Head

__all__ = [
    "BLOB_STATES",
    "HEARTBEAT_FIELDS",
    "NODE_STATUSES",
    "RECEIPT_DOMAIN",
    "BlobNeed",
    "ErrorReply",
    "Heartbeat",
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


NODE_STATUSES = ("active", "quarantined", "revoked")


@dataclass(frozen=True, slots=True)
class HubState:
    """Answer to hello: hub time, the node's status and epoch, the hub's heads of its logs and mailboxes."""

    kind: ClassVar[str] = "hub_state"
    hub_time: int
    node: str
    epoch: int
    status: str
    logs: tuple[LogHead, ...] = field(default_factory=tuple)
    mailboxes: tuple[LogHead, ...] = field(default_factory=tuple)

    def to_wire(self) -> dict[str, Any]:
        return {
            "hub_time": self.hub_time,
            "node": self.node,
            "epoch": self.epoch,
            "status": self.status,
            "logs": [h.to_wire() for h in self.logs],
            "mailboxes": [h.to_wire() for h in self.mailboxes],
        }

    @classmethod
    def from_wire(cls, value: object) -> HubState:
        keys = {"hub_time", "node", "epoch", "status", "logs", "mailboxes"}
        _require(isinstance(value, dict) and value.keys() == keys, "hub state fields")
        assert isinstance(value, dict)
        _require(type(value["hub_time"]) is int, "hub state hub_time")
        _require(type(value["node"]) is str and bool(NODE_ID_RE.fullmatch(value["node"])), "hub state node")
        _require(type(value["epoch"]) is int and value["epoch"] >= 1, "hub state epoch")
        _require(value["status"] in NODE_STATUSES, "hub state status")
        _require(type(value["logs"]) is list and type(value["mailboxes"]) is list, "hub state lists")
        return cls(
            value["hub_time"],
            value["node"],
            value["epoch"],
            value["status"],
            tuple(LogHead.from_wire(h) for h in value["logs"]),
            tuple(LogHead.from_wire(h) for h in value["mailboxes"]),
        )

    def log_head(self, log: str, epoch: int) -> LogHead:
        for head in self.logs:
            if head.log == log and head.epoch == epoch:
                return head
        return LogHead(log, epoch, 0, None)

    def mailbox_head(self, log: str) -> LogHead:
        for head in self.mailboxes:
            if head.log == log:
                return head
        return LogHead(log, 1, 0, None)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Every refusal: a machine-readable ``error`` code, a human ``reason``, the hub's time, and for
    push refusals the hub's head of the log and the 0-based ``index`` of the offending entry."""

    kind: ClassVar[str] = "error"
    error: str
    reason: str
    hub_time: int
    head: LogHead | None = None
    index: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "reason": self.reason,
            "hub_time": self.hub_time,
            "head": None if self.head is None else self.head.to_wire(),
            "index": self.index,
        }

    @classmethod
    def from_wire(cls, value: object) -> ErrorReply:
        keys = {"error", "reason", "hub_time", "head", "index"}
        _require(isinstance(value, dict) and value.keys() == keys, "error reply fields")
        assert isinstance(value, dict)
        _require(type(value["error"]) is str and type(value["reason"]) is str, "error reply text")
        _require(type(value["hub_time"]) is int, "error reply hub_time")
        _require(value["index"] is None or type(value["index"]) is int, "error reply index")
        head = None if value["head"] is None else LogHead.from_wire(value["head"])
        return cls(value["error"], value["reason"], value["hub_time"], head, value["index"])


BLOB_STATES = ("complete", "partial", "missing", "unknown")


@dataclass(frozen=True, slots=True)
class BlobNeed:
    """What the hub holds of one blob: ``missing`` lists the chunk indexes it still needs.

    ``unknown`` means no entry the asking node may see references the blob (push its metadata first)."""

    sha256: str
    state: str
    missing: tuple[int, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "state": self.state, "missing": list(self.missing)}

    @classmethod
    def from_wire(cls, value: object) -> BlobNeed:
        _require(isinstance(value, dict) and value.keys() == {"sha256", "state", "missing"}, "blob need")
        assert isinstance(value, dict)
        _require(type(value["sha256"]) is str and bool(HASH_RE.fullmatch(value["sha256"])), "blob sha256")
        _require(value["state"] in BLOB_STATES, "blob state")
        missing = value["missing"]
        _require(type(missing) is list and all(type(i) is int and i >= 0 for i in missing), "blob missing")
        return cls(value["sha256"], value["state"], tuple(missing))


_HEARTBEAT_INTS = ("unacked_entries", "unacked_bytes", "disk_free_bytes", "clock_ms")
HEARTBEAT_FIELDS = frozenset(
    {*_HEARTBEAT_INTS, "version", "heads", "oldest_unacked_ms", "printers", "scanners", "last_error"}
)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The node's status (DESIGN.md §4 step 5); ``printers``/``scanners`` are small objects with a state."""

    version: str
    heads: tuple[LogHead, ...]
    unacked_entries: int
    unacked_bytes: int
    oldest_unacked_ms: int | None
    disk_free_bytes: int
    printers: tuple[dict[str, Any], ...]
    scanners: tuple[dict[str, Any], ...]
    clock_ms: int
    last_error: str | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "heads": [h.to_wire() for h in self.heads],
            "unacked_entries": self.unacked_entries,
            "unacked_bytes": self.unacked_bytes,
            "oldest_unacked_ms": self.oldest_unacked_ms,
            "disk_free_bytes": self.disk_free_bytes,
            "printers": [dict(p) for p in self.printers],
            "scanners": [dict(s) for s in self.scanners],
            "clock_ms": self.clock_ms,
            "last_error": self.last_error,
        }

    @classmethod
    def from_wire(cls, value: object) -> Heartbeat:
        _require(isinstance(value, dict) and value.keys() == HEARTBEAT_FIELDS, "heartbeat fields")
        assert isinstance(value, dict)
        _require(type(value["version"]) is str and len(value["version"]) <= 64, "heartbeat version")
        for name in _HEARTBEAT_INTS:
            _require(type(value[name]) is int and value[name] >= 0, f"heartbeat {name}")
        oldest = value["oldest_unacked_ms"]
        _require(oldest is None or (type(oldest) is int and oldest >= 0), "heartbeat oldest_unacked_ms")
        error = value["last_error"]
        _require(error is None or (type(error) is str and len(error) <= 2000), "heartbeat last_error")
        _require(type(value["heads"]) is list and len(value["heads"]) <= 64, "heartbeat heads")
        for name in ("printers", "scanners"):
            items = value[name]
            _require(type(items) is list and len(items) <= 64, f"heartbeat {name}")
            _require(all(type(i) is dict for i in items), f"heartbeat {name} items")
        return cls(
            value["version"],
            tuple(LogHead.from_wire(h) for h in value["heads"]),
            value["unacked_entries"],
            value["unacked_bytes"],
            oldest,
            value["disk_free_bytes"],
            tuple(value["printers"]),
            tuple(value["scanners"]),
            value["clock_ms"],
            error,
        )
