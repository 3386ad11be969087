"""A hub and two REAL nodes (node.app with its sync task) on loopback ports.

Intake on both while the hub is down; the hub comes back and everything converges; an officer's result
for a dossier received at CN01 reaches the pickup branch CN02, which hands it back; restore from the hub
into a new epoch; a restore from an old backup while online recovers instead of forking; the same backup
used offline forks, and the hub keeps the evidence; a revoked node refuses intake and says so.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import aiohttp
import pytest

from central.audit import verify_all
from central.errors import now_ms
from central.officers import add_officer
from node.blobs import BlobStore
from node.config import load as load_node_config
from node.provision import Node
from node.restore import provision_from_hub
from node.verify import verify_node
from protocol import b64url_encode, canonical
from protocol.dossier.codes import RESTORE_CODE_MARGIN
from tests.e2e.realnode import UNIT, HubRunner, NodeRunner, eventually, seed_users

pytestmark = pytest.mark.e2e


async def _converged(hub: HubRunner, node: NodeRunner) -> bool:
    status = await node.sync_status()
    head = status["head"]
    return status["sync"]["unacknowledged"] == 0 and await hub.head(node.config.node_id, head["epoch"]) == (
        head["seq"],
        head["hash"],
    )


async def _officer(hub: HubRunner, code: str, action: str, fields: dict[str, object], token: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.post(
            f"{hub.base}/api/v1/officer/dossiers/{code}/{action}", data=canonical(fields)
        ) as resp:
            assert resp.status == 201, await resp.text()


async def _verify(node: NodeRunner) -> list[tuple[str, int, int]]:
    opened = await Node.open(load_node_config(node.data, {}))
    try:
        report = await verify_node(opened.store, node.config.node_id)
    finally:
        await opened.close()
    assert report.ok, report.differences
    return [(h.log, h.epoch, h.seq) for h in report.heads]


async def test_offline_intake_converges_and_a_result_reaches_the_pickup_branch(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    a = await NodeRunner.create(tmp_path / "cn01", await hub.invite("CN01"), node_id="CN01", block=0)
    b = await NodeRunner.create(tmp_path / "cn02", await hub.invite("CN02"), node_id="CN02", block=5)
    await hub.stop()
    await a.start()
    await b.start()
    try:
        # The hub is down: both nodes receive dossiers at once, and say they are offline.
        received = await a.receive(pickup="CN02")
        code = received["code"]
        other = await a.receive()
        at_b = await b.receive()
        assert code.startswith(UNIT) and at_b["code"].endswith("-5000")

        async def offline(node: NodeRunner) -> bool:
            sync = (await node.sync_status())["sync"]
            return sync["online"] is False and sync["unacknowledged"] >= 1

        await eventually(lambda: offline(a), what="CN01 offline")
        await eventually(lambda: offline(b), what="CN02 offline")
        assert (await a.dossier(code))["hub"] == {"held": False, "receipt_time": None, "entries": 1}
        html = await a.page(f"/ho-so/{code}")
        assert "Chưa gửi lên trung tâm" in html and "Mất kết nối với trung tâm" in html

        # The hub comes back: both converge (heads equal, receipts stored, "the hub holds it").
        await hub.start()
        await eventually(lambda: _converged(hub, a), what="CN01 converged")
        await eventually(lambda: _converged(hub, b), what="CN02 converged")
        for node, dossier in ((a, code), (a, other["code"]), (b, at_b["code"])):
            hold = (await node.dossier(dossier))["hub"]
            assert hold["held"] and hold["receipt_time"] > 0
        html = await a.page(f"/ho-so/{code}")
        assert "Trung tâm đã nhận lúc" in html and "Đang kết nối với trung tâm" in html
        assert (await a.sync_status())["sync"]["online"] is True

        # An officer records the result (with its file); it reaches CN01 and the pickup branch CN02.
        officer = await add_officer(hub.hub.store, "o1", "Cán bộ xử lý", now=now_ms())
        await _officer(hub, code, "transfer", {"agency": "UBND phường Tây Hồ"}, officer)
        result = {"media_type": "application/pdf", "pages": 1, "data": b64url_encode(b"%PDF-1.7 kq" * 50)}
        await _officer(hub, code, "result_ready", {"outcome": "approved", "file": result}, officer)

        async def resolved(node: NodeRunner) -> bool:
            status, body = await node.call("GET", f"/api/v1/dossiers/{code}")
            return status == 200 and body["status_label"] == "Đã xử lý xong"

        await eventually(lambda: resolved(b), what="the result at the pickup branch")
        await eventually(lambda: resolved(a), what="the result at the receiving branch")
        at_pickup = await b.dossier(code)
        assert at_pickup["hub"] is None  # CN02 wrote nothing about it yet: nothing of its own to send
        assert "return" in at_pickup["actions"]
        assert "Đã xử lý xong" in await b.page(f"/ho-so/{code}")
        result_sha = hashlib.sha256(b"%PDF-1.7 kq" * 50).hexdigest()  # the result file, to print at CN02

        async def fetched() -> bool:
            return BlobStore(b.data, low_disk_bytes=0).verify(result_sha)

        await eventually(fetched, what="the result file at the pickup branch")

        # CN02 hands the result back; the hub's fold over both branches and the mailboxes agrees.
        status, body = await b.call(
            "POST",
            f"/api/v1/dossiers/{code}/events",
            {"action": "return", "recipient": {"name": "Nguyễn Văn An"}},
        )
        assert status == 201, body
        assert body["status"] == 10
        await eventually(lambda: _converged(hub, b), what="the return at the hub")
        state = await hub.app[  # type: ignore[index]
            __import__("central.dossiers", fromlist=["DOSSIERS"]).DOSSIERS
        ].refresh(code)
        assert state is not None and int(state.status) == 10
        assert (await b.dossier(code))["hub"]["held"]

        # A local event after the hub's decision is ordered after it (HLC observed from the mailbox).
        timeline = (await b.dossier(code))["timeline"]
        assert [t["kind"] for t in timeline][-2:] == ["dossier.result_ready", "dossier.returned"]
        assert timeline[-1]["time"] >= timeline[-2]["time"]
    finally:
        await a.stop()
        await b.stop()
    # Both nodes verify: their own log, the mailboxes under the pinned hub key, projections = refold.
    heads_b = await _verify(b)
    assert ("hub.CN02", 1, 5) in heads_b  # genesis, the forwarded reception, transfer, result file, result
    await _verify(a)
    audit = await verify_all(hub.hub)
    assert audit.problems == []
    await hub.stop()


async def test_restore_into_a_new_epoch_and_from_an_old_backup_without_a_fork(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    a = await NodeRunner.create(tmp_path / "cn01", await hub.invite("CN01"), node_id="CN01", block=0)
    await a.start()
    try:
        first = [(await a.receive())["code"] for _ in range(2)]
        await eventually(lambda: _converged(hub, a), what="CN01 converged")
        await a.stop()
        backup = tmp_path / "cn01-backup"
        a.copy_data(backup)  # the "day-old" backup
        await a.start()
        later = [(await a.receive())["code"] for _ in range(3)]
        await eventually(lambda: _converged(hub, a), what="CN01 converged again")
        held_seq, held_hash = await hub.head("CN01", 1)
    finally:
        await a.stop()

    # Restored from the backup while online: it notices the hub holds more, recovers, continues.
    shutil.rmtree(a.data)
    shutil.copytree(backup, a.data)
    await a.start()
    try:
        status = await a.sync_status()
        assert status["head"]["seq"] == held_seq and status["head"]["hash"] == held_hash
        assert status["sync"]["append_block"] is None
        for code in later:  # the entries made after the backup are back, with their projections
            assert (await a.dossier(code))["hub"]["held"]
        code = (await a.receive())["code"]
        assert code not in first + later and int(code[-4:]) == 6  # never a reused number
        await eventually(lambda: _converged(hub, a), what="CN01 after the recovery")
    finally:
        await a.stop()
    assert (await hub.hub.registry.node("CN01")).status == "active"  # type: ignore[union-attr]
    assert await hub.hub.store.fetchall("SELECT * FROM forks") == []

    # An officer's result (with its file) for one of them, then the disk dies: restore into a new epoch.
    officer = await add_officer(hub.hub.store, "o1", "Cán bộ xử lý", now=now_ms())
    result = {"media_type": "application/pdf", "pages": 1, "data": b64url_encode(b"%PDF-1.7 kq" * 50)}
    await _officer(hub, first[0], "transfer", {"agency": "UBND phường Tây Hồ"}, officer)
    await _officer(hub, first[0], "result_ready", {"outcome": "approved", "file": result}, officer)
    shutil.rmtree(a.data)
    token = await hub.invite("CN01")
    report = await provision_from_hub(tmp_path / "cn01-new", token, extra={"sync_interval_seconds": 1})
    assert report.epoch == 2 and report.imported == {1: held_seq + 1}  # + the dossier after the recovery
    assert report.previous is not None and report.previous.seq == held_seq + 1
    assert report.config is not None
    assert report.config.unit_code == UNIT and report.config.code_block_index == 0  # from the restored log
    assert report.pulled == 4 and report.blobs_fetched == 1 and report.blobs_missing == []
    restored = NodeRunner(tmp_path / "cn01-new", report.config, await seed_users(report.config))
    await restored.start()
    try:
        for old in [*first, *later, code]:
            detail = await restored.dossier(old)
            assert detail["status"] == (9 if old == first[0] else 2) and detail["hub"]["held"]
        fresh = (await restored.receive())["code"]
        # past every number of every epoch, and past the code floor of the restore (receipts the lost disk
        # may have printed after its last sync)
        assert report.code_floor is not None and report.code_floor.seq == 6 + RESTORE_CODE_MARGIN
        assert int(fresh[-4:]) == 7 + RESTORE_CODE_MARGIN
        await eventually(lambda: _converged(hub, restored), what="epoch 2 at the hub")
    finally:
        await restored.stop()
    assert await hub.head("CN01", 2) != (0, None)
    assert [h[:2] for h in await _verify(restored)] == [("CN01", 1), ("CN01", 2), ("hub.CN01", 1)]
    assert (await verify_all(hub.hub)).problems == []
    await hub.stop()
