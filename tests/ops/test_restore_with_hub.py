"""Restore of a day-old backup against a real hub on loopback: no fork, no reused code (key rotation:
tests/e2e/test_node_key_rotation.py).

The node side is the real node (init, desk, journal, projections) with the real sync client over its
store; the last test goes through the CLI only (init with a token, sync --once, backup, restore-backup).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from central.app import make_app
from central.config import load as load_hub_config
from central.hub import HUB, Hub
from node import projection
from node.backup import create_backup
from node.config import NodeConfig
from node.config import load as load_node_config
from node.migrations import split_sql
from node.provision import Node, init_node
from node.reprovision import (
    PENDING_FILE,
    ForkRefused,
    enroll_with_hub,
    finish_restore,
    restore_backup,
)
from node.restore import provision_from_hub
from node.store import Store
from node.sync_client import SYNC_SQL, HttpTransport, SyncClient
from node.sync_store import SqliteLocalLog
from protocol import PublicKey
from protocol.dossier.codes import RESTORE_CODE_MARGIN
from tests.central.helpers import make_hub_dir
from tests.node.conftest import FAST_LOOKUP, UNIT, reception

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wall() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[tuple[Hub, str]]:
    config = load_hub_config(make_hub_dir(tmp_path / "hub").data_dir, environ={})
    app = make_app(config)
    port = _free_port()
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield app[HUB], f"http://127.0.0.1:{port}"
    finally:
        await server.close()


async def _token(hub: Hub, base: str, node: str = "CN01") -> str:
    token = await hub.registry.invite(
        node, "branch", "Chi nhánh Tây Hồ", hub_url=base, hub_key=hub.public_key, now=_wall(), ttl_ms=600_000
    )
    return token.encode()


async def _open(config: NodeConfig) -> Node:
    node = await Node.open(config, lookup_iterations=FAST_LOOKUP)
    # the sync client's tables (the node migrates them once the sync integration lands)
    async with node.store.write() as db:
        for statement in split_sql(SYNC_SQL.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ")):
            await db.execute(statement)
    return node


def _client(node: Node, base: str, hub_key: PublicKey) -> SyncClient:
    local = SqliteLocalLog(
        node.store,  # type: ignore[arg-type]
        node.config.node_id,
        lambda sha: node.config.blob_dir / "sha256" / sha[:2] / sha,
        project=projection.apply,
        wall=_wall,
        data_dir=node.config.data_dir,
    )
    return SyncClient(
        node.config.node_id, node.journal.epoch, node.key, hub_key, local, HttpTransport(base), wall=_wall
    )


async def _intake(node: Node, n: int) -> list[str]:
    return [(await node.desk.receive(reception(), actor="an.nv")).code for _ in range(n)]


async def _sync(node: Node, base: str, hub_key: PublicKey) -> int:
    client = _client(node, base, hub_key)
    try:
        return (await client.sync_once()).pushed
    finally:
        await client.transport.close()  # type: ignore[attr-defined]


async def _hub_codes(hub: Hub) -> list[str]:
    rows = await hub.store.fetchall(
        "SELECT raw FROM entries WHERE log = 'CN01' AND kind = 'dossier.received' ORDER BY epoch, seq"
    )
    import json

    return [json.loads(bytes(r[0]))["body"]["dossier"] for r in rows]


async def test_restore_of_an_old_backup_neither_forks_nor_reuses_a_code(
    hub: tuple[Hub, str], tmp_path: Path
) -> None:
    central, base = hub
    config = await init_node(tmp_path / "cn01", node_id="CN01", unit_code=UNIT, name="Tây Hồ", code_block=1)
    node = await _open(config)
    view = await enroll_with_hub(await _token(central, base), node.key)
    assert view.epoch == 1 and view.previous is None
    try:
        early = await _intake(node, 2)
        assert await _sync(node, base, view.hub_key) == 3
        archive = tmp_path / "cn01-yesterday.tar"
        await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01")
        late = await _intake(node, 2)  # after the backup, and synced: the hub holds them
        assert await _sync(node, base, view.hub_key) == 2
    finally:
        await node.close()  # the disk dies here

    restored_cfg, _ = await restore_backup(archive, tmp_path / "new-disk")
    started, hub_view = await finish_restore(restored_cfg, token=await _token(central, base))
    assert hub_view is not None and hub_view.hub_key == view.hub_key
    assert started.epoch == 2 and started.fetched == 2 and started.stranded == 0
    assert started.previous is not None and (started.previous.epoch, started.previous.seq) == (1, 5)
    restored_cfg = load_node_config(tmp_path / "new-disk", {})
    assert restored_cfg.hub_url == base  # remembered for the sync client

    restored = await _open(restored_cfg)
    try:
        assert restored.journal.epoch == 2
        again = await _intake(restored, 2)
        # genesis of epoch 2, its code floor, two receptions
        assert await _sync(restored, base, view.hub_key) == 4
    finally:
        await restored.close()
    numbers = [int(code.rsplit("-", 1)[1]) for code in early + late + again]
    # the restored node continued a margin past 1003: the lost disk may have printed codes after its sync
    assert started.code_floor is not None and started.code_floor.seq == 1003 + RESTORE_CODE_MARGIN
    assert numbers == [1000, 1001, 1002, 1003, 1004 + RESTORE_CODE_MARGIN, 1005 + RESTORE_CODE_MARGIN]
    assert await _hub_codes(central) == early + late + again
    assert (await central.store.fetchone("SELECT count(*) FROM forks"))[0] == 0
    info = await central.registry.node("CN01")
    assert info is not None and (info.status, info.epoch) == ("active", 2)


async def test_receipts_printed_after_the_backup_and_lost_are_never_reissued(
    hub: tuple[Hub, str], tmp_path: Path
) -> None:
    """A reception answered (receipt printed) after the backup and never synced is lost with the disk: the
    restored epoch's code floor keeps every such code from naming another dossier, and survives a second
    restore (from the hub) of a node that lost receptions of its own."""
    central, base = hub
    config = await init_node(tmp_path / "cn01", node_id="CN01", unit_code=UNIT, name="Tây Hồ", code_block=1)
    node = await _open(config)
    view = await enroll_with_hub(await _token(central, base), node.key)
    try:
        synced = await _intake(node, 1)
        await _sync(node, base, view.hub_key)
        archive = tmp_path / "b.tar"
        await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01")
        printed = await _intake(node, 3)  # receipts printed; the link was down; then the disk died
    finally:
        await node.close()
    cfg, _ = await restore_backup(archive, tmp_path / "r")
    started, _ = await finish_restore(cfg, token=await _token(central, base))
    assert started.code_floor is not None and started.code_floor.margin == RESTORE_CODE_MARGIN
    restored = await _open(load_node_config(tmp_path / "r", {}))
    try:
        assert await _sync(restored, base, view.hub_key) == 2  # genesis and code floor reach the hub
        second = await _intake(restored, 2)  # printed too, never synced: lost again with this disk
    finally:
        await restored.close()
    # the lost node could have printed anything from 1001 up to its floor; the restored one starts above
    prefix = synced[0].rsplit("-", 1)[0]  # unit and day
    lost_could_print = {f"{prefix}-{n:04d}" for n in range(1001, 1001 + RESTORE_CODE_MARGIN)}
    assert set(printed) <= lost_could_print and not set(second) & lost_could_print
    assert not set(second) & set(synced + printed)

    report = await provision_from_hub(tmp_path / "h", await _token(central, base), wall=_wall)
    assert (
        report.code_floor is not None
        and report.code_floor.seq >= started.code_floor.seq + RESTORE_CODE_MARGIN
    )
    from_hub = await _open(load_node_config(tmp_path / "h", {}))
    try:
        third = await _intake(from_hub, 2)
    finally:
        await from_hub.close()
    assert not set(third) & set(synced + printed + second)
    floor_day = report.code_floor.day
    assert all(
        int(c.rsplit("-", 1)[1]) > report.code_floor.seq for c in third if floor_day.strftime("%y%m%d") in c
    )
    assert (await central.store.fetchone("SELECT count(*) FROM forks"))[0] == 0


async def test_an_old_backup_with_an_unsynced_tail_keeps_its_codes(
    hub: tuple[Hub, str], tmp_path: Path
) -> None:
    central, base = hub
    config = await init_node(tmp_path / "cn01", node_id="CN01", unit_code=UNIT, name="Tây Hồ", code_block=1)
    node = await _open(config)
    view = await enroll_with_hub(await _token(central, base), node.key)
    try:
        synced = await _intake(node, 1)
        await _sync(node, base, view.hub_key)
        unsynced = await _intake(node, 2)  # the link was down: the hub never saw these two
        archive = tmp_path / "b.tar"
        await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01")
    finally:
        await node.close()
    cfg, _ = await restore_backup(archive, tmp_path / "r")
    started, _ = await finish_restore(cfg, token=await _token(central, base))
    assert started.stranded == 2 and started.previous is not None and started.previous.seq == 2
    restored = await _open(load_node_config(tmp_path / "r", {}))
    try:
        after = await _intake(restored, 1)
        await _sync(restored, base, view.hub_key)
    finally:
        await restored.close()
    assert not set(after) & set(synced + unsynced)  # the stranded codes stay used
    assert (await central.store.fetchone("SELECT count(*) FROM forks"))[0] == 0


async def test_cli_restore_backup_then_the_nodes_own_sync_carries_on(
    hub: tuple[Hub, str], tmp_path: Path
) -> None:
    """The operator's path: init with a token, sync, back up, lose the disk, restore-backup with a fresh
    token, then ``sync --once`` of the node itself (its hub link for the new epoch) pushes the new epoch."""
    import io

    from node.cli import main as node_main

    central, base = hub
    data = tmp_path / "cn01"

    def cli(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return node_main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()

    token = await _token(central, base)
    code, _, err = await asyncio.to_thread(
        cli, "init", "--data", str(data), "--node-id", "CN01", "--unit-code", UNIT, "--name", "Tây Hồ",
        "--code-block", "1", "--hub", base, "--token", token,
    )  # fmt: skip
    assert code == 0, err
    node = await Node.open(load_node_config(data, {}), lookup_iterations=FAST_LOOKUP)
    try:
        before = await _intake(node, 2)
    finally:
        await node.close()
    assert (await asyncio.to_thread(cli, "sync", "--data", str(data), "--once"))[0] == 0
    archive = tmp_path / "cn01.tar"
    assert (await asyncio.to_thread(cli, "backup", "--data", str(data), "--to", str(archive)))[0] == 0
    node = await Node.open(load_node_config(data, {}), lookup_iterations=FAST_LOOKUP)
    try:
        before += await _intake(node, 1)
    finally:
        await node.close()
    assert (await asyncio.to_thread(cli, "sync", "--data", str(data), "--once"))[0] == 0

    restored = tmp_path / "new-disk"
    token = await _token(central, base)
    code, out, err = await asyncio.to_thread(
        cli, "restore-backup", "--from", str(archive), "--data", str(restored), "--token", token
    )
    assert code == 0, err
    assert "epoch 2\nsealed 1:4\nfetched 1\n" in out
    node = await Node.open(load_node_config(restored, {}), lookup_iterations=FAST_LOOKUP)
    try:
        after = await _intake(node, 1)
    finally:
        await node.close()
    code, _, err = await asyncio.to_thread(cli, "sync", "--data", str(restored), "--once")
    assert code == 0, err
    held = await central.store.head("CN01", 2)
    assert held is not None and held.seq == 3  # genesis of epoch 2, its code floor, the new reception
    assert "code floor" in out  # numbering continues past a margin for receipts printed after the backup
    assert int(after[0].rsplit("-", 1)[1]) == 1 + RESTORE_CODE_MARGIN + max(
        int(c.rsplit("-", 1)[1]) for c in before
    )
    assert (await central.store.fetchone("SELECT count(*) FROM forks"))[0] == 0


async def test_a_diverged_backup_shorter_than_the_hub_is_refused_as_a_fork(
    hub: tuple[Hub, str], tmp_path: Path
) -> None:
    """A backup of a cloned disk (old key, one entry the hub never took) that ends before the hub's head:
    the hub's continuation does not follow its last entry. Refused as ``ForkRefused``, naming the cause
    (another history than the hub's) and the way out (restore from the hub); nothing written."""
    central, base = hub
    config = await init_node(tmp_path / "cn01", node_id="CN01", unit_code=UNIT, name="Tây Hồ", code_block=1)
    node = await _open(config)
    view = await enroll_with_hub(await _token(central, base), node.key)
    try:
        await _intake(node, 1)
        assert await _sync(node, base, view.hub_key) == 2
    finally:
        await node.close()
    clone_dir = tmp_path / "clone"
    shutil.copytree(config.data_dir, clone_dir)  # the misuse: a raw copy of the disk, old key included
    node = await _open(config)
    try:
        await _intake(node, 2)
        assert await _sync(node, base, view.hub_key) == 2  # the hub holds epoch 1 up to seq 4
    finally:
        await node.close()
    clone = await _open(load_node_config(clone_dir, {}))
    try:
        await _intake(clone, 1)  # seq 3 of epoch 1, another entry than the hub's seq 3
        archive = tmp_path / "clone.tar"
        await asyncio.to_thread(create_backup, clone_dir, archive, node_id="CN01")
    finally:
        await clone.close()
    cfg, _ = await restore_backup(archive, tmp_path / "r")
    with pytest.raises(ForkRefused) as refused:
        await finish_restore(cfg, token=await _token(central, base))
    assert "lịch sử khác" in str(refused.value) and "motcua-node restore" in str(refused.value)
    assert (tmp_path / "r" / PENDING_FILE).exists()  # still pending
    store = await Store.open(cfg.db_path)
    try:
        assert (await store.fetchone("SELECT max(epoch) FROM entries"))[0] == 1  # no new epoch written
        assert (await store.fetchone("SELECT max(seq) FROM entries WHERE epoch = 1"))[0] == 3
    finally:
        await store.close()
