"""The offline lease is judged in hub time: the node's clock corrected by the offset seen at the last
hello (S9 + P3: a node 10 years ahead must not lock at once, one 2 years behind must not keep its lease
for 2 more years)."""

from __future__ import annotations

from pathlib import Path

from node.lease import lock_state
from node.migrations import split_sql
from node.store import Store
from node.sync_client import SYNC_SQL
from protocol import generate_private_key
from protocol.encoding import canonical
from protocol.lease import sign_lease
from tests.tools import keyring

HOUR = 3_600_000
DAY = 24 * HOUR
HUB_NOW = 1_795_000_000_000


async def _state(tmp_path: Path, offset_ms: int | None, node_now: int) -> str:
    keyring(tmp_path)
    store = await Store.open(tmp_path / "node.sqlite3")
    try:
        lease = sign_lease(generate_private_key(), "VAN01", 1, HUB_NOW, HUB_NOW + 72 * HOUR)
        async with store.write() as db:
            for sql in split_sql(SYNC_SQL):
                await db.execute(sql.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS "))
            rows = [("lease", canonical(lease.to_wire()).decode()), ("hub_status", "active")]
            if offset_ms is not None:
                rows.append(("clock_offset_ms", str(offset_ms)))
            await db.executemany("INSERT OR REPLACE INTO sync_state (key, value) VALUES (?, ?)", rows)
        return (await lock_state(store, node_now)).reason
    finally:
        await store.close()


async def test_a_clock_ten_years_ahead_keeps_a_fresh_lease(tmp_path: Path) -> None:
    ahead = 3650 * DAY
    assert await _state(tmp_path, -ahead, HUB_NOW + ahead + HOUR) == "valid"


async def test_a_clock_two_years_behind_does_not_stretch_the_lease(tmp_path: Path) -> None:
    behind = 730 * DAY
    assert await _state(tmp_path, behind, HUB_NOW - behind + 73 * HOUR) == "expired"


async def test_without_an_offset_the_plain_clock_decides(tmp_path: Path) -> None:
    assert await _state(tmp_path, None, HUB_NOW + 73 * HOUR) == "expired"
