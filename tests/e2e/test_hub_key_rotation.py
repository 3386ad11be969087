"""Hub key rotation (SPEC §7.10) between a real hub and a real node on 127.0.0.1: ``rotate-key`` on the
stopped hub, the node adopts the new key from the rotation entry signed by the key it pins, later receipts
verify under the new key, ``motcua-central verify`` still passes; a rotation signed by another key is
refused and pins nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from central.cli import main as central_main
from central.mailbox import Post
from node.config import load as load_node_config
from node.hublink import current_link
from node.provision import Node
from node.sync_client import SyncError
from node.sync_service import SyncService
from protocol import KEY_ROTATION, generate_private_key, load_private_key, public_key_text
from tests.e2e.realnode import FAST_LOOKUP, HubRunner, NodeRunner, reception

pytestmark = pytest.mark.e2e


async def _pinned(node: Node) -> str:
    async with node.store.read() as db:
        link = await current_link(db)
    assert link is not None
    return link.hub_key.text


async def test_rotation_is_followed_by_the_node_and_a_forged_one_is_refused(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    data = hub.config.data_dir
    old = hub.hub.public_key.text
    created = await NodeRunner.create(tmp_path / "br", await hub.invite("BR01"), node_id="BR01", block=0)
    node = await Node.open(load_node_config(created.data, {}), lookup_iterations=FAST_LOOKUP)
    service = await SyncService.open(node)
    assert service is not None
    try:
        await node.desk.receive(reception(), actor="an.nv")
        await hub.hub.mailbox.post([Post("hub.BR01", "test.note", {"text": "before"})])
        await service.client.sync_once()
        assert await _pinned(node) == old

        await hub.stop()
        assert await asyncio.to_thread(central_main, ["--data", str(data), "rotate-key"]) == 0
        new = public_key_text(load_private_key(hub.config.key_path))
        assert new != old
        assert list(data.glob("hub.key.retired-*")) and not (data / "hub.key.next").exists()
        await hub.start()
        assert hub.hub.public_key.text == new

        await node.desk.receive(reception(), actor="an.nv")
        report = await service.client.sync_once()
        assert report.pushed >= 1 and report.receipt is not None
        report.receipt.verify(hub.hub.public_key)  # signed by the new key, accepted by the node
        assert service.client.hub_key.text == new
        assert await _pinned(node) == new  # persisted
        again = await service.client.sync_once()  # mailboxes rotated too: nothing refused
        assert again.pulled == 0

        await hub.stop()
        assert await asyncio.to_thread(central_main, ["--data", str(data), "verify", "--quiet"]) == 0
        await hub.start()

        # a rotation entry signed by another key than the one the node pins
        other = generate_private_key()
        body = {"key": public_key_text(generate_private_key()), "previous": new, "effective": 1}
        hub.hub.mailbox.hub_key = other
        await hub.hub.mailbox.post([Post("hub", KEY_ROTATION, body)])
        with pytest.raises(SyncError) as info:
            await service.client.sync_once()
        assert info.value.code == "bad_key_rotation"
        assert "not signed by the pinned hub key" in info.value.reason
        assert service.client.hub_key.text == new
        assert await _pinned(node) == new
    finally:
        await service.close()
        await node.close()
        await hub.stop()
