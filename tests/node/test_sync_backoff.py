"""The sync loop's backoff: failures grow it, but a failed round that made progress (a receipt stored,
a chunk accepted before the link reset) starts it again from the first step (found by N4: with the
default 300 s cap a van's long upload over a flaky uplink waited minutes between chunks)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from node.sync_client import SyncClient, SyncError


class _Rounds(SyncClient):
    """Every round fails with a link reset; ``progress`` says whether it got a chunk through first."""

    def __init__(self, progress: bool) -> None:  # only what run() touches
        self.wake = asyncio.Event()
        self.advanced = 0
        self.moves = progress

    async def sync_once(self) -> Any:
        if self.moves:
            self.advanced += 1
        raise SyncError("unreachable", "connection reset by peer", retryable=True)


async def _delays(progress: bool, rounds: int = 24) -> list[float]:
    client = _Rounds(progress)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= rounds:
            raise asyncio.CancelledError

    random.seed(7)
    with pytest.raises(asyncio.CancelledError):
        await client.run(interval=30, base=1.0, cap=300.0, sleep=sleep)
    return delays


async def test_a_round_that_made_progress_restarts_the_backoff() -> None:
    assert max(await _delays(progress=True)) <= 2.0  # always the first step: uniform(0, base * 2)


async def test_rounds_without_progress_back_off_up_to_the_cap() -> None:
    delays = await _delays(progress=False)
    assert max(delays) > 30  # grew past the first steps (seeded: deterministic)
    assert max(delays) <= 300
