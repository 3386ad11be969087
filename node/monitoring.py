"""``/metrics`` of the node: node.metrics's families over a per-app ``CollectorRegistry``, served by
prometheus-client's aiohttp handler.

Before each scrape the gauges are brought up to date from the node's database and devices: the head of
the current epoch, entries and bytes not acknowledged by a hub receipt (sealed epochs never count), the
recorded time of the oldest of them, hot-folder files waiting, printers that accept jobs. The sync loop
counts its rounds (``ok``, ``error``: retryable, ``rejected``: the hub refused and waiting does not help)
and stamps the last successful one (``record_round``). Print jobs by result and hot-folder rejections by
reason are counted from what the node keeps (the ``print_jobs`` table, the ``rejected/`` folders): each
scrape adds what appeared since the previous one, so they never decrease.

``/healthz`` and ``/readyz`` stay in node.api (same semantics as the hub's).
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from node.metrics import NodeMetrics
from node.web.keys import NODE

__all__ = ["METRICS", "NodeMonitor", "metrics_handler"]

log = logging.getLogger("motcua.node.metrics")
VERSION = "motcua-node/0.1"


@dataclass(eq=False)
class NodeMonitor:
    """The node's metrics and what the derived counters had reached at the previous scrape."""

    metrics: NodeMetrics = field(default_factory=NodeMetrics)
    seen_jobs: Tally[str] = field(default_factory=Tally)
    seen_rejected: Tally[str] = field(default_factory=Tally)

    def __post_init__(self) -> None:
        self.metrics.build_info.labels(VERSION).set(1)
        for result in ("ok", "error", "rejected"):  # present at 0 from the start: rate() sees the first
            self.metrics.sync_attempts.labels(result)
        for result in ("printed", "failed", "cancelled"):
            self.metrics.print_jobs.labels(result)
        self.handler = make_aiohttp_handler(self.metrics.registry)

    def record_round(self, result: str) -> None:
        """One sync round ended: ``ok``, ``error`` (retryable) or ``rejected``."""
        self.metrics.sync_attempts.labels(result).inc()
        if result == "ok":
            self.metrics.last_sync_success.set(time.time())

    async def refresh(self, app: web.Application) -> None:
        m = self.metrics
        node = app.get(NODE)
        if node is None:
            return
        node_id = node.config.node_id
        row = await node.store.fetchone(
            "SELECT coalesce(max(seq), 0) FROM entries WHERE log = ? AND epoch = ?",
            (node_id, node.journal.epoch),
        )
        m.head_sequence.set(int(row[0]) if row else 0)
        row = await node.store.fetchone(
            "SELECT count(*), coalesce(sum(length(raw)), 0), min(recorded_at) FROM entries e "
            "WHERE log = ? AND epoch NOT IN (SELECT epoch FROM epochs WHERE sealed_seq IS NOT NULL) "
            "AND NOT EXISTS (SELECT 1 FROM sync_receipts r WHERE r.log = e.log AND r.epoch = e.epoch "
            "AND r.seq >= e.seq)",
            (node_id,),
        )
        m.outbox_entries.set(int(row[0]))
        m.outbox_bytes.set(int(row[1]))
        if row[2] is None:
            m.oldest_unsynced.set(float("nan"))
        else:
            m.oldest_unsynced.set(int(row[2]) / 1000)
        jobs = Tally(
            {
                str(status): int(n)
                for status, n in await node.store.fetchall(
                    "SELECT status, count(*) FROM print_jobs WHERE status IN ('printed', 'failed', "
                    "'cancelled') GROUP BY status"
                )
            }
        )
        _advance(m.print_jobs, self.seen_jobs, jobs)
        await self._devices(app)

    async def _devices(self, app: web.Application) -> None:
        from node.devices import DEVICES, devices_status
        from node.scan_intake import list_rejected

        m = self.metrics
        if DEVICES not in app:
            m.hotfolder_pending.set(0)
            return
        try:
            status = await devices_status(app)
        except Exception:  # noqa: BLE001 - a broken device probe must not break the scrape
            log.exception("device status for /metrics failed")
            return
        m.hotfolder_pending.set(sum(int(s["pending_files"]) for s in status["scanners"]))
        for printer in status["printers"]:
            m.printer_up.labels(printer["name"]).set(1 if printer["ok"] else 0)
        rejected: Tally[str] = Tally()
        for scanner in app[DEVICES].config.scanners:
            try:
                rejected.update(r.code for r in list_rejected(scanner.folder))
            except OSError:
                continue
        _advance(m.hotfolder_rejected, self.seen_rejected, rejected)


def _advance(counter: object, seen: Tally[str], now: Tally[str]) -> None:
    """Add to ``counter`` (a labelled Counter) what ``now`` has beyond ``seen``; remember ``now``."""
    for label, value in now.items():
        more = value - seen.get(label, 0)
        child = counter.labels(label)  # type: ignore[attr-defined]
        if more > 0:
            child.inc(more)
        seen[label] = max(value, seen.get(label, 0))


METRICS = web.AppKey("node_metrics", NodeMonitor)


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    monitor = request.app[METRICS]
    await monitor.refresh(request.app)
    return await monitor.handler(request)
