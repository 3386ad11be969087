"""D3: power loss at every sync point of a 3-dossier workload (one dossier with a scan attached).

The workload runs the node's real code (``init_node``, ``Node.open``, ``Desk.receive`` ×3, ``open_desk``,
``ScanIntake`` with the node's ``ScanRouter``, ``Store.close``). See ``powerloss.py`` for the models.

- SQLite: the writer's exact SQL is replayed through apsw on the crash VFS; at every ``xSync`` the
  keep / drop / garble images are opened with the real stack and must hold: ``integrity_check`` ok, the
  store opens (WAL recovery, migrations), the chain and projections verify, every dossier receipted
  before the crash is there, the registered scan is there once its attachment was acknowledged. A second
  sweep checkpoints every 8 pages (checkpoints and WAL restarts inside a session).
- Encryption at rest: the capture traces the node's SQLCipher connections (``node.dbcipher``) without
  the key pragmas; the apsw replay and its images are plaintext (SQLCipher shares SQLite's pager and WAL
  ordering); each image is recovered and ``integrity_check``-ed by SQLite, then exported into an
  encrypted database under the node's key beside the node's keyring, which ``Store.open`` opens.
- Blobs: at every fsync of the blob store and every committed transaction, the ``blobs/`` image plus the
  committed (encrypted) database go through the node's startup sweep and must hold: no registered blob
  missing or failing its read through the decrypting reader (GCM tags, then SHA-256), no temp file left,
  every receipted dossier present.
- Negative controls: the same harness finds the loss when SQLite runs with ``synchronous=NORMAL`` and
  when the blob store does not fsync its files (a harness that cannot fail would prove nothing).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node import atrest
from node.blobs import BlobStore, FileOps
from node.config import load as load_node_config
from node.errors import BlobCorrupt, BlobNotFound
from node.provision import Node, init_node
from node.scan_attach import ScanRouter, open_desk
from node.scan_intake import Registered, ScanIntake
from node.store import Store
from node.verify import verify_node
from protocol.dossier.events import UNCLASSIFIED_DOCUMENT
from tests.node.conftest import FAST_LOOKUP, reception
from tests.node.samples import make_image
from tests.reliability.powerloss import (
    VARIANTS,
    CrashFS,
    Event,
    Image,
    capture_sql,
    encrypt_image,
    replay,
    replay_matches,
    snapshot_db,
)

NODE = "CN01"
INIT = "<init>"
SCAN = "scan:"


async def _workload(
    data: Path,
    receipt: Callable[[str], None],
    *,
    blob_ops: Callable[[], FileOps] | None = None,
    on_commit: Callable[[], None] | None = None,
    on_open: Callable[[], None] | None = None,
) -> None:
    await init_node(
        data, node_id=NODE, unit_code="000.00.01.H26", name="Chi nhánh Tây Hồ", code_block_size=99
    )
    receipt(INIT)
    if on_open is not None:
        on_open()
    node = await Node.open(load_node_config(data, {}), lookup_iterations=FAST_LOOKUP)
    if on_commit is not None:
        node.store.on_commit.append(on_commit)
    try:
        for i in range(3):
            recorded = await node.desk.receive(
                reception(note=f"hồ sơ {i}"), actor="an.nv", idempotency_key=f"powerloss-{i}"
            )
            receipt(recorded.code)
            if i != 1:
                continue
            await open_desk(
                node.store, desk="q1", dossier=recorded.code, document=UNCLASSIFIED_DOCUMENT,
                actor="an.nv", now=node.journal.wall(), desks={"q1"},
            )  # fmt: skip
            folder = data.parent / "scans-in"
            folder.mkdir(exist_ok=True)
            (folder / "a.jpg").write_bytes(make_image("JPEG", seed=3))
            blobs = BlobStore(data, ops=blob_ops() if blob_ops else None, low_disk_bytes=0)
            intake = ScanIntake(blobs, node.store.write, ScanRouter(node.journal, 600_000))
            outcome = await intake.process(folder / "a.jpg", scanner="s1", desk="q1")
            assert isinstance(outcome, Registered), outcome
            receipt(SCAN + outcome.scan.pdf.sha256)
    finally:
        await node.close()


# -- SQLite ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capture:
    """The node's writer SQL (keyless) and the node's wrapped keyring files (``datakey.*``)."""

    events: list[Event]
    keyfiles: dict[str, bytes]
    key: bytes = field(repr=False)  # the node's database key (memory only, as in the node)

    def place_keyring(self, folder: Path) -> Path:
        """Put the node's wrapped keyring into ``folder`` (the node unlocks it there by itself)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.keyfiles.items():
            (folder / name).write_bytes(content)
        return folder


_CAPTURED: list[Capture] = []  # one capture per process serves every test (the SQL is data)


def _keyfiles(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data.glob("datakey.*"))}


async def _capture(tmp: Path) -> Capture:
    if _CAPTURED:
        return _CAPTURED[0]
    events: list[Event] = []
    with capture_sql(events) as receipt:
        await _workload(tmp / "node", receipt)
    key = atrest.keyring_for(tmp / "node").db_key
    assert not any(key.hex() in e.text.lower() for e in events), "the database key was captured"
    assert replay_matches(events, tmp / "node" / "node.sqlite3", key, tmp / "replayed.sqlite3"), (
        "the captured SQL does not rebuild the same database"
    )
    _CAPTURED.append(Capture(events, _keyfiles(tmp / "node"), key))
    return _CAPTURED[0]


async def _check_sqlite_image(image: Image, capture: Capture) -> list[str]:
    """What is wrong with one power-loss image, opened with the node's own stack (empty: recovered).

    The image is plaintext (apsw's SQLite has no codec): SQLite recovers it (WAL) and checks it, then it
    becomes an encrypted database under the node's key, beside the node's keyring, for ``Store.open``.
    """
    raw = sqlite3.connect(image.path, isolation_level=None)  # WAL recovery happens here
    try:
        (result,) = raw.execute("PRAGMA integrity_check").fetchone()
        if result != "ok":
            return [f"integrity_check: {result}"]
    finally:
        raw.close()
    folder = capture.place_keyring(image.path.parent / "encrypted")
    encrypt_image(image.path, folder / "node.sqlite3", capture.key)
    try:
        return await _check_store(folder / "node.sqlite3", image.receipted)
    finally:
        atrest.forget(folder)


async def _check_store(path: Path, receipted: frozenset[str]) -> list[str]:
    store = await Store.open(path)  # the node's open: its keyring, pragmas, migrations
    try:
        rows = await store.fetchall("SELECT count(*) FROM epochs")
        problems: list[str] = []
        if rows[0][0]:
            report = await verify_node(store, NODE)
            problems += report.differences
        elif INIT in receipted:
            problems.append("the initialised node lost its genesis")
        present = {r[0] for r in await store.fetchall("SELECT code FROM dossiers")}
        blobs = {r[0] for r in await store.fetchall("SELECT sha256 FROM blobs")}
        for mark in receipted - {INIT}:
            if mark.startswith(SCAN):
                if mark[len(SCAN) :] not in blobs:
                    problems.append(f"acknowledged scan {mark} not registered")
            elif mark not in present:
                problems.append(f"receipted dossier {mark} missing")
        return problems
    finally:
        await store.close()


@dataclass
class Tally:
    points: int = 0
    variants: int = 0
    images: int = 0
    failures: dict[str, list[str]] = field(default_factory=dict)


async def _sqlite_sweep(
    tmp: Path,
    capture: Capture,
    seeds: int,
    rewrite: Callable[[str], str] | None = None,
    *,
    until_first_failure: bool = False,
) -> Tally:
    work = tmp / f"sweep-{seeds}-{rewrite is not None}"
    work.mkdir(parents=True)
    kwargs = {"rewrite": rewrite} if rewrite else {}
    images, points = await asyncio.to_thread(
        replay, capture.events, work / "node.sqlite3", work / "img", seeds=seeds, **kwargs
    )
    tally = Tally(points=points, variants=points * (len(VARIANTS) - 1 + seeds), images=len(images))
    for image in images:
        try:
            problems = await _check_sqlite_image(image, capture)
        except Exception as exc:  # an image the node cannot open is a failure, named
            problems = [f"{type(exc).__name__}: {exc}"]
        shutil.rmtree(image.path.parent)
        if problems:
            tally.failures[image.path.parent.name] = problems
            if until_first_failure:
                break
    return tally


async def test_power_loss_sqlite_every_sync_point(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    await _sqlite_power_loss(tmp_path, figures, seeds=1)


async def test_power_loss_sqlite_across_checkpoints(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    await _sqlite_power_loss(tmp_path, figures, seeds=1, checkpoint=8)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_power_loss_sqlite_every_sync_point_soak(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    await _sqlite_power_loss(tmp_path, figures, seeds=25)
    await _sqlite_power_loss(tmp_path / "ckpt", figures, seeds=25, checkpoint=8)


def _checkpoint_every(pages: int) -> Callable[[str], str]:
    """The node's SQL with a WAL autocheckpoint every ``pages`` pages (the node keeps SQLite's 1,000): a
    small workload then also crosses checkpoints and WAL restarts in the middle of a session."""

    def rewrite(sql: str) -> str:
        if sql.strip().upper() == "PRAGMA SYNCHRONOUS=FULL":
            return f"{sql}; PRAGMA wal_autocheckpoint={pages}"
        return sql

    return rewrite


async def _sqlite_power_loss(tmp_path: Path, figures, seeds: int, checkpoint: int | None = None) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    capture = await _capture(tmp_path)
    events = capture.events
    rewrite = _checkpoint_every(checkpoint) if checkpoint else None
    tally = await _sqlite_sweep(tmp_path, capture, seeds, rewrite)
    assert not tally.failures, tally.failures
    receipts = sum(1 for e in events if e.kind == "receipt")
    assert tally.points > 10 and receipts == 5
    where = f", autocheckpoint {checkpoint} pages" if checkpoint else ""
    figures(
        f"D3 power loss, SQLite (garble seeds {seeds}{where})",
        statements=sum(e.kind == "sql" for e in events),
        sync_points=tally.points, crash_states=tally.variants, distinct_images_checked=tally.images,
        recovered="100%", seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip


async def test_power_loss_harness_finds_synchronous_normal(tmp_path: Path) -> None:
    """Negative control: with synchronous=NORMAL a WAL commit is not synced; power loss must lose a
    receipted dossier in some image, and the harness must say so."""
    capture = await _capture(tmp_path)

    def normal(sql: str) -> str:
        return "PRAGMA synchronous=NORMAL" if sql.strip().upper() == "PRAGMA SYNCHRONOUS=FULL" else sql

    tally = await _sqlite_sweep(tmp_path, capture, 1, normal, until_first_failure=True)
    lost = [p for problems in tally.failures.values() for p in problems if "missing" in p or "genesis" in p]
    assert lost, "synchronous=NORMAL lost nothing under power loss: the harness cannot see a loss"


# -- blob files --------------------------------------------------------------------------------------


async def _blob_power_loss(tmp: Path, seeds: int, *, fsync_files: bool = True) -> Tally:
    data = tmp / "node"
    images = tmp / "blob-img"
    made: list[tuple[Path, frozenset[str]]] = []
    receipted: set[str] = set()
    fs: CrashFS | None = None

    def on_point(label: str) -> None:
        assert fs is not None
        for variant in VARIANTS:
            for seed in range(seeds if variant == "garble" else 1):
                out = images / f"{fs.points:04d}-{variant}-{seed}"
                fs.image(out / "blobs", variant, random.Random(f"{fs.points}/{variant}/{seed}"))
                for name, content in _keyfiles(data).items():  # the node's keyring beside its DB
                    (out / name).write_bytes(content)
                snapshot_db(data / "node.sqlite3", out / "node.sqlite3", atrest.keyring_for(data).db_key)
                made.append((out, frozenset(receipted)))

    def on_open() -> None:
        nonlocal fs
        (data / "blobs").mkdir(exist_ok=True)
        fs = CrashFS(data / "blobs", on_point, fsync_files=fsync_files)
        fs.start()

    await _workload(
        data, receipted.add, blob_ops=lambda: fs.ops() if fs else FileOps(),
        on_commit=lambda: fs.point("commit") if fs else None, on_open=on_open,
    )  # fmt: skip
    assert fs is not None
    fs.point("end")
    tally = Tally(points=fs.points, variants=fs.points * (len(VARIANTS) - 1 + seeds), images=len(made))
    for out, marks in made:
        try:
            problems = await _check_blob_image(out, marks)
        finally:
            atrest.forget(out)
        if problems:
            tally.failures[out.name] = problems
        shutil.rmtree(out)
    return tally


async def _check_blob_image(out: Path, receipted: frozenset[str]) -> list[str]:
    problems: list[str] = []
    store = await Store.open(out / "node.sqlite3")  # keyed by the node's keyring placed in ``out``
    try:
        blobs = BlobStore(out, low_disk_bytes=0, keyring=atrest.unlock(out))
        async with store.write() as db:  # the node's startup sweep (node.devices)
            report = await blobs.sweep(db)
        problems += [f"registered blob {sha} has no file" for sha in report.missing]
        if any(blobs.tmp_dir.iterdir()):
            problems.append("a temp file survived the sweep")
        present = {r[0] for r in await store.fetchall("SELECT code FROM dossiers")}
        rows = await store.fetchall("SELECT sha256, size FROM blobs")
    finally:
        await store.close()
    registered = {r[0] for r in rows}
    for sha, size in rows:  # every registered blob whole: read through the decrypting reader
        if sha in report.missing:
            continue
        try:
            plain = blobs.read_bytes(sha)  # authenticates every chunk, then checks the SHA-256
        except (BlobNotFound, BlobCorrupt) as exc:  # BlobAuthFailed is a BlobCorrupt
            problems.append(f"registered blob {sha} is torn: {type(exc).__name__}")
            continue
        if len(plain) != size:
            problems.append(f"registered blob {sha} is torn: {len(plain)} bytes, registered {size}")
    for mark in receipted - {INIT}:
        if mark.startswith(SCAN):
            if mark[len(SCAN) :] not in registered:
                problems.append(f"acknowledged scan {mark} not registered")
        elif mark not in present:
            problems.append(f"receipted dossier {mark} missing")
    return problems


async def test_power_loss_blob_files_every_sync_point(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    await _blob_figures(tmp_path, figures, seeds=1)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_power_loss_blob_files_every_sync_point_soak(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    await _blob_figures(tmp_path, figures, seeds=25)


async def _blob_figures(tmp_path: Path, figures, seeds: int) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    tally = await _blob_power_loss(tmp_path, seeds)
    assert not tally.failures, tally.failures
    assert tally.points > 5
    figures(
        f"D3 power loss, blob files (garble seeds {seeds})", crash_points=tally.points,
        crash_states=tally.variants, images_checked=tally.images, recovered="100%",
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip


async def test_power_loss_harness_finds_a_blob_store_without_fsync(tmp_path: Path) -> None:
    """Negative control: a blob store that never fsyncs its files registers blobs that power loss tears."""
    tally = await _blob_power_loss(tmp_path, 1, fsync_files=False)
    torn = [p for problems in tally.failures.values() for p in problems if "is torn" in p]
    assert torn, "a blob store without fsync lost nothing: the harness cannot see a torn blob"
    # a torn ciphertext is refused by the decrypting reader (GCM tag), not read as some plaintext
    assert all("BlobAuthFailed" in p or "bytes, registered" in p for p in torn), torn
