"""Starting a new epoch safely: after a restore from a backup, and for a key rotation.

The rule (DESIGN.md §3, SPEC §7.9), the only one that can never fork and never reuse a dossier code:

- a node restored from a backup **never signs with a key from the backup**. ``restore_backup`` puts the
  database, blobs and config in place, makes a **new key**, and leaves the node *pending*: ``serve``
  refuses to start until the new epoch exists (``restore-pending.json`` says so, with what to do);
- the new epoch is bound at the hub with a fresh invite token (``enroll_with_hub``): the hub seals the
  old epoch at the head **it** holds and names that head in its signed answer;
- before the new genesis is written, the node fetches from the hub every entry of its old epochs that
  the backup lacks (``fetch_missing``) and stores them with their projections, so the code allocator's
  per-day maximum covers every number the hub has seen, in every epoch; first it checks that every old
  epoch the backup holds agrees with the hub's head of that epoch (``ForkRefused`` otherwise);
- ``start_next_epoch`` then checks, in one write transaction, that the local log agrees with the sealed
  head (same hash at the sealed seq: otherwise it is a fork and nothing is written), and writes the
  genesis of epoch ``sealed.epoch + 1`` naming exactly the sealed head.

Entries the backup holds beyond the hub's sealed head (made after the last sync before the backup) stay
in the local log, so their codes are never reused; the hub will not take them (that epoch is sealed).

A node that never had a hub (``hub_url`` unset and no hub receipt) may continue standalone
(``standalone_previous``): the new epoch names the backup's own head.

Key rotation is the same move without a restore, decided by hub admins (``node.keyrotation``): sync until
the hub holds the whole current epoch, ask with a request signed by the old and the new key, and start
the next epoch once enough admins approved it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from node import atrest, projection
from node.backup import DB_NAME, KEY_NAME, BackupError, BackupManifest, read_archive, write_atomically
from node.blobs import BlobStore, fsync_dir
from node.code_floor import write_floor
from node.config import CONFIG_FILE, NodeConfig, dump
from node.config import load as load_config
from node.errors import ConfigError, NodeError, NodeExists
from node.hublink import parse_token, request_enrollment, save_link
from node.journal import Journal, insert_entry, verify_log
from node.store import Store
from node.syncgate import set_block
from protocol import (
    Enrollment,
    Entry,
    Head,
    HubState,
    PublicKey,
    body_digest,
    decode,
    sign_request,
)
from protocol.calendar import local_date
from protocol.chain import ChainState, verify_next
from protocol.dossier.codes import RESTORE_CODE_MARGIN, CodeBlock, CodeFloor
from protocol.entry import GENESIS_KIND
from protocol.errors import ProtocolError
from protocol.keys import (
    Ed25519PrivateKey,
    generate_private_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    save_private_key,
)

__all__ = [
    "PENDING_FILE",
    "EpochStarted",
    "ForkRefused",
    "HubView",
    "ReprovisionError",
    "enroll_with_hub",
    "fetch_missing",
    "pending",
    "restore_backup",
    "standalone_previous",
    "start_next_epoch",
]

PENDING_FILE = "restore-pending.json"
ROTATION_FILE = "rotation-pending.json"  # node.keyrotation: a key rotation waits for the hub's approval
_PAGE = 1000


class ReprovisionError(NodeError):
    """The new epoch cannot be started (the message says why and what to do)."""

    status = 409
    default_message = "Không thể bắt đầu epoch mới."


class ForkRefused(ReprovisionError):
    """The local log and the hub's sealed head disagree at the same position: writing would fork."""


@dataclass(frozen=True, slots=True)
class EpochStarted:
    epoch: int
    previous: Head | None
    fetched: int  # entries of old epochs fetched from the hub
    stranded: int  # entries of the sealed epoch the hub never got (kept locally, codes stay used)
    genesis: Entry
    code_floor: CodeFloor | None = None  # numbering on the restore day continues above its seq


@dataclass(slots=True)
class HubView:
    """What the hub said at enrollment: the new epoch, the sealed head, its key; its URL."""

    base: str
    epoch: int
    previous: Head | None
    hub_key: PublicKey
    enrollment: Enrollment
    offset_ms: int = 0  # hub time minus local time at enrollment: request times follow the hub's clock
    fetched: list[Entry] = field(default_factory=list)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- pending state ---------------------------------------------------------------------------------


def pending(data_dir: Path) -> dict[str, Any] | None:
    """The pending-restore record of ``data_dir``, or None when the node may serve."""
    path = Path(data_dir) / PENDING_FILE
    try:
        return dict(json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        return None


def refuse_if_pending(data_dir: Path) -> None:
    """Raise ``ConfigError`` with the next step when a restore is not finished (used by ``serve``)."""
    rotation = Path(data_dir) / ROTATION_FILE
    if rotation.exists():
        raise ConfigError(
            f"máy trạm đang chờ trung tâm duyệt yêu cầu xoay khóa ({ROTATION_FILE}): không được ghi thêm "
            f"bằng khóa cũ. Chạy 'motcua-node rotate-key --data {data_dir}' để tiếp tục chờ và hoàn tất"
        )
    record = pending(data_dir)
    if record is not None:
        raise ConfigError(
            f"máy trạm {record.get('node')} được khôi phục từ bản sao lưu nhưng chưa bắt đầu epoch mới; "
            f"chạy 'motcua-node reprovision --data {data_dir} --token <mã mời mới>' "
            "(hoặc --standalone nếu máy trạm chưa bao giờ nối với trung tâm)"
        )


# -- restore from a backup archive ------------------------------------------------------------------


def _allowed(name: str) -> bool:
    return name in (DB_NAME, CONFIG_FILE, KEY_NAME, atrest.DATAKEY_FILE, atrest.KEK_FILE) or name.startswith(
        "blobs/sha256/"
    )


async def restore_backup(
    archive: Path,
    data_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
    passphrase: str | None = None,
) -> tuple[NodeConfig, BackupManifest]:
    """Put a backup in ``data_dir`` (which must not hold a node) with a NEW key, pending a new epoch.

    The data key travels wrapped in the archive (``datakey.json``); ``passphrase`` unwraps it when its
    source is 'passphrase'. Every blob is authenticated; the restored node starts a new blob-key
    generation (the backup cannot know how many blobs the old one encrypted since).
    """
    data_dir = Path(data_dir).absolute()
    for name in (CONFIG_FILE, KEY_NAME, DB_NAME, PENDING_FILE):
        if (data_dir / name).exists():
            raise NodeExists(f"Thư mục {data_dir} đã chứa một máy trạm ({name}); không ghi đè.")
    if (data_dir / "blobs").exists() and any((data_dir / "blobs").rglob("*")):
        raise NodeExists(f"Thư mục {data_dir}/blobs không trống; không ghi đè.")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = data_dir / ".restore-staging"
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted restore: never trusted
    staging.mkdir(mode=0o700)
    try:
        manifest = read_archive(archive, staging, kind="node", allowed=_allowed, progress=progress)
        config = load_config(staging, {})
        if config.node_id != manifest.ident:
            raise BackupError(f"{CONFIG_FILE} nói máy trạm {config.node_id}, MANIFEST nói {manifest.ident}")
        atrest.forget(staging)
        ring = atrest.unlock(staging, passphrase)
        blobs = BlobStore(staging, low_disk_bytes=0, keyring=ring)
        for name in manifest.files:
            if name.startswith("blobs/sha256/") and not blobs.verify_file(
                staging / name, name.rsplit("/", 1)[1]
            ):
                raise BackupError(f"{archive}: {name} không xác thực được (sai khóa hoặc tệp bị sửa)")
        store = await Store.open(staging / DB_NAME, key=ring.db_key)  # newer migrations apply: an upgrade
        try:
            async with store.read() as db:
                heads = await verify_log(db, config.node_id)
        except ProtocolError as exc:
            raise BackupError(f"nhật ký trong bản sao lưu không hợp lệ: {exc}") from None
        finally:
            await store.close()
        for sidecar in ("-wal", "-shm"):
            (staging / (DB_NAME + sidecar)).unlink(missing_ok=True)
        (staging / KEY_NAME).unlink(missing_ok=True)  # never sign with a key that may have signed more
        key = generate_private_key()
        if (staging / "blobs").exists():
            if (data_dir / "blobs").exists():
                (data_dir / "blobs").rmdir()  # checked empty above
            os.replace(staging / "blobs", data_dir / "blobs")
        else:
            (data_dir / "blobs").mkdir(mode=0o700, exist_ok=True)
        for name in (atrest.KEK_FILE, atrest.DATAKEY_FILE):  # the wrapped key before the database
            if (staging / name).exists():
                os.replace(staging / name, data_dir / name)
        atrest.forget(staging)
        os.replace(staging / DB_NAME, data_dir / DB_NAME)
        save_private_key(key, data_dir / KEY_NAME)
        record = {
            "node": config.node_id,
            "backup_created_ms": manifest.created_ms,
            "backup_heads": [{"epoch": h.epoch, "seq": h.seq, "hash": h.hash} for h in heads],
            "new_key": public_key_text(key),
            "restored_ms": _now_ms(),
        }
        payload = json.dumps(record, ensure_ascii=False, indent=1).encode()
        write_atomically(data_dir / PENDING_FILE, lambda h: h.write(payload))
        os.replace(staging / CONFIG_FILE, data_dir / CONFIG_FILE)
        fsync_dir(data_dir)
        restored = atrest.unlock(data_dir, passphrase)
        with restored._lock:
            restored._rotate()
    finally:
        atrest.forget(staging)
        shutil.rmtree(staging, ignore_errors=True)
    return load_config(data_dir, {}), manifest


# -- the hub's view ---------------------------------------------------------------------------------


async def enroll_with_hub(token_text: str, key: Ed25519PrivateKey, *, hub_url: str | None = None) -> HubView:
    """``POST /v1/enroll`` with the new key (node.hublink); the hub key is pinned by the token's fingerprint.

    Nothing is stored here: ``start_next_epoch`` keeps the enrollment (``hub_link``) in the transaction
    that writes the genesis."""
    token = parse_token(token_text)
    base = (hub_url or token.hub).rstrip("/")
    enrollment, hub_key = await request_enrollment(token, key, hub_url=base)
    offset = enrollment.hub_time - _now_ms()
    return HubView(base, enrollment.epoch, enrollment.previous, hub_key, enrollment, offset)


async def _signed_get(
    session: aiohttp.ClientSession, view: HubView, node: str, key: Ed25519PrivateKey, target: str
) -> bytes:
    headers = sign_request(
        key,
        node=node,
        epoch=view.epoch,
        method="GET",
        target=target,
        time_ms=_now_ms() + view.offset_ms,
        body_sha256=body_digest(b""),
    )
    async with session.get(view.base + target, headers=headers) as resp:
        payload = await resp.read()
        if resp.status != 200:
            raise ReprovisionError(f"GET {target}: {resp.status} {payload[:300].decode('utf-8', 'replace')}")
        return payload


async def fetch_missing(store: Store, node: str, key: Ed25519PrivateKey, view: HubView) -> list[Entry]:
    """Entries of the node's old epochs that the hub holds and the local log lacks (up to the seal)."""
    if view.previous is None:
        return []
    async with store.read() as db:
        async with db.execute(
            "SELECT epoch, max(seq) FROM entries WHERE log = ? GROUP BY epoch", (node,)
        ) as cursor:
            local = {int(e): int(s) async for e, s in cursor}
    fetched: list[Entry] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        # Every old epoch the hub holds must agree with the local log where both have entries. The check
        # at the sealed head (start_next_epoch) covers only epoch E-1, and nothing when E-1 is empty at
        # the hub (enrolled, never pushed): a backup of a cloned copy would then be accepted with another
        # history than the hub's in an older epoch.
        state = HubState.from_wire(
            decode(await _signed_get(session, view, node, key, "/v1/sync/state"), max_bytes=None)
        )
        for held in state.logs:
            if held.log != node or held.epoch >= view.epoch or held.seq == 0:
                continue
            if local.get(held.epoch, 0) < held.seq:
                continue  # fetched below and verified as the continuation of the local log
            row = await store.fetchone(
                "SELECT hash FROM entries WHERE log = ? AND epoch = ? AND seq = ?",
                (node, held.epoch, held.seq),
            )
            if row is None or str(row[0]) != held.head:
                raise ForkRefused(
                    f"trung tâm giữ {node}/{held.epoch} đến seq {held.seq} ({(held.head or '')[:16]}), "
                    f"bản sao lưu có {'không có' if row is None else str(row[0])[:16]} ở vị trí đó: hai lịch "
                    "sử khác nhau; không ghi gì. Khôi phục từ trung tâm (motcua-node restore)."
                )
        for epoch in range(min(local, default=1), view.previous.epoch + 1):
            after = local.get(epoch, 0)
            while True:
                target = f"/v1/sync/logs/{node}/{epoch}?after={after}&limit={_PAGE}"
                page = await _signed_get(session, view, node, key, target)
                lines = [line for line in page.split(b"\n") if line]
                if not lines:
                    break
                entries = [Entry.parse(line) for line in lines]
                fetched.extend(entries)
                after = entries[-1].seq
                if len(entries) < _PAGE:
                    break
    view.fetched = fetched
    return fetched


def standalone_previous(heads: Sequence[Head]) -> Head:
    """The head a standalone node's next epoch names: the last head of its latest epoch."""
    return max(heads, key=lambda h: h.epoch)


# -- the local rule ---------------------------------------------------------------------------------


async def start_next_epoch(
    store: Store,
    node: str,
    key: Ed25519PrivateKey,
    *,
    epoch: int,
    previous: Head | None,
    fetched: Sequence[Entry] = (),
    link: HubView | None = None,
    wall: Callable[[], int] = _now_ms,
    codes: tuple[str, CodeBlock] | None = None,
    margin: int = RESTORE_CODE_MARGIN,
) -> EpochStarted:
    """Store ``fetched`` (verified), check agreement with ``previous``, write the genesis of ``epoch``.

    With ``link`` the hub's signed enrollment of ``epoch`` is kept (``hub_link``: the sync service syncs
    the new epoch with it) and any append block of the old history is cleared: the hub has just bound
    this key. Everything happens in one write transaction: on any refusal nothing is written.

    With ``codes`` (unit code, code block: a restore, which may have lost printed receipts) the genesis is
    followed by the epoch's ``node.code_floor`` for today (node/code_floor.py), ``margin`` numbers past
    everything known used today.
    """
    if previous is not None and epoch != previous.epoch + 1:
        raise ReprovisionError(f"epoch mới {epoch} phải là {previous.epoch + 1} (sau epoch đã niêm phong)")
    async with store.write() as db:
        async with db.execute("SELECT epoch, public_key FROM epochs ORDER BY epoch") as cursor:
            keys = {int(e): parse_public_key(str(k)) async for e, k in cursor}
        if epoch in keys or any(e >= epoch for e in keys):
            raise ReprovisionError(f"nhật ký đã có epoch {max(keys)}; epoch {epoch} không mới")
        inserted = 0
        by_epoch: dict[int, list[Entry]] = {}
        for entry in fetched:
            if entry.log != node:
                raise ReprovisionError(f"trung tâm gửi mục của nhật ký {entry.log}, không phải {node}")
            by_epoch.setdefault(entry.epoch, []).append(entry)
        for old_epoch in sorted(by_epoch):
            run = by_epoch[old_epoch]
            async with db.execute(
                "SELECT seq, hash, time_ms, time_n FROM entries WHERE log = ? AND epoch = ?"
                " ORDER BY seq DESC LIMIT 1",
                (node, old_epoch),
            ) as cursor:
                row = await cursor.fetchone()
            if old_epoch not in keys:  # an epoch the backup never saw: its genesis names its key
                first = run[0]
                if first.seq != 1 or first.kind != GENESIS_KIND:
                    raise ReprovisionError(f"epoch {old_epoch} từ trung tâm không bắt đầu bằng genesis")
                keys[old_epoch] = parse_public_key(str(first.body["key"]))
                await db.execute(
                    "INSERT INTO epochs (epoch, public_key, started_at) VALUES (?, ?, ?)",
                    (old_epoch, first.body["key"], first.time[0]),
                )
            state = ChainState.start(node, old_epoch, keys[old_epoch])
            if row is not None:
                state = ChainState(
                    node, old_epoch, keys[old_epoch], int(row[0]), str(row[1]), (row[2], row[3])
                )
                first = run[0]
                if first.seq == int(row[0]) + 1 and first.prev != str(row[1]):
                    # a backup shorter than the hub's log, ending on another entry than the hub's there
                    raise ForkRefused(
                        f"trung tâm giữ {node}/{old_epoch} tiếp sau seq {row[0]} từ "
                        f"{(first.prev or '')[:16]}, bản sao lưu kết thúc ở {str(row[1])[:16]}: bản sao lưu "
                        "có một lịch sử khác với trung tâm; không ghi gì. Khôi phục từ trung tâm "
                        "(motcua-node restore)."
                    )
            try:
                for entry in run:
                    state = verify_next(state, entry)
                    await insert_entry(db, entry, recorded_at=wall())
                    await projection.apply(db, entry)
                    inserted += 1
            except ProtocolError as exc:
                raise ReprovisionError(
                    f"mục {entry.log}/{entry.epoch}:{entry.seq} từ trung tâm không nối tiếp nhật ký: {exc}"
                ) from None
        stranded = 0
        if previous is not None:
            async with db.execute(
                "SELECT hash FROM entries WHERE log = ? AND epoch = ? AND seq = ?",
                (node, previous.epoch, previous.seq),
            ) as cursor:
                at_seal = await cursor.fetchone()
            if previous.seq > 0 and (at_seal is None or str(at_seal[0]) != previous.hash):
                held = "không có" if at_seal is None else str(at_seal[0])[:16]
                raise ForkRefused(
                    f"trung tâm niêm phong {node}/{previous.epoch} tại seq {previous.seq} "
                    f"({(previous.hash or '')[:16]}), máy trạm có {held}: hai lịch sử khác nhau; "
                    "không ghi gì. Báo quản trị trung tâm."
                )
            async with db.execute(
                "SELECT count(*) FROM entries WHERE log = ? AND epoch = ? AND seq > ?",
                (node, previous.epoch, previous.seq),
            ) as cursor:
                stranded = int((await cursor.fetchone() or (0,))[0])
        journal = Journal(node_id=node, epoch=epoch, key=key, project=projection.apply, wall=wall)
        genesis = await journal.start_epoch(db, previous)
        if link is not None:
            await db.execute("DELETE FROM hub_link WHERE epoch = ?", (epoch,))
            await save_link(db, link.enrollment, link.base, wall())
            await set_block(db, "")
        floor = None
        if codes is not None:
            unit, block = codes
            entry = await write_floor(
                db, journal, unit=unit, block=block, day=local_date(wall()), margin=margin
            )
            floor = CodeFloor.from_body(entry.body)
    return EpochStarted(epoch, previous, inserted, stranded, genesis, floor)


async def finish_restore(
    config: NodeConfig,
    *,
    token: str | None = None,
    hub_url: str | None = None,
    standalone: bool = False,
    margin: int = RESTORE_CODE_MARGIN,
) -> tuple[EpochStarted, HubView | None]:
    """Complete a pending restore: enroll (or standalone), fetch what the hub holds, start the epoch."""
    record = pending(config.data_dir)
    if record is None:
        raise ReprovisionError(f"{config.data_dir} không có khôi phục nào đang chờ")
    key = load_private_key(config.key_path)
    if public_key_text(key) != record.get("new_key"):
        raise ReprovisionError(f"{KEY_NAME} không phải khóa mới tạo khi khôi phục; không tiếp tục")
    store = await Store.open(config.db_path)
    try:
        started, view = await _next_epoch(
            store, config, key, token=token, hub_url=hub_url, standalone=standalone, margin=margin
        )
    finally:
        await store.close()
    if view is not None and config.hub_url != view.base:
        _rewrite_config(config, hub_url=view.base)
    (config.data_dir / PENDING_FILE).unlink()
    fsync_dir(config.data_dir)
    return started, view


async def _has_hub_history(store: Store, node: str) -> bool:
    """Whether any hub receipt for this node's log was ever stored (in either receipts table)."""
    tables = {str(r[0]) for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in ("hub_receipts", "sync_receipts"):
        if table in tables:
            row = await store.fetchone(f"SELECT count(*) FROM {table} WHERE log = ?", (node,))
            if row and row[0]:
                return True
    return False


async def _next_epoch(
    store: Store,
    config: NodeConfig,
    key: Ed25519PrivateKey,
    *,
    token: str | None,
    hub_url: str | None,
    standalone: bool,
    margin: int = RESTORE_CODE_MARGIN,
) -> tuple[EpochStarted, HubView | None]:
    if standalone:
        if token is not None:
            raise ReprovisionError("--standalone và --token loại trừ nhau")
        if config.hub_url is not None or await _has_hub_history(store, config.node_id):
            raise ReprovisionError(
                "máy trạm này đã nối với trung tâm: phải đăng ký lại bằng mã mời mới (--token), "
                "để trung tâm niêm phong epoch cũ"
            )
        async with store.read() as db:
            heads = await verify_log(db, config.node_id)
        previous = standalone_previous(heads)
        started = await start_next_epoch(
            store,
            config.node_id,
            key,
            epoch=previous.epoch + 1,
            previous=previous,
            codes=(config.unit_code, config.code_block),
            margin=margin,
        )
        return started, None
    if token is None:
        raise ReprovisionError("cần --token (mã mời mới từ trung tâm) hoặc --standalone")
    view = await enroll_with_hub(token, key, hub_url=hub_url)
    if view.enrollment.node != config.node_id:
        raise ReprovisionError(f"mã mời dành cho {view.enrollment.node}, không phải {config.node_id}")
    fetched = await fetch_missing(store, config.node_id, key, view)
    started = await start_next_epoch(
        store,
        config.node_id,
        key,
        epoch=view.epoch,
        previous=view.previous,
        fetched=fetched,
        link=view,
        codes=(config.unit_code, config.code_block),
        margin=margin,
    )
    return started, view


def _rewrite_config(config: NodeConfig, **changes: Any) -> None:
    import dataclasses

    updated = dataclasses.replace(config, **changes)
    text = dump(updated)
    write_atomically(config.data_dir / CONFIG_FILE, lambda h: h.write(text.encode("utf-8")))


# -- key rotation -----------------------------------------------------------------------------------


async def hub_state(base: str, node: str, epoch: int, key: Ed25519PrivateKey) -> HubState:
    """``GET /v1/sync/state`` signed with the current key."""
    target = "/v1/sync/state"
    headers = sign_request(
        key,
        node=node,
        epoch=epoch,
        method="GET",
        target=target,
        time_ms=_now_ms(),
        body_sha256=body_digest(b""),
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.get(base.rstrip("/") + target, headers=headers) as resp:
            payload = await resp.read()
            if resp.status != 200:
                raise ReprovisionError(
                    f"GET {target}: {resp.status} {payload[:300].decode('utf-8', 'replace')}"
                )
    return HubState.from_wire(decode(payload, max_bytes=None))


def check_not_serving(config: NodeConfig) -> None:
    """Refuse while something answers on the node's port (a running ``serve`` would keep appending)."""
    import socket

    host, port = config.host_port
    try:
        with socket.create_connection((host if host != "0.0.0.0" else "127.0.0.1", port), timeout=1):
            pass
    except OSError:
        return
    raise ReprovisionError(
        f"máy trạm đang chạy ({config.listen}); dừng nó trước (systemctl stop motcua-node)"
    )
