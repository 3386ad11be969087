"""N6: one node of the model — the real node parts and its real sync client, opened, crashed, restored.

``Branch`` is a node's current instance: its data folder, ``node.provision.Node`` (store, journal, desk)
and ``node.sync_service.SyncService`` (the ``NodeSyncClient`` the node runs, over the node's store). It
is built the ways a real node is: ``init`` + ``enroll`` with an invite token, ``restore-backup`` +
``finish_restore`` (a new epoch), ``restore`` from the hub, or (the misuse the system must detect) a
raw copy of a backup started with its old key.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node import atrest
from node.backup import DB_NAME, KEY_NAME, create_backup, read_archive
from node.config import CONFIG_FILE, build, dump
from node.config import load as load_node_config
from node.hublink import enroll_existing, parse_token, request_enrollment, save_link
from node.journal import Journal
from node.provision import Node, init_node
from node.reprovision import finish_restore, restore_backup
from node.restore import provision_from_hub
from node.store import Store
from node.sync_client import SyncError, SyncReport
from node.sync_service import SyncService
from protocol import generate_private_key, save_private_key
from tests.node.conftest import FAST_LOOKUP
from tests.tools import keyring, node_db

__all__ = ["Branch", "DEAD_URL", "make_template"]

DEAD_URL = "http://127.0.0.1:1"  # nothing listens on port 1: connection refused (offline)
PREFLIGHT_S = 5.0


@dataclass
class Branch:
    node_id: str
    data: Path
    node: Node
    service: SyncService | None
    hub_url: str
    offline: bool = False
    _reader: sqlite3.Connection | None = None

    # -- opening ---------------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, node_id: str, data: Path, hub_url: str, *, offline: bool = False, preflight: bool = True
    ) -> Branch:
        """Open the folder as ``serve`` does: the node's parts, its sync service, the bounded preflight."""
        node = await Node.open(load_node_config(data, {}), lookup_iterations=FAST_LOOKUP)
        try:
            service = await SyncService.open(node, timeout=5.0)
        except BaseException:
            await node.close()
            raise
        branch = cls(node_id, data, node, service, hub_url, offline)
        branch.set_offline(offline)
        if service is not None and not offline and preflight:
            with contextlib.suppress(SyncError, TimeoutError):
                await asyncio.wait_for(service.client.preflight(), timeout=PREFLIGHT_S)
        return branch

    @classmethod
    async def create(
        cls, node_id: str, unit: str, data: Path, token: str, hub_url: str, *, template: Path | None = None
    ) -> Branch:
        """``motcua-node init`` then ``motcua-node enroll --token``.

        With ``template`` (an empty database ``Store.open`` migrated once, what ``init`` starts from) the
        same steps run without migrating again: key, genesis, enrollment over HTTP, the hub link, config."""
        if template is None:
            config = await init_node(data, node_id=node_id, unit_code=unit, name=f"Chi nhánh {node_id}")
            await enroll_existing(config, token, hub_url=hub_url)
            return await cls.open(node_id, data, hub_url)
        config = build({"node_id": node_id, "unit_code": unit, "name": f"Chi nhánh {node_id}"}, data)
        data.mkdir(mode=0o700, parents=True)
        shutil.copyfile(template, config.db_path)
        for name in (atrest.DATAKEY_FILE, atrest.KEK_FILE):  # the template's data key ('file' source)
            shutil.copyfile(template.parent / name, data / name)
        key = generate_private_key()
        save_private_key(key, config.key_path)
        enrollment, _ = await request_enrollment(parse_token(token), key, hub_url=hub_url)
        assert enrollment.epoch == 1 and enrollment.previous is None
        store = await Store.open(config.db_path, migrate=False)
        try:
            async with store.write() as db:
                await Journal(node_id=node_id, epoch=1, key=key).start_epoch(db)
                await save_link(db, enrollment, hub_url, time.time_ns() // 1_000_000)
        finally:
            await store.close()
        config.blob_dir.mkdir(mode=0o700)
        (data / CONFIG_FILE).write_text(dump(config), encoding="utf-8")
        return await cls.open(node_id, data, hub_url, preflight=False)

    @classmethod
    async def from_backup(cls, node_id: str, archive: Path, data: Path, token: str, hub_url: str) -> Branch:
        """``motcua-node restore-backup``, then ``finish_restore`` with a fresh token: new key, new epoch."""
        config, _ = await restore_backup(archive, data)
        await finish_restore(config, token=token, hub_url=hub_url)
        return await cls.open(node_id, data, hub_url)

    @classmethod
    async def raw_copy(
        cls, node_id: str, archive: Path, data: Path, hub_url: str, *, offline: bool
    ) -> Branch:
        """The misuse: the backup's files (its key too) put back and started as they are."""
        allowed = {DB_NAME, CONFIG_FILE, KEY_NAME, atrest.DATAKEY_FILE, atrest.KEK_FILE, atrest.USAGE_FILE}
        read_archive(archive, data, kind="node", allowed=lambda n: n in allowed or n.startswith("blobs/"))
        return await cls.open(node_id, data, hub_url, offline=offline)

    @classmethod
    async def from_hub(cls, node_id: str, unit: str, data: Path, token: str, hub_url: str) -> Branch:
        """``motcua-node restore --token``: a new node built from what the hub holds (a new epoch)."""
        await provision_from_hub(data, token, hub_url=hub_url, unit_code=unit, code_block=0)
        return await cls.open(node_id, data, hub_url)

    # -- running ---------------------------------------------------------------------------------------

    def set_offline(self, offline: bool) -> None:
        self.offline = offline
        if self.service is not None:
            self.service.transport.base = DEAD_URL if offline else self.hub_url

    async def sync(self) -> SyncReport | SyncError:
        assert self.service is not None
        try:
            return await self.service.client.sync_once()
        except SyncError as exc:
            return exc

    def backup(self, archive: Path) -> None:
        create_backup(self.data, archive, node_id=self.node_id, with_key=True)

    async def close(self) -> None:
        """Stop as a crash leaves it: nothing flushed beyond what was committed (SQLite commits are
        durable, ``synchronous=FULL``); the sync client's in-flight work is abandoned by the caller."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.service is not None:
            await self.service.close()
        await self.node.close()

    # -- reading (sqlite3, read-only, while the node is open: WAL readers never block it) --------------

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        if self._reader is None:
            self._reader = node_db(self.data / DB_NAME, readonly=True)
        return self._reader.execute(sql, args).fetchall()


async def make_template(path: Path) -> Path:
    """An empty node database with every migration applied (what ``init`` creates before its genesis),
    encrypted with the data key of its folder (copied along with it by ``Branch.create``)."""
    keyring(path.parent, "TEMPLATE")
    store = await Store.open(path)
    await store.close()
    for sidecar in ("-wal", "-shm"):
        Path(str(path) + sidecar).unlink(missing_ok=True)
    return path
