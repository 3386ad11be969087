"""Trust on the node side: a revoked node refuses intake and says so; an old backup used offline forks,
and the fork is caught on the first push (the hub keeps the evidence and quarantines the node, which
stops appending); ``motcua-node`` enroll/init/sync/restore as operators run them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from central.errors import now_ms
from protocol import InviteToken
from tests.e2e.realnode import UNIT, HubRunner, NodeRunner, eventually, reception

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "node"]


async def _block(node: NodeRunner) -> str | None:
    return (await node.sync_status())["sync"]["append_block"]  # type: ignore[no-any-return]


async def test_a_revoked_node_refuses_intake_and_says_so(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    a = await NodeRunner.create(tmp_path / "van", await hub.invite("VAN03"), node_id="VAN03", block=0)
    await a.start()
    try:
        await a.receive()
        await hub.hub.registry.revoke("VAN03", after=None, reason="máy bị mất", now=now_ms())

        async def revoked() -> bool:
            return await _block(a) == "node_revoked"

        await eventually(revoked, what="the revocation at the node")
        status, body = await a.call("POST", "/api/v1/dossiers", reception())
        assert status == 503 and body["error"] == "append_blocked" and body["reason"] == "node_revoked"
        assert "thu hồi khóa ký" in body["message"]
        html = await a.page("/ho-so/moi")  # the banner is on every page; views with PII are locked
        assert "Máy trạm đã bị thu hồi." in html and "liên hệ quản trị" in html
        status, body = await a.call("GET", "/api/v1/dossiers")
        assert status == 423 and body["error"] == "pii_locked" and "thu hồi" in body["message"]
        # The block survives a restart with the hub unreachable: the node does not sign as if trusted.
        await a.stop()
        await hub.stop()
        await a.start()
        status, body = await a.call("POST", "/api/v1/dossiers", reception())
        assert status == 503 and body["reason"] == "node_revoked"
    finally:
        await a.stop()
        await hub.stop()


async def test_an_old_backup_used_offline_forks_and_is_quarantined(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    a = await NodeRunner.create(tmp_path / "cn01", await hub.invite("CN01"), node_id="CN01", block=0)
    await a.start()
    try:
        await a.receive()
        await eventually(lambda: _synced(a), what="first sync")
        await a.stop()
        a.copy_data(tmp_path / "backup")
        await a.start()
        await a.receive()
        await eventually(lambda: _synced(a), what="second sync")
    finally:
        await a.stop()
    await hub.stop()
    shutil.rmtree(a.data)
    shutil.copytree(tmp_path / "backup", a.data)
    await a.start()  # offline: nothing tells the old copy that the hub holds more; intake goes on
    try:
        await a.receive()
        await hub.start()

        async def stopped() -> bool:
            info = await hub.hub.registry.node("CN01")
            quarantined = info is not None and info.status == "quarantined"
            return quarantined and await _block(a) in ("fork", "node_quarantined")

        await eventually(stopped, what="the fork at the node and at the hub")
        forks = await hub.hub.store.fetchall("SELECT log, epoch, seq FROM forks")
        assert [tuple(f) for f in forks] == [("CN01", 1, 3)]  # both versions of seq 3 kept as evidence
        status, body = await a.call("POST", "/api/v1/dossiers", reception())
        assert status == 503 and body["error"] == "append_blocked"
        assert "Máy trạm tạm ngừng ghi." in await a.page("/hom-nay")
    finally:
        await a.stop()
        await hub.stop()


async def _synced(node: NodeRunner) -> bool:
    sync = (await node.sync_status())["sync"]
    return sync["unacknowledged"] == 0 and sync["online"] is True


async def _cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_enroll_init_sync_and_restore(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    try:
        token = await hub.invite("CN07")
        common = ["--unit-code", UNIT, "--name", "Chi nhánh 7", "--code-block", "2"]
        # A damaged token, a token of another hub key (pinning), then the real one, then it again (used).
        code, _, err = await _cli(
            "init", "--data", str(tmp_path / "x"), "--node-id", "CN07", "--token", "motcua1.xx", *common
        )
        assert code == 2 and "Mã mời không hợp lệ" in err and not (tmp_path / "x" / "node.key").exists()
        parsed = InviteToken.parse(token)
        other_fp = InviteToken(parsed.hub, "0000-0000-0000-0000-0000", parsed.node, parsed.secret).encode()
        code, _, err = await _cli(
            "init", "--data", str(tmp_path / "x"), "--node-id", "CN07", "--token", other_fp, *common
        )
        assert code == 2 and "dấu vân tay" in err and not (tmp_path / "x" / "node.toml").exists()
        token = await hub.invite("CN07")
        data = str(tmp_path / "cn07")
        code, out, err = await _cli("init", "--data", data, "--node-id", "CN07", "--token", token, *common)
        assert code == 0, err
        assert "epoch 1" in out and "code block 2000-2999" in out
        code, _, err = await _cli("enroll", "--data", data, "--token", token)
        assert code == 2 and "đã đăng ký" in err
        code, _, err = await _cli(
            "init", "--data", str(tmp_path / "y"), "--node-id", "CN07", "--token", token, *common
        )
        assert code == 2 and "đã được dùng" in err

        # Offline init, then enroll with its own token; sync --once; the hub down is exit 3.
        offline = str(tmp_path / "cn08")
        code, _, err = await _cli(
            "init", "--data", offline, "--node-id", "CN08", "--unit-code", UNIT, "--name", "CN08"
        )
        assert code == 0, err
        code, _, err = await _cli("sync", "--data", offline, "--once")
        assert code == 2 and "chưa đăng ký" in err
        code, out, err = await _cli("enroll", "--data", offline, "--token", await hub.invite("CN08"))
        assert code == 0 and f"hub {hub.base}" in out, err
        code, out, err = await _cli("sync", "--data", offline, "--once", "--json")
        summary = json.loads(out)
        assert code == 0 and summary["ok"] and summary["pushed"] == 1 and summary["unacknowledged"] == 0, err
        assert await hub.head("CN08", 1) != (0, None)
        await hub.stop()
        code, out, err = await _cli("sync", "--data", offline, "--once")
        assert code == 3 and "unreachable" in err
        await hub.start()

        # The disk is lost: restore from the hub (unit code and block come from the restored log).
        shutil.rmtree(offline)
        code, out, err = await _cli(
            "restore",
            "--hub",
            hub.base,
            "--token",
            await hub.invite("CN08"),
            "--data",
            offline,
            "--unit-code",
            UNIT,
            "--code-block",
            "0",
        )
        assert code == 0, err
        assert (
            "epoch 2" in out
            and "restored epoch 1: 1 entries" in out
            and "previous epoch 1 sealed at seq 1" in out
        )
        code, out, err = await _cli("verify", "--data", offline)
        assert code == 0, out + err
        code, out, err = await _cli("sync", "--data", offline, "--once", "--json")
        assert code == 0 and json.loads(out)["unacknowledged"] == 0, err
    finally:
        await hub.stop()
