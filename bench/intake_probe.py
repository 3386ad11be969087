"""Investigation aid for bench.intake: where does a reception's time go, and where does the tail come from?

``python -m bench.intake_probe OUT.json serve --data DIR --listen HOST:PORT`` runs ``motcua-node serve``
with timing probes wrapped around the intake path (nothing else changes), and writes at exit, with
``time.perf_counter`` stamps (CLOCK_MONOTONIC: comparable with the clients' stamps):

- per reception: ``Desk.receive`` start/end, code reservation, lookup hash (queue wait and the hash
  itself), body building, the wait from submit to the group's answer;
- per group: size, start/end of ``_commit``, of ``_write_group``, signing time, projection time, and the
  COMMIT: the await (with the hop to the writer thread and back) and the ``sqlite3`` commit itself
  (the fsyncs, and a WAL checkpoint when one runs inside the commit);
- Python GC collections (generation, duration), from ``gc.callbacks``;
- event-loop lag: a 1 ms heartbeat timer, every wake-up later than 2 ms is recorded.

``MOTCUA_BENCH_TRACE=DIR python -m bench.intake --rounds 1`` runs the bench with this probe and saves the
clients' own stamps next to it; ``python -m bench.intake_probe --analyse DIR`` summarises.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

now = time.perf_counter

TRACE: dict[str, list[Any]] = {"requests": [], "groups": [], "gc": [], "lag": [], "commits": []}


def _install(out: Path) -> None:
    import aiosqlite

    import node.intake as intake
    import node.journal as journal
    import node.service as service
    from node import projection

    current: dict[str, Any] = {}

    # -- GC -------------------------------------------------------------------------------------------
    gc_start: dict[str, float] = {}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start["t"] = now()
        else:
            t = gc_start.pop("t", None)
            if t is not None:
                TRACE["gc"].append((t, now() - t, info["generation"], info.get("collected", 0)))

    gc.callbacks.append(on_gc)

    # -- per reception --------------------------------------------------------------------------------
    original_receive = intake.Desk.receive

    async def receive(self: Any, data: Any, **kw: Any) -> Any:
        record: dict[str, Any] = {"start": now()}
        token = _CURRENT.set(record)
        try:
            return await original_receive(self, data, **kw)
        finally:
            record["end"] = now()
            TRACE["requests"].append(record)
            _CURRENT.reset(token)

    intake.Desk.receive = receive  # type: ignore[method-assign]

    def timed_async(owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        async def wrapper(*args: Any, **kw: Any) -> Any:
            t = now()
            try:
                return await original(*args, **kw)
            finally:
                rec = _CURRENT.get(None)
                if rec is not None:
                    rec[key] = (t, now())

        setattr(owner, name, wrapper)

    def timed_sync(owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kw: Any) -> Any:
            t = now()
            try:
                return original(*args, **kw)
            finally:
                rec = _CURRENT.get(None)
                if rec is not None:
                    rec[key] = (t, now())

        setattr(owner, name, wrapper)

    timed_async(intake.Desk, "_reserve", "reserve")
    timed_async(intake.Desk, "_submit", "submit")
    timed_sync(intake.builders, "received_body", "build")
    original_hash = intake.hash_lookup_code

    def hash_lookup_code(*args: Any, **kw: Any) -> Any:
        t = now()
        try:
            return original_hash(*args, **kw)
        finally:
            current.setdefault("hashes", []).append((t, now()))

    intake.hash_lookup_code = hash_lookup_code  # type: ignore[assignment]

    # -- per group ------------------------------------------------------------------------------------
    original_commit = intake.Desk._commit

    async def group_commit(self: Any, group: list[Any]) -> None:
        g: dict[str, Any] = {"n": len(group), "start": now(), "sign": 0.0}
        current["group"] = g
        try:
            await original_commit(self, group)
        finally:
            g["end"] = now()
            TRACE["groups"].append(g)
            current.pop("group", None)

    intake.Desk._commit = group_commit  # type: ignore[method-assign]
    original_write = intake.Desk._write_group

    async def write_group(self: Any, db: Any, group: list[Any]) -> Any:
        g = current.get("group")
        t = now()
        try:
            return await original_write(self, db, group)
        finally:
            if g is not None:
                g["write"] = (t, now())

    intake.Desk._write_group = write_group  # type: ignore[method-assign]
    original_sign = journal.sign_entry

    def sign_entry(*args: Any, **kw: Any) -> Any:
        t = now()
        try:
            return original_sign(*args, **kw)
        finally:
            g = current.get("group")
            if g is not None:
                g["sign"] += now() - t

    journal.sign_entry = sign_entry  # type: ignore[assignment]
    original_many = projection.apply.many  # type: ignore[attr-defined]

    async def apply_many(db: Any, entries: Any) -> None:
        t = now()
        try:
            await original_many(db, entries)
        finally:
            g = current.get("group")
            if g is not None:
                g["project"] = (t, now())

    projection.apply.many = apply_many  # type: ignore[attr-defined]
    original_sync_many = getattr(projection.apply, "sync_many", None)
    if original_sync_many is not None:  # on the writer's thread

        def sync_many(*args: Any) -> None:
            t = now()
            try:
                original_sync_many(*args)
            finally:
                g = current.get("group")
                if g is not None:
                    g["project"] = (t, now())

        projection.apply.sync_many = sync_many  # type: ignore[attr-defined]
    original_aio_commit = aiosqlite.Connection.commit

    async def aio_commit(self: Any) -> None:
        inner: list[float] = []

        def commit() -> None:
            path = getattr(self, "_probe_path", None)
            size = os.stat(path).st_mtime_ns if path else 0
            inner.append(now())
            self._conn.commit()
            inner.append(now())
            inner.append(float(path is not None and os.stat(path).st_mtime_ns != size))

        t = now()
        if getattr(self, "_conn", None) is None:
            return await original_aio_commit(self)
        await self._execute(commit)
        end = now()
        g = current.get("group")
        TRACE["commits"].append((t, inner[0], inner[1], end, g["n"] if g else 0, inner[2]))

    aiosqlite.Connection.commit = aio_commit  # type: ignore[method-assign]

    import node.store as store

    original_open = store.Store.open.__func__  # type: ignore[attr-defined]

    async def store_open(cls: Any, path: Any, *args: Any, **kw: Any) -> Any:
        s = await original_open(cls, path, *args, **kw)
        s._writer._probe_path = str(path)  # a commit that changes the main file ran a checkpoint
        if os.environ.get("PROBE_NOCKPT"):  # experiment: no automatic checkpoints on the writer
            await s._writer.execute("PRAGMA wal_autocheckpoint=0")
        return s

    store.Store.open = classmethod(store_open)  # type: ignore[assignment]

    if os.environ.get("PROBE_SWITCH"):  # experiment: the GIL switch interval
        sys.setswitchinterval(float(os.environ["PROBE_SWITCH"]))

    # -- event-loop lag -------------------------------------------------------------------------------
    original_serve = service.serve

    async def serve(*args: Any, **kw: Any) -> None:
        loop = asyncio.get_running_loop()

        def beat(expected: float) -> None:
            t = now()
            if t - expected > 0.002:
                TRACE["lag"].append((expected, t - expected))
            loop.call_later(0.001, beat, now() + 0.001)

        loop.call_later(0.001, beat, now() + 0.001)
        await original_serve(*args, **kw)

    service.serve = serve  # type: ignore[assignment]

    def dump() -> None:
        out.write_text(json.dumps(TRACE))

    atexit.register(dump)


import contextvars  # noqa: E402

_CURRENT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("probe_request")


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    v = [x * 1000 for x in values]
    return (
        f"n={len(v)} p50 {_pct(v, 0.5):.2f} p90 {_pct(v, 0.9):.2f} p99 {_pct(v, 0.99):.2f}"
        f" max {max(v):.2f} ms"
    )


def analyse(folder: Path) -> None:
    node = json.loads((folder / "node.json").read_text())
    clients = json.loads((folder / "clients.json").read_text())  # [[start, end], ...]
    lat = [e - s for s, e in clients]
    t0 = min(s for s, _ in clients)
    t1 = max(e for _, e in clients)
    reqs = [r for r in node["requests"] if t0 <= r["start"] <= t1]
    print(f"clients: {_ms(lat)}")
    print(f"server receive(): {_ms([r['end'] - r['start'] for r in reqs])}")
    for key in ("reserve", "build", "submit"):
        print(f"  {key}: {_ms([r[key][1] - r[key][0] for r in reqs if key in r])}")
    groups = [g for g in node["groups"] if t0 <= g["start"] <= t1]
    commits = [c for c in node["commits"] if t0 <= c[0] <= t1 and c[4]]
    sizes = [g["n"] for g in groups]
    print(f"groups: {len(groups)}, size mean {statistics.mean(sizes):.1f} max {max(sizes)}")
    print(f"  _commit: {_ms([g['end'] - g['start'] for g in groups])}")
    print(f"  _write_group: {_ms([g['write'][1] - g['write'][0] for g in groups if 'write' in g])}")
    print(f"  signing: {_ms([g['sign'] for g in groups])}")
    print(f"  projection: {_ms([g['project'][1] - g['project'][0] for g in groups if 'project' in g])}")
    print(f"  COMMIT await: {_ms([c[3] - c[0] for c in commits])}")
    print(f"  sqlite commit (fsync): {_ms([c[2] - c[1] for c in commits])}")
    print(f"    with a checkpoint: {_ms([c[2] - c[1] for c in commits if c[5]])}")
    print(
        f"  hop to writer: {_ms([c[1] - c[0] for c in commits])}, back: {_ms([c[3] - c[2] for c in commits])}"
    )
    gcs = [g for g in node["gc"] if t0 <= g[0] <= t1]
    for gen in (0, 1, 2):
        print(f"gc gen {gen}: {_ms([g[1] for g in gcs if g[2] == gen])}")
    lags = [x for x in node["lag"] if t0 <= x[0] <= t1]
    print(
        f"loop lag > 2 ms: {_ms([x[1] for x in lags])}, total {sum(x[1] for x in lags) * 1000:.0f} ms"
        f" of {(t1 - t0) * 1000:.0f} ms"
    )
    # the slowest 1% of requests: what overlapped them
    slow = sorted(clients, key=lambda c: c[1] - c[0])[-max(1, len(clients) // 100) :]
    print("slowest requests (client ms): overlapping commit max fsync, gc, lag")
    for s, e in slow:
        fs = [c[2] - c[1] for c in commits if c[1] < e and c[2] > s]
        gcd = [g[1] for g in gcs if s <= g[0] <= e]
        lg = [x[1] for x in lags if s <= x[0] <= e]
        gsz = [g["n"] for g in groups if g["start"] < e and g["end"] > s]
        print(
            f"  {1000 * (e - s):6.1f} ms at +{1000 * (s - t0):7.1f}:"
            f" fsync max {1000 * max(fs, default=0):5.1f}"
            f" (n {len(fs)}), groups {gsz}, gc {[round(1000 * x, 1) for x in gcd]},"
            f" lag {[round(1000 * x, 1) for x in lg]}"
        )


def main() -> None:
    if sys.argv[1] == "--analyse":
        analyse(Path(sys.argv[2]))
        return
    _install(Path(sys.argv[1]))
    from node.cli import main as node_main

    sys.exit(node_main(sys.argv[2:]))


if __name__ == "__main__":
    main()
