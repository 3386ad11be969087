"""The node's ``/metrics`` (scraped and parsed), ``/healthz`` and ``/readyz``, with a real hub on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.realnode import HubRunner, NodeRunner, eventually

pytestmark = pytest.mark.e2e

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


async def scrape(node: NodeRunner) -> Samples:
    async with aiohttp.ClientSession() as anonymous:  # Prometheus has no session or token
        async with anonymous.get(node.base + "/metrics") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


async def test_node_metrics_follow_the_backlog_and_the_sync_rounds(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    node = await NodeRunner.create(tmp_path / "cn01", await hub.invite("CN01"), node_id="CN01", block=0)
    await hub.stop()
    await node.start()
    try:
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(node.base + "/healthz") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
            async with anonymous.get(node.base + "/readyz") as resp:
                ready = await resp.json()
                assert resp.status == 200 and ready["status"] == "ready" and ready["failed"] == []
                assert set(ready["checks"]) == {"db_writable", "migrations", "disk_free"}

        before = time.time()
        await node.receive()
        await node.receive()

        async def failed_round() -> bool:
            m = await scrape(node)
            return one(m, "edgesync_sync_attempts_total", result="error") >= 1

        await eventually(failed_round, what="a failed sync round counted")
        m = await scrape(node)
        head = one(m, "edgesync_log_head_sequence")
        assert head >= 3  # genesis and two receptions (and their lookup/receipt events, if any)
        assert one(m, "edgesync_outbox_entries") >= 2 and one(m, "edgesync_outbox_bytes") > 0
        oldest = one(m, "edgesync_oldest_unsynced_entry_timestamp_seconds")
        assert oldest <= time.time() and oldest > before - 3600
        assert one(m, "edgesync_build_info", version="motcua-node/0.1") == 1
        assert one(m, "edgesync_hotfolder_pending_files") == 0
        assert one(m, "edgesync_print_jobs_total", result="printed") == 0

        await hub.start()

        async def synced() -> bool:
            m = await scrape(node)
            return (
                one(m, "edgesync_outbox_entries") == 0
                and one(m, "edgesync_sync_attempts_total", result="ok") >= 1
            )

        await eventually(synced, what="the backlog acknowledged")
        m = await scrape(node)
        assert one(m, "edgesync_last_sync_success_timestamp_seconds") >= before
        assert one(m, "edgesync_log_head_sequence") >= head
        oldest = one(m, "edgesync_oldest_unsynced_entry_timestamp_seconds")
        assert oldest != oldest  # NaN: nothing unacknowledged
    finally:
        await node.stop()
        await hub.stop()
