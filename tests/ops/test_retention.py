"""Scan retention against a real hub: only files the hub holds, of dossiers closed long enough ago, go;
the log stays whole; who opened a scan stays recorded."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from central.hub import Hub
from node.cli import main
from node.config import NodeConfig
from node.provision import Node, init_node
from node.reprovision import enroll_with_hub
from node.retention import DAY_MS, purge_scans
from node.scan_attach import log_scan_access
from node.verify import verify_node
from protocol import manifest_for_bytes
from tests.node.conftest import UNIT, reception
from tests.ops.test_restore_with_hub import _open, _sync, _token, _wall, hub  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


async def _attach(node: Node, code: str, data: bytes) -> str:
    manifest = manifest_for_bytes(data, "application/pdf", 1)
    path = node.config.blob_dir / "sha256" / manifest.sha256[:2] / manifest.sha256
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    body = {"dossier": code, "document": "CCCD", "role": "document", "manifest": manifest.to_body()}
    async with node.store.write() as db:
        await node.journal.append(db, "dossier.attachment", body, actor="an.nv")
    return manifest.sha256


def _exists(config: NodeConfig, sha: str) -> bool:
    return (config.blob_dir / "sha256" / sha[:2] / sha).exists()


async def test_purge_deletes_only_held_scans_of_long_closed_dossiers(
    hub: tuple[Hub, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    central, base = hub
    config = await init_node(tmp_path / "cn01", node_id="CN01", unit_code=UNIT, name="Tây Hồ")
    node = await _open(config)
    try:
        view = await enroll_with_hub(await _token(central, base), node.key)
        closed = (await node.desk.refuse(reception(reason="Thiếu tờ khai"), actor="an.nv")).code
        still_open = (await node.desk.receive(reception(), actor="an.nv")).code
        old_scan = await _attach(node, closed, b"%PDF-1.4 id card " + os.urandom(3000))
        open_scan = await _attach(node, still_open, b"%PDF-1.4 form " + os.urandom(3000))
        shared = b"%PDF-1.4 shared " + os.urandom(100)
        shared_scan = await _attach(node, closed, shared)
        await _attach(node, still_open, shared)
        await _sync(node, base, view.hub_key)  # entries acknowledged, blobs confirmed complete
        late_closed = (await node.desk.refuse(reception(reason="Sai thẩm quyền"), actor="an.nv")).code
        unsynced_scan = await _attach(node, late_closed, b"%PDF-1.4 not yet sent " + os.urandom(50))
        await log_scan_access(
            node.store, actor="an.nv", sha256=old_scan, dossier=closed, action="download", now=_wall()
        )
        before = await verify_node(node.store, "CN01")
        entries_before = before.entries

        recent = await purge_scans(config, store=node.store, now_ms=lambda: _wall() + 29 * DAY_MS)
        assert recent.deleted == [] and all(map(lambda s: _exists(config, s), [old_scan, open_scan]))
        later = lambda: _wall() + 31 * DAY_MS  # noqa: E731
        dry = await purge_scans(config, store=node.store, dry_run=True, now_ms=later)
        assert dry.deleted == [old_scan] and _exists(config, old_scan)
        report = await purge_scans(config, store=node.store, now_ms=later)
        assert report.deleted == [old_scan] and report.bytes > 3000
        assert report.kept_open == 2  # open_scan, and shared_scan (also named by the open dossier)
        assert report.kept_not_held == 1  # unsynced_scan: no receipt, no confirmed blob
        assert not _exists(config, old_scan)
        for sha in (open_scan, shared_scan, unsynced_scan):
            assert _exists(config, sha)
        again = await purge_scans(config, store=node.store, now_ms=later)
        assert again.deleted == []
        after = await verify_node(node.store, "CN01")  # the log and projections are untouched
        assert after.ok and after.entries == entries_before
        row = await node.store.fetchone("SELECT dossiers FROM purged_blobs WHERE sha256 = ?", (old_scan,))
        assert row is not None and closed in row[0]
        query = "SELECT actor, dossier FROM scan_access WHERE sha256 = ?"
        seen = await node.store.fetchall(query, (old_scan,))
        assert [tuple(r) for r in seen] == [("an.nv", closed)]  # the access record outlives the file
        assert central.blobs.path_for(old_scan).exists()  # the hub keeps the scan
    finally:
        await node.close()
    assert late_closed


def test_cli_purge_with_nothing_to_do(tmp_path: Path) -> None:
    data = tmp_path / "n"
    args = ["init", "--data", str(data), "--node-id", "CN01", "--unit-code", UNIT, "--name", "Tây Hồ"]
    assert main(args, out=io.StringIO(), err=io.StringIO()) == 0
    out = io.StringIO()
    argv = ["purge-scans", "--data", str(data), "--older-than-days", "0"]
    assert main(argv, out=out, err=io.StringIO()) == 0
    assert out.getvalue().startswith("deleted 0 scans, 0 bytes")
