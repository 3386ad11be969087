"""Hub key rotation (SPEC §7.10), the paths left untested before: a node offline across two rotations catches
up by verifying the chain of rotations, and a hub killed at each step of the key swap (``rotate``, then
``finish_swap``) comes back with one consistent key in force, that nodes verify and that rotates again.

The crashes are real: ``motcua-central`` runs in a child process that ``os._exit``s right after the step
(tests/e2e/hub_crash.py); the hub is then started from the files and database it left.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from central.cli import main as central_main
from central.mailbox import Post
from central.rotation import key_history, key_in_force, next_path
from node.config import load as load_node_config
from node.hublink import current_link
from node.provision import Node
from node.sync_service import SyncService
from protocol import load_private_key, public_key_text
from tests.e2e.hub_crash import KILLED, STEPS
from tests.e2e.realnode import FAST_LOOKUP, HubRunner, NodeRunner, reception

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


async def _pinned(node: Node) -> str:
    async with node.store.read() as db:
        link = await current_link(db)
    assert link is not None
    return link.hub_key.text


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(central_main, list(argv))


async def _killed(step: str, *argv: str) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.e2e.hub_crash", step, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == KILLED, (done.returncode, done.stdout, done.stderr)


async def _node(hub: HubRunner, tmp_path: Path) -> tuple[Node, SyncService]:
    created = await NodeRunner.create(tmp_path / "br", await hub.invite("BR01"), node_id="BR01", block=0)
    node = await Node.open(load_node_config(created.data, {}), lookup_iterations=FAST_LOOKUP)
    service = await SyncService.open(node)
    assert service is not None
    return node, service


async def _notes(node: Node) -> list[str]:
    import json

    async with node.store.read() as db:
        async with db.execute(
            "SELECT raw FROM entries WHERE log = 'hub.BR01' AND kind = 'test.note' ORDER BY seq"
        ) as cursor:
            return [json.loads(bytes(r[0]))["body"]["text"] async for r in cursor]


async def test_a_node_offline_across_two_hub_rotations_follows_the_chain(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    data = str(hub.config.data_dir)
    node, service = await _node(hub, tmp_path)
    try:
        await node.desk.receive(reception(), actor="an.nv")
        await service.client.sync_once()
        first = hub.hub.public_key.text
        assert await _pinned(node) == first

        keys = [first]
        for text in ("under the second key", "under the third key"):  # the node does not sync meanwhile
            await hub.stop()
            assert await _cli("--data", data, "rotate-key") == 0
            await hub.start()
            keys.append(hub.hub.public_key.text)
            await hub.hub.mailbox.post([Post("hub.BR01", "test.note", {"text": text})])
        assert len(set(keys)) == 3
        assert key_history(hub.config.db_path) == keys

        await node.desk.receive(reception(), actor="an.nv")
        report = await service.client.sync_once()  # hub: K1 -> K2 -> K3, each rotation under the key before
        assert report.receipt is not None
        report.receipt.verify(hub.hub.public_key)
        assert service.client.hub_key.text == keys[2] and await _pinned(node) == keys[2]
        assert await _notes(node) == ["under the second key", "under the third key"]
        assert (await service.client.sync_once()).pulled == 0
        await hub.stop()
        assert await _cli("--data", data, "verify", "--quiet") == 0
    finally:
        await service.close()
        await node.close()
        await hub.stop()


@pytest.mark.parametrize("step", [*STEPS, "finish_swap_interrupted"])
async def test_a_crash_at_each_step_of_the_key_swap_leaves_one_key_in_force(
    tmp_path: Path, step: str
) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    data = str(hub.config.data_dir)
    key_path = hub.config.key_path
    node, service = await _node(hub, tmp_path)
    try:
        await node.desk.receive(reception(), actor="an.nv")
        await service.client.sync_once()
        old = hub.hub.public_key.text
        await hub.stop()

        if step == "finish_swap_interrupted":  # rotation committed, then the recovery itself is killed
            await _killed("after_commit", "--data", data, "rotate-key")
            await _killed("after_link", "--data", data, "verify", "--quiet")
        else:
            await _killed(step, "--data", data, "rotate-key")
        committed = step != "after_next_key"
        assert (key_in_force(hub.config.db_path) not in (None, old)) == committed  # None: no hub log yet

        await hub.start()  # Hub.open finishes (or abandons) the swap
        in_force = key_in_force(hub.config.db_path) or old
        assert hub.hub.public_key.text == in_force == public_key_text(load_private_key(key_path))
        assert (in_force != old) == committed
        assert not next_path(key_path).exists()
        retired = list(key_path.parent.glob("hub.key.retired-*"))
        assert len(retired) == (1 if committed else 0)
        if committed:
            assert public_key_text(load_private_key(retired[0])) == old

        await node.desk.receive(reception(), actor="an.nv")
        report = await service.client.sync_once()
        assert report.pushed >= 1 and report.receipt is not None
        report.receipt.verify(hub.hub.public_key)
        assert await _pinned(node) == in_force

        await hub.stop()
        assert await _cli("--data", data, "verify", "--quiet") == 0
        assert await _cli("--data", data, "rotate-key") == 0  # and the next rotation goes through
        await hub.start()
        newest = hub.hub.public_key.text
        assert newest not in (old, in_force)
        await service.client.sync_once()
        assert await _pinned(node) == newest
    finally:
        await service.close()
        await node.close()
        await hub.stop()
