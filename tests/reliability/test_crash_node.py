"""D1: a real node process is SIGKILLed at random points during intake bursts, then restarted.

Each cycle: start the node (a warm fork running ``motcua-node serve``'s own code; every 50th cycle the
installed script, cold), fire a burst of concurrent intakes (each with its own Idempotency-Key, plus
the retries of requests whose outcome the last crash left unknown), SIGKILL the process a seeded
random 0-250 ms into the burst, and check the state directory while nothing has it open:
``PRAGMA integrity_check`` ok; the chain verifies (incrementally each cycle; from genesis with a
refold of the projections every 25 cycles); every dossier that was answered 201 is there; no retry
made a second dossier (Jepsen ``set`` + ``total-queue``: an unknown outcome may be present or
absent, never twice). ``motcua-node verify`` (the CLI) runs every 50 cycles and at the end.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.auth import create_token
from node.provision import init_node
from node.store import Store
from tests.node.conftest import reception
from tests.reliability.nodecheck import NodeChecker
from tests.reliability.procs import ROOT, ServerProc, Zygote, free_port, spawn_cli, wait_serving
from tests.tools import artifact_dir

NODE = "CN01"


async def _make_node(data: Path) -> str:
    await init_node(
        data, node_id=NODE, unit_code="000.00.01.H26", name="Chi nhánh Tây Hồ", code_block=0,
        code_block_size=9999,
    )  # fmt: skip
    store = await Store.open(data / "node.sqlite3")
    try:
        return await create_token(store, "crash")
    finally:
        await store.close()


def _cli_verify(data: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "node", "verify", "--data", str(data)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


async def _intake(
    session: aiohttp.ClientSession, url: str, token: str, key: str, body: dict[str, Any]
) -> tuple[str, int, dict[str, Any] | None]:
    try:
        async with session.post(
            url + "/api/v1/dossiers",
            data=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key,
                     "Content-Type": "application/json"},
        ) as resp:  # fmt: skip
            return key, resp.status, await resp.json()
    except (aiohttp.ClientError, OSError, TimeoutError, json.JSONDecodeError):
        return key, 0, None


async def crash_soak(tmp: Path, *, kills: int, seed: int, burst: int = 6) -> dict[str, Any]:
    rng = random.Random(seed)
    data = tmp / "node"
    token = await _make_node(data)
    port = free_port()
    log = tmp / "node.log"
    zygote = Zygote()
    checker = NodeChecker(data, NODE)
    acked: dict[str, str] = {}  # idempotency key -> code answered 201/200
    pending: dict[str, dict[str, Any]] = {}  # outcome unknown: resent with the same key
    statuses: dict[int, int] = {}
    killed_mid_request = 0
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            for cycle in range(kills):
                argv = ["serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"]
                proc: ServerProc = (
                    spawn_cli("node", argv, port, log)
                    if cycle % 50 == 0
                    else zygote.spawn("node", argv, port, log)
                )
                await wait_serving(proc)
                orders = dict(list(pending.items())[:burst])  # retries first, bounded
                pending = {k: b for k, b in pending.items() if k not in orders}
                for i in range(burst - len(orders) // 2):
                    orders[uuid.uuid4().hex] = reception(note=f"cycle {cycle} #{i}")
                tasks = [
                    asyncio.create_task(_intake(session, proc.url, token, k, b)) for k, b in orders.items()
                ]
                await asyncio.sleep(rng.uniform(0, 0.25))  # a 6-intake burst takes ~0.25 s here
                proc.kill()
                results = await asyncio.gather(*tasks)
                for key, status, answer in results:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status in (200, 201):
                        assert answer is not None
                        code = answer["code"]
                        assert acked.setdefault(key, code) == code, f"key {key}: {acked[key]} then {code}"
                    elif status == 0:
                        pending[key] = orders[key]
                        killed_mid_request += 1
                    else:
                        kept = artifact_dir("reliability") / f"crash-node-{seed}-cycle{cycle}.log"
                        kept.write_bytes(log.read_bytes())
                        tail = log.read_text(errors="replace")[-4000:]
                        raise AssertionError(
                            f"intake answered {status}: {answer}; log kept in {kept}:\n{tail}"
                        )
                state = await checker.check(full=cycle % 25 == 24)
                lost = {k: c for k, c in acked.items() if c not in state.dossiers or state.by_key.get(k) != c}
                assert not lost, f"cycle {cycle}: acknowledged dossiers lost: {lost}"
                assert len(state.dossiers) == len(state.by_key), "a dossier without its request, or twice"
                if cycle % 50 == 49:
                    _cli_verify(data)
    finally:
        zygote.close()
    _cli_verify(data)
    final = await checker.check(full=True)
    unknown_present = sum(1 for k in pending if k in final.by_key)
    return {
        "kills": kills,
        "acked_intakes": len(acked),
        "lost": 0,
        "duplicates": 0,
        "requests_cut_by_kill": killed_mid_request,
        "unknown_at_end_present": unknown_present,
        "dossiers": len(final.dossiers),
        "log_entries": final.head_seq,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": round(time.monotonic() - started, 1),
    }


async def test_node_crash_200_kills(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await crash_soak(tmp_path, kills=200, seed=20261122)
    figures("D1 node crash (quick)", **result)
    assert result["acked_intakes"] > 100 and result["requests_cut_by_kill"] > 50


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_node_crash_soak_1000_kills(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await crash_soak(tmp_path, kills=1000, seed=7)
    figures("D1 node crash (soak)", **result)
