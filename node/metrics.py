"""Prometheus metrics of one node (definitions only; the node's app serves them on ``/metrics`` with
``prometheus_client.aiohttp.make_aiohttp_handler(metrics.registry)``). A registry per instance, so tests
can run several nodes in one process. Names follow ECOSYSTEM.md §5.2: timestamps rather than ages, so a
stopped exporter cannot look healthy (lag = ``time() - edgesync_oldest_unsynced_entry_timestamp_seconds``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["NodeMetrics"]


@dataclass(eq=False)
class NodeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.head_sequence = Gauge("edgesync_log_head_sequence", "Last local log sequence number", registry=r)
        self.outbox_entries = Gauge(
            "edgesync_outbox_entries", "Entries not yet acknowledged by the hub", registry=r
        )
        self.outbox_bytes = Gauge(
            "edgesync_outbox_bytes", "Bytes not yet acknowledged by the hub", registry=r
        )
        self.oldest_unsynced = Gauge(
            "edgesync_oldest_unsynced_entry_timestamp_seconds",
            "Unix time of the oldest entry not yet acknowledged (absent when none)",
            registry=r,
        )
        self.last_sync_success = Gauge(
            "edgesync_last_sync_success_timestamp_seconds",
            "Unix time of the last complete sync round",
            registry=r,
        )
        self.sync_attempts = Counter(
            "edgesync_sync_attempts_total",
            "Sync rounds by result (ok, error, rejected)",
            ["result"],
            registry=r,
        )
        self.sync_seconds = Histogram(
            "edgesync_sync_duration_seconds", "Duration of one sync round", registry=r
        )
        self.signature_failures = Counter(
            "edgesync_signature_failures_total", "Hub entries or receipts whose signature failed", registry=r
        )
        self.hotfolder_pending = Gauge(
            "edgesync_hotfolder_pending_files", "Scanner files waiting to be complete", registry=r
        )
        self.hotfolder_rejected = Counter(
            "edgesync_hotfolder_rejected_total", "Scanner files refused, by reason", ["reason"], registry=r
        )
        self.print_jobs = Counter("edgesync_print_jobs_total", "Print jobs by result", ["result"], registry=r)
        self.printer_up = Gauge(
            "edgesync_printer_up", "1 if the print queue accepts jobs", ["queue"], registry=r
        )
        self.build_info = Gauge(
            "edgesync_build_info", "Version of the node software", ["version"], registry=r
        )
