"""Hub key rotation (SPEC §7.10, ``motcua-central rotate-key``).

The hub's signing key changes at a ``hub.key_rotation`` entry ``{"key", "previous", "effective"}``, signed by
the old key, written in one transaction in ``hub`` and in every ``hub.<NODE>`` that exists. Within each hub
log the entries after it are signed by the new key (mailboxes created later name the new key in their
genesis); receipts and enrollments are signed by the new key from then on. Nodes adopt the new key only from
a rotation entry that verifies under the key they pin.

Files: the new key is first written to ``hub.key.next`` (0600); after the commit the old key is moved to
``hub.key.retired-<fingerprint>`` and ``hub.key.next`` becomes ``hub.key``. ``Hub.open`` finishes a swap a
crash interrupted (``finish_swap``), removes a ``hub.key.next`` left by a rotation killed before its commit
(that key never signed anything) and refuses to start with a key that is not the one in force. The old
*public* keys are in the chain itself (genesis and rotation entries), so ``motcua-central verify`` checks old
entries and receipts with them (``key_history``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from central.mailbox import BROADCAST, HUB_EPOCH, Post
from protocol import (
    KEY_ROTATION,
    Entry,
    PublicKey,
    fingerprint,
    generate_private_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    save_private_key,
)

if TYPE_CHECKING:
    from central.hub import Hub

__all__ = ["RotationError", "finish_swap", "key_history", "key_in_force", "rotate"]


class RotationError(Exception):
    """The hub key files and the hub log disagree, or a rotation cannot be done."""


def key_history(db_path: Path) -> list[str]:
    """Every hub key in order, oldest first, from the ``hub`` log (genesis key, then each rotation's
    key); empty if the hub never wrote its broadcast log."""
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(
            "SELECT raw FROM entries WHERE log = ? AND epoch = ? AND (seq = 1 OR kind = ?) ORDER BY seq",
            (BROADCAST, HUB_EPOCH, KEY_ROTATION),
        ).fetchall()
    except sqlite3.OperationalError:  # no schema yet (a new hub)
        return []
    finally:
        db.close()
    return [str(json.loads(bytes(raw))["body"]["key"]) for (raw,) in rows]


def key_in_force(db_path: Path) -> str | None:
    history = key_history(db_path)
    return history[-1] if history else None


def next_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".next")


def finish_swap(key_path: Path, db_path: Path) -> None:
    """Make ``key_path`` hold the key in force (after a rotation a crash interrupted), or raise."""
    in_force = key_in_force(db_path)
    pending = next_path(key_path)
    loaded = public_key_text(load_private_key(key_path))
    if in_force is None or loaded == in_force:
        if pending.exists():  # a rotation killed before its commit: that key never signed anything
            pending.unlink()
            _sync_dir(key_path.parent)
        return
    if pending.exists() and public_key_text(load_private_key(pending)) == in_force:
        _swap(key_path, pending, loaded)
        return
    raise RotationError(
        f"{key_path} holds key {fingerprint(loaded)} but the hub logs are signed by "
        f"{fingerprint(in_force)} "
        "since their last hub.key_rotation: put the right hub.key in place"
    )


def _swap(key_path: Path, pending: Path, old_text: str) -> None:
    retired = key_path.with_name(f"{key_path.name}.retired-{fingerprint(old_text)}")
    if not retired.exists():
        os.link(key_path, retired)
    os.replace(pending, key_path)
    _sync_dir(key_path.parent)


def _sync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def rotate(hub: Hub) -> Entry:
    """Rotate ``hub``'s key (the hub must not be serving: run by the CLI on a stopped hub); return the
    rotation entry of ``hub``. Afterwards ``hub`` signs with the new key."""
    key_path = hub.config.key_path
    pending = next_path(key_path)
    if pending.exists():
        raise RotationError(f"{pending} exists: a rotation was interrupted; start the hub once, then retry")
    old_text = public_key_text(hub.hub_key)
    new_key = generate_private_key()
    save_private_key(new_key, pending)
    new_text = public_key_text(new_key)
    body = {"key": new_text, "previous": old_text, "effective": hub.clock()}
    rows = await hub.store.fetchall(
        "SELECT DISTINCT log FROM heads WHERE log LIKE 'hub.%' AND epoch = ? ORDER BY log", (HUB_EPOCH,)
    )
    posts = [Post(BROADCAST, KEY_ROTATION, body)] + [Post(row[0], KEY_ROTATION, body) for row in rows]
    written = await hub.mailbox.post(posts)  # signed by the old key: the key in force until this entry
    _swap(key_path, pending, old_text)
    hub.use_key(new_key)
    return written[0]


def public_keys(history: list[str]) -> list[PublicKey]:
    return [parse_public_key(text) for text in history]
