"""``motcua-node keys ...`` and the data unlock of every CLI command (node.atrest).

- ``keys status``: the source that wraps the data key, its generations and use (no secret printed);
- ``keys rewrap [--source S] [--key-file F]``: the same keys under a new KEK (a new passphrase, or
  another source); asks the current secret first. Data is not re-encrypted;
- ``keys rotate``: a new blob-key generation now (old ones stay for reading);
- ``keys check``: SQLCipher ``cipher_integrity_check`` of every database page and authentication of
  every blob file;
- ``keys encrypt``: the upgrade of a node created before encryption at rest: new keys by the configured
  ``key_source``, the plaintext database exported into an encrypted one (``sqlcipher_export``), every
  plaintext blob file re-written encrypted at its address (resumable: encrypted files are skipped).

A command on a node whose key source is 'passphrase' asks for the passphrase on the terminal, or reads
``MOTCUA_DATA_PASSPHRASE`` (scripts, tests); 'file' and 'systemd-creds' unlock without a prompt.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from node import atrest
from node.config import NodeConfig
from node.errors import DataKeyError, DataLocked, InvalidInput

__all__ = ["PASSPHRASE_ENV", "add_parsers", "ensure_unlocked", "new_passphrase", "run"]

PASSPHRASE_ENV = "MOTCUA_DATA_PASSPHRASE"


def _prompt(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise DataLocked(
            f"Cần mật khẩu dữ liệu: chạy lệnh trong một terminal hoặc đặt biến môi trường {PASSPHRASE_ENV}."
        )
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise DataLocked("Chưa nhập mật khẩu dữ liệu.") from None


def _ask(prompt: str) -> str:
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env
    return _prompt(prompt)


def new_passphrase() -> str:
    """A new data passphrase: ``MOTCUA_DATA_NEW_PASSPHRASE`` / ``MOTCUA_DATA_PASSPHRASE`` or asked twice."""
    env = os.environ.get("MOTCUA_DATA_NEW_PASSPHRASE") or os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env
    first = _prompt("Mật khẩu dữ liệu mới: ")
    if _prompt("Nhập lại mật khẩu dữ liệu: ") != first:
        raise InvalidInput({"passphrase": "Hai lần nhập mật khẩu không khớp."})
    return first


def ensure_unlocked(config: NodeConfig) -> atrest.Keyring:
    """Unlock the node's data key for this CLI process (asks the passphrase when needed)."""
    from node.provision import unlock_data_key

    if atrest.read_info(config.data_dir)["source"] == "passphrase" and not atrest.is_unlocked(
        config.data_dir
    ):
        return unlock_data_key(config, _ask("Mật khẩu dữ liệu (Mở khóa dữ liệu): "))
    return unlock_data_key(config)


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="data encryption keys (at rest)").add_subparsers(
        dest="keys_command", required=True
    )
    for name, text in (
        ("status", "show how the data key is wrapped and its generations"),
        ("rotate", "start a new blob-key generation now"),
        ("check", "authenticate every database page and every blob file"),
        ("rewrap", "wrap the data key under a new passphrase or another key source"),
        ("encrypt", "encrypt a node created before encryption at rest (stop serve first)"),
    ):
        p = keys.add_parser(name, help=text)
        p.add_argument("--data", required=True, type=Path, help="state directory of the node")
        if name == "rewrap":
            p.add_argument("--source", choices=atrest.SOURCES, help="new key source (default: the same)")
            p.add_argument("--key-file", type=Path, help="key file for --source file")
            p.add_argument("--credential", help="systemd credential name for --source systemd-creds")


def run(args: argparse.Namespace, config: NodeConfig, out: TextIO, err: TextIO) -> int:
    command = args.keys_command
    if command == "rewrap":
        info = atrest.read_info(config.data_dir)
        old = _ask("Mật khẩu dữ liệu hiện tại: ") if info["source"] == "passphrase" else None
        source = args.source or info["source"]
        ring = atrest.change_passphrase(
            config.data_dir,
            old_passphrase=old,
            source=source,
            passphrase=new_passphrase() if source == "passphrase" else None,
            key_file=args.key_file,
            credential=args.credential,
        )
        err.write(f"Đã bọc lại khóa dữ liệu bằng nguồn {ring.info['source']}.\n")
        if source != config.key_source:
            err.write(f'Hãy đặt key_source = "{source}" trong node.toml.\n')
        return 0
    if command == "encrypt":
        return _encrypt_existing(config, err)
    ring = ensure_unlocked(config)
    if command == "rotate":
        with ring._lock:
            ring._rotate()
        err.write(f"Khóa tệp thế hệ {ring.current} đang dùng.\n")
        return 0
    if command == "check":
        return _check(config, ring, out)
    out.write(
        json.dumps(
            {
                "source": ring.info["source"],
                "generations": sorted(ring.blob_keys),
                "current": ring.current,
                "used_current": ring.used,
                "max_messages": ring.max_messages,
            },
            ensure_ascii=False,
        )
        + "\n"
    )
    return 0


def _check(config: NodeConfig, ring: atrest.Keyring, out: TextIO) -> int:
    from node.blobs import BlobStore
    from node.dbcipher import integrity_errors

    problems = integrity_errors(config.db_path, ring.db_key)
    store = BlobStore(config.data_dir, low_disk_bytes=0, keyring=ring)
    count = 0
    for sub in sorted(store.objects.iterdir()) if store.objects.is_dir() else ():
        for path in sorted(sub.iterdir()):
            count += 1
            if not store.verify(path.name):
                problems.append(f"blob {path.name}: không xác thực được")
    for line in problems:
        out.write(line + "\n")
    out.write(f"database ok={not any(p for p in problems if not p.startswith('blob'))} blobs {count}\n")
    if problems:
        raise DataKeyError(f"{len(problems)} lỗi toàn vẹn dữ liệu mã hóa")
    return 0


def _encrypt_existing(config: NodeConfig, err: TextIO) -> int:
    """Encrypt a node's plaintext database and blob files in place (the node must not be serving)."""
    import hashlib

    from node.blobcipher import MAGIC, seal_file
    from node.dbcipher import encrypt_plaintext, is_plaintext
    from node.instance import instance_lock
    from node.provision import create_data_key

    with instance_lock(config.data_dir):
        if (config.data_dir / atrest.DATAKEY_FILE).exists():
            ring = ensure_unlocked(config)
        else:
            ring = create_data_key(config, new_passphrase() if config.key_source == "passphrase" else None)
        if is_plaintext(config.db_path):
            encrypt_plaintext(config.db_path, ring.db_key)
            err.write(f"Đã mã hóa cơ sở dữ liệu {config.db_path}.\n")
        done = 0
        objects = config.blob_dir / "sha256"
        for path in sorted(objects.glob("*/*")) if objects.is_dir() else ():
            with open(path, "rb") as handle:
                if handle.read(4) == MAGIC:
                    continue
                handle.seek(0)
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            if digest != path.name:
                raise DataKeyError(f"tệp {path} không khớp SHA-256 của nó; chạy 'motcua-node verify' trước")
            seal_file(ring, path, path)  # the ciphertext replaces the plaintext in one rename
            done += 1
        import shutil

        shutil.rmtree(config.data_dir / "cache" / "thumbnails", ignore_errors=True)  # old plaintext PNGs
        err.write(f"Đã mã hóa {done} tệp trong kho lưu trữ.\n")
    return 0
