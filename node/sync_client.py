"""The node's sync client: ``sync_once()`` does one round (DESIGN.md §4); ``run()`` only schedules it.

One round, each step resumable and idempotent:

1. hello: ``GET /v1/sync/state`` (hub time, this node's status and epoch, the hub's heads);
2. push the node's own entries after the hub's head, in batches; keep every signed receipt;
3. pull ``hub`` and ``hub.<NODE>`` after the local heads; verify the hub's signatures and chain before
   storing them (with their projections, through ``LocalLog.store_hub_entries``);
4. blobs named by attachment entries the hub holds, oldest first: ask which chunks it lacks, send those
   (one at a time, ``?ack=later``), ask again: the hub's answer is the acknowledgement;
5. heartbeat.

Requests are signed (protocol.auth) with the node key; timestamps use the hub's clock as last seen
(``offset``), so a node with a wrong clock still authenticates. The transport is one method
(``Transport.request``) so tests can inject failures.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from protocol import (
    BlobMismatch,
    BlobNeed,
    ChainState,
    Entry,
    ErrorReply,
    Head,
    Heartbeat,
    HubState,
    Lease,
    LogHead,
    Manifest,
    ProtocolError,
    PublicKey,
    PushResult,
    Receipt,
    body_digest,
    canonical,
    decode,
    mailbox_log,
    open_forward,
    parse_public_key,
    sign_request,
    verify_hub_chain,
)
from protocol.keys import Ed25519PrivateKey

__all__ = [
    "SYNC_SQL",
    "HttpTransport",
    "LocalLog",
    "SyncClient",
    "SyncError",
    "SyncReport",
    "Transport",
]

log = logging.getLogger("motcua.node.sync")

SYNC_SQL = """
CREATE TABLE sync_receipts (
    log      TEXT NOT NULL,
    epoch    INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    head     TEXT NOT NULL,
    hub_time INTEGER NOT NULL,
    sig      TEXT NOT NULL,                -- hub signature: the node's proof the hub holds 1..seq
    PRIMARY KEY (log, epoch, seq)
) STRICT;

CREATE TABLE sync_state (
    key   TEXT PRIMARY KEY,               -- hub_status, hub_epoch, clock_offset_ms, last_error, last_ok_ms
    value TEXT NOT NULL
) STRICT;

CREATE TABLE sync_blobs (
    sha256  TEXT PRIMARY KEY,             -- blobs the hub holds whole
    done_ms INTEGER NOT NULL
) STRICT;
"""

BATCH = 1000  # entries per push (the hub allows 2000 by default)
BATCH_BYTES = 4 << 20  # bytes per push (the hub allows 8 MiB by default)
PUSH_DEPTH = 2  # pushes in flight
PAGE = 1000


class SyncError(Exception):
    """A sync round failed: ``code`` is the hub's reason (or a local one); ``retryable``: waiting helps."""

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        retryable: bool = True,
        status: int = 0,
        reply: ErrorReply | None = None,
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.reply = reply


class Transport(Protocol):
    async def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]: ...


MIN_UPLOAD_BYTES_PER_S = 4096
"""The slowest uplink a request body is given time for: a request's time limit is ``timeout`` plus its
body at this rate (a 1 MiB scan chunk: +256 s). A fixed 60 s limit made every chunk time out below
~17 kB/s (slow LTE, N4), and a timed-out chunk starts again from its first byte."""


@dataclass
class HttpTransport:
    """aiohttp transport to the hub at ``base`` (no trailing slash)."""

    base: str
    timeout: float = 60.0
    session: aiohttp.ClientSession | None = None

    async def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        # aiohttp re-sends a GET/PUT by itself on a new connection when a kept-alive one breaks, with the
        # same signed headers: the hub has seen that nonce and refuses it (401 replayed) only after the
        # whole body crossed the link again, so a reset cost two chunks on a slow uplink (N4). The round
        # fails instead and the next one resumes from the hub's view (``blobs/need``), signed afresh.
        # No public switch exists; aiohttp's own test client clears the same attribute.
        if getattr(self.session, "_retry_connection", False):
            self.session._retry_connection = False
        limit = aiohttp.ClientTimeout(total=self.timeout + len(body) / MIN_UPLOAD_BYTES_PER_S)
        try:
            async with self.session.request(
                method, self.base + target, data=body, headers=headers, timeout=limit
            ) as resp:
                return resp.status, await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SyncError("unreachable", f"hub unreachable: {exc!r}") from None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class LocalLog(Protocol):
    """What the sync client needs from the node's storage (implemented by ``node.sync_store``)."""

    async def own_entries_after(self, epoch: int, seq: int, limit: int) -> list[bytes]: ...
    async def own_head(self, epoch: int) -> Head: ...
    async def hub_head(self, log: str) -> tuple[int, str | None, tuple[int, int]]: ...
    async def store_hub_entries(self, entries: Sequence[Entry], pin: str | None = None) -> None: ...
    async def hub_keys(self, log: str) -> tuple[str | None, list[str]]: ...
    async def store_receipt(self, receipt: Receipt) -> None: ...
    async def pending_blobs(self, held_seq: int, epoch: int) -> list[Manifest]: ...
    async def read_chunk(self, manifest: Manifest, index: int) -> bytes: ...
    async def blob_done(self, sha256: str) -> None: ...
    # optional: ``async def blobs_done(self, shas: Sequence[str]) -> None`` records many in one transaction
    async def set_state(self, values: dict[str, str]) -> None: ...
    async def status(self) -> Heartbeat: ...


@dataclass
class SyncReport:
    pushed: int = 0
    duplicates: int = 0
    quarantined: list[int] = field(default_factory=list)
    pulled: int = 0
    chunks: int = 0
    status: str = "active"
    receipt: Receipt | None = None


@dataclass
class SyncClient:
    node: str
    epoch: int
    key: Ed25519PrivateKey
    hub_key: PublicKey
    local: LocalLog
    transport: Transport
    offset_ms: int = 0  # hub time minus local time, as last seen
    wall: Callable[[], int] = lambda: time.time_ns() // 1_000_000
    progress: Callable[[str, int, int], None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    batch_entries: int = BATCH
    batch_bytes: int = BATCH_BYTES
    push_depth: int = PUSH_DEPTH
    advanced: int = 0  # receipts stored + chunks accepted: a failed round that moved this made progress
    _hub_box: LogHead | None = None

    # -- requests ----------------------------------------------------------------------------------

    async def call(self, method: str, target: str, body: bytes = b"", *, digest: str | None = None) -> bytes:
        """One signed request; ``digest``: the body's hex SHA-256 when the caller already has it."""
        body_sha256 = body_digest(body) if digest is None else digest
        for attempt in (0, 1):
            headers = sign_request(
                self.key,
                node=self.node,
                epoch=self.epoch,
                method=method,
                target=target,
                time_ms=self.wall() + self.offset_ms,
                body_sha256=body_sha256,
            )
            status, payload = await self.transport.request(method, target, body, headers)
            if status < 300:
                return payload
            reply = _reply(payload)
            if reply is not None and reply.error in ("stale", "before_start") and attempt == 0:
                # before_start: signed before the hub (re)started; the hub refuses it since its replay
                # cache of the earlier run is gone. Re-sign with a fresh time (at least hub time) and nonce.
                self.offset_ms = reply.hub_time - self.wall()  # correct request times, never entries
                continue
            if reply is not None and reply.error == "replayed" and attempt == 0:
                # Our own signed request reached the hub twice: aiohttp re-sends an idempotent request
                # (GET, PUT) by itself when the connection breaks. Every sync call is idempotent, so
                # sign it again with a fresh nonce instead of failing the round.
                continue
            code = reply.error if reply is not None else f"http_{status}"
            reason = reply.reason if reply is not None else payload[:200].decode("utf-8", "replace")
            again = ("unreachable", "stale", "replayed", "before_start")
            retryable = status >= 500 or status in (409, 429) or code in again
            raise SyncError(code, reason, retryable=retryable, status=status, reply=reply)
        raise AssertionError("unreachable")

    # -- one round ---------------------------------------------------------------------------------

    async def sync_once(self) -> SyncReport:
        report = SyncReport()
        reached = False
        try:
            state = HubState.from_wire(decode(await self.call("GET", "/v1/sync/state"), max_bytes=None))
            reached = True
            self.offset_ms = state.hub_time - self.wall()
            report.status = state.status
            await self.local.set_state(
                {
                    "hub_status": state.status,
                    "hub_epoch": str(state.epoch),
                    "clock_offset_ms": str(self.offset_ms),
                }
            )
            if state.status == "revoked":
                raise SyncError("node_revoked", "the hub has revoked this node's key", retryable=False)
            held = state.log_head(self.node, self.epoch)
            self._hub_box = state.mailbox_head("hub")
            if state.status == "active":
                held = await self._push(held, report)
            for box in (state.mailbox_head("hub"), state.mailbox_head(mailbox_log(self.node))):
                report.pulled += await self._pull(box)
            report.chunks += await self._blobs(held)
            answer = await self.call(
                "POST", "/v1/sync/heartbeat", canonical((await self.local.status()).to_wire())
            )
            await self._keep_lease(answer)
        except SyncError as exc:
            await self.local.set_state({"last_error": f"{exc.code}: {exc.reason}"})
            if reached and exc.code not in _NO_FAILED_HEARTBEAT:
                await self._failed_heartbeat()
            raise
        await self.local.set_state({"last_error": "", "last_ok_ms": str(self.wall())})
        return report

    async def _failed_heartbeat(self) -> None:
        """The hub answered this round but a later step failed (413, 429, 5xx, a bad chunk): still tell it
        the node's status, with ``last_error`` and the backlog's age, so the dashboard shows "lagging" and
        why rather than only "offline" (the heartbeat is otherwise the round's last step). Best effort."""
        try:
            answer = await self.call(
                "POST", "/v1/sync/heartbeat", canonical((await self.local.status()).to_wire())
            )
            await self._keep_lease(answer)
        except SyncError as exc:
            log.debug("heartbeat after a failed round not sent: %s", exc)

    async def _keep_lease(self, answer: bytes) -> None:
        """Store the offline lease of the heartbeat answer (SPEC §7.12) once it verifies for this node."""
        try:
            value = decode(answer, max_bytes=64 * 1024)
        except ProtocolError:  # an older hub's answer carries nothing the node needs
            return
        raw = value.get("lease") if isinstance(value, dict) else None
        if raw is None:
            return
        try:
            lease = Lease.from_wire(raw)
            lease.verify(self.hub_key)
        except ProtocolError as exc:
            raise SyncError("bad_lease", f"the hub's lease does not verify: {exc}", retryable=False) from None
        if lease.node != self.node or lease.epoch != self.epoch:
            raise SyncError("bad_lease", f"lease for {lease.node}/{lease.epoch}", retryable=False)
        await self.local.set_state({"lease": canonical(lease.to_wire()).decode()})

    async def _push(self, held: LogHead, report: SyncReport) -> LogHead:
        """Push the entries after ``held`` in batches, ``push_depth`` requests in flight.

        Batches are cut at ``batch_entries`` entries and ``batch_bytes`` bytes (the hub's defaults allow
        2000 and 8 MiB; on 413 the batch is halved). While the hub verifies and commits one batch the
        next is already on the wire, so neither side waits for the other's round trip. Receipts are
        checked and stored in order; on ``seq_gap`` the batches in flight are dropped and the push
        resumes from the head the hub returned.
        """
        local = await self.local.own_head(self.epoch)
        if local.seq < held.seq:
            raise SyncError(
                "behind_hub",
                f"the hub holds {held.seq} entries of this epoch, this node {local.seq}: "
                "restore this node from the hub (motcua-node restore)",
                retryable=False,
            )
        if held.seq and held.head is not None:  # same length is not enough: the same history?
            mine = await self.local.own_entries_after(self.epoch, held.seq - 1, 1)
            if mine and Entry.parse(mine[0]).hash != held.head:
                raise SyncError(
                    "diverged",
                    f"the hub's entry {self.node}/{self.epoch}:{held.seq} differs from this node's: "
                    "two histories (an old backup or a copied disk was used)",
                    retryable=False,
                )
        target = f"/v1/sync/logs/{self.node}/{self.epoch}"
        after = held.seq  # acknowledged by a receipt
        sent = after  # sent, perhaps not acknowledged yet
        total = local.seq - after
        inflight: deque[tuple[asyncio.Task[bytes], int]] = deque()
        pending: list[bytes] = []  # read from the log, not sent yet (entries after ``sent``)
        try:
            while after < local.seq:
                while len(inflight) < self.push_depth and sent < local.seq:
                    if not pending:
                        pending = await self.local.own_entries_after(self.epoch, sent, PAGE)
                        if not pending:
                            break
                    count, size = 0, 0
                    for raw in pending[: self.batch_entries]:
                        if count and size + len(raw) + 1 > self.batch_bytes:
                            break
                        count, size = count + 1, size + len(raw) + 1
                    body = b"".join(raw + b"\n" for raw in pending[:count])
                    del pending[:count]
                    task = asyncio.create_task(self.call("POST", target, body))
                    sent += count
                    inflight.append((task, sent))
                if not inflight:
                    break
                task, last = inflight.popleft()
                try:
                    payload = await task
                except SyncError as exc:
                    await _cancel(inflight)
                    pending = []
                    if exc.code == "seq_gap" and exc.reply is not None and exc.reply.head is not None:
                        after = sent = exc.reply.head.seq  # resend from the hub's head
                        continue
                    if exc.status == 413 and self.batch_entries > 1:
                        self.batch_entries = max(1, min(self.batch_entries, last - after) // 2)
                        self.batch_bytes = max(1, self.batch_bytes // 2)
                        sent = after
                        continue
                    raise
                result = PushResult.from_wire(decode(payload, max_bytes=None))
                receipt = result.receipt
                if receipt is None:
                    raise SyncError("bad_reply", "push answered without a receipt", retryable=True)
                await self._verify_receipt(receipt)
                if (receipt.log, receipt.epoch) != (self.node, self.epoch) or receipt.seq < after:
                    raise SyncError("bad_reply", "receipt for another position", retryable=True)
                await self.local.store_receipt(receipt)
                self.advanced += 1
                report.receipt = receipt
                report.pushed += result.accepted
                report.duplicates += result.duplicates
                report.quarantined.extend(result.quarantined)
                after = receipt.seq
                if after > sent:  # the hub held more than was sent: skip ahead
                    await _cancel(inflight)
                    sent, pending = after, []
                if self.progress is not None:
                    self.progress("push", after - held.seq, total)
        finally:
            await _cancel(inflight)
        return LogHead(self.node, self.epoch, after, None)

    async def _verify_receipt(self, receipt: Receipt) -> None:
        """Under the pinned hub key; if that fails, the hub may have rotated its key: pull ``hub`` (which
        pins a new key only from a rotation verified under the pinned one) and check again."""
        try:
            receipt.verify(self.hub_key)
        except ProtocolError:
            if self._hub_box is None:
                raise
            pinned = self.hub_key
            await self._pull(self._hub_box)
            if self.hub_key == pinned:
                raise
            receipt.verify(self.hub_key)

    async def _pull(self, box: LogHead) -> int:
        pulled = 0
        while True:
            seq, head, last_time = await self.local.hub_head(box.log)
            if seq >= box.seq:
                return pulled
            payload = await self.call("GET", f"/v1/sync/mailbox/{box.log}?after={seq}&limit={PAGE}")
            raws = [line for line in payload.split(b"\n") if line]
            if not raws:
                return pulled
            in_force, known = await self.local.hub_keys(box.log)
            key = self.hub_key if in_force is None else parse_public_key(in_force)
            if seq == 0 and raws:  # a mailbox begun under an earlier key this node verified a rotation from
                named = Entry.parse(raws[0]).body.get("key")
                if named in known:
                    key = parse_public_key(str(named))
            state = ChainState(box.log, box.epoch, key, seq, head, last_time)
            try:
                # the hub's signatures and links, before anything is stored; keys change only at a
                # hub.key_rotation verified under the key in force (SPEC §7.10)
                verify_hub_chain(state, raws)
            except ProtocolError as exc:
                index = getattr(exc, "index", None)
                bad = None
                if isinstance(index, int) and index < len(raws):
                    try:
                        bad = Entry.parse(raws[index])
                    except ProtocolError:
                        pass
                if bad is not None and bad.kind == "hub.key_rotation":
                    raise SyncError(
                        "bad_key_rotation",
                        f"mailbox {box.log}: hub key rotation at seq {bad.seq} refused ({exc.code}: "
                        f"{exc.reason}); it is not signed by the pinned hub key {key.text}: nothing pinned",
                        retryable=False,
                    ) from None
                raise SyncError(exc.code, f"mailbox {box.log}: {exc.reason}", retryable=False) from None
            entries = [Entry.parse(raw) for raw in raws]
            keys = [self.hub_key, key, *(parse_public_key(k) for k in known)]
            pin = None
            current = self.hub_key  # follows every rotation of the run: a node offline across two or more
            for (
                entry
            ) in entries:  # rotations pins the last key of the chain, each verified under the one before
                if entry.kind == "hub.forward":
                    self._check_forward(entry, keys)
                elif entry.kind == "hub.key_rotation" and entry.body["previous"] == current.text:
                    pin = current = parse_public_key(str(entry.body["key"]))
                    keys.append(pin)
            await self.local.store_hub_entries(entries, None if pin is None else f"{self.epoch} {pin.text}")
            if pin is not None:
                log.warning("hub key rotated: pinned %s (was %s)", pin.text, self.hub_key.text)
                self.hub_key = pin
            pulled += len(entries)
            if self.progress is not None:
                self.progress(box.log, entries[-1].seq, box.seq)

    def _check_forward(self, entry: Entry, keys: Sequence[PublicKey] = ()) -> None:
        """A forwarded entry must be signed by a hub key (a hub mailbox entry: the pinned key or one this
        node verified a rotation from) or by the node key the hub names in the forward (a node's entry,
        e.g. the reception of a dossier handed back here)."""
        failure: ProtocolError | None = None
        for key in keys or (self.hub_key,):
            try:
                open_forward(entry.body, key)
                return
            except ProtocolError as exc:
                failure = exc
        assert failure is not None
        raise SyncError("bad_forward", f"{entry.position}: {failure.reason}", retryable=False) from None

    async def _blobs(self, held: LogHead) -> int:
        """Upload what the hub lacks, 200 blobs at a time: ask (``need``), send the missing chunks, ask
        again: the second answer is the acknowledgement (the hub answers ``need`` only once the chunks it
        has written are durable), and the blobs it holds whole are recorded in one local transaction."""
        manifests = await self.local.pending_blobs(held.seq, self.epoch)
        sent = 0
        for start in range(0, len(manifests), 200):
            group = manifests[start : start + 200]
            needs = await self._need(group)
            work = [
                (m, needs[m.sha256].missing)
                for m in group
                if m.sha256 in needs and needs[m.sha256].state != "unknown"
            ]
            done = [m.sha256 for m, missing in work if not missing]  # complete at the hub already
            todo = [(m, missing) for m, missing in work if missing]
            if todo:
                sent += await self._upload(todo, sent, sent + sum(len(missing) for _, missing in todo))
                acked = await self._need([m for m, _ in todo])
                for m, _ in todo:
                    if acked[m.sha256].state == "complete":
                        done.append(m.sha256)
                    else:  # the hub lost what it had not made durable yet (a crash): next round
                        log.warning(
                            "blob %s: the hub still lacks chunks %s after the upload",
                            m.sha256[:12],
                            list(acked[m.sha256].missing)[:8],
                        )
            await self._record(done)
        return sent

    async def _need(self, manifests: Sequence[Manifest]) -> dict[str, BlobNeed]:
        answer = decode(
            await self.call(
                "POST", "/v1/sync/blobs/need", canonical({"blobs": [m.sha256 for m in manifests]})
            ),
            max_bytes=None,
        )
        return {n.sha256: n for n in (BlobNeed.from_wire(v) for v in answer["blobs"])}

    async def _record(self, shas: Sequence[str]) -> None:
        """Record blobs the hub holds whole (one transaction when the local log can)."""
        if not shas:
            return
        many = getattr(self.local, "blobs_done", None)
        if many is not None:
            await many(shas)
            return
        for sha in shas:
            await self.local.blob_done(sha)

    async def _upload(self, work: list[tuple[Manifest, tuple[int, ...]]], sent: int, todo: int) -> int:
        """Upload the missing chunks one request at a time: an interruption costs at most the chunk on the
        wire (the hub makes every chunk it received whole durable, whether or not we are still there).

        Each chunk goes with ``?ack=later``: the hub answers once it has checked and written it, and makes
        it durable in groups meanwhile (the caller's second ``need`` is the acknowledgement), so the
        fsyncs of one chunk overlap the transfer of the next instead of adding to it. The next chunk is
        read and hashed (once: the hash is checked against the manifest and signed as the body digest)
        while this one is on the wire."""
        queue = [(m, i) for m, missing in work for i in missing]
        loads: dict[int, asyncio.Task[tuple[bytes, str]]] = {}

        def load(at: int) -> None:
            if at < len(queue) and at not in loads:
                loads[at] = asyncio.create_task(self._load_chunk(*queue[at]))

        uploaded = 0
        pos = 0
        try:
            while pos < len(queue):
                manifest, index = queue[pos]
                load(pos)
                load(pos + 1)
                chunk, digest = await loads.pop(pos)
                target = f"/v1/sync/blobs/{manifest.sha256}/{index}?ack=later"
                reply = decode(await self.call("PUT", target, chunk, digest=digest))
                uploaded += 1
                self.advanced += 1
                pos += 1
                if self.progress is not None:
                    self.progress("blobs", sent + uploaded, todo)
                if reply.get("complete"):  # the hub holds it whole: skip the rest of this blob
                    while pos < len(queue) and queue[pos][0] is manifest:
                        await _drop(loads.pop(pos, None))
                        pos += 1
        finally:
            for task in loads.values():
                await _drop(task)
        return uploaded

    async def _load_chunk(self, manifest: Manifest, index: int) -> tuple[bytes, str]:
        """Chunk ``index`` of a local blob and its SHA-256, checked against the manifest."""
        chunk = await self.local.read_chunk(manifest, index)
        digest = await asyncio.to_thread(_sha256_hex, chunk)
        _check_chunk(manifest, index, chunk, digest)
        return chunk, digest

    # -- scheduling --------------------------------------------------------------------------------

    def poke(self) -> None:
        """Call after appending an entry: the loop wakes up and syncs soon."""
        self.wake.set()

    async def run(
        self,
        *,
        interval: float = 30.0,
        base: float = 1.0,
        cap: float = 300.0,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        """Sync forever: after each success wait ``interval`` or a poke; after a failure back off
        exponentially with full jitter (``base`` doubling up to ``cap``). A failed round that still made
        progress (a receipt stored, a chunk accepted: a link reset in the middle of a long upload over a
        flaky uplink) starts the backoff again from its first step instead of growing it, so a van's
        upload is not left waiting minutes between chunks. Never raises but CancelledError."""
        failures = 0
        while True:
            self.wake.clear()
            before = self.advanced
            try:
                await self.sync_once()
                failures = 0
                delay = interval
            except SyncError as exc:
                failures = 1 if self.advanced != before else failures + 1
                delay = random.uniform(0, min(cap, base * 2 ** min(failures, 16)))
                if not exc.retryable:
                    delay = max(delay, interval)
                log.warning("sync failed (%s); next try in %.1f s", exc, delay)
            except Exception:  # noqa: BLE001 - a bug must not stop syncing for good
                failures = 1 if self.advanced != before else failures + 1
                delay = random.uniform(0, min(cap, base * 2 ** min(failures, 16)))
                log.exception("sync round crashed; next try in %.1f s", delay)
            if sleep is not None:
                await sleep(delay)
                continue
            if failures:  # back off: new entries do not cut the wait short while the hub is failing
                await asyncio.sleep(delay)
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
            except TimeoutError:
                pass


# A failed round sends no heartbeat when the link is gone or the hub refuses the node outright.
_NO_FAILED_HEARTBEAT = frozenset({"unreachable", "node_revoked", "node_quarantined", "unauthorized"})


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_chunk(manifest: Manifest, index: int, chunk: bytes, digest: str) -> None:
    """``Manifest.check_chunk`` with the chunk's SHA-256 already computed."""
    if len(chunk) != manifest.chunk_length(index) or digest != manifest.chunks[index]:
        raise BlobMismatch(f"chunk {index} of {manifest.sha256[:12]} does not match its manifest")


async def _drop(task: asyncio.Task[Any] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _cancel(inflight: deque[tuple[asyncio.Task[bytes], int]]) -> None:
    """Cancel the requests still in flight and wait for them (their errors do not matter any more)."""
    tasks = [task for task, _ in inflight]
    inflight.clear()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _reply(payload: bytes) -> ErrorReply | None:
    try:
        return ErrorReply.from_wire(decode(payload, max_bytes=None))
    except (ProtocolError, ValueError):
        return None
