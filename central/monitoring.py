"""Monitoring of the hub: request ids and JSON logs, ``/healthz``, ``/readyz``, ``/metrics``.

- ``observe_middleware`` (outermost) gives every request an id (a well-formed incoming ``X-Request-Id`` is
  kept, else a new one), puts it in every log record of the request and in the ``X-Request-Id`` answer
  header, writes one JSON access line (path without query: lookup codes never reach the logs), and counts
  sync requests by operation and outcome, verification failures by reason, and their durations.
- ``/metrics`` is prometheus-client's aiohttp handler over the hub's own ``CollectorRegistry`` (one per
  app); before each scrape the per-node gauges are refreshed from heartbeats and stored heads.
- ``/healthz`` is liveness (no I/O); ``/readyz`` checks that the database takes a write, every migration
  is applied and the data directory has free space, and answers 503 listing the failed checks.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from central.hub import HUB, Hub
from central.nodehealth import NodeHealth, Refusal, RefusalLog

__all__ = [
    "MONITOR",
    "JsonFormatter",
    "Monitor",
    "NodeGauges",
    "configure_logging",
    "healthz",
    "metrics",
    "observe_middleware",
    "readyz",
    "request_id",
]

log = logging.getLogger("motcua.central.http")
_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_ID_RE = re.compile(r"[A-Za-z0-9._-]{8,64}")
MIN_FREE_BYTES = 256 * 1024 * 1024
SYNC_OPS = (
    ("POST", "/v1/sync/logs/", "push"),
    ("GET", "/v1/sync/logs/", "restore"),
    ("GET", "/v1/sync/mailbox/", "pull"),
    ("POST", "/v1/sync/blobs/need", "blob_need"),
    ("PUT", "/v1/sync/blobs/", "blob_put"),
    ("GET", "/v1/sync/blobs/", "blob_get"),
    ("POST", "/v1/sync/heartbeat", "heartbeat"),
    ("GET", "/v1/sync/state", "state"),
    ("POST", "/v1/enroll", "enroll"),
)
_CODE_RE = re.compile(r"[a-z_]{1,40}")


def request_id() -> str:
    """The id of the request being served (``-`` outside one)."""
    return _REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line, Vietnamese kept readable, with the request id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _REQUEST_ID.get(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)


def configure_logging(level: int = logging.INFO, stream: Any = None) -> None:
    """Send every log record to stdout as JSON lines (journald keeps each line as one message)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # observe_middleware writes the access line, without the query string; aiohttp's own would log it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@dataclass(eq=False)  # registries keep collectors in a dict: identity hash
class NodeGauges(Collector):
    """Per-node gauges from the last assessment (refreshed before each scrape)."""

    rows: list[NodeHealth] = field(default_factory=list)
    now_ms: int = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        def family(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["node"])

        up = family("motcua_hub_node_online", "1 if the node was heard from within the online window")
        seen = family("motcua_hub_node_last_contact_timestamp_seconds", "Unix time of the last contact")
        held = family("motcua_hub_node_head_sequence", "Last seq of the node's current epoch held by the hub")
        lag = family("motcua_hub_node_lag_entries", "Entries the node reported beyond what the hub holds")
        backlog = family("motcua_hub_node_backlog_entries", "Entries not yet acknowledged (node heartbeat)")
        backlog_b = family("motcua_hub_node_backlog_bytes", "Bytes not yet acknowledged (node heartbeat)")
        age = family("motcua_hub_node_oldest_unacked_age_seconds", "Age of the oldest unacknowledged entry")
        scans = family("motcua_hub_node_scan_bytes_pending", "Scan bytes referenced but not yet uploaded")
        skew = family("motcua_hub_node_clock_skew_seconds", "Node clock minus hub time at the last heartbeat")
        disk = family("motcua_hub_node_disk_free_bytes", "Free disk the node reported")
        quarantine = family("motcua_hub_node_quarantined_entries", "Quarantined entries awaiting review")
        severity = family("motcua_hub_node_severity", "0 healthy, 1 notice, 2 warning, 3 offline, 4 alarm")
        for h in self.rows:
            f, n = h.facts, [h.node]
            up.add_metric(n, 1.0 if h.online else 0.0)
            if f.last_contact_ms is not None:
                seen.add_metric(n, f.last_contact_ms / 1000)
            held.add_metric(n, f.held_seq)
            if h.reported_seq is not None:
                lag.add_metric(n, max(0, h.reported_seq - f.held_seq))
            if f.beat is not None:
                backlog.add_metric(n, f.beat.unacked_entries)
                backlog_b.add_metric(n, f.beat.unacked_bytes)
                disk.add_metric(n, f.beat.disk_free_bytes)
                age.add_metric(n, (h.oldest_unacked_age_ms or 0) / 1000)
            if f.skew_ms is not None:
                skew.add_metric(n, f.skew_ms / 1000)
            scans.add_metric(n, f.scan_bytes_pending)
            quarantine.add_metric(n, f.quarantined_pending)
            severity.add_metric(n, h.severity)
        yield from (up, seen, held, lag, backlog, backlog_b, age, scans, skew, disk, quarantine, severity)


@dataclass
class Monitor:
    """The web side's metrics (in the hub's registry) and the recent refusals per node."""

    registry: CollectorRegistry
    refusals: RefusalLog = field(default_factory=RefusalLog)
    gauges: NodeGauges = field(default_factory=NodeGauges)
    refresh: Callable[[], Awaitable[None]] | None = None  # brings ``gauges`` up to date before a scrape

    def __post_init__(self) -> None:
        r = self.registry
        self.sync_requests = Counter(
            "motcua_hub_sync_requests_total",
            "Sync API requests by operation (push, pull, ...) and outcome (ok or the error code)",
            ["op", "outcome"],
            registry=r,
        )
        self.verification_failures = Counter(
            "motcua_hub_verification_failures_total",
            "Pushed entries refused by verification, by reason",
            ["reason"],
            registry=r,
        )
        self.sync_seconds = Histogram(
            "motcua_hub_sync_request_seconds",
            "Time to serve one sync request (ingest: push, blob_put, heartbeat), by operation",
            ["op"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.web_requests = Counter(
            "motcua_hub_web_requests_total", "Web page requests by status class", ["status"], registry=r
        )
        r.register(self.gauges)
        self.handler = make_aiohttp_handler(r)


MONITOR = web.AppKey("monitor", Monitor)


def _sync_op(method: str, path: str) -> str | None:
    for m, prefix, op in SYNC_OPS:
        if method == m and path.startswith(prefix):
            return op
    return None


def _error_code(response: web.StreamResponse) -> str:
    body = getattr(response, "body", None)
    if isinstance(body, bytes | bytearray) and body[:1] == b"{":
        try:
            code = json.loads(body).get("error")
        except (ValueError, AttributeError):
            code = None
        if isinstance(code, str) and _CODE_RE.fullmatch(code):
            return code
    return f"http_{response.status}"


async def _note_sync(request: web.Request, op: str, status: int, code: str, seconds: float) -> None:
    monitor = request.app.get(MONITOR)
    if monitor is None:
        return
    outcome = "ok" if status < 400 else code
    monitor.sync_requests.labels(op, outcome).inc()
    monitor.sync_seconds.labels(op).observe(seconds)
    if op == "push" and (status == 422 or code == "fork"):
        monitor.verification_failures.labels(code).inc()
    if status >= 400:
        claimed = request.headers.get("X-Motcua-Node", "")[:32]
        hub = request.app[HUB]
        # Only nodes the hub knows get a line on the dashboard (an anonymous caller cannot fill memory).
        if claimed and await hub.registry.node(claimed) is not None:
            monitor.refusals.add(claimed, Refusal(hub.clock(), op, code))


@web.middleware
async def observe_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _ID_RE.fullmatch(incoming) else uuid.uuid4().hex
    token = _REQUEST_ID.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            exc.headers["X-Request-Id"] = rid
            raise
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        op = _sync_op(request.method, request.path)
        if op is not None:
            await _note_sync(request, op, status, _error_code(response), time.perf_counter() - started)
        elif (monitor := request.app.get(MONITOR)) is not None:
            monitor.web_requests.labels(f"{status // 100}xx").inc()
        return response
    finally:
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            status,
            extra={
                "fields": {
                    "method": request.method,
                    "path": request.path,  # never the query string (lookup codes, tokens)
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "remote": request.remote,
                }
            },
        )
        _REQUEST_ID.reset(token)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer (no I/O)."""
    hub = request.app.get(HUB)
    return web.json_response({"status": "ok", "hub_time": hub.clock() if hub is not None else None})


async def _db_writable(hub: Hub) -> None:
    async with hub.store.write() as db:
        await db.execute(
            "INSERT INTO health_probe (id, at_ms) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at_ms = ?",
            (hub.clock(), hub.clock()),
        )


async def readiness(hub: Hub) -> dict[str, str]:
    """Each check's result: ``ok`` or why it failed."""
    from central.schema import MIGRATIONS

    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(_db_writable(hub), timeout=3.0)
        checks["db_writable"] = "ok"
    except Exception as exc:  # any failure is the answer here
        checks["db_writable"] = f"{type(exc).__name__}: {exc}"[:200]
    try:
        done = {r[0] for r in await hub.store.fetchall("SELECT name FROM schema_migrations")}
        missing = [name for name, _ in MIGRATIONS if name not in done]
        checks["migrations"] = "ok" if not missing else "missing " + ", ".join(missing)
    except Exception as exc:
        checks["migrations"] = f"{type(exc).__name__}: {exc}"[:200]
    try:
        free = shutil.disk_usage(hub.config.data_dir).free
        checks["disk_free"] = "ok" if free >= MIN_FREE_BYTES else f"only {free} bytes free"
    except OSError as exc:
        checks["disk_free"] = f"OSError: {exc}"[:200]
    return checks


async def readyz(request: web.Request) -> web.Response:
    hub = request.app.get(HUB)
    if hub is None:
        return web.json_response({"status": "not_ready", "failed": ["starting"]}, status=503)
    checks = await readiness(hub)
    failed = sorted(name for name, result in checks.items() if result != "ok")
    body = {"status": "ready" if not failed else "not_ready", "failed": failed, "checks": checks}
    return web.json_response(body, status=200 if not failed else 503, headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.StreamResponse:
    monitor = request.app[MONITOR]
    if monitor.refresh is not None:
        await monitor.refresh()
    return await monitor.handler(request)
