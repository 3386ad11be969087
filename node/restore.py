"""Creating a node from the hub: ``motcua-node restore`` (and ``init --hub --token``).

``provision_from_hub(data_dir, token)`` builds a node in an empty folder from an invite token:

1. a new key (0600), enrollment at the hub (node.hublink): the hub binds the next epoch ``E`` and, if
   the id had epochs before, seals the last one at the head it holds and names it (``previous``);
   the enrollment is stored at once, so an interrupted restore resumes with the same key;
2. every earlier epoch the hub holds is downloaded (``GET /v1/sync/logs/<NODE>/<e>``) and verified as
   a chain under the key its own genesis names, anchored at its sealed head: the hub-signed enrollment
   names the head of ``E-1``, each verified genesis names the head of the epoch before it; without such
   an anchor (an epoch that never pushed anything in between) the hub's reported head is the anchor;
3. in one transaction: those entries with their epochs marked sealed, the genesis of ``E`` naming
   ``previous``, the projections rebuilt from everything and, when the node had an epoch before, the new
   epoch's ``node.code_floor`` (node/code_floor.py): today's numbering continues a safety margin above
   every number the hub holds (or an earlier floor), so a receipt the lost disk printed after its last
   sync never names another dossier. Dossier codes allocated from now on take the highest number used
   that day in *every* epoch, so they never collide with the old ones;
4. one sync round (push the genesis, pull ``hub`` and ``hub.<NODE>``, heartbeat) and the scans named by
   the restored entries and mailboxes, fetched chunk by chunk and checked against their manifests;
5. ``node.toml`` last, as ``init`` does: a folder without it is an unfinished restore, never a node.

Entries the old node wrote after the hub's head are lost with its disk; what the hub holds is complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import atrest, projection
from node.blobs import BlobStore
from node.code_floor import write_floor
from node.config import CONFIG_FILE, NodeConfig, build, dump
from node.errors import ConfigError, NodeError, NodeExists
from node.hublink import HubLink, current_link, parse_token, request_enrollment, save_link
from node.journal import Journal, insert_entry
from node.mailbox_apply import make_projector
from node.store import Store
from node.sync_client import HttpTransport, SyncError
from node.sync_service import NodeLocalLog, NodeSyncClient, fetch_blobs
from protocol import (
    ChainState,
    Entry,
    Head,
    HubState,
    ProtocolError,
    decode,
    generate_private_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    save_private_key,
    verify_chain,
)
from protocol.calendar import local_date
from protocol.dossier.codes import RESTORE_CODE_MARGIN, CodeBlock, CodeFloor, DossierCode

__all__ = ["RestoreError", "RestoreReport", "provision_from_hub"]

Progress = Callable[[str, int, int], None]


class RestoreError(NodeError):
    """The hub's copy could not be fetched or does not verify; nothing usable was written."""

    code = "restore"
    status = 502
    retryable = True
    default_message = "Không khôi phục được máy trạm từ trung tâm."


@dataclass(slots=True)
class RestoreReport:
    """What the restore did."""

    config: NodeConfig | None = None
    epoch: int = 0
    previous: Head | None = None
    imported: dict[int, int] = field(default_factory=dict)  # old epoch -> entries
    dossiers: int = 0
    pulled: int = 0
    blobs_fetched: int = 0
    blobs_missing: list[str] = field(default_factory=list)
    sync_error: str | None = None
    resumed: bool = False
    code_floor: CodeFloor | None = None  # numbering on the restore day continues above its seq


def _wall() -> int:
    return time.time_ns() // 1_000_000


async def provision_from_hub(
    data_dir: str | Path,
    token_text: str,
    *,
    hub_url: str | None = None,
    unit_code: str | None = None,
    code_block: int | None = None,
    code_block_size: int = 1000,
    name: str | None = None,
    kind: str | None = None,
    extra: dict[str, object] | None = None,
    progress: Progress | None = None,
    wall: Callable[[], int] = _wall,
    passphrase: str | None = None,
    code_margin: int = RESTORE_CODE_MARGIN,
) -> RestoreReport:
    """Create (or finish creating) a node in ``data_dir`` from the hub; see the module docstring.

    The data key is created first, wrapped by ``extra['key_source']`` (default 'file'; ``passphrase``
    for 'passphrase'), so nothing of the node lands on disk unencrypted.
    """
    data_dir = Path(data_dir).absolute()
    key_path, db_path = data_dir / "node.key", data_dir / "node.sqlite3"
    if (data_dir / CONFIG_FILE).exists():
        raise NodeExists(f"Thư mục {data_dir} đã chứa một máy trạm ({CONFIG_FILE}); không ghi đè.")
    report = RestoreReport()
    token = parse_token(token_text)
    base = (hub_url or token.hub).rstrip("/")
    if key_path.exists() or db_path.exists():
        key, store, link = await _resume(data_dir, key_path, db_path, token.node)
        report.resumed = True
    else:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _new_data_key(data_dir, token.node, extra or {}, passphrase)
        key = generate_private_key()
        save_private_key(key, key_path)
        try:
            enrollment, _ = await request_enrollment(token, key, hub_url=base)
        except BaseException:
            key_path.unlink(missing_ok=True)  # the hub bound nothing: leave the folder as it was
            raise
        store = await Store.open(db_path)
        async with store.write() as db:
            await save_link(db, enrollment, base, wall())
            link = await current_link(db)
        assert link is not None
    try:
        report.epoch, report.previous = link.epoch, link.enrollment.previous
        client = _client(store, key, link, base, data_dir, wall, progress)
        codes = (unit_code, code_block, code_block_size, code_margin)
        try:
            await _import(client, store, key, link, report, wall, codes)
            await _finish(client, store, data_dir, report, progress)
        finally:
            await client.transport.close()  # type: ignore[attr-defined]
        report.config = await _write_config(
            data_dir,
            store,
            node_id=link.enrollment.node,
            unit_code=unit_code,
            code_block=code_block,
            code_block_size=code_block_size,
            name=name or link.name,
            kind=kind or link.kind,
            hub_url=base,
            extra=extra,
        )
    finally:
        await store.close()
    return report


def _new_data_key(data_dir: Path, node_id: str, extra: dict[str, object], passphrase: str | None) -> None:
    """Fresh data keys (a folder without key and database: a leftover wrapped key unwraps nothing)."""
    atrest.forget(data_dir)
    (data_dir / atrest.DATAKEY_FILE).unlink(missing_ok=True)
    key_file = str(extra.get("key_file") or "")
    atrest.create_keyring(
        data_dir,
        node_id,
        str(extra.get("key_source") or "file"),
        passphrase=passphrase,
        key_file=Path(key_file) if key_file else None,
        credential=str(extra.get("key_credential") or atrest.DEFAULT_CREDENTIAL),
    )


async def _resume(
    data_dir: Path, key_path: Path, db_path: Path, node: str
) -> tuple[Ed25519PrivateKey, Store, HubLink]:
    """An interrupted restore (key and database, enrollment stored, no node.toml) continues."""
    unfinished = NodeExists(
        f"Thư mục {data_dir} chứa một máy trạm chưa hoàn tất khởi tạo không phải từ trung tâm; "
        "xóa thư mục rồi thử lại."
    )
    if not (key_path.exists() and db_path.exists()):
        raise unfinished
    key = load_private_key(key_path)
    store = await Store.open(db_path)
    async with store.read() as db:
        link = await current_link(db)
    if link is None or link.enrollment.node != node or link.enrollment.key != public_key_text(key):
        await store.close()
        raise unfinished
    return key, store, link


def _client(
    store: Store,
    key: Ed25519PrivateKey,
    link: HubLink,
    base: str,
    data_dir: Path,
    wall: Callable[[], int],
    progress: Progress | None,
) -> NodeSyncClient:
    node = link.enrollment.node
    blobs = BlobStore(data_dir, low_disk_bytes=0)
    local = NodeLocalLog(
        store,
        node,
        blobs.path_for,
        project=make_projector(node, wall),
        wall=wall,
        data_dir=data_dir,
        read_range=blobs.read_range,
    )
    return NodeSyncClient(
        node,
        link.epoch,
        key,
        link.hub_key,
        local,
        HttpTransport(base),
        wall=wall,
        progress=progress,
        store=store,
    )


async def _import(
    client: NodeSyncClient,
    store: Store,
    key: Ed25519PrivateKey,
    link: HubLink,
    report: RestoreReport,
    wall: Callable[[], int],
    codes: tuple[str | None, int | None, int, int],
) -> None:
    """Download and verify every earlier epoch, then write them, the new genesis and the projections in one
    transaction. Skipped when the new epoch's genesis is already stored (a resumed restore)."""
    node, epoch = link.enrollment.node, link.epoch
    async with store.read() as db:
        async with db.execute(
            "SELECT 1 FROM entries WHERE log = ? AND epoch = ? AND seq = 1", (node, epoch)
        ) as c:
            if await c.fetchone() is not None:
                return
    try:
        state = HubState.from_wire(decode(await client.call("GET", "/v1/sync/state"), max_bytes=None))
    except SyncError as exc:
        raise RestoreError(
            "Không đọc được trạng thái nhật ký từ trung tâm; chạy lại lệnh để tiếp tục.", detail=str(exc)
        ) from None
    held = {h.epoch: h for h in state.logs if h.log == node}
    anchor = link.enrollment.previous  # hub-signed: the sealed head of epoch E-1
    downloaded: dict[int, list[Entry]] = {}
    sealed: dict[int, Head] = {}
    for old in range(epoch - 1, 0, -1):
        head = held.get(old)
        target = anchor if anchor is not None and anchor.epoch == old else None
        if target is None and head is not None:
            target = Head(node, old, head.seq, head.head)
        anchor = None
        if target is None or target.seq == 0:
            continue  # nothing held of that epoch (enrolled, never pushed): nothing to restore
        entries = await _download(client, node, old, target)
        downloaded[old] = entries
        sealed[old] = target
        previous = entries[0].body.get("previous")
        if isinstance(previous, dict):
            anchor = Head(node, previous["epoch"], previous["seq"], previous["head"])
    now = wall()
    journal = Journal(node_id=node, epoch=epoch, key=key)
    async with store.write() as db:
        for old in sorted(downloaded):
            entries = downloaded[old]
            await db.execute(
                "INSERT INTO epochs (epoch, public_key, started_at, sealed_seq, sealed_head)"
                " VALUES (?,?,?,?,?)",
                (old, entries[0].body["key"], entries[0].time[0], sealed[old].seq, sealed[old].hash),
            )
            for entry in entries:
                await insert_entry(db, entry, recorded_at=now)
            report.imported[old] = len(entries)
        # the genesis names exactly the sealed head the hub gave at enrollment (checked by the hub)
        await journal.start_epoch(db, link.enrollment.previous)
        if epoch > 1:  # an earlier epoch may have printed receipts the hub never got
            unit_code, code_block, size, margin = codes
            unit_code, code_block = await _unit_and_block(db, node, unit_code, code_block, size)
            entry = await write_floor(
                db,
                journal,
                unit=unit_code,
                block=CodeBlock.indexed(code_block, size),
                day=local_date(now),
                margin=margin,
            )
            report.code_floor = CodeFloor.from_body(entry.body)
        report.dossiers = await projection.rebuild(db)


async def _download(client: NodeSyncClient, node: str, epoch: int, target: Head) -> list[Entry]:
    """Entries 1..target.seq of (node, epoch), verified under the key their genesis names and ending
    exactly at ``target``."""
    raws: list[bytes] = []
    while len(raws) < target.seq:
        try:
            payload = await client.call(
                "GET",
                f"/v1/sync/logs/{node}/{epoch}?after={len(raws)}&limit={min(1000, target.seq - len(raws))}",
            )
        except SyncError as exc:
            raise RestoreError(
                f"Không tải được nhật ký epoch {epoch} từ trung tâm; chạy lại lệnh để tiếp tục.",
                detail=str(exc),
            ) from None
        page = [line for line in payload.split(b"\n") if line]
        if not page:
            break
        raws += page
        if client.progress is not None:
            client.progress(f"epoch {epoch}", len(raws), target.seq)
    try:
        genesis = Entry.parse(raws[0])
        key = parse_public_key(str(genesis.body.get("key")))
        final = verify_chain(ChainState.start(node, epoch, key), raws[: target.seq])
    except (ProtocolError, IndexError) as exc:
        raise RestoreError(
            f"Nhật ký epoch {epoch} nhận từ trung tâm không hợp lệ; không khôi phục.", detail=repr(exc)
        ) from None
    if final.seq != target.seq or final.head != target.hash:
        raise RestoreError(
            f"Nhật ký epoch {epoch} từ trung tâm không khớp điểm niêm phong đã ký.",
            detail=f"got {final.seq}/{final.head}, sealed {target.seq}/{target.hash}",
        )
    return [Entry.parse(raw) for raw in raws[: target.seq]]


async def _finish(
    client: NodeSyncClient, store: Store, data_dir: Path, report: RestoreReport, progress: Progress | None
) -> None:
    """One sync round (genesis up, mailboxes down), then the scans the restored entries name."""
    try:
        sync = await client.sync_once()
        report.pulled = sync.pulled
    except SyncError as exc:
        report.sync_error = f"{exc.code}: {exc.reason}"
        return
    fetched, missing = await fetch_blobs(
        client, store, BlobStore(data_dir, low_disk_bytes=0), progress=progress
    )
    report.blobs_fetched, report.blobs_missing = fetched, missing


async def _unit_and_block(
    db: aiosqlite.Connection, node_id: str, unit_code: str | None, code_block: int | None, size: int
) -> tuple[str, int]:
    """The unit code and block index given, else those of the restored log's last reception."""
    if unit_code is None or code_block is None:
        async with db.execute(
            "SELECT dossier FROM entries WHERE log = ? AND kind IN ('dossier.received', 'dossier.refused')"
            " AND dossier IS NOT NULL ORDER BY epoch DESC, seq DESC LIMIT 1",
            (node_id,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise ConfigError(
                "--unit-code và --code-block là bắt buộc: nhật ký khôi phục chưa có hồ sơ nào để suy ra."
            )
        code = DossierCode.parse(str(row[0]))
        unit_code = unit_code or code.unit
        code_block = code.seq // size if code_block is None else code_block
    return unit_code, code_block


async def _write_config(
    data_dir: Path,
    store: Store,
    *,
    node_id: str,
    unit_code: str | None,
    code_block: int | None,
    code_block_size: int,
    name: str,
    kind: str,
    hub_url: str,
    extra: dict[str, object] | None,
) -> NodeConfig:
    """``node.toml``, written last. Unit code and code block default to those of the restored log."""
    async with store.read() as db:
        unit_code, code_block = await _unit_and_block(db, node_id, unit_code, code_block, code_block_size)
    config = build(
        {
            "node_id": node_id,
            "unit_code": unit_code,
            "name": name,
            "kind": kind,
            "code_block_index": code_block,
            "code_block_size": code_block_size,
            "hub_url": hub_url,
            **(extra or {}),
        },
        data_dir,
    )
    BlobStore(data_dir, low_disk_bytes=0)  # the blob folder exists, as after init
    tmp = data_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text(dump(config), encoding="utf-8")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, data_dir / CONFIG_FILE)
    return config
