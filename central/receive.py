"""Accept one push batch of a node's log: the checks of RELIABILITY.md §3.2, in order, failing closed.

1. who (authenticated by the sync API): only the node's own log, not revoked or quarantined, current epoch;
2. limits: bytes counted while streaming (by the API), entry count, per-node rate;
3. strict decoding of every line (NDJSON: one canonical entry and ``\\n`` per line);
4. anchoring against the stored head: identical overlap = duplicates; a *different validly signed* entry at
   a held seq = fork (evidence kept, node quarantined, alarm, refused); a gap = refused with the head;
5. chain verification of the new entries (every signature, every link; threads for Ed25519);
6. body validation per kind: failures are stored and quarantined, the rest moves on;
7. one durable transaction (entries, head, quarantine rows, receipt, side rows), then the signed receipt.

A refused batch changes nothing in the database (forks excepted: their evidence is the point).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from central.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    RateLimited,
    TooLarge,
    from_protocol,
)
from central.metrics import HubMetrics
from central.registry import NodeInfo, Registry
from central.store import EntryBatch, EntryRow, Extra, ForkEvidence, HeadRow, SqliteStore
from protocol import (
    BadGenesis,
    BodyInvalid,
    ChainState,
    Entry,
    Head,
    LogHead,
    ProtocolError,
    PublicKey,
    PushResult,
    SequenceGap,
    sign_receipt,
    validate_body,
    verify_chain,
    verify_next,
)
from protocol.keys import Ed25519PrivateKey

__all__ = ["BatchHook", "Receiver", "TokenBucket", "split_ndjson"]

# Builds extra statements for the commit transaction from the accepted entries (quarantined seqs given).
BatchHook = Callable[[str, int, Sequence[Entry], frozenset[int]], Extra | None]


def split_ndjson(body: bytes, max_entries: int) -> list[bytes]:
    """Lines of an NDJSON body: each ends with ``\\n``, none is empty."""
    if not body:
        raise BadRequest("bad_framing", "the push holds no entries")
    if not body.endswith(b"\n"):
        raise BadRequest("bad_framing", "every NDJSON line (the last one too) ends with \\n")
    lines = body[:-1].split(b"\n")
    if len(lines) > max_entries:
        raise TooLarge("too_many_entries", f"{len(lines)} entries in one push; at most {max_entries}")
    for index, line in enumerate(lines):
        if not line:
            raise BadRequest("bad_framing", f"line {index + 1} is empty")
    return lines


@dataclass
class TokenBucket:
    """Per-node entries/s budget with a burst of two seconds."""

    rate: float
    tokens: dict[str, float] = field(default_factory=dict)
    stamps: dict[str, float] = field(default_factory=dict)

    def take(self, node: str, amount: int) -> float:
        """Take ``amount``; return 0 if allowed, else the seconds to wait."""
        now = time.monotonic()
        burst = 2 * self.rate
        level = min(burst, self.tokens.get(node, burst) + (now - self.stamps.get(node, now)) * self.rate)
        self.stamps[node] = now
        if amount <= level or amount > burst and level >= burst:
            self.tokens[node] = level - amount
            return 0.0
        self.tokens[node] = level
        return (amount - level) / self.rate


@dataclass(eq=False)
class _Tail:
    """A verified batch on its way into the store: where it ends, and whether its commit has ended."""

    seq: int
    hash: str
    time: tuple[int, int]
    done: asyncio.Future[None]
    ok: bool = False


@dataclass
class Receiver:
    store: SqliteStore
    registry: Registry
    hub_key: Ed25519PrivateKey
    signature_pool: Executor
    driver_pool: Executor
    metrics: HubMetrics
    clock: Callable[[], int]
    max_entries: int = 2000
    rate: TokenBucket = field(default_factory=lambda: TokenBucket(20000.0))
    hooks: list[BatchHook] = field(default_factory=list)
    committed: list[Callable[[str, int, Sequence[Entry]], None]] = field(default_factory=list)
    _locks: dict[tuple[str, int], asyncio.Lock] = field(default_factory=dict)
    active: int = 0  # pushes being handled now (background work defers to them)
    last_push: float = 0.0  # time.monotonic() when the last push ended
    chunk: int = 32  # lines per parse-and-signature task on the signature pool
    _tails: dict[tuple[str, int], _Tail] = field(default_factory=dict)  # batch being committed, per log

    async def push(self, node: NodeInfo, log: str, epoch: int, body: bytes) -> PushResult:
        self.active += 1
        try:
            return await self._push(node, log, epoch, body)
        finally:
            self.active -= 1
            self.last_push = time.monotonic()

    def busy(self, quiet_s: float = 0.1) -> bool:
        """Pushes are coming in: one is being handled, or one ended less than ``quiet_s`` ago."""
        return self.active > 0 or time.monotonic() - self.last_push < quiet_s

    async def _push(self, node: NodeInfo, log: str, epoch: int, body: bytes) -> PushResult:
        if log != node.node:
            raise Forbidden("cross_node", f"{node.node} may push only its own log, not {log}")
        if node.status == "revoked":
            raise Forbidden("node_revoked", f"{node.node} is revoked: {node.reason}")
        if node.status == "quarantined":
            raise Forbidden("node_quarantined", f"{node.node} is quarantined: {node.reason}")
        if epoch != node.epoch:
            code = "epoch_sealed" if epoch < node.epoch else "wrong_epoch"
            raise Forbidden(code, f"{log} is at epoch {node.epoch}; epoch {epoch} takes no pushes")
        key = await self.registry.key(log, epoch)
        assert key is not None  # the node is enrolled at this epoch
        lines = split_ndjson(body, self.max_entries)
        wait = self.rate.take(node.node, len(lines))
        if wait > 0:
            raise RateLimited("rate_limited", "too many entries per second", retry_after=max(1, round(wait)))
        loop = asyncio.get_running_loop()
        lock = self._locks.setdefault((log, epoch), asyncio.Lock())
        async with lock:
            try:
                first = Entry.parse(lines[0]).seq
            except ProtocolError as exc:
                raise _at(exc, 0) from None
            before = self._tails.get((log, epoch))
            if before is not None and first == before.seq + 1 and not before.done.done():
                # The exact continuation of a batch still being committed: verify it against that batch's
                # last entry now, commit it after that batch (below, outside the lock).
                state = ChainState(log, epoch, key, before.seq, before.hash, before.time)
                held, duplicates = before.seq, 0
                new, rows, bad_bodies = await loop.run_in_executor(
                    self.driver_pool, self._verify, state, lines, 0, None
                )
            else:
                if before is not None:  # anything else starts from what is stored
                    await asyncio.shield(before.done)
                    before = None
                head = await self.store.head(log, epoch)
                held = head.seq if head is not None else 0
                if first > held + 1:
                    raise Conflict(
                        "seq_gap",
                        f"the hub holds {log}/{epoch} up to {held}; resend from {held + 1}",
                        head=_log_head(log, epoch, head),
                        index=0,
                    )
                overlap = min(len(lines), held - first + 1)
                if overlap:
                    known = await loop.run_in_executor(self.driver_pool, _parse_all, lines[:overlap])
                    duplicates = await self._overlap(node, key, log, epoch, known, head)
                else:
                    duplicates = 0
                if overlap == len(lines):
                    assert head is not None
                    receipt = await self.store.receipt(log, epoch, head.seq)
                    if receipt is None:  # every commit stores one; sign again only if the row is missing
                        receipt = sign_receipt(
                            self.hub_key, Head(log, epoch, head.seq, head.hash), self.clock()
                        )
                    self.metrics.duplicates.labels(log).inc(duplicates)
                    return PushResult(0, duplicates, (), receipt)
                state = (
                    ChainState.start(log, epoch, key)
                    if head is None
                    else ChainState(log, epoch, key, head.seq, head.hash, head.time)
                )
                previous = await self.registry.genesis_previous(log, epoch) if held == 0 else None
                new, rows, bad_bodies = await loop.run_in_executor(
                    self.driver_pool, self._verify, state, lines[overlap:], overlap, previous
                )
            last = new[-1]
            mine = _Tail(last.seq, last.hash, last.time, loop.create_future())
            self._tails[(log, epoch)] = mine
        # Outside the lock: the next batch of this log may be verified while this one is committed.
        # Commits stay in order (each waits for the one it continues) and every answer still comes
        # after its own durable commit.
        try:
            if before is not None:
                await asyncio.shield(before.done)
                if not before.ok:
                    head = await self.store.head(log, epoch)
                    stored = head.seq if head is not None else 0
                    raise Conflict(
                        "seq_gap",
                        f"the batch before this one was not stored: the hub holds {log}/{epoch} up to "
                        f"{stored}; resend from {stored + 1}",
                        head=_log_head(log, epoch, head),
                        index=0,
                    )
            result = await self._commit(log, epoch, held, new, rows, bad_bodies, duplicates)
            mine.ok = True
            return result
        finally:
            mine.done.set_result(None)
            if self._tails.get((log, epoch)) is mine:
                del self._tails[(log, epoch)]

    def _verify(
        self, state: ChainState, lines: list[bytes], offset: int, previous: Head | None
    ) -> tuple[list[Entry], list[EntryRow], dict[int, tuple[str, str]]]:
        """Parse, chain-verify and body-validate the new entries (in the driver thread).

        The run is cut into chunks of ``chunk`` lines; each task on the signature pool parses its chunk,
        checks each entry's signature (Ed25519 releases the GIL, so the pool's threads overlap one's
        parsing with another's signature), validates each body and builds its store row (small pieces
        of GIL-holding work between signatures, rather than one long run on the event loop); this thread
        checks the links in order as the chunks come back (``verify_chain`` with an executor). The error
        raised is the one a sequential verifier would name first (the first failing entry, its first check).
        """
        new: list[Entry] = []
        inspected: list[tuple[tuple[str, str] | None, EntryRow]] = []
        try:
            verify_chain(
                state,
                lines,
                executor=self.signature_pool,
                batch=self.chunk,
                parsed=new,
                inspect=_inspect,
                inspected=inspected,
            )
        except ProtocolError as exc:
            raise _at(exc, offset + getattr(exc, "index", 0)) from None
        bad = {row.seq: problem for problem, row in inspected if problem is not None}
        if new[0].seq == 1 and new[0].epoch >= 2:
            named = new[0].body["previous"]
            want = (
                None
                if previous is None
                else {"epoch": previous.epoch, "seq": previous.seq, "head": previous.hash}
            )
            if named != want:
                raise _at(BadGenesis(f"genesis must name the sealed head {want}, not {named}"), offset)
        return new, [row for _, row in inspected], bad

    async def _overlap(
        self, node: NodeInfo, key: PublicKey, log: str, epoch: int, entries: list[Entry], head: HeadRow | None
    ) -> int:
        """Count identical re-sent entries; a different one is checked, and if validly signed, a fork."""
        if not entries:
            return 0
        stored = await self.store.hashes(log, epoch, entries[0].seq, entries[-1].seq)
        for index, entry in enumerate(entries):
            held_hash = stored.get(entry.seq)
            if held_hash == entry.hash:
                continue
            assert held_hash is not None and head is not None
            await self._check_fork(node, key, log, epoch, entry, index, held_hash, head)
        return len(entries)

    async def _check_fork(
        self,
        node: NodeInfo,
        key: PublicKey,
        log: str,
        epoch: int,
        entry: Entry,
        index: int,
        held: str,
        head: HeadRow,
    ) -> None:
        if entry.seq == 1:
            state = ChainState.start(log, epoch, key)
        else:
            raw = await self.store.raw_entry(log, epoch, entry.seq - 1)
            assert raw is not None
            before = Entry.parse(raw)
            state = ChainState(log, epoch, key, before.seq, before.hash, before.time)
        try:
            verify_next(state, entry)  # a damaged or foreign entry is refused, not taken as evidence
        except ProtocolError as exc:
            raise _at(exc, index) from None
        await self.store.record_fork(
            ForkEvidence(log, epoch, entry.seq, held, entry.hash, entry.raw, node.node, self.clock())
        )
        raise Conflict(
            "fork",
            f"a different signed entry at {log}/{epoch}:{entry.seq} (held {held[:12]}, "
            f"offered {entry.hash[:12]}); {node.node} is quarantined",
            head=_log_head(log, epoch, head),
            index=index,
        )

    async def _commit(
        self,
        log: str,
        epoch: int,
        held: int,
        new: list[Entry],
        rows: list[EntryRow],
        bad: dict[int, tuple[str, str]],
        duplicates: int,
    ) -> PushResult:
        now = self.clock()
        last = new[-1]
        receipt = sign_receipt(self.hub_key, Head(log, epoch, last.seq, last.hash), now)
        batch = EntryBatch(
            log=log,
            epoch=epoch,
            base_seq=held,
            rows=rows,
            received_ms=now,
            receipt=receipt,
            quarantine=[
                (seq, _hash_at(new, seq), code, reason) for seq, (code, reason) in sorted(bad.items())
            ],
        )
        quarantined = frozenset(bad)
        for hook in self.hooks:
            extra = hook(log, epoch, new, quarantined)
            if extra is not None:
                batch.extra.append(extra)
        await self.store.commit(batch)
        self.metrics.entries.labels(log).inc(len(new))
        self.metrics.duplicates.labels(log).inc(duplicates)
        for code in {c for c, _ in bad.values()}:
            self.metrics.quarantined.labels(log, code).inc(sum(1 for c, _ in bad.values() if c == code))
        for listener in self.committed:
            listener(log, epoch, new)
        return PushResult(len(new), duplicates, tuple(sorted(bad)), receipt)


def _inspect(entry: Entry) -> tuple[tuple[str, str] | None, EntryRow]:
    """On the signature pool: (code, reason) when the body is not valid for its kind (it will be
    quarantined), and the entry's store row."""
    row = EntryRow(entry.seq, entry.hash, entry.kind, entry.time, _dossier_of(entry), entry.raw)
    try:
        validate_body(entry.kind, entry.body)
    except BodyInvalid as exc:
        return (exc.code, exc.reason), row
    return None, row


def _parse_all(lines: list[bytes]) -> list[Entry]:
    entries: list[Entry] = []
    for index, line in enumerate(lines):
        try:
            entry = Entry.parse(line)
        except ProtocolError as exc:
            raise _at(exc, index) from None
        if entries and entry.seq != entries[-1].seq + 1:
            raise _at(SequenceGap(expected=entries[-1].seq + 1, got=entry.seq), index)
        entries.append(entry)
    return entries


def _at(exc: ProtocolError, index: int) -> Exception:
    err = from_protocol(exc)
    err.index = index
    return err


def _hash_at(entries: list[Entry], seq: int) -> str:
    return entries[seq - entries[0].seq].hash


def _dossier_of(entry: Entry) -> str | None:
    if not entry.kind.startswith("dossier."):
        return None
    code = entry.body.get("dossier")
    return code if isinstance(code, str) and len(code) <= 64 else None


def _log_head(log: str, epoch: int, head: HeadRow | None) -> LogHead:
    return LogHead(log, epoch, 0, None) if head is None else LogHead(log, epoch, head.seq, head.hash)
