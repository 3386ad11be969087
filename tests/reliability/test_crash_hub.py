"""D2: a real hub process is SIGKILLed at random points while three nodes push, then restarted.

Each cycle: start the hub (a warm fork running ``motcua-central serve``'s code; every 50th cycle the
installed script, cold); three simulated nodes (real keys, real signed requests over loopback) ask
for their head and push batches of 1-20 entries, sometimes re-sending a few the hub already holds;
the hub is SIGKILLed a seeded random 0-150 ms in. With the hub down, its database is checked:
``integrity_check`` ok, every log contiguous and byte-identical to what its node signed (0 gaps,
0 duplicates), and every receipt any node holds is signed by the hub and covered by stored data (the
Rekor SET / CT SCT promise: 0 acked-but-missing). ``motcua-central verify`` runs every 50 cycles.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protocol import PublicKey, Receipt
from tests.reliability.hubsim import HubNode, check_hub_db, new_hub
from tests.reliability.procs import ROOT, Zygote, free_port, spawn_cli, wait_serving


async def _pusher(
    sim: HubNode, session: aiohttp.ClientSession, base: str, hub_key: PublicKey, rng: random.Random
) -> tuple[int, int]:
    """Push until the hub dies; return (acknowledged pushes, refused-as-gap)."""
    acked = gaps = 0
    try:
        status, state = await sim.call(session, base, "GET", "/v1/sync/state")
        assert status == 200, state
        held = next(h["seq"] for h in state["logs"] if h["epoch"] == sim.epoch)
        for _ in range(1000):
            first = held + 1
            if held > 3 and rng.random() < 0.2:
                first -= rng.randint(1, 3)  # overlap: must be counted as duplicates, never stored twice
            last = held + rng.randint(1, 20)
            status, body = await sim.push(session, base, first, last)
            if status == 200:
                receipt = Receipt.from_wire(body["receipt"])
                receipt.verify(hub_key)
                assert (receipt.seq, receipt.head) == (last, sim.entries[last - 1].hash), body
                sim.receipts.append(receipt)
                held = receipt.seq
                acked += 1
            elif status == 409 and body["error"] == "seq_gap":
                held = body["head"]["seq"]
                gaps += 1
            else:
                raise AssertionError(f"{sim.node}: push answered {status}: {body}")
    except (aiohttp.ClientError, OSError, TimeoutError):
        pass  # the hub was killed under us
    return acked, gaps


def _cli_verify(data: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "central", "--data", str(data), "verify", "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


async def hub_crash_soak(tmp: Path, *, kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    nodes = [HubNode(f"CN0{i}") for i in range(1, 4)]
    data = tmp / "hub"
    hub_key = await new_hub(data, nodes)
    port = free_port()
    log = tmp / "hub.log"
    zygote = Zygote()
    pushes = gaps = 0
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            for cycle in range(kills):
                argv = ["--data", str(data), "serve", "--listen", f"127.0.0.1:{port}"]
                spawn = spawn_cli if cycle % 50 == 0 else zygote.spawn
                proc = spawn("central", argv, port, log)
                await wait_serving(proc)
                tasks = [
                    asyncio.create_task(_pusher(sim, session, proc.url, hub_key, random.Random(rng.random())))
                    for sim in nodes
                ]
                await asyncio.sleep(rng.uniform(0, 0.15))
                proc.kill()
                for acked, refused in await asyncio.gather(*tasks):
                    pushes += acked
                    gaps += refused
                check_hub_db(data / "hub.sqlite3", nodes, hub_key)
                if cycle % 50 == 49:
                    _cli_verify(data)
    finally:
        zygote.close()
    _cli_verify(data)
    held = check_hub_db(data / "hub.sqlite3", nodes, hub_key)
    return {
        "kills": kills,
        "acked_pushes": pushes,
        "receipts_held": sum(len(n.receipts) for n in nodes),
        "acked_but_missing": 0,
        "duplicates": 0,
        "entries_on_hub": sum(held.values()),
        "seq_gap_answers": gaps,
        "seconds": round(time.monotonic() - started, 1),
    }


async def test_hub_crash_100_kills(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await hub_crash_soak(tmp_path, kills=100, seed=20261122)
    figures("D2 hub crash (quick)", **result)
    assert result["acked_pushes"] > 100


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_hub_crash_soak_500_kills(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await hub_crash_soak(tmp_path, kills=500, seed=11)
    figures("D2 hub crash (soak)", **result)
