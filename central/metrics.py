"""Prometheus metrics of one hub (a registry per app, so tests can run several hubs in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["HubMetrics"]


@dataclass
class HubMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.entries = Counter(
            "motcua_hub_entries_total", "Entries committed, per node", ["node"], registry=r
        )
        self.duplicates = Counter(
            "motcua_hub_duplicate_entries_total", "Entries pushed again (already held)", ["node"], registry=r
        )
        self.quarantined = Counter(
            "motcua_hub_quarantined_entries_total",
            "Entries kept but quarantined",
            ["node", "code"],
            registry=r,
        )
        self.refused = Counter(
            "motcua_hub_refused_requests_total",
            "Requests refused, per node and reason",
            ["node", "code"],
            registry=r,
        )
        self.push_seconds = Histogram(
            "motcua_hub_push_seconds", "Time to verify and commit one push batch", registry=r
        )
        self.skewed = Counter(
            "motcua_hub_clock_skew_total",
            "Requests or entries whose clock is off beyond the threshold",
            ["node"],
            registry=r,
        )
        self.blob_bytes = Counter(
            "motcua_hub_blob_bytes_total", "Blob chunk bytes stored", ["node"], registry=r
        )
        self.last_seen = Gauge(
            "motcua_hub_node_last_seen_seconds",
            "Unix time of the last authenticated request",
            ["node"],
            registry=r,
        )
