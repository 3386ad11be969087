"""Intake benchmark: 16 concurrent API clients against a real node server (``motcua-node serve``) on loopback.

Every dossier is durable and signed before its 201 (WAL, ``synchronous=FULL``), with the production
lookup-code hashing (PBKDF2, ``LOOKUP_ITERATIONS``). The clients are closed-loop: each sends its next
reception when the previous one is answered (201), so with C clients the mean latency is C / rate.
Each round starts a fresh node and measures, just before, two ceilings on this machine: bare
single-row SQLite commits per second on the same disk (node pragmas), and lookup-code hashes per second
with one thread per core (every reception needs one: the CPU floor). After each round
``motcua-node verify`` re-checks the whole log and the projections. Prints each round (with the node's
CPU per dossier from /proc, event loop apart, and the clients' own CPU), then the medians of the rounds
as figures: ``intake_rate`` as a ratio of the rate that 16 closed-loop clients need for a 25 ms mean
latency (clients / 25 ms; the commit and lookup-hash ceilings are printed for reference), and p50/p99,
whose goal is p99 <= 25 ms (ratio p99/25 ms, lower is better).

    python -m bench.intake [--clients 16] [--dossiers 800] [--rounds 3]

Investigation aids: ``MOTCUA_BENCH_PYSPY=out.txt`` samples the node with py-spy; ``MOTCUA_BENCH_TRACE=DIR``
serves the node through ``bench.intake_probe`` (phase timings per reception and per group commit, fsync
and checkpoints, GC pauses, event-loop lag) and saves the clients' stamps; then
``python -m bench.intake_probe --analyse DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.report import figure

CLI = [sys.executable, "-m", "node"]
BODY = {
    "procedure": "1.001193",
    "applicant": {
        "name": "Nguyễn Văn An",
        "id_type": "cccd",
        "id_number": "001090012345",
        "phone": "0912345678",
    },
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def commit_ceiling(folder: Path, n: int = 300) -> float:
    """Single-row commits per second with the node's pragmas, on the same disk."""
    db = sqlite3.connect(folder / "ceiling.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (x BLOB)")
    payload = os.urandom(1500)
    start = time.perf_counter()
    for _ in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (payload,))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return n / elapsed


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    todo: list[int],
    out: list[float],
    stamps: list[tuple[float, float]] | None = None,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while todo:
        todo.pop()
        start = time.perf_counter()
        async with session.post(url, json=BODY, headers=headers) as response:
            await response.read()
            if response.status != 201:
                raise RuntimeError(f"intake answered {response.status}: {await response.text()}")
        out.append(time.perf_counter() - start)
        if stamps is not None:
            stamps.append((start, start + out[-1]))


async def drive(
    port: int, token: str, clients: int, dossiers: int, stamps: list[tuple[float, float]] | None = None
) -> tuple[list[float], float]:
    url = f"http://127.0.0.1:{port}/api/v1/dossiers"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        warm: list[float] = []
        await _client(session, url, token, list(range(clients)), warm)
        todo = list(range(dossiers))
        latencies: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(_client(session, url, token, todo, latencies, stamps) for _ in range(clients)))
        return latencies, time.perf_counter() - start


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the node exited during startup")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the node did not become ready")


def _cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[task.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _profile(pid: int) -> subprocess.Popen[bytes] | None:
    """Investigation aid: with MOTCUA_BENCH_PYSPY=PATH (and py-spy installed by hand), sample the node."""
    out = os.environ.get("MOTCUA_BENCH_PYSPY")
    if not out:
        return None
    cmd = ["py-spy", "record", "--pid", str(pid), "-r", "250", "-f", "raw", "-o", out, "--threads"]
    if os.environ.get("MOTCUA_BENCH_PYSPY_IDLE"):
        cmd.append("--idle")
    profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let py-spy attach before the run starts
    return profiler


def hash_ceiling(seconds: float = 1.0) -> float:
    """Lookup-code hashes per second (production PBKDF2) with one thread per core: every reception
    needs one, so this is the CPU ceiling of intake on this machine right now."""
    from protocol.dossier.codes import hash_lookup_code

    threads = os.cpu_count() or 1
    done = [0] * threads

    def work(i: int, until: float) -> None:
        while time.perf_counter() < until:
            hash_lookup_code("000.00.01.H26-260101-0001", "K7M2QX9P")
            done[i] += 1

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(work, range(threads), [start + seconds] * threads))
        return sum(done) / (time.perf_counter() - start)


@dataclass
class Round:
    p50: float
    p99: float
    rate: float
    commit_ceiling: float
    hash_ceiling: float
    node_cpu_ms: float
    loop_cpu_ms: float
    client_cpu_ms: float
    load: float


def one_round(clients: int, dossiers: int) -> Round:
    """A fresh node, served; ``clients`` closed-loop clients post ``dossiers`` receptions."""
    with tempfile.TemporaryDirectory(prefix="motcua-bench-") as tmp:
        folder = Path(tmp)
        data = folder / "node"
        subprocess.run(
            [
                *CLI,
                "init",
                "--data",
                str(data),
                "--node-id",
                "BENCH",
                "--unit-code",
                "000.00.01.H26",
                "--name",
                "Bench",
                "--code-block",
                "0",
                "--code-block-size",
                "9999",
            ],
            check=True,
            capture_output=True,
        )
        token = subprocess.run(
            [*CLI, "token", "create", "--data", str(data), "--name", "bench"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        ceiling = commit_ceiling(folder)
        hashes = hash_ceiling()
        port = _port()
        trace = os.environ.get("MOTCUA_BENCH_TRACE")
        stamps: list[tuple[float, float]] | None = None
        serve_cli = CLI
        if trace:  # investigation aid: the node with timing probes (bench/intake_probe.py)
            Path(trace).mkdir(parents=True, exist_ok=True)
            serve_cli = [sys.executable, "-m", "bench.intake_probe", str(Path(trace) / "node.json")]
            stamps = []
        with (folder / "serve.log").open("wb") as log:
            proc = subprocess.Popen(
                [*serve_cli, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        profiler = None
        try:
            _wait_ready(port, proc)
            profiler = _profile(proc.pid)
            cpu_before = _cpu_seconds(proc.pid)
            client_before = time.process_time()
            latencies, elapsed = asyncio.run(drive(port, token, clients, dossiers, stamps))
            client_cpu = time.process_time() - client_before
            node_cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu_seconds(proc.pid).items()}
            load = os.getloadavg()[0]
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
            proc.terminate()
            proc.wait(timeout=30)
        if trace and stamps is not None:
            (Path(trace) / "clients.json").write_text(json.dumps(stamps))
        verify = subprocess.run([*CLI, "verify", "--data", str(data)], capture_output=True, text=True)
        if verify.returncode != 0:
            raise SystemExit(f"verify failed after the run: {verify.stdout}{verify.stderr}")
        status = json.loads(
            subprocess.run(
                [*CLI, "status", "--data", str(data), "--json"], check=True, capture_output=True, text=True
            ).stdout
        )
        assert status["dossiers"] == dossiers + clients, status
    ms = sorted(x * 1000 for x in latencies)
    n = len(ms)
    result = Round(
        p50=statistics.median(ms),
        p99=ms[min(n - 1, int(n * 0.99))],
        rate=n / elapsed,
        commit_ceiling=ceiling,
        hash_ceiling=hashes,
        node_cpu_ms=1000 * sum(node_cpu.values()) / n,
        loop_cpu_ms=1000 * node_cpu.get(str(proc.pid), 0.0) / n,
        client_cpu_ms=1000 * client_cpu / n,
        load=load,
    )
    print(
        f"round: p50 {result.p50:.1f} ms, p99 {result.p99:.1f} ms, {result.rate:.0f} dossiers/s;"
        f" ceilings {ceiling:.0f} commits/s, {hashes:.0f} lookup hashes/s;"
        f" CPU per dossier: node {result.node_cpu_ms:.2f} ms (event loop {result.loop_cpu_ms:.2f}),"
        f" clients {result.client_cpu_ms:.2f} ms; load average {load:.1f}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--dossiers", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [one_round(args.clients, args.dossiers) for _ in range(args.rounds)]

    def med(field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in rounds))

    rate, hashes = med("rate"), med("hash_ceiling")
    print(
        f"median of {len(rounds)} rounds; {args.clients} clients can wait no less than"
        f" {1000 * args.clients / hashes:.1f} ms each at the lookup-hash ceiling alone",
        flush=True,
    )
    figure("sqlite_commit_ceiling", med("commit_ceiling"), "commits/s", 1.0, 1.0)
    figure("lookup_hash_ceiling", hashes, "hashes/s", 1.0, 1.0)
    # With C closed-loop clients the mean latency is C / rate, so a latency goal of 25 ms needs at least
    # C / 25 ms dossiers/s: that is the rate's goal. The hash and commit ceilings are printed above for
    # reference (group commit shares fsyncs; the lookup hash is cheap since 10^3 iterations).
    needed = args.clients / 0.025
    figure("intake_rate", rate, "dossiers/s", rate / needed, 1.0)
    figure("intake_p50", med("p50"), "ms", med("p50") / 25.0, 1.0, lower_is_better=True)
    figure("intake_p99", med("p99"), "ms", med("p99") / 25.0, 1.0, lower_is_better=True)


if __name__ == "__main__":
    main()
