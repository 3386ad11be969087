"""Monitoring: /metrics scraped and parsed, per-app registries, /healthz, /readyz, request ids and JSON
logs without query strings."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from pathlib import Path

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from central.app import make_app
from central.config import load
from central.monitoring import JsonFormatter, configure_logging
from tests.central.helpers import hub_clock, make_hub_dir
from tests.central.webhelpers import LOOKUP, Branch, forked, settle


async def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


async def test_metrics_count_sync_outcomes_failures_and_per_node_gauges(client: TestClient) -> None:
    branch = await Branch.enroll(client)
    branch.receive()
    await branch.push()
    await branch.push()  # duplicates: ok
    await branch.heartbeat(
        unacked_entries=12,
        unacked_bytes=3400,
        oldest_unacked_ms=hub_clock.now - 90_000,
        clock_ms=hub_clock.now + 5000,
    )
    branch.sim.notes(2)
    status, _ = await branch.sim.push(branch.sim.entries[-1:])  # gap
    assert status == 409
    raw = bytearray(branch.sim.entries[-2].raw)
    raw[raw.index(b'"n":') + 4] ^= 1
    status, _ = await branch.sim.push(raw=bytes(raw) + b"\n")
    assert status == 422
    status, _ = await branch.sim.call("GET", "/v1/sync/mailbox/hub.CN01")
    assert status == 200
    status, _ = await branch.sim.push([forked(branch, 2)])
    assert status == 409
    m = await scrape(client)
    ops = m["motcua_hub_sync_requests_total"]
    assert ops[(("op", "push"), ("outcome", "ok"))] == 2
    assert ops[(("op", "push"), ("outcome", "seq_gap"))] == 1
    assert ops[(("op", "push"), ("outcome", "fork"))] == 1
    assert ops[(("op", "pull"), ("outcome", "ok"))] == 1
    assert ops[(("op", "heartbeat"), ("outcome", "ok"))] == 1
    assert ops[(("op", "enroll"), ("outcome", "ok"))] == 1
    failures = m["motcua_hub_verification_failures_total"]
    assert failures[(("reason", "bad_signature"),)] == 1 and failures[(("reason", "fork"),)] == 1
    assert m["motcua_hub_sync_request_seconds_count"][(("op", "push"),)] == 5
    assert (("le", "+Inf"), ("op", "push")) in m["motcua_hub_sync_request_seconds_bucket"]
    node = (("node", "CN01"),)
    assert m["motcua_hub_node_backlog_entries"][node] == 12
    assert m["motcua_hub_node_backlog_bytes"][node] == 3400
    assert m["motcua_hub_node_oldest_unacked_age_seconds"][node] == 90
    assert m["motcua_hub_node_head_sequence"][node] == 2
    assert m["motcua_hub_node_clock_skew_seconds"][node] == 5
    assert m["motcua_hub_node_online"][node] == 1
    assert m["motcua_hub_node_severity"][node] == 4  # the fork
    assert m["motcua_hub_entries_total"][node] == 2  # the hub's own metrics share the registry


async def test_two_hubs_in_one_process_keep_separate_registries(tmp_path: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    clients = []
    for name in ("a", "b"):
        config = make_hub_dir(tmp_path / name)
        clients.append(await aiohttp_client(make_app(load(config.data_dir, environ={}), clock=hub_clock)))
    await Branch.enroll(clients[0])
    first, second = await scrape(clients[0]), await scrape(clients[1])
    assert first["motcua_hub_sync_requests_total"][(("op", "enroll"), ("outcome", "ok"))] == 1
    assert "motcua_hub_sync_requests_total" not in second or not second["motcua_hub_sync_requests_total"]


async def test_healthz_and_readyz(client: TestClient, hub_dir: Path) -> None:
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"] == {
        "db_writable": "ok",
        "migrations": "ok",
        "disk_free": "ok",
    }
    with sqlite3.connect(hub_dir / "hub.sqlite3") as db:
        db.execute("DELETE FROM schema_migrations WHERE name = '0100_web_users_sessions_index'")
    with sqlite3.connect(hub_dir / "hub.sqlite3") as db:
        db.execute("BEGIN EXCLUSIVE")  # another writer holds the database: no write gets through
        resp = await client.get("/readyz")
        db.rollback()
    body = await resp.json()
    assert resp.status == 503 and body["failed"] == ["db_writable", "migrations"]
    assert "0100_web_users_sessions_index" in body["checks"]["migrations"]


async def test_request_ids_and_json_logs_without_query_strings(client: TestClient) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    access = logging.getLogger("aiohttp.access")
    access_level = access.level
    configure_logging(stream=stream)
    try:
        branch = await Branch.enroll(client)
        code = branch.receive(name="Phạm Văn Đồng")
        await branch.push()
        await settle(client)
        resp = await client.get(
            f"/tra-cuu?ma={code}&tra_cuu={LOOKUP}", headers={"X-Request-Id": "req-1234-abcd"}
        )
        assert resp.headers["X-Request-Id"] == "req-1234-abcd"
        bad = await client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
        generated = bad.headers["X-Request-Id"]
        assert generated != "bad id <script>" and len(generated) == 32
        err = await client.get("/v1/sync/state")  # unauthenticated: still an id on the error answer
        assert err.status == 401 and len(err.headers["X-Request-Id"]) == 32
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        access.setLevel(access_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    tracked = [x for x in lines if x.get("request_id") == "req-1234-abcd"]
    assert tracked and tracked[-1]["path"] == "/tra-cuu" and tracked[-1]["status"] == 200
    text = stream.getvalue()
    assert LOOKUP not in text and "tra_cuu=" not in text and "Phạm" not in text
    assert any(x.get("request_id") == generated for x in lines)


def test_json_formatter_keeps_vietnamese_readable() -> None:
    record = logging.LogRecord("motcua", logging.WARNING, __file__, 1, "Hồ sơ %s quá hạn", ("X-1",), None)
    line = JsonFormatter().format(record)
    assert "Hồ sơ X-1 quá hạn" in line and json.loads(line)["level"] == "warning"
