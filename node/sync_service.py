"""The node's sync with the hub, wired into the running node: the client, its storage, the loop, the status.

``SyncService.open(node)`` builds the sync client of ``node.sync_client`` over the node's store when the
node is enrolled (``hub_link``) and a hub URL is configured; the app starts it in ``cleanup_ctx``:

1. a bounded **preflight** (hello only, a few seconds): a node restored from an old backup learns at
   once that the hub holds more of its epoch than it does, and blocks appends until it has recovered
   them (below); with the hub down it starts offline, as always;
2. the **loop** (``SyncClient.run``): a round after every commit that appended to the journal (the
   store's commit hook pokes it), every ``sync_interval_seconds`` otherwise, exponential backoff with
   full jitter (up to ``sync_max_backoff_seconds``) after failures. Intake never waits for it: the loop
   only reads committed entries and writes in its own short transactions.

``NodeSyncClient`` adds to a round what the node needs around it:

- **behind_hub** (the hub holds entries of the current epoch the node lacks: restored from an old
  backup): appends are blocked (``node.syncgate``), the missing suffix is fetched from the hub,
  verified as the continuation of the local head under the node's own key, stored with its
  projections, a receipt for it obtained, and appends resume in the same epoch. The node keeps its key,
  so the hub's entries are exactly the ones it would have signed; nothing is signed twice at a seq.
- **fork** (the local log and the hub's differ at some seq: a backup that was used offline, a cloned
  disk): the node finds the first differing seq, pushes its version from there so the hub records the
  evidence and quarantines the node, and blocks appends. Never two histories continued.
- **revoked / quarantined / epoch sealed**: appends are blocked with a Vietnamese message until the hub
  says ``active`` again (a sealed epoch stays blocked: this copy must stop).
- the link state for the banner: online or offline since when, last successful round, last error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from node import projection
from node.hublink import HubLink, current_link
from node.journal import insert_entry
from node.mailbox_apply import make_projector
from node.provision import Node
from node.store import Store
from node.sync_client import BATCH, HttpTransport, SyncClient, SyncError, SyncReport
from node.sync_store import VERSION, SqliteLocalLog
from node.syncgate import set_block
from node.syncstate import SyncSummary, record_receipt, sync_summary
from protocol import (
    BlobMismatch,
    ChainState,
    Entry,
    Heartbeat,
    HubState,
    LogHead,
    Manifest,
    ProtocolError,
    PushResult,
    Receipt,
    decode,
    parse_public_key,
    public_key_text,
    verify_chain,
)
from protocol.blobs import MANIFEST_FIELDS

__all__ = [
    "CLOCK_SKEW_WARN_MS",
    "SYNC",
    "DossierHub",
    "NodeLocalLog",
    "NodeSyncClient",
    "SyncBanner",
    "SyncService",
    "clock_skew_message",
    "dossier_hub",
    "fetch_blobs",
    "sync_banner",
]

log = logging.getLogger("motcua.node.sync")

PREFLIGHT_SECONDS = 5.0
CLOCK_SKEW_WARN_MS = 120_000
"""Above this difference between the node's clock and the hub's (as seen at the last hello), the banner,
``/api/v1/status``, ``/readyz`` (a warning) and the log name the skew. Sync goes on: requests are signed
with hub-relative time (the hub's ``stale`` answer carries its time), entries are ordered by seq."""


def clock_skew_message(offset_ms: int) -> str:
    """The staff-facing warning for a clock ``offset_ms`` behind (positive) or ahead of (negative) the hub."""
    behind = offset_ms > 0
    amount = abs(offset_ms)
    if amount >= 2 * 86_400_000:
        text = f"{round(amount / 86_400_000)} ngày"
    elif amount >= 2 * 3_600_000:
        text = f"{round(amount / 3_600_000)} giờ"
    else:
        text = f"{max(1, round(amount / 60_000))} phút"
    way = "chậm" if behind else "nhanh"
    return (
        f"Đồng hồ máy trạm {way} {text} so với máy chủ trung tâm. Giờ ghi trên biên nhận và nhật ký có "
        "thể sai; việc đồng bộ vẫn tiếp tục. Hãy báo quản trị để chỉnh lại ngày giờ của máy."
    )


_BLOCKING = {
    "node_revoked": "node_revoked",
    "epoch_sealed": "epoch_sealed",
    "fork": "fork",
    "node_quarantined": "node_quarantined",
}
DeviceReport = tuple[list[dict[str, Any]], list[dict[str, Any]]]
DeviceProbe = Callable[[], Awaitable[DeviceReport]]
"""Printers and scanners for the heartbeat: ``([printer...], [scanner...])``, small JSON objects."""


def _wall() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class NodeLocalLog(SqliteLocalLog):
    """The sync store over the real node: receipts also feed the banner's table, sealed epochs (restored
    history the hub already holds) never count as unacknowledged, device status comes from probes."""

    probes: list[DeviceProbe] = field(default_factory=list)

    async def store_receipt(self, receipt: Receipt) -> None:
        async with self.store.write() as db:
            await db.execute(
                "INSERT OR IGNORE INTO sync_receipts (log, epoch, seq, head, hub_time, sig) VALUES "
                "(?,?,?,?,?,?)",
                (receipt.log, receipt.epoch, receipt.seq, receipt.head, receipt.hub_time, receipt.sig),
            )
            await record_receipt(db, receipt, self.wall())

    async def status(self) -> Heartbeat:
        heads = await self.store.fetchall(
            "SELECT epoch, max(seq), (SELECT hash FROM entries x WHERE x.log = e.log AND x.epoch = e.epoch "
            "ORDER BY seq DESC LIMIT 1) FROM entries e WHERE log = ? GROUP BY epoch ORDER BY epoch",
            (self.node,),
        )
        unacked = (
            await self.store.fetchall(
                "SELECT count(*), coalesce(sum(length(raw)), 0), min(recorded_at) FROM entries e "
                "WHERE log = ? AND epoch NOT IN (SELECT epoch FROM epochs WHERE sealed_seq IS NOT NULL) "
                "AND NOT EXISTS (SELECT 1 FROM sync_receipts r WHERE r.log = e.log AND r.epoch = e.epoch "
                "AND r.seq >= e.seq)",
                (self.node,),
            )
        )[0]
        state = await self.state()
        printers, scanners = self.devices()
        for probe in self.probes:
            try:
                more_printers, more_scanners = await probe()
            except Exception:  # noqa: BLE001 - a broken probe must not stop the heartbeat
                log.exception("device status probe failed")
                continue
            printers, scanners = [*printers, *more_printers], [*scanners, *more_scanners]
        now = self.wall()
        return Heartbeat(
            version=VERSION,
            heads=tuple(LogHead(self.node, r[0], r[1], r[2]) for r in heads),
            unacked_entries=unacked[0],
            unacked_bytes=unacked[1],
            oldest_unacked_ms=None if unacked[2] is None else max(0, now - unacked[2]),
            disk_free_bytes=shutil.disk_usage(self.data_dir if self.data_dir.exists() else os.getcwd()).free,
            printers=tuple(printers),
            scanners=tuple(scanners),
            clock_ms=now,
            last_error=state.get("last_error") or None,
        )


@dataclass
class NodeSyncClient(SyncClient):
    """``SyncClient`` plus the node's reactions: recover a missing suffix, expose a fork, block appends,
    track the link for the banner."""

    store: Store | None = None
    blobs: Any = None  # node.blobs.BlobStore: where fetched hub files go (None: do not fetch)
    on_round: Callable[[str], None] | None = None  # each round's result: ok, error, rejected (metrics)
    on_pulled: Callable[[], Awaitable[None]] | None = None  # after a round that stored hub entries
    _logged_offset: int | None = None  # the clock skew last written to the log

    @property
    def local_store(self) -> Store:
        assert self.store is not None
        return self.store

    # -- one round ---------------------------------------------------------------------------------

    def _note_clock(self) -> None:
        """Log a skewed clock once (and again when the skew changes by more than the threshold)."""
        offset = self.offset_ms
        if abs(offset) <= CLOCK_SKEW_WARN_MS:
            if self._logged_offset is not None:
                log.warning("clock skew gone: node clock within %d ms of the hub's", offset)
                self._logged_offset = None
            return
        if self._logged_offset is None or abs(offset - self._logged_offset) > CLOCK_SKEW_WARN_MS:
            log.warning(
                "clock skew: this node's clock is %.1f h %s the hub's (hub minus node = %d ms); requests "
                "are signed with hub-relative time, entries keep the local clock",
                abs(offset) / 3_600_000,
                "behind" if offset > 0 else "ahead of",
                offset,
            )
            self._logged_offset = offset

    async def sync_once(self) -> SyncReport:
        for attempt in (0, 1):
            try:
                report = await super().sync_once()
                self._note_clock()
            except SyncError as exc:
                self._note_clock()
                error = exc
                try:
                    if exc.code == "behind_hub" and attempt == 0:
                        await self.recover()
                        continue
                    if exc.code == "diverged" or (exc.code == "prev_mismatch" and exc.status == 422):
                        error = await self.expose_fork() or exc
                except SyncError as again:
                    error = again
                await self._failed(error)
                raise error from None
            if self.blobs is not None:  # results the hub wrote or forwarded (officers' files), to print
                fetched, _ = await fetch_blobs(self, self.local_store, self.blobs, hub_only=True)
                report.chunks += fetched
            await self._succeeded(report)
            return report
        raise AssertionError("unreachable")

    async def preflight(self) -> None:
        """Hello only: learn the hub's view of this epoch (revoked? behind?) before serving intake."""
        try:
            state = HubState.from_wire(decode(await self.call("GET", "/v1/sync/state"), max_bytes=None))
            self.offset_ms = state.hub_time - self.wall()
            self._note_clock()
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
            local = await self.local.own_head(self.epoch)
            if local.seq < held.seq:
                await self.recover()
            await self._set(block="node_quarantined" if state.status == "quarantined" else "", up=True)
        except SyncError as exc:
            await self._failed(exc)
            raise

    # -- behind the hub: fetch what it holds of this epoch ----------------------------------------

    async def recover(self) -> int:
        """Fetch, verify and store the entries of the current epoch the hub holds after the local head;
        appends stay blocked until done. Returns how many were recovered; raises SyncError ``fork`` (after
        exposing it) if the hub's entries do not continue the local log."""
        assert self.store is not None
        await self._set(block="behind_hub")
        own = parse_public_key(public_key_text(self.key))
        recovered = 0
        last_raw: bytes | None = None
        while True:
            row = await self.store.fetchone(
                "SELECT seq, hash, time_ms, time_n FROM entries WHERE log = ? AND epoch = ? "
                "ORDER BY seq DESC LIMIT 1",
                (self.node, self.epoch),
            )
            seq, head, last = (0, None, (0, 0)) if row is None else (row[0], row[1], (row[2], row[3]))
            payload = await self.call("GET", f"/v1/sync/logs/{self.node}/{self.epoch}?after={seq}&limit=1000")
            raws = [line for line in payload.split(b"\n") if line]
            if not raws:
                break
            try:
                verify_chain(ChainState(self.node, self.epoch, own, seq, head, last), raws)
            except ProtocolError as exc:
                if exc.code == "prev_mismatch":
                    raise await self.expose_fork() or SyncError(
                        "fork", "the hub's log does not continue this node's log", retryable=False
                    ) from None
                raise SyncError(
                    exc.code, f"recovering {self.node}/{self.epoch}: {exc.reason}", retryable=False
                ) from None
            now = self.wall()
            async with self.store.write() as db:
                for raw in raws:
                    entry = Entry.parse(raw)
                    await insert_entry(db, entry, recorded_at=now)
                    await projection.apply(db, entry)
            recovered += len(raws)
            last_raw = raws[-1]
            if self.progress is not None:
                self.progress("recover", recovered, recovered)
        if last_raw is not None:  # resend the head as a duplicate: the hub answers with its receipt
            await self._receipt_for(last_raw)
        log.warning("recovered %d entries of %s/%d from the hub", recovered, self.node, self.epoch)
        await self._set(block="")
        return recovered

    async def _receipt_for(self, raw: bytes) -> None:
        payload = await self.call("POST", f"/v1/sync/logs/{self.node}/{self.epoch}", raw + b"\n")
        receipt = PushResult.from_wire(decode(payload, max_bytes=None)).receipt
        if receipt is not None:
            receipt.verify(self.hub_key)
            await self.local.store_receipt(receipt)

    # -- a fork: two histories at the same positions ------------------------------------------------

    async def expose_fork(self) -> SyncError | None:
        """Find the first seq where the local log differs from the hub's and push the local version from
        there: the hub keeps it as evidence and quarantines the node. Appends are blocked either way.
        Returns the hub's refusal (``fork``) or None if no difference was found."""
        assert self.store is not None
        state = HubState.from_wire(decode(await self.call("GET", "/v1/sync/state"), max_bytes=None))
        held = state.log_head(self.node, self.epoch).seq
        local = (await self.local.own_head(self.epoch)).seq
        overlap = min(held, local)
        top, common = overlap, 0
        while top > 0:  # walk back a page at a time to the last seq where both logs agree
            low = max(0, top - 1000)
            payload = await self.call("GET", f"/v1/sync/logs/{self.node}/{self.epoch}?after={low}&limit=1000")
            theirs = {e.seq: e.hash for e in (Entry.parse(line) for line in payload.split(b"\n") if line)}
            rows = await self.store.fetchall(
                "SELECT seq, hash FROM entries WHERE log = ? AND epoch = ? AND seq > ? AND seq <= ? "
                "ORDER BY seq DESC",
                (self.node, self.epoch, low, top),
            )
            match = next((int(seq) for seq, digest in rows if theirs.get(seq) == digest), None)
            if match is not None:
                common = match
                break
            top = low
        if common >= overlap:
            return None  # the logs agree where both have entries: no fork
        start = common + 1
        await self._set(block="fork")
        batch = await self.local.own_entries_after(self.epoch, start - 1, BATCH)
        try:
            await self.call(
                "POST", f"/v1/sync/logs/{self.node}/{self.epoch}", b"".join(r + b"\n" for r in batch)
            )
        except SyncError as exc:
            log.error("fork with the hub at %s/%d:%d: %s", self.node, self.epoch, start, exc)
            return SyncError("fork", exc.reason, retryable=False, status=exc.status, reply=exc.reply)
        return SyncError(
            "fork", f"this log differs from the hub's from seq {start}", retryable=False, status=409
        )

    # -- bookkeeping ---------------------------------------------------------------------------------

    async def _failed(self, exc: SyncError) -> None:
        if self.on_round is not None:
            self.on_round("error" if exc.retryable else "rejected")
        block = _BLOCKING.get(exc.code)
        down = exc.code == "unreachable" or exc.status >= 500
        try:
            await self._set(block=block, up=not down)
        except Exception:  # noqa: BLE001 - the round already failed; keep its error
            log.exception("could not record the sync failure")

    async def _succeeded(self, report: SyncReport) -> None:
        if self.on_round is not None:
            self.on_round("ok")
        if report.pulled and self.on_pulled is not None:
            try:
                await self.on_pulled()
            except Exception:  # noqa: BLE001 - the entries are stored; applying again at next start
                log.exception("applying pulled hub data failed")
        await self._set(block="node_quarantined" if report.status == "quarantined" else "", up=True)

    async def _set(self, *, block: str | None = None, up: bool | None = None) -> None:
        assert self.store is not None
        now = self.wall()
        async with self.store.write() as db:
            if block is not None:
                async with db.execute("SELECT value FROM sync_state WHERE key = 'append_block'") as cursor:
                    row = await cursor.fetchone()
                current = str(row[0]) if row else ""
                # a sealed epoch never unblocks; a fork stays until the hub has judged (quarantine/release)
                if current != "epoch_sealed" and not (current == "fork" and block == "behind_hub"):
                    await set_block(db, block)
            if up is not None:
                async with db.execute("SELECT value FROM sync_state WHERE key = 'link'") as cursor:
                    row = await cursor.fetchone()
                state = "up" if up else "down"
                if row is None or row[0] != state:
                    await db.executemany(
                        "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                        "SET value = excluded.value",
                        [("link", state), ("link_since", str(now))],
                    )


@dataclass
class SyncService:
    """The running sync of one node: the client, its transport and the loop task."""

    node: Node
    link: HubLink
    client: NodeSyncClient
    transport: HttpTransport
    interval: float = 30.0
    cap: float = 300.0
    probes: list[DeviceProbe] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    _seen: int = 0

    @classmethod
    async def open(
        cls, node: Node, *, wall: Callable[[], int] = _wall, timeout: float = 60.0
    ) -> SyncService | None:
        """The service for ``node``, or None when it is not enrolled for its current epoch."""
        config = node.config
        async with node.store.read() as db:
            link = await current_link(db, node.journal.epoch)
        if link is None:
            return None
        hub_url = (config.hub_url or link.hub_url).rstrip("/")
        probes: list[DeviceProbe] = []

        from node.blobs import BlobStore

        blobs = BlobStore(config.data_dir, low_disk_bytes=0)
        local = NodeLocalLog(
            node.store,
            config.node_id,
            blobs.path_for,
            project=make_projector(config.node_id, wall),
            wall=wall,
            data_dir=config.data_dir,
            probes=probes,
            read_range=blobs.read_range,
        )
        transport = HttpTransport(hub_url, timeout=timeout)
        client = NodeSyncClient(
            config.node_id,
            node.journal.epoch,
            node.key,
            link.hub_key,
            local,
            transport,
            wall=wall,
            store=node.store,
            blobs=blobs,
        )
        interval = float(getattr(config, "sync_interval_seconds", 30))
        cap = float(getattr(config, "sync_max_backoff_seconds", 300))
        service = cls(node, link, client, transport, interval=interval, cap=cap, probes=probes)
        node.store.on_commit.append(service._after_commit)
        service._seen = node.journal.appended
        return service

    def add_device_probe(self, probe: DeviceProbe) -> None:
        """Printers and scanners report here (``([printer...], [scanner...])``, small JSON objects)."""
        self.probes.append(probe)

    def _after_commit(self) -> None:
        if self.node.journal.appended != self._seen:
            self._seen = self.node.journal.appended
            self.client.poke()

    async def start(self, *, preflight: float = PREFLIGHT_SECONDS) -> None:
        """Preflight (bounded), then the loop as a background task."""
        if preflight > 0:
            try:
                await asyncio.wait_for(self.client.preflight(), timeout=preflight)
            except (SyncError, TimeoutError) as exc:
                log.warning("sync preflight: %s (continuing; the loop retries)", exc)
        self.task = asyncio.create_task(
            self.client.run(interval=self.interval, cap=self.cap), name=f"sync {self.node.config.node_id}"
        )

    async def close(self) -> None:
        try:
            self.node.store.on_commit.remove(self._after_commit)
        except ValueError:
            pass
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None
        await self.transport.close()


SYNC = web.AppKey("sync", SyncService)


# -- what the UI and API show ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncBanner:
    """The sync banner: enrolled? link up since / down since, unacknowledged entries, last round, blocks."""

    enrolled: bool
    hub_url: str | None
    hub_status: str | None  # active, quarantined, revoked (as last heard)
    block: str  # append block reason, "" when appends are allowed
    block_message: str
    online: bool | None  # None: never tried
    since_ms: int | None  # online since / offline since
    last_ok_ms: int | None
    last_error: str | None
    summary: SyncSummary
    clock_offset_ms: int | None = None  # hub time minus node time at the last hello (None: never seen)

    @property
    def clock_skewed(self) -> bool:
        return self.clock_offset_ms is not None and abs(self.clock_offset_ms) > CLOCK_SKEW_WARN_MS

    @property
    def clock_message(self) -> str:
        return clock_skew_message(self.clock_offset_ms or 0) if self.clock_skewed else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "clock_offset_ms": self.clock_offset_ms,
            "clock_skew": self.clock_message or None,
            "enrolled": self.enrolled,
            "hub_url": self.hub_url,
            "hub_status": self.hub_status,
            "append_block": self.block or None,
            "online": self.online,
            "since": self.since_ms,
            "last_sync": self.last_ok_ms,
            "last_error": self.last_error,
            "unacknowledged": self.summary.unsent,
            "oldest_unacknowledged": self.summary.oldest_unsent_ms,
            "last_ack": self.summary.last_ack_ms,
        }


async def sync_banner(db: Any, node_id: str, hub_url: str | None) -> SyncBanner:
    """Read the banner's facts in the caller's read transaction."""
    from node.syncgate import BLOCK_MESSAGES

    summary = await sync_summary(db, node_id)
    async with db.execute("SELECT key, value FROM sync_state") as cursor:
        state = {str(k): str(v) async for k, v in cursor}
    async with db.execute("SELECT hub_url FROM hub_link ORDER BY epoch DESC LIMIT 1") as cursor:
        row = await cursor.fetchone()
    block = state.get("append_block", "")
    link = state.get("link")
    return SyncBanner(
        enrolled=row is not None,
        hub_url=hub_url or (str(row[0]) if row else None),
        hub_status=state.get("hub_status"),
        block=block,
        block_message=BLOCK_MESSAGES.get(block, "") if block else "",
        online=None if link is None else link == "up",
        since_ms=int(state["link_since"]) if state.get("link_since") else None,
        last_ok_ms=int(state["last_ok_ms"]) if state.get("last_ok_ms") else None,
        last_error=state.get("last_error") or None,
        summary=summary,
        clock_offset_ms=_int_or_none(state.get("clock_offset_ms")),
    )


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DossierHub:
    """Whether the hub holds every entry this node wrote about a dossier, and since when."""

    held: bool
    at_ms: int | None  # hub time of the receipt that first covered the last of them
    local_entries: int

    def to_json(self) -> dict[str, Any]:
        return {"held": self.held, "receipt_time": self.at_ms, "entries": self.local_entries}


async def dossier_hub(db: Any, node_id: str, code: str) -> DossierHub | None:
    """None when this node wrote nothing about ``code`` (a dossier received elsewhere)."""
    async with db.execute(
        "SELECT e.epoch, max(e.seq), count(*), ep.sealed_seq FROM entries e"
        " JOIN epochs ep ON ep.epoch = e.epoch"
        " WHERE e.log = ? AND e.dossier = ? GROUP BY e.epoch",
        (node_id, code),
    ) as cursor:
        groups = [tuple(r) async for r in cursor]
    if not groups:
        return None
    held, at = True, None
    for epoch, top, _count, sealed in groups:
        if sealed is not None and sealed >= top:
            continue  # restored history: the hub held it when it sealed that epoch
        async with db.execute(
            "SELECT min(hub_time) FROM sync_receipts WHERE log = ? AND epoch = ? AND seq >= ?",
            (node_id, epoch, top),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None or row[0] is None:
            held = False
        else:
            at = max(at or 0, int(row[0]))
    return DossierHub(held, at if held else None, sum(int(g[2]) for g in groups))


async def fetch_blobs(
    client: SyncClient,
    store: Store,
    blobs: Any,
    *,
    hub_only: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[int, list[str]]:
    """Fetch from the hub the files named by stored attachment entries that this node does not have
    (``hub_only``: only those the hub wrote or forwarded, e.g. an officer's result file): each chunk is
    checked against the signed manifest, the whole file by its SHA-256, stored durably (node.blobs), then
    remembered in ``sync_blobs``. Returns (fetched, ["sha: why" for each the hub cannot give yet])."""
    where = "kind = 'dossier.attachment' OR kind = 'hub.forward'"
    if hub_only:
        where = f"({where}) AND log LIKE 'hub%'"
    done = {str(r[0]) for r in await store.fetchall("SELECT sha256 FROM sync_blobs")}
    manifests: dict[str, Manifest] = {}
    for (raw,) in await store.fetchall(f"SELECT raw FROM entries WHERE {where}"):
        entry = Entry.parse(bytes(raw))
        body = entry.body
        if entry.kind == "hub.forward":
            inner = body.get("entry")
            if not isinstance(inner, dict) or inner.get("kind") != "dossier.attachment":
                continue
            body = inner.get("body") or {}
        value = body.get("manifest")
        if isinstance(value, dict) and value.keys() == MANIFEST_FIELDS:
            try:
                manifest = Manifest.from_body(value)
            except BlobMismatch:
                continue
            if manifest.sha256 not in done and not blobs.path_for(manifest.sha256).is_file():
                manifests.setdefault(manifest.sha256, manifest)
    fetched, missing = 0, []
    for count, manifest in enumerate(manifests.values(), 1):
        try:
            chunks = []
            for index in range(len(manifest.chunks)):
                chunk = await client.call("GET", f"/v1/sync/blobs/{manifest.sha256}/{index}")
                manifest.check_chunk(index, chunk)
                chunks.append(chunk)
            staged = await asyncio.to_thread(blobs.stage_bytes, b"".join(chunks))
            if staged.sha256 != manifest.sha256:
                raise BlobMismatch(f"assembled file hashes to {staged.sha256}")
        except (SyncError, BlobMismatch) as exc:
            missing.append(f"{manifest.sha256}: {exc}")
            continue
        async with store.write() as db:
            await _register_blob(db, manifest, staged)
            await db.execute(
                "INSERT OR IGNORE INTO sync_blobs (sha256, done_ms) VALUES (?, ?)",
                (manifest.sha256, client.wall()),
            )
        fetched += 1
        if progress is not None:
            progress("scans", count, len(manifests))
    return fetched, missing


async def _register_blob(db: Any, manifest: Manifest, staged: Any) -> None:
    """Record the blob in the node's blob table when this node has one (node.blobs)."""
    async with db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'blobs'") as cursor:
        if await cursor.fetchone() is None:
            return
    from node.blobs import register_blob

    await register_blob(
        db, staged, media_type=manifest.media_type, pages=manifest.pages, display_name=manifest.sha256[:16]
    )
