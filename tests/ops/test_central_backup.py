"""Hub backup while serving, and restore: the key only when asked (or from its offline copy, checked),
every member verified, and nodes re-push what the restored hub lost."""

from __future__ import annotations

import asyncio
import shutil
import tarfile
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from central import cli as central_cli
from central.app import make_app
from central.audit import verify_all
from central.backup import BackupError, create_backup, restore_backup
from central.config import load as load_hub_config
from central.hub import HUB
from central.mailbox import BROADCAST, Post
from node.provision import init_node
from node.reprovision import enroll_with_hub
from protocol import generate_private_key, save_private_key
from tests.central.helpers import make_hub_dir
from tests.node.conftest import UNIT
from tests.ops.test_restore_with_hub import _free_port, _intake, _open, _sync, _token

pytestmark = pytest.mark.e2e


async def test_backup_while_serving_then_restore_and_nodes_repush(tmp_path: Path) -> None:
    hub_dir = make_hub_dir(tmp_path / "hub").data_dir
    app = make_app(load_hub_config(hub_dir, environ={}))
    port = _free_port()
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    base = f"http://127.0.0.1:{port}"
    hub = app[HUB]
    config = await init_node(tmp_path / "cn01", node_id="CN01", unit_code=UNIT, name="Tây Hồ")
    node = await _open(config)
    try:
        view = await enroll_with_hub(await _token(hub, base), node.key)
        await hub.mailbox.post([Post(BROADCAST, "hub.calendar", {"version": "2027", "calendar": {}})])
        await _intake(node, 2)
        await _sync(node, base, view.hub_key)
        # a chunk of an upload in progress and a complete blob, as the hub stores them
        (hub_dir / "blobs" / "chunks" / ("a" * 64)).mkdir(parents=True)
        (hub_dir / "blobs" / "chunks" / ("a" * 64) / "0").write_bytes(b"chunk")
        archive = tmp_path / "backups" / "hub.tar"
        argv = ["--data", str(hub_dir), "backup", "--to", str(archive)]
        code = await asyncio.to_thread(central_cli.main, argv)
        assert code == 0
        with tarfile.open(archive) as tar:
            names = tar.getnames()
        assert "hub.key" not in names and "hub.sqlite3" in names and f"blobs/chunks/{'a' * 64}/0" in names
        await _intake(node, 2)  # after the backup: the hub loses these with its disk
        await _sync(node, base, view.hub_key)
    finally:
        await server.close()

    # no key in the archive: the restore needs the offline copy, and only the right key
    with pytest.raises(BackupError, match="--key"):
        restore_backup(archive, tmp_path / "r1")
    wrong = tmp_path / "wrong.key"
    save_private_key(generate_private_key(), wrong)
    with pytest.raises(BackupError, match="not the key of this hub"):
        restore_backup(archive, tmp_path / "r2", key_file=wrong)
    assert not (tmp_path / "r2" / "hub.sqlite3").exists()
    restored_dir = tmp_path / "restored"
    key = str(hub_dir / "hub.key")
    argv = ["--data", str(restored_dir), "restore-backup", "--from", str(archive), "--key", key]
    code = central_cli.main(argv)
    assert code == 0
    verify = ["--data", str(restored_dir), "verify", "--quiet"]
    assert await asyncio.to_thread(central_cli.main, verify) == 0

    app = make_app(load_hub_config(restored_dir, environ={}))
    port = _free_port()
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        restored = app[HUB]
        held = await restored.store.head("CN01", 1)
        assert held is not None and held.seq == 3  # genesis + 2: what the backup held
        assert await _sync(node, f"http://127.0.0.1:{port}", view.hub_key) == 2  # the node re-pushes
        held = await restored.store.head("CN01", 1)
        assert held is not None and held.seq == 5
        assert (await restored.store.fetchone("SELECT count(*) FROM forks"))[0] == 0
        report = await verify_all(restored, progress=False)
        assert not report.problems
    finally:
        await server.close()
        await node.close()


async def test_with_key_and_damage_detection(tmp_path: Path) -> None:
    hub_dir = make_hub_dir(tmp_path / "hub").data_dir
    app = make_app(load_hub_config(hub_dir, environ={}))
    server = TestServer(app, host="127.0.0.1", port=_free_port())
    await server.start_server()
    await server.close()  # created the database
    sha = "b" * 64
    blob = hub_dir / "blobs" / "sha256" / sha[:2] / sha
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"not what the name says")
    with pytest.raises(BackupError, match="damaged"):
        create_backup(hub_dir, tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()
    shutil.rmtree(hub_dir / "blobs" / "sha256" / sha[:2])
    archive = tmp_path / "k.tar"
    from central.mfa import load_wrap_key

    load_wrap_key(hub_dir)  # what the first admin's TOTP enrolment makes
    manifest = create_backup(hub_dir, archive, with_key=True)
    assert manifest.with_key
    restore_backup(archive, tmp_path / "ok")
    assert (tmp_path / "ok" / "hub.key").read_bytes() == (hub_dir / "hub.key").read_bytes()
    from central.backup import MFA_KEY_NAME
    from central.mfa import KEY_FILE

    assert MFA_KEY_NAME == KEY_FILE  # the admins' TOTP secrets stay readable after a restore
    assert (tmp_path / "ok" / KEY_FILE).read_bytes() == (hub_dir / KEY_FILE).read_bytes()
    assert (tmp_path / "ok" / KEY_FILE).stat().st_mode & 0o077 == 0
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(archive, tmp_path / "ok")
    data = bytearray(archive.read_bytes())
    data[data.index(b"SQLite format 3") + 200] ^= 0xFF  # damage the database member
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    with pytest.raises(BackupError, match="hub.sqlite3 does not match"):
        restore_backup(tmp_path / "bad.tar", tmp_path / "bad")
    assert not (tmp_path / "bad" / "hub.key").exists()
