"""D7: random bytes flipped in a node's database and blob files are detected, never read as data.

Each flip goes into a fresh copy of a real node's data (init, three receptions, two staged scans, the
store closed so the WAL is checkpointed into the database file). The database copy is checked the way
``motcua-node keys check`` does (``node.dbcipher.integrity_errors``: SQLCipher's per-page HMAC, then
SQLite's ``integrity_check``; a flip in the salt fails the open itself), the blob copy through the
node's decrypting reader (AES-GCM tags + SHA-256 of the plaintext). Target (RELIABILITY §6 D7): 100%
detected."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

from node import atrest
from node.blobs import BlobStore
from node.config import load as load_node_config
from node.dbcipher import integrity_errors
from node.errors import NodeError
from node.provision import Node, init_node
from tests.node.conftest import FAST_LOOKUP, UNIT, reception

FLIPS = 60  # per kind of file


async def _node(root: Path) -> tuple[Path, list[str]]:
    config = await init_node(root, node_id="CN01", unit_code=UNIT, name="Chi nhánh 1")
    node = await Node.open(load_node_config(config.data_dir, {}), lookup_iterations=FAST_LOOKUP)
    try:
        for _ in range(3):
            await node.desk.receive(reception(), actor="an.nv")
    finally:
        await node.close()
    ring = atrest.unlock(root)
    store = BlobStore(root, low_disk_bytes=0, keyring=ring)
    shas = [store.stage_bytes(random.Random(i).randbytes(150_000)).sha256 for i in range(2)]
    return root, shas


def _db_detected(data: Path, offset: int, tmp: Path) -> bool:
    copy = tmp / f"db-{offset}"
    shutil.copytree(data, copy)
    path = copy / "node.sqlite3"
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 1 << random.Random(offset).randrange(8)
    path.write_bytes(bytes(raw))
    try:
        problems = integrity_errors(path, atrest.unlock(copy).db_key)
    except NodeError:  # the open itself refused (salt, header): detected, named
        problems = ["open refused"]
    finally:
        atrest.forget(copy)
    shutil.rmtree(copy)
    return bool(problems)


def _blob_detected(data: Path, sha: str, offset: int, tmp: Path) -> bool:
    copy = tmp / f"blob-{offset}"
    shutil.copytree(data, copy)
    store = BlobStore(copy, low_disk_bytes=0, keyring=atrest.unlock(copy))
    path = store.path_for(sha)
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= 1 << random.Random(offset).randrange(8)
    path.write_bytes(bytes(raw))
    try:
        return not store.verify(sha)
    finally:
        atrest.forget(copy)
        shutil.rmtree(copy)


async def test_every_flipped_byte_is_detected(tmp_path: Path, figures: Callable[..., None]) -> None:
    data, shas = await _node(tmp_path / "node")
    assert integrity_errors(data / "node.sqlite3", atrest.unlock(data).db_key) == []  # clean to start
    size = (data / "node.sqlite3").stat().st_size
    rng = random.Random(7)
    db_offsets = sorted({rng.randrange(size) for _ in range(FLIPS)} | {0, 20, size - 1})
    missed_db = [o for o in db_offsets if not _db_detected(data, o, tmp_path)]
    blob_cases = [(shas[i % 2], rng.randrange(1 << 20)) for i in range(FLIPS)]
    missed_blob = [c for c in blob_cases if not _blob_detected(data, c[0], c[1], tmp_path)]
    figures(
        "D7 corrupted local store",
        db_bytes=size,
        db_flips=len(db_offsets),
        db_missed=len(missed_db),
        blob_flips=len(blob_cases),
        blob_missed=len(missed_blob),
    )
    assert missed_db == [], f"flips not detected in the database at offsets {missed_db}"
    assert missed_blob == [], f"flips not detected in blobs: {missed_blob}"
