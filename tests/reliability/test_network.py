"""N1-N3: nodes sync with a real hub process through a hostile network; nothing lost, nothing
duplicated, the hub's log always a prefix of each node's, convergence within the bound after healing.
See ``tests.reliability.netsoak`` for the harness and the checkers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.proxy import Faults
from tests.reliability.netsoak import NetSoak, SoakPlan


async def _soak(tmp: Path, plan: SoakPlan, seed: int) -> dict[str, object]:
    soak = NetSoak(tmp, plan, seed)
    await soak.start()
    try:
        return await soak.run()
    finally:
        await soak.close()


async def test_hostile_network_quick(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    plan = SoakPlan(seconds=20, partition_at=8, partition_s=5, intake_per_s=2.0, converge_s=60)
    result = await _soak(tmp_path, plan, seed=20261122)
    figures("N1/N3 hostile network (quick)", **result)
    assert result["intakes_acked"] > 60


async def test_ack_loss_focus(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    """N2: every answer after the hub committed is dropped for a while: retries must not duplicate and
    the receipts a node finally keeps must be the hub's own."""
    plan = SoakPlan(
        seconds=8, partition_at=1e9, partition_s=0, intake_per_s=3.0, nodes=2, faults=Faults(ack_loss=1.0)
    )
    result = await _soak(tmp_path, plan, seed=2)
    figures("N2 ack loss (quick)", **result)
    assert result["faults"]["response_dropped"] > 10  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.timeout(7200)
async def test_hostile_network_soak(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    minutes = float(os.environ.get("MOTCUA_SOAK_MINUTES", "10"))
    plan = SoakPlan(seconds=minutes * 60, partition_at=minutes * 20, partition_s=min(300, minutes * 10))
    result = await _soak(tmp_path, plan, seed=7)
    figures(f"N1 hostile network (soak, {minutes:g} min)", **result)


async def test_a_request_the_transport_resent_is_signed_again_not_failed() -> None:
    """Found by the soak: aiohttp re-sends a GET/PUT by itself when a connection breaks; the hub then
    sees the same signature twice and answers 401 ``replayed``. The round must re-sign and go on."""
    from node.sync_client import SyncClient
    from protocol import ErrorReply, canonical, generate_private_key

    answers = [
        (401, canonical(ErrorReply("replayed", "seen", 1).to_wire())),
        (200, b'{"ok":true}'),
    ]
    nonces: list[str] = []

    class Flaky:
        async def request(self, method: str, target: str, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
            nonces.append(headers["X-Motcua-Nonce"])
            return answers.pop(0)

    key = generate_private_key()
    client = SyncClient("CN01", 1, key, None, None, Flaky())  # type: ignore[arg-type]
    assert await client.call("GET", "/v1/sync/state") == b'{"ok":true}'
    assert len(nonces) == 2 and nonces[0] != nonces[1]
