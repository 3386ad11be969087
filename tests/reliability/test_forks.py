"""S4: a node restored from an old backup (its old key, its old log) appends offline and syncs: the
hub must see the fork on the first push, keep both entries as evidence, quarantine the node and raise
an alarm (hub DB and ``GET /v1/sync/state``); nothing it held is overwritten.

Two shapes: (b1) the restored copy appends *fewer* entries than the hub holds (the client would
otherwise stop at "behind_hub" and the hub would never learn), (b2) it appends *more* (the client
would otherwise push only past the hub's head and be refused as ``prev_mismatch``, a damaged chain,
with no evidence kept). (c) two histories under one key pushed by hand is in tests/central/test_push.py.
(a) the copy restored while online, before any append: the node's sync client recovers the suffix the
hub holds, with 0 forks, and appends go on in the same epoch. The client under test is the node's own
``NodeSyncClient`` (node/sync_service.py).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from central.app import make_app
from central.config import load
from node.provision import init_node
from node.sync_client import SyncError
from tests.node.conftest import reception
from tests.reliability.hubsim import new_hub
from tests.reliability.netsoak import open_enrolled, open_node, sync_client
from tests.reliability.procs import free_port
from tests.tools import node_db


@pytest.mark.parametrize(
    "extra", [0, 1, 6], ids=["online-restore", "restored-copy-shorter", "restored-copy-longer"]
)
async def test_restored_backup_appending_offline_is_a_fork_on_first_push(
    tmp_path: Path,
    extra: int,
    figures,  # type: ignore[no-untyped-def]
) -> None:
    hub_dir = tmp_path / "hub"
    await new_hub(hub_dir, [])
    port = free_port()
    server = TestServer(make_app(load(hub_dir, environ={})), host="127.0.0.1", port=port)
    await server.start_server()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "CN01"
    await init_node(data, node_id="CN01", unit_code="000.00.01.H26", name="CN01", code_block=1)
    node, hub_key = await open_enrolled(data, hub_dir, base)
    client = sync_client(node, hub_key, base)
    restored = None
    try:
        for _ in range(3):
            await node.desk.receive(reception(), actor="an.nv")
        await client.sync_once()
        await client.transport.close()  # type: ignore[attr-defined]
        await node.close()
        shutil.copytree(data, tmp_path / "backup")  # yesterday's backup: key, database, blobs
        node = await open_node(data)
        client = sync_client(node, hub_key, base)
        for _ in range(3):
            await node.desk.receive(reception(), actor="an.nv")
        report = await client.sync_once()
        held = report.receipt.seq  # type: ignore[union-attr]
        # The disk dies; someone restores the backup and keeps working offline.
        await client.transport.close()  # type: ignore[attr-defined]
        await node.close()
        node = None  # type: ignore[assignment]
        restored = await open_node(tmp_path / "backup")
        for _ in range(extra):
            await restored.desk.receive(reception(note="sau khi khôi phục"), actor="an.nv")
        before = (
            sqlite3.connect(hub_dir / "hub.sqlite3")
            .execute("SELECT seq, hash, raw FROM entries WHERE log = 'CN01' ORDER BY seq")
            .fetchall()
        )
        rclient = sync_client(restored, hub_key, base)
        if extra == 0:  # (a): nothing appended since the restore: recover from the hub, no fork
            await rclient.sync_once()
            hub = sqlite3.connect(hub_dir / "hub.sqlite3")
            assert hub.execute("SELECT count(*) FROM forks").fetchone() == (0,)
            assert hub.execute("SELECT status FROM nodes WHERE node = 'CN01'").fetchone()[0] == "active"
            mine = (
                node_db(tmp_path / "backup" / "node.sqlite3")
                .execute("SELECT seq, hash, raw FROM entries WHERE log = 'CN01' AND epoch = 1 ORDER BY seq")
                .fetchall()
            )
            assert mine == before  # the suffix came back from the hub, byte for byte
            code = (await restored.desk.receive(reception(note="sau khôi phục"), actor="an.nv")).code
            await rclient.sync_once()
            assert hub.execute("SELECT count(*) FROM entries WHERE dossier = ?", (code,)).fetchone() == (1,)
            figures("S4 online restore", hub_held=held, recovered=held - 4, forks=0)
            await rclient.transport.close()  # type: ignore[attr-defined]
            return
        with pytest.raises(SyncError) as info:
            await rclient.sync_once()  # the first push
        assert info.value.code == "fork", info.value
        hub = sqlite3.connect(hub_dir / "hub.sqlite3")
        forks = hub.execute(
            "SELECT log, epoch, seq, stored_hash, offered_hash, offered_raw FROM forks"
        ).fetchall()
        assert len(forks) == 1
        log, epoch, seq, stored_hash, offered_hash, offered_raw = forks[0]
        mine = (
            node_db(tmp_path / "backup" / "node.sqlite3")
            .execute("SELECT hash, raw FROM entries WHERE log = 'CN01' AND epoch = 1 AND seq = ?", (seq,))
            .fetchone()
        )
        assert (offered_hash, bytes(offered_raw)) == (mine[0], bytes(mine[1]))  # the restored copy's entry
        assert stored_hash == before[seq - 1][1] != offered_hash  # and the one the hub held, both kept
        assert hub.execute("SELECT status FROM nodes WHERE node = 'CN01'").fetchone()[0] == "quarantined"
        assert hub.execute("SELECT kind FROM alarms WHERE node = 'CN01'").fetchall() == [("fork",)]
        after = hub.execute("SELECT seq, hash, raw FROM entries WHERE log = 'CN01' ORDER BY seq").fetchall()
        assert after == before  # nothing overwritten, nothing appended
        state = await rclient.call("GET", "/v1/sync/state")
        assert b'"status":"quarantined"' in state  # what the nodes (and the dashboard) see
        shape = "shorter" if extra == 1 else "longer"
        figures(f"S4 fork after restore ({shape})", hub_held=held, restored_head=4 + extra, fork_at_seq=seq)
        await rclient.transport.close()  # type: ignore[attr-defined]
    finally:
        if restored is not None:
            await restored.close()
        if node is not None:
            await node.close()
        await server.close()
