"""Node backup and restore-backup: consistent while serving, no key unless asked, every member checked,
and a restored node always starts a new epoch with a new key (local rules, no hub)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from node import config as config_module
from node.backup import MANIFEST_NAME, BackupError, create_backup
from node.cli import main
from node.config import NodeConfig
from node.errors import ConfigError, NodeExists
from node.journal import verify_log
from node.provision import Node, init_node
from node.reprovision import (
    PENDING_FILE,
    ReprovisionError,
    finish_restore,
    refuse_if_pending,
    restore_backup,
)
from node.store import Store
from node.verify import verify_node
from protocol.dossier.codes import RESTORE_CODE_MARGIN
from protocol.keys import load_private_key, public_key_text
from tests.node.conftest import FAST_LOOKUP, UNIT, reception


def _put_blob(data_dir: Path, content: bytes) -> str:
    """A scan in the node's (encrypted) blob store."""
    from node.blobs import BlobStore

    return BlobStore(data_dir, low_disk_bytes=0).stage_bytes(content).sha256


async def _intake(node: Node, n: int) -> list[str]:
    return [(await node.desk.receive(reception(), actor="an.nv")).code for _ in range(n)]


async def _codes(config: NodeConfig) -> list[str]:
    store = await Store.open(config.db_path)
    try:
        return [str(r[0]) for r in await store.fetchall("SELECT code FROM dossiers ORDER BY code")]
    finally:
        await store.close()


@pytest.fixture
async def config(tmp_path: Path) -> NodeConfig:
    return await init_node(
        tmp_path / "node", node_id="CN01", unit_code=UNIT, name="Chi nhánh Tây Hồ", code_block=1
    )


async def test_backup_while_writing_is_consistent_and_has_no_key(config: NodeConfig, tmp_path: Path) -> None:
    node = await Node.open(config, lookup_iterations=FAST_LOOKUP)
    try:
        await _intake(node, 3)
        sha = _put_blob(config.data_dir, b"%PDF-1.4 scan of a birth certificate\n")

        async def keep_writing() -> int:
            done = 0
            for _ in range(15):
                await _intake(node, 1)
                done += 1
            return done

        archive = tmp_path / "out" / "cn01.tar"
        writer = asyncio.create_task(keep_writing())
        manifest = await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01")
        await writer
    finally:
        await node.close()
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert not [p for p in archive.parent.iterdir() if p.name != "cn01.tar"]  # no temp file left behind
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert names[-1] == MANIFEST_NAME
        assert "node.key" not in names
        assert {"node.sqlite3", "node.toml", f"blobs/sha256/{sha[:2]}/{sha}"} <= set(names)
        listed = json.loads(tar.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]
        for name in manifest.files:
            data = tar.extractfile(name).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == listed["files"][name]["sha256"]
    assert listed["with_key"] is False and listed["ident"] == "CN01"
    (head,) = listed["heads"]
    assert head["epoch"] == 1 and 4 <= head["seq"] <= 19  # a snapshot at one instant: genesis + receptions

    # the snapshot is a sound database whose log verifies and whose projections equal a refold
    restored = tmp_path / "restored"
    cfg, _ = await restore_backup(archive, restored)
    store = await Store.open(cfg.db_path)
    try:
        report = await verify_node(store, "CN01")
        assert report.ok and report.heads[0].seq == head["seq"]
    finally:
        await store.close()
    from node.blobs import BlobStore

    assert not (restored / "blobs" / "sha256" / sha[:2] / sha).read_bytes().startswith(b"%PDF")  # ciphertext
    assert BlobStore(restored, low_disk_bytes=0).read_bytes(sha).startswith(b"%PDF-1.4 scan")


async def test_restored_node_needs_a_new_epoch_and_never_reuses_a_code(
    config: NodeConfig, tmp_path: Path
) -> None:
    node = await Node.open(config, lookup_iterations=FAST_LOOKUP)
    try:
        before = await _intake(node, 2)
        archive = tmp_path / "day-old.tar"
        await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01", with_key=True)
        lost = await _intake(node, 2)  # receipts printed after the backup; then the disk dies
    finally:
        await node.close()
    old_key = public_key_text(load_private_key(config.key_path))
    with tarfile.open(archive) as tar:
        assert "node.key" in tar.getnames()  # --with-key puts it in the archive ...

    target = tmp_path / "new-disk"
    cfg, manifest = await restore_backup(archive, target)
    assert manifest.with_key
    new_key = public_key_text(load_private_key(cfg.key_path))
    assert new_key != old_key  # ... but a restored node never signs with it
    assert json.loads((target / PENDING_FILE).read_text())["new_key"] == new_key
    with pytest.raises(ConfigError, match="reprovision"):
        refuse_if_pending(target)
    # the CLI's serve refuses too, naming the next step
    err = io.StringIO()
    assert main(["serve", "--data", str(target)], out=io.StringIO(), err=err) == 2
    assert "motcua-node reprovision" in err.getvalue()

    started, view = await finish_restore(cfg, standalone=True)
    assert view is None and started.epoch == 2 and started.previous is not None
    assert (started.previous.epoch, started.previous.seq) == (1, 3)
    assert started.genesis.body["previous"] == {"epoch": 1, "seq": 3, "head": started.previous.hash}
    assert not (target / PENDING_FILE).exists()
    refuse_if_pending(target)

    restored = await Node.open(cfg, lookup_iterations=FAST_LOOKUP)
    try:
        assert restored.journal.epoch == 2
        after = await _intake(restored, 2)
    finally:
        await restored.close()
    assert not set(after) & set(before + lost)  # a printed receipt never names another dossier
    floor = 1001 + RESTORE_CODE_MARGIN  # the restore day's code floor, in the signed log
    assert started.code_floor is not None and started.code_floor.seq == floor
    assert sorted(int(c.rsplit("-", 1)[1]) for c in before + lost + after) == [
        1000,
        1001,
        1002,
        1003,
        floor + 1,
        floor + 2,
    ]
    store = await Store.open(cfg.db_path)
    try:
        async with store.read() as db:
            heads = await verify_log(db, "CN01")
        assert [(h.epoch, h.seq) for h in heads] == [(1, 3), (2, 4)]  # genesis, code floor, 2 receptions
    finally:
        await store.close()


async def test_standalone_is_refused_for_a_node_that_had_a_hub(config: NodeConfig, tmp_path: Path) -> None:
    text = (config.data_dir / "node.toml").read_text()
    (config.data_dir / "node.toml").write_text(text + 'hub_url = "https://hub.example"\n')
    archive = tmp_path / "b.tar"
    await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01")
    cfg, _ = await restore_backup(archive, tmp_path / "r")
    with pytest.raises(ReprovisionError, match="mã mời mới"):
        await finish_restore(cfg, standalone=True)
    with pytest.raises(ReprovisionError, match="--token"):
        await finish_restore(cfg)
    assert (tmp_path / "r" / PENDING_FILE).exists()  # still pending: nothing was written


async def test_restore_refuses_a_folder_holding_a_node(config: NodeConfig, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar"
    await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01")
    with pytest.raises(NodeExists):
        await restore_backup(archive, config.data_dir)


def _rewrite(archive: Path, change) -> Path:  # type: ignore[no-untyped-def]
    """A copy of ``archive`` with its members passed through ``change(name, data) -> [(name, data)]``."""
    out = archive.with_name("bad-" + archive.name)
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src:
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            for name, new in change(member.name, data):
                info = tarfile.TarInfo(name)
                info.size = len(new)
                dst.addfile(info, io.BytesIO(new))
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda n, d: [(n, d[:-1] + bytes([d[-1] ^ 1]) if n.startswith("blobs/") else d)], "không khớp"),
        (lambda n, d: [] if n == "MANIFEST.json" else [(n, d)], "thiếu MANIFEST.json"),
        (lambda n, d: [] if n == "node.toml" else [(n, d)], "thiếu tệp node.toml"),
        (lambda n, d: [(n, d), ("blobs/sha256/00/" + "0" * 64, b"x")] if n == "node.toml" else [(n, d)],
         "không có trong MANIFEST.json"),
        (lambda n, d: [(n, d), ("../evil", b"x")] if n == "node.toml" else [(n, d)], "không được phép"),
        (lambda n, d: [(n, d), ("node.sqlite3-wal", b"x")] if n == "node.toml" else [(n, d)],
         "không được phép"),
    ],
)  # fmt: skip
async def test_a_damaged_archive_is_refused_naming_the_problem(
    config: NodeConfig,
    tmp_path: Path,
    change,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    _put_blob(config.data_dir, b"%PDF-1.4 a scan\n")
    archive = tmp_path / "b.tar"
    await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01")
    bad = _rewrite(archive, change)
    target = tmp_path / "r"
    with pytest.raises(BackupError, match=message):
        await restore_backup(bad, target)
    assert not (target / "node.toml").exists() and not (target / "node.sqlite3").exists()
    assert not (tmp_path / "evil").exists()


async def test_a_damaged_blob_stops_the_backup_and_leaves_no_file(config: NodeConfig, tmp_path: Path) -> None:
    sha = _put_blob(config.data_dir, b"%PDF-1.4 a scan\n")
    path = config.data_dir / "blobs" / "sha256" / sha[:2] / sha
    path.write_bytes(b"%PDF-1.4 bit rot\n")
    archive = tmp_path / "out" / "b.tar"
    with pytest.raises(BackupError, match=sha):
        await asyncio.to_thread(create_backup, config.data_dir, archive, node_id="CN01")
    assert list((tmp_path / "out").iterdir()) == []


async def test_backup_refuses_to_write_inside_the_data_dir(config: NodeConfig) -> None:
    with pytest.raises(BackupError, match="thư mục dữ liệu"):
        await asyncio.to_thread(create_backup, config.data_dir, config.data_dir / "b.tar", node_id="CN01")


def test_cli_backup_and_restore_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "n"
    out, err = io.StringIO(), io.StringIO()
    args = ["init", "--data", str(data), "--node-id", "VAN01", "--unit-code", UNIT, "--name", "Xe lưu động 1"]
    assert main(args, out=out, err=err) == 0
    out = io.StringIO()
    assert main(["backup", "--data", str(data), "--to", str(tmp_path / "v.tar")], out=out, err=err) == 0
    assert "heads epoch 1 seq 1" in out.getvalue()
    out = io.StringIO()
    code = main(
        ["restore-backup", "--from", str(tmp_path / "v.tar"), "--data", str(tmp_path / "r"), "--standalone"],
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    assert "epoch 2\nsealed 1:1\n" in out.getvalue()
    config = config_module.load(tmp_path / "r", {})
    assert config.node_id == "VAN01" and not (tmp_path / "r" / PENDING_FILE).exists()
    err = io.StringIO()
    assert main(["restore-backup", "--from", str(tmp_path / "v.tar"), "--data", str(data)], err=err) == 2
    assert "không ghi đè" in err.getvalue()
    os.sync()
