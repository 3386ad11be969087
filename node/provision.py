"""Creating a node's state directory (``motcua-node init``) and opening a node's parts to run it.

``init_node`` writes, in this order: the folder, the Ed25519 key (0600), the wrapped data key
(``datakey.json``, node.atrest, by the configured ``key_source``), the encrypted database with its schema
and the genesis entry of epoch 1, the blob folder, and last the config file, so a half-finished init
is recognisable (no ``node.toml``) and never mistaken for a node. It refuses any folder that already
holds a key, a database or a config file.

``Node.open(config)`` loads the key, opens the store (applying migrations), checks the journal and wires
the reception desk and auth; ``close()`` releases them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import atrest, projection
from node.auth import Auth
from node.blobs import fsync_dir
from node.config import CONFIG_FILE, NodeConfig, build, dump
from node.errors import ConfigError, NodeExists
from node.intake import Desk
from node.journal import Journal
from node.store import Store
from protocol.calendar import Calendar, default_calendar
from protocol.catalog import Catalog, default_catalog
from protocol.keys import generate_private_key, load_private_key, save_private_key

__all__ = ["Node", "create_data_key", "init_node", "unlock_data_key"]


async def init_node(
    data_dir: str | Path,
    *,
    node_id: str,
    unit_code: str,
    name: str,
    kind: str = "branch",
    code_block: int = 0,
    code_block_size: int = 1000,
    extra: dict[str, object] | None = None,
    passphrase: str | None = None,
) -> NodeConfig:
    """Create a new node in ``data_dir`` (absent or empty of node files); return its config.

    ``passphrase`` is the staff data passphrase when the config's ``key_source`` is 'passphrase'.
    """
    data_dir = Path(data_dir).absolute()
    config = build(
        {
            "node_id": node_id,
            "unit_code": unit_code,
            "name": name,
            "kind": kind,
            "code_block_index": code_block,
            "code_block_size": code_block_size,
            **(extra or {}),
        },
        data_dir,
    )
    for existing in (data_dir / CONFIG_FILE, config.key_path, config.db_path, data_dir / atrest.DATAKEY_FILE):
        if existing.exists():
            raise NodeExists(f"Thư mục {data_dir} đã chứa một máy trạm ({existing.name}); không ghi đè.")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    create_data_key(config, passphrase)
    key = generate_private_key()
    save_private_key(key, config.key_path)
    store = await Store.open(config.db_path)
    try:
        journal = Journal(node_id=config.node_id, epoch=1, key=key)
        async with store.write() as db:
            await journal.start_epoch(db)
    finally:
        await store.close()
    config.blob_dir.mkdir(mode=0o700, exist_ok=True)
    tmp = data_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text(dump(config), encoding="utf-8")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, data_dir / CONFIG_FILE)
    fsync_dir(data_dir)  # the config's name and the blob folder's entry survive a power cut
    return config


def create_data_key(config: NodeConfig, passphrase: str | None = None) -> atrest.Keyring:
    """New data keys for the node of ``config``, wrapped by its ``key_source``."""
    return atrest.create_keyring(
        config.data_dir,
        config.node_id,
        config.key_source,
        passphrase=passphrase,
        key_file=config.kek_file,
        credential=config.key_credential,
        max_messages=config.blob_key_max_messages,
    )


def unlock_data_key(config: NodeConfig, passphrase: str | None = None) -> atrest.Keyring:
    """The node's keyring, unwrapped by its configured source (``DataLocked`` without a passphrase)."""
    info = atrest.read_info(config.data_dir)
    if info["source"] != config.key_source:
        raise ConfigError(
            f"key_source = {config.key_source!r} nhưng khóa dữ liệu đang được bọc bằng {info['source']!r}; "
            f"chạy 'motcua-node keys rewrap --data {config.data_dir} --source {config.key_source}'"
        )
    return atrest.unlock(config.data_dir, passphrase, max_messages=config.blob_key_max_messages)


@dataclass(slots=True)
class Node:
    """The running parts of one node."""

    config: NodeConfig
    key: Ed25519PrivateKey
    store: Store
    journal: Journal
    desk: Desk
    auth: Auth

    @classmethod
    async def open(
        cls,
        config: NodeConfig,
        *,
        catalog: Catalog | None = None,
        calendar: Calendar | None = None,
        lookup_iterations: int | None = None,
    ) -> Node:
        unlock_data_key(config)  # DataLocked until the passphrase was entered (node.web.unlock)
        key = load_private_key(config.key_path)
        store = await Store.open(config.db_path)
        try:
            async with store.read() as db:
                journal = await Journal.open(db, config.node_id, key, project=projection.apply)
        except BaseException:
            await store.close()
            raise
        desk = Desk(
            store=store,
            journal=journal,
            catalog=catalog or default_catalog(),
            calendar=calendar or default_calendar(),
            unit_code=config.unit_code,
            block=config.code_block,
            lookup_iterations=lookup_iterations,
        )
        auth = Auth(
            store=store,
            idle_ms=config.session_idle_minutes * 60_000,
            absolute_ms=config.session_absolute_hours * 3_600_000,
            max_failures=config.login_max_failures,
            window_ms=config.login_window_minutes * 60_000,
        )
        return cls(config, key, store, journal, desk, auth)

    async def close(self) -> None:
        await self.store.close()
