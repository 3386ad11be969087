"""Log entries: shape, signing bytes, hash.

An entry is one canonical JSON object
``{"v":1,"log","epoch","seq","prev","time":[ms,n],"kind","body","sig"}``.
``sig`` is Ed25519 over ``SIGN_DOMAIN + canonical(entry without "sig")``; the entry hash is the
lower-case hex SHA-256 of the canonical bytes of the whole entry (with ``sig``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.encoding import MAX_ENTRY_BYTES, MAX_SAFE_INT, b64url_encode, canonical, decode
from protocol.errors import BadShape, TooLarge
from protocol.position import Head, Position

__all__ = [
    "ENTRY_FIELDS",
    "GENESIS_KIND",
    "HASH_RE",
    "KIND_RE",
    "LOG_RE",
    "NODE_ID_RE",
    "SIGN_DOMAIN",
    "VERSION",
    "Entry",
    "entry_hash",
    "genesis_body",
    "sign_entry",
    "signable_bytes",
]

VERSION = 1
SIGN_DOMAIN = b"motcua/entry/v1\x00"
GENESIS_KIND = "log.genesis"
ENTRY_FIELDS = frozenset({"v", "log", "epoch", "seq", "prev", "time", "kind", "body", "sig"})
NODE_ID_RE = re.compile(r"[A-Z0-9][A-Z0-9-]{1,31}")
LOG_RE = re.compile(r"(?:hub\.)?[A-Z0-9][A-Z0-9-]{1,31}|hub")
KIND_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*){0,3}")
HASH_RE = re.compile(r"[0-9a-f]{64}")
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{86}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One signed log entry, with the exact canonical bytes it was parsed from or signed as."""

    v: int
    log: str
    epoch: int
    seq: int
    prev: str | None
    time: tuple[int, int]
    kind: str
    body: dict[str, Any]
    sig: str
    raw: bytes
    hash: str

    @classmethod
    def parse(cls, raw: bytes) -> Entry:
        """Strictly decode and shape-check one entry (no chain or signature checks)."""
        value = decode(raw)
        return cls.from_value(value, raw)

    @classmethod
    def from_value(cls, value: object, raw: bytes) -> Entry:
        if not isinstance(value, dict):
            raise BadShape("an entry is a JSON object")
        keys = value.keys()
        if keys != ENTRY_FIELDS:
            missing = sorted(ENTRY_FIELDS - keys)
            extra = sorted(keys - ENTRY_FIELDS)
            raise BadShape(f"missing fields {missing}" if missing else f"unknown fields {extra}")
        v, log, epoch, seq = value["v"], value["log"], value["epoch"], value["seq"]
        prev, time, kind, body, sig = value["prev"], value["time"], value["kind"], value["body"], value["sig"]
        if type(v) is not int:
            raise BadShape("v must be an integer")
        if type(log) is not str or (log not in _GOOD_LOGS and not _remember(_GOOD_LOGS, LOG_RE, log)):
            raise BadShape("log must be a log id such as CN01, hub or hub.CN01")
        if type(epoch) is not int or epoch < 1:
            raise BadShape("epoch must be an integer >= 1")
        if type(seq) is not int or seq < 1:
            raise BadShape("seq must be an integer >= 1")
        if prev is not None and (type(prev) is not str or not HASH_RE.fullmatch(prev)):
            raise BadShape("prev must be null or 64 lower-case hex digits")
        if (
            type(time) is not list
            or len(time) != 2
            or type(time[0]) is not int
            or type(time[1]) is not int
            or time[0] < 0
            or time[1] < 0
        ):
            raise BadShape("time must be [milliseconds, counter], both non-negative integers")
        if type(kind) is not str or (
            kind not in _GOOD_KINDS and (len(kind) > 64 or not _remember(_GOOD_KINDS, KIND_RE, kind))
        ):
            raise BadShape("kind must look like dossier.received")
        if type(body) is not dict:
            raise BadShape("body must be an object")
        if type(sig) is not str or not _SIG_RE.fullmatch(sig):
            raise BadShape("sig must be 64 bytes of unpadded base64url")
        return _build(
            v,
            log,
            epoch,
            seq,
            prev,
            (time[0], time[1]),
            kind,
            body,
            sig,
            raw,
            hashlib.sha256(raw).hexdigest(),
        )

    @property
    def position(self) -> Position:
        return Position(self.log, self.epoch, self.seq)

    @property
    def head(self) -> Head:
        return Head(self.log, self.epoch, self.seq, self.hash)

    def signable(self) -> bytes:
        """The bytes the signature covers, cut from ``raw`` (no re-encoding).

        In canonical key order every top-level key after ``sig`` (``time``, ``v``) holds only integers,
        so the last occurrence of ``,"sig":"<sig>"`` in ``raw`` is the top-level one.
        """
        needle = b',"sig":"' + self.sig.encode("ascii") + b'"'
        at = self.raw.rfind(needle)
        return SIGN_DOMAIN + self.raw[:at] + self.raw[at + len(needle) :]

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "log": self.log,
            "epoch": self.epoch,
            "seq": self.seq,
            "prev": self.prev,
            "time": [self.time[0], self.time[1]],
            "kind": self.kind,
            "body": self.body,
            "sig": self.sig,
        }

    def __str__(self) -> str:
        return f"{self.position} {self.kind} {self.hash[:12]}"


# Fast construction for Entry.from_value: the slots' own setters (the frozen dataclass's __init__ goes
# through object.__setattr__ per field, about twice the cost). Same object, same equality.
_set_v = Entry.__dict__["v"].__set__
_set_log = Entry.__dict__["log"].__set__
_set_epoch = Entry.__dict__["epoch"].__set__
_set_seq = Entry.__dict__["seq"].__set__
_set_prev = Entry.__dict__["prev"].__set__
_set_time = Entry.__dict__["time"].__set__
_set_kind = Entry.__dict__["kind"].__set__
_set_body = Entry.__dict__["body"].__set__
_set_sig = Entry.__dict__["sig"].__set__
_set_raw = Entry.__dict__["raw"].__set__
_set_hash = Entry.__dict__["hash"].__set__
_new_entry = object.__new__


def _build(
    v: int,
    log: str,
    epoch: int,
    seq: int,
    prev: str | None,
    time: tuple[int, int],
    kind: str,
    body: dict[str, Any],
    sig: str,
    raw: bytes,
    hash: str,
) -> Entry:
    entry: Entry = _new_entry(Entry)
    _set_v(entry, v)
    _set_log(entry, log)
    _set_epoch(entry, epoch)
    _set_seq(entry, seq)
    _set_prev(entry, prev)
    _set_time(entry, time)
    _set_kind(entry, kind)
    _set_body(entry, body)
    _set_sig(entry, sig)
    _set_raw(entry, raw)
    _set_hash(entry, hash)
    return entry


# Log ids and kinds already matched by their pattern (there are few of them): a set lookup instead of
# the regular expression per entry. Bounded: cleared when it grows past _REMEMBER_MAX.
_GOOD_LOGS: set[str] = set()
_GOOD_KINDS: set[str] = set()
_REMEMBER_MAX = 4096


def _remember(good: set[str], pattern: re.Pattern[str], text: str) -> bool:
    if not pattern.fullmatch(text):
        return False
    if len(good) >= _REMEMBER_MAX:
        good.clear()
    good.add(text)
    return True


def signable_bytes(fields: Mapping[str, Any]) -> bytes:
    """``SIGN_DOMAIN`` + canonical(entry without ``sig``): what the signature covers."""
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    return SIGN_DOMAIN + canonical(unsigned)


def entry_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def sign_entry(
    key: Ed25519PrivateKey,
    *,
    log: str,
    epoch: int,
    seq: int,
    prev: str | None,
    time: tuple[int, int],
    kind: str,
    body: Mapping[str, Any],
) -> Entry:
    """Build, sign and shape-check an entry; raises TooLarge over MAX_ENTRY_BYTES."""
    if not 0 <= time[0] <= MAX_SAFE_INT or not 0 <= time[1] <= MAX_SAFE_INT:
        raise BadShape("time out of range")
    fields: dict[str, Any] = {
        "v": VERSION,
        "log": log,
        "epoch": epoch,
        "seq": seq,
        "prev": prev,
        "time": [time[0], time[1]],
        "kind": kind,
        "body": dict(body),
    }
    signature = key.sign(signable_bytes(fields))
    fields["sig"] = b64url_encode(signature)
    raw = canonical(fields)
    if len(raw) > MAX_ENTRY_BYTES:
        raise TooLarge(f"entry of {len(raw)} bytes is over the limit of {MAX_ENTRY_BYTES}")
    return Entry.from_value(fields, raw)


def genesis_body(log: str, epoch: int, key_text: str, previous: Head | None = None) -> dict[str, Any]:
    """Body of entry 1 of an epoch; ``previous`` is the sealed head of the epoch before (epoch >= 2)."""
    return {
        "node": log,
        "epoch": epoch,
        "key": key_text,
        "previous": None
        if previous is None
        else {"epoch": previous.epoch, "seq": previous.seq, "head": previous.hash},
    }
