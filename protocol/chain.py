"""Chain verification: a pure function over a known head and a run of entries.

Checks, in this order, naming the first failure (DESIGN.md §3): canonical decoding and shape;
``v``; ``log``; ``epoch``; ``seq`` = previous + 1; ``prev`` = previous hash; ``time`` not before the
previous entry's; the Ed25519 signature by the key registered for (log, epoch); for seq 1, a
well-formed ``log.genesis`` naming that same key. Body validation per kind is a separate step
(``protocol.kinds``) whose failure quarantines an entry instead of breaking the chain.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import TypeVar

from protocol.entry import GENESIS_KIND, HASH_RE, VERSION, Entry
from protocol.errors import (
    BadGenesis,
    BadSignature,
    BadVersion,
    ChainBroken,
    KeyMismatch,
    ProtocolError,
    SequenceGap,
    TimeWentBackwards,
    WrongEpoch,
    WrongLog,
)
from protocol.keys import PublicKey
from protocol.position import Head

__all__ = ["ChainState", "check_genesis", "verify_chain", "verify_next"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChainState:
    """What a verifier knows about one log epoch: its key and the last verified entry."""

    log: str
    epoch: int
    key: PublicKey
    seq: int = 0
    head: str | None = None
    time: tuple[int, int] = (0, 0)

    @classmethod
    def start(cls, log: str, epoch: int, key: PublicKey) -> ChainState:
        """Before entry 1 of the epoch."""
        return cls(log=log, epoch=epoch, key=key)

    @property
    def as_head(self) -> Head:
        return Head(self.log, self.epoch, self.seq, self.head)


def check_genesis(entry: Entry, key: PublicKey) -> None:
    """Entry 1 of an epoch must be ``log.genesis`` naming the log, the epoch and the registered key."""
    if entry.kind != GENESIS_KIND:
        raise BadGenesis(f"entry 1 must be {GENESIS_KIND}, not {entry.kind}")
    body = entry.body
    if body.keys() != {"node", "epoch", "key", "previous"}:
        raise BadGenesis("genesis body must have exactly node, epoch, key, previous")
    if body["node"] != entry.log:
        raise BadGenesis(f"genesis names node {body['node']!r} in log {entry.log}")
    if type(body["epoch"]) is not int or body["epoch"] != entry.epoch:
        raise BadGenesis(f"genesis names epoch {body['epoch']!r} in epoch {entry.epoch}")
    if body["key"] != key.text:
        raise KeyMismatch("genesis names another key than the one registered for this log epoch")
    previous = body["previous"]
    if entry.epoch == 1:
        if previous is not None:
            raise BadGenesis("epoch 1 has no previous epoch")
        return
    if type(previous) is not dict or previous.keys() != {"epoch", "seq", "head"}:
        raise BadGenesis("genesis of epoch >= 2 must name the sealed head {epoch, seq, head}")
    p_epoch, p_seq, p_head = previous["epoch"], previous["seq"], previous["head"]
    if type(p_epoch) is not int or not 1 <= p_epoch < entry.epoch:
        raise BadGenesis("previous.epoch must be an earlier epoch")
    if type(p_seq) is not int or p_seq < 0:
        raise BadGenesis("previous.seq must be an integer >= 0")
    if (p_seq == 0) != (p_head is None) or (
        p_head is not None and (type(p_head) is not str or not HASH_RE.fullmatch(p_head))
    ):
        raise BadGenesis("previous.head must be the hex hash of entry previous.seq (null when seq is 0)")


def _check_links(state: ChainState | _Cursor, entry: Entry) -> None:
    """Every check that precedes the signature: version, log, epoch, seq, prev, time."""
    if entry.v != VERSION:
        raise BadVersion(f"version {entry.v} is not {VERSION}")
    if entry.log != state.log:
        raise WrongLog(f"entry of log {entry.log} in log {state.log}")
    if entry.epoch != state.epoch:
        raise WrongEpoch(f"entry of epoch {entry.epoch} in epoch {state.epoch}")
    if entry.seq != state.seq + 1:
        raise SequenceGap(expected=state.seq + 1, got=entry.seq)
    if entry.prev != state.head:
        raise ChainBroken(expected=state.head, got=entry.prev)
    if entry.time < state.time:
        raise TimeWentBackwards(f"time {list(entry.time)} is before {list(state.time)}")


_SIG_LAST = frozenset("AQgw")  # 64 bytes = 86 base64url characters; the last holds 2 bits + 4 zero bits


def _check_signature(key: PublicKey, entry: Entry) -> None:
    # Entry.parse already checked 86 base64url characters; only canonical trailing bits remain.
    if entry.sig[-1] not in _SIG_LAST:
        raise BadSignature("sig: non-canonical base64url (trailing bits set)")
    signature = binascii.a2b_base64(entry.sig.replace("-", "+").replace("_", "/") + "==")
    if not key.verify(signature, entry.signable()):
        raise BadSignature(f"signature of {entry.position} does not verify with the registered key")


def _check_kind(key: PublicKey, entry: Entry) -> None:
    """The checks after the signature: genesis at seq 1 and only there."""
    if entry.seq == 1:
        check_genesis(entry, key)
    elif entry.kind == GENESIS_KIND:
        raise BadGenesis(f"{GENESIS_KIND} is only allowed at seq 1")


def verify_next(state: ChainState, entry: Entry) -> ChainState:
    """Verify one already-parsed entry against the state; return the new state."""
    _check_links(state, entry)
    _check_signature(state.key, entry)
    _check_kind(state.key, entry)
    return replace(state, seq=entry.seq, head=entry.hash, time=entry.time)


def _fail(exc: ProtocolError, index: int, state: ChainState | _Cursor) -> ProtocolError:
    exc.index = index  # type: ignore[attr-defined]
    exc.state = state.materialize() if isinstance(state, _Cursor) else state  # type: ignore[attr-defined]
    return exc


def verify_chain(
    state: ChainState,
    entries: Iterable[bytes | Entry],
    *,
    executor: Executor | None = None,
    batch: int = 64,
    parsed: list[Entry] | None = None,
    inspect: Callable[[Entry], T] | None = None,
    inspected: list[T] | None = None,
) -> ChainState:
    """Verify a run of entries (raw canonical bytes or parsed) continuing ``state``.

    Returns the state after the last entry. On failure raises the precise ProtocolError with
    ``index`` (0-based offset in ``entries``) and ``state`` (the last good state) attached.

    With an ``executor`` (threads: Ed25519 verification releases the GIL), the run is cut into chunks of
    ``batch`` entries; each task parses its chunk and checks the signatures entry by entry, while the
    calling thread checks links and kinds in order as the chunks come back. The result and the error
    reported are exactly those of the sequential order: the first failing entry, and for it the first
    failing check.

    ``parsed``, an empty list if given, receives the parsed entries (a caller of raw bytes parses once).
    ``inspect``, if given, is called on every entry (on the executor's threads when there is one) and
    its results go to ``inspected`` in entry order: pure per-entry work that should share the cores.
    """
    if inspected is not None and inspect is None:
        raise ValueError("inspected needs inspect")
    if executor is None:
        return _verify_sequential(state, entries, parsed, inspect, inspected)
    return _verify_parallel(
        state, list(entries), executor, batch, [] if parsed is None else parsed, inspect, inspected
    )


def _verify_sequential(
    state: ChainState,
    entries: Iterable[bytes | Entry],
    parsed: list[Entry] | None,
    inspect: Callable[[Entry], T] | None = None,
    inspected: list[T] | None = None,
) -> ChainState:
    key = state.key
    last: Entry | None = None
    current = state
    for index, item in enumerate(entries):
        try:
            entry = Entry.parse(item) if isinstance(item, bytes) else item
            _check_links(current, entry)
            _check_signature(key, entry)
            _check_kind(key, entry)
        except ProtocolError as exc:
            raise _fail(exc, index, current) from None
        last = entry
        if parsed is not None:
            parsed.append(entry)
        if inspect is not None:
            result = inspect(entry)
            if inspected is not None:
                inspected.append(result)
        # Cheap stand-in state for the next link check; the real ChainState is built once at the end.
        current = _Cursor(current, entry)  # type: ignore[assignment]
    if last is None:
        return state
    return replace(state, seq=last.seq, head=last.hash, time=last.time)


class _Cursor:
    """Quacks like ChainState for ``_check_links`` without building a frozen dataclass per entry."""

    __slots__ = ("log", "epoch", "key", "seq", "head", "time", "_base")
    log: str
    epoch: int
    key: PublicKey
    seq: int
    head: str | None
    time: tuple[int, int]
    _base: ChainState

    def __init__(self, base: ChainState | _Cursor, entry: Entry) -> None:
        self._base = base._base if isinstance(base, _Cursor) else base
        self.log, self.epoch, self.key = base.log, base.epoch, base.key
        self.seq, self.head, self.time = entry.seq, entry.hash, entry.time

    def materialize(self) -> ChainState:
        return replace(self._base, seq=self.seq, head=self.head, time=self.time)


_PARSE, _SIGNATURE = 0, 2  # the phases a worker checks (links = 1 and kind = 3 stay with the caller)


def _parse_and_sign(
    key: PublicKey, items: list[bytes | Entry], inspect: Callable[[Entry], T] | None
) -> tuple[list[Entry], list[T], tuple[int, int, ProtocolError] | None]:
    """A worker's share: parse each item and check its signature, one entry after the other.

    Parsing (holds the GIL) and Ed25519 (releases it) alternate entry by entry, so two workers overlap
    one's parse with the other's signature. Stops at the first parse or signature failure and returns
    it as (index in ``items``, phase, error); the entries returned include the one whose signature
    failed (its link checks come first in the sequential order). ``inspect``, if given, runs on each
    entry whose signature verified.
    """
    entries: list[Entry] = []
    inspected: list[T] = []
    for index, item in enumerate(items):
        try:
            entry = Entry.parse(item) if isinstance(item, bytes) else item
        except ProtocolError as exc:
            return entries, inspected, (index, _PARSE, exc)
        entries.append(entry)
        try:
            _check_signature(key, entry)
        except ProtocolError as exc:
            return entries, inspected, (index, _SIGNATURE, exc)
        if inspect is not None:
            inspected.append(inspect(entry))
    return entries, inspected, None


def _verify_parallel(
    state: ChainState,
    items: list[bytes | Entry],
    executor: Executor,
    batch: int,
    parsed: list[Entry],
    inspect: Callable[[Entry], T] | None = None,
    inspected: list[T] | None = None,
) -> ChainState:
    """Workers parse and check signatures chunk by chunk; this thread checks links and kinds in order.

    The first failure is the sequential verifier's: entries are taken in order, and for each one its
    parse, links, signature and kind are looked at in that order.
    """
    key = state.key
    futures = [
        executor.submit(_parse_and_sign, key, items[at : at + batch], inspect)
        for at in range(0, len(items), batch)
    ]
    current: ChainState | _Cursor = state
    index = 0
    try:
        for future in futures:
            entries, results, failure = future.result()
            bad = len(entries) if failure is None else failure[0]
            for offset, entry in enumerate(entries):
                try:
                    _check_links(current, entry)
                    if offset == bad:  # its signature failed
                        assert failure is not None
                        raise failure[2]
                    _check_kind(key, entry)
                except ProtocolError as exc:
                    raise _fail(exc, index, current) from None
                parsed.append(entry)
                current = _Cursor(current, entry)
                index += 1
            if inspected is not None:
                inspected.extend(results)
            if failure is not None:  # a parse failure: every entry before it passed
                raise _fail(failure[2], index, current)
    finally:
        for future in futures:
            future.cancel()
    if isinstance(current, _Cursor):
        return current.materialize()
    return current
