"""Encryption at rest: the node's data keys, wrapped (envelope encryption), and how they are unlocked.

RELIABILITY.md §5 / P1–P2. A stolen van laptop must yield no readable personal data from its disk.

- **Keyring** (only ever in memory, unwrapped): a random 256-bit database key (SQLCipher, node.dbcipher)
  and one or more random 256-bit blob keys, one per *generation* (node.blobcipher). The current
  generation encrypts new blobs; older generations stay for reading.
- **Wrapped keyring** ``<data>/datakey.json``: the keyring's JSON sealed with AES-256-GCM under a key
  encryption key (KEK), AAD = format + node id + source. The KEK comes from the configured source:

  ``file``           a 32-byte random key file (default ``<data>/datakey.kek``, 0600). The embedded
                     default and ``make demo``: no prompt, but **no protection against a stolen disk**;
                     only for fixed branch PCs with full-disk encryption.
  ``passphrase``     Argon2id(staff passphrase, 16-byte salt; t=3, m=64 MiB, p=1) entered at shift start
                     in the staff UI ("Mở khóa dữ liệu") or the CLI. Nothing on disk unwraps it.
  ``systemd-creds``  a random KEK sealed by ``systemd-creds encrypt`` (TPM2 if present, else the host
                     key); the unit gets it with ``LoadCredentialEncrypted=`` and the node reads
                     ``$CREDENTIALS_DIRECTORY/<credential>``. Outside systemd the CLI runs
                     ``systemd-creds decrypt`` on ``<data>/<credential>.cred``.

- **Nonce discipline** (P2, NIST SP 800-38D): every blob gets a fresh HKDF-derived AES key and chunk
  nonces from a counter (node.blobcipher), so (key, nonce) cannot repeat by construction; on top of that
  the number of blobs encrypted under each blob key is counted (``<data>/datakey.usage``, reserved in
  blocks and fsynced before use, so a crash can only skip counts, never reuse them) and the node rotates
  to a new generation before ``blob_key_max_messages`` (config; default 2^32, the SP 800-38D bound for
  random 96-bit IVs).

One process keeps the unlocked keyrings by data directory (``unlocked``); ``node.store.Store.open`` and
``node.blobs.BlobStore`` ask ``keyring_for(data_dir)``, which unlocks the non-interactive sources (file,
systemd credential) by itself and raises ``DataLocked`` for a passphrase nobody entered yet.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from node.errors import DataKeyError, DataLocked, WrongDataKey

__all__ = [
    "DATAKEY_FILE",
    "DEFAULT_CREDENTIAL",
    "FORMAT",
    "KEK_FILE",
    "SOURCES",
    "USAGE_FILE",
    "Keyring",
    "change_passphrase",
    "create_keyring",
    "forget",
    "keyring_for",
    "read_info",
    "unlock",
]

FORMAT = "motcua-datakey/1"
DATAKEY_FILE = "datakey.json"
KEK_FILE = "datakey.kek"
USAGE_FILE = "datakey.usage"
DEFAULT_CREDENTIAL = "motcua-node-datakey"
SOURCES = ("file", "passphrase", "systemd-creds")
DEFAULT_MAX_MESSAGES = 1 << 32
_USAGE_BLOCK = 1024
# Argon2id for the passphrase KEK: once per unlock (shift start), never per dossier.
ARGON2 = {"iterations": 3, "lanes": 1, "memory_cost": 64 * 1024}
MIN_PASSPHRASE = 10

_lock = threading.Lock()
_unlocked: dict[Path, Keyring] = {}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise DataKeyError(f"{DATAKEY_FILE}: trường {what} không hợp lệ")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise DataKeyError(f"{DATAKEY_FILE}: trường {what} không phải base64") from None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) under a temp name, fsync, rename, fsync the folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass(slots=True)
class Keyring:
    """The unwrapped keys of one node (in memory only) and the bookkeeping of their use."""

    data_dir: Path
    node_id: str
    db_key: bytes
    blob_keys: dict[int, bytes]
    current: int
    info: dict[str, Any]  # the wrapped file's public fields (source, kdf, ...)
    kek: bytes = field(repr=False)
    max_messages: int = DEFAULT_MAX_MESSAGES
    _used: int = 0  # blobs encrypted under the current generation (this process counted)
    _reserved: int = 0  # durable reservation in datakey.usage: counts below it may have been used
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    rotations: int = 0

    def __repr__(self) -> str:  # never print keys
        return f"Keyring(node={self.node_id!r}, generations={sorted(self.blob_keys)}, current={self.current})"

    # -- nonce discipline ------------------------------------------------------------------------

    def next_blob_key(self) -> tuple[int, bytes]:
        """The (generation, key) for one new blob; counts it, rotating before the message bound."""
        with self._lock:
            if self._used + 1 > self.max_messages:
                self._rotate()
            if self._used + 1 > self._reserved:
                self._reserve(self._used + min(_USAGE_BLOCK, self.max_messages))
            self._used += 1
            return self.current, self.blob_keys[self.current]

    @property
    def used(self) -> int:
        return self._used

    def _usage_path(self) -> Path:
        return self.data_dir / USAGE_FILE

    def _load_usage(self) -> None:
        try:
            data = json.loads(self._usage_path().read_text("utf-8"))
        except FileNotFoundError:
            data = {}
        except ValueError as exc:
            raise DataKeyError(f"{USAGE_FILE} hỏng: {exc}") from None
        reserved = int(data.get(str(self.current), 0))
        # a crash may have used any count below the reservation: start above it (skipping is safe)
        self._used = self._reserved = reserved

    def _reserve(self, upto: int) -> None:
        try:
            data = json.loads(self._usage_path().read_text("utf-8"))
        except FileNotFoundError:
            data = {}
        data[str(self.current)] = upto
        _write_atomic(self._usage_path(), json.dumps(data, sort_keys=True).encode())
        self._reserved = upto

    def _rotate(self) -> None:
        """A new blob-key generation; the old ones stay in the keyring for reading."""
        generation = max(self.blob_keys) + 1
        self.blob_keys[generation] = secrets.token_bytes(32)
        self.current = generation
        _store(self, self.kek)  # durable before the first blob under the new key
        self._used = self._reserved = 0
        self.rotations += 1

    def payload(self) -> bytes:
        return json.dumps(
            {
                "node": self.node_id,
                "db": self.db_key.hex(),
                "blob": {str(g): k.hex() for g, k in sorted(self.blob_keys.items())},
                "current": self.current,
            },
            sort_keys=True,
        ).encode()


def _aad(info: dict[str, Any]) -> bytes:
    return f"{FORMAT}|{info['node']}|{info['source']}".encode()


def _store(ring: Keyring, kek: bytes) -> None:
    """Seal the keyring under ``kek`` into ``datakey.json`` (atomically)."""
    info = dict(ring.info)
    nonce = secrets.token_bytes(12)
    info["nonce"] = _b64(nonce)
    info["wrapped"] = _b64(AESGCM(kek).encrypt(nonce, ring.payload(), _aad(info)))
    _write_atomic(ring.data_dir / DATAKEY_FILE, json.dumps(info, indent=1, sort_keys=True).encode())
    ring.info, ring.kek = info, kek


def read_info(data_dir: Path) -> dict[str, Any]:
    """The public fields of ``datakey.json`` (format, node, source, kdf...)."""
    path = Path(data_dir) / DATAKEY_FILE
    try:
        info = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DataKeyError(
            f"không tìm thấy {path}: máy trạm chưa có khóa dữ liệu (máy trạm mới: 'motcua-node init'; "
            "máy trạm tạo trước khi có mã hóa dữ liệu: 'motcua-node keys encrypt')"
        ) from None
    except ValueError as exc:
        raise DataKeyError(f"{path}: không đọc được: {exc}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("source") not in SOURCES:
        raise DataKeyError(f"{path}: không phải tệp khóa dữ liệu {FORMAT}")
    return info


# -- key encryption keys ---------------------------------------------------------------------------


def _passphrase_kek(passphrase: str, kdf: dict[str, Any]) -> bytes:
    import unicodedata

    return Argon2id(
        salt=_unb64(kdf.get("salt"), "kdf.salt"),
        length=32,
        iterations=int(kdf["iterations"]),
        lanes=int(kdf["lanes"]),
        memory_cost=int(kdf["memory_cost"]),
    ).derive(unicodedata.normalize("NFC", passphrase).encode("utf-8"))


def _key_file_path(data_dir: Path, info: dict[str, Any]) -> Path:
    named = info.get("key_file") or ""
    return Path(named) if named else data_dir / KEK_FILE


def _read_kek_file(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WrongDataKey(f"không tìm thấy tệp khóa {path}", detail=str(path)) from None
    if len(raw) != 32:
        raise WrongDataKey(f"tệp khóa {path} phải dài đúng 32 byte", detail=str(len(raw)))
    return raw


def _credential_kek(data_dir: Path, name: str) -> bytes:
    """The KEK from systemd: ``$CREDENTIALS_DIRECTORY/<name>``, else ``systemd-creds decrypt``."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / name).is_file():
        return _read_kek_file(Path(creds) / name)
    sealed = data_dir / f"{name}.cred"
    exe = shutil.which("systemd-creds")
    if exe is None or not sealed.is_file():
        raise DataLocked(
            f"Không có thông tin xác thực systemd '{name}' (LoadCredentialEncrypted=) để mở khóa dữ liệu.",
            detail=f"CREDENTIALS_DIRECTORY={creds!r} sealed={sealed}",
        )
    done = subprocess.run(
        [exe, "decrypt", f"--name={name}", str(sealed), "-"], capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0 or len(done.stdout) != 32:
        raise WrongDataKey(
            f"systemd-creds không giải mã được {sealed}", detail=done.stderr.decode(errors="replace")[-300:]
        )
    return done.stdout


def _seal_credential(data_dir: Path, name: str, kek: bytes) -> Path:
    exe = shutil.which("systemd-creds")
    if exe is None:
        raise DataKeyError("không tìm thấy lệnh systemd-creds (cần systemd ≥ 250)")
    sealed = data_dir / f"{name}.cred"
    done = subprocess.run(
        [exe, "encrypt", f"--name={name}", "-", str(sealed)],
        input=kek,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise DataKeyError(
            "systemd-creds encrypt thất bại", detail=done.stderr.decode(errors="replace")[-300:]
        )
    os.chmod(sealed, 0o600)
    return sealed


def _kek_for(data_dir: Path, info: dict[str, Any], passphrase: str | None) -> bytes:
    source = info["source"]
    if source == "file":
        return _read_kek_file(_key_file_path(data_dir, info))
    if source == "systemd-creds":
        return _credential_kek(data_dir, str(info.get("credential") or DEFAULT_CREDENTIAL))
    if passphrase is None:
        raise DataLocked()
    kdf = info.get("kdf")
    if not isinstance(kdf, dict):
        raise DataKeyError(f"{DATAKEY_FILE}: thiếu tham số Argon2id")
    return _passphrase_kek(passphrase, kdf)


# -- create, unlock, rewrap ------------------------------------------------------------------------


def _check_passphrase(passphrase: str | None) -> str:
    if passphrase is None or len(passphrase) < MIN_PASSPHRASE:
        raise DataKeyError(f"mật khẩu dữ liệu phải có ít nhất {MIN_PASSPHRASE} ký tự")
    return passphrase


def _new_kek(
    data_dir: Path,
    info: dict[str, Any],
    passphrase: str | None,
    key_file: Path | None,
    credential: str | None,
) -> bytes:
    """A KEK for ``info['source']``, recording in ``info`` how to find it again."""
    source = info["source"]
    info.pop("kdf", None)
    info.pop("key_file", None)
    info.pop("credential", None)
    if source == "passphrase":
        kdf = {"alg": "argon2id", "salt": _b64(secrets.token_bytes(16)), **ARGON2}
        info["kdf"] = kdf
        return _passphrase_kek(_check_passphrase(passphrase), kdf)
    kek = secrets.token_bytes(32)
    if source == "file":
        path = key_file or data_dir / KEK_FILE
        if key_file is not None:
            info["key_file"] = str(path.absolute())
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomic(path, kek)
        return kek
    name = credential or DEFAULT_CREDENTIAL
    info["credential"] = name
    _seal_credential(data_dir, name, kek)
    return kek


def create_keyring(
    data_dir: Path,
    node_id: str,
    source: str = "file",
    *,
    passphrase: str | None = None,
    key_file: Path | None = None,
    credential: str | None = None,
    max_messages: int = DEFAULT_MAX_MESSAGES,
) -> Keyring:
    """New random keys for a new node in ``data_dir``, wrapped by ``source``; unlocked in this process."""
    if source not in SOURCES:
        raise DataKeyError(f"nguồn khóa {source!r} phải là một trong {', '.join(SOURCES)}")
    data_dir = Path(data_dir).absolute()
    if (data_dir / DATAKEY_FILE).exists():
        raise DataKeyError(f"{data_dir / DATAKEY_FILE} đã tồn tại; không ghi đè khóa dữ liệu")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info: dict[str, Any] = {"format": FORMAT, "node": node_id, "source": source, "id": secrets.token_hex(8)}
    kek = _new_kek(data_dir, info, passphrase, key_file, credential)
    ring = Keyring(
        data_dir=data_dir,
        node_id=node_id,
        db_key=secrets.token_bytes(32),
        blob_keys={1: secrets.token_bytes(32)},
        current=1,
        info=info,
        kek=kek,
        max_messages=max_messages,
    )
    _store(ring, kek)
    with _lock:
        _unlocked[data_dir] = ring
    return ring


def _open(data_dir: Path, passphrase: str | None, max_messages: int) -> Keyring:
    info = read_info(data_dir)
    kek = _kek_for(data_dir, info, passphrase)
    try:
        plain = AESGCM(kek).decrypt(
            _unb64(info.get("nonce"), "nonce"), _unb64(info.get("wrapped"), "wrapped"), _aad(info)
        )
    except InvalidTag:
        raise WrongDataKey(
            detail=f"{data_dir / DATAKEY_FILE}: AES-GCM tag mismatch ({info['source']})"
        ) from None
    data = json.loads(plain)
    ring = Keyring(
        data_dir=data_dir,
        node_id=str(data["node"]),
        db_key=bytes.fromhex(data["db"]),
        blob_keys={int(g): bytes.fromhex(k) for g, k in data["blob"].items()},
        current=int(data["current"]),
        info=info,
        kek=kek,
        max_messages=max_messages,
    )
    ring._load_usage()
    return ring


def unlock(
    data_dir: Path, passphrase: str | None = None, *, max_messages: int = DEFAULT_MAX_MESSAGES
) -> Keyring:
    """Unwrap the keyring of ``data_dir`` (WrongDataKey / DataLocked) and keep it for this process."""
    data_dir = Path(data_dir).absolute()
    with _lock:
        ring = _unlocked.get(data_dir)
    # the same keyring still on disk (a rewrap keeps its id)? A folder replaced by another node's
    # files (restore, tests) has another keyring: unlock that one instead
    if ring is not None and read_info(data_dir).get("id") == ring.info.get("id"):
        ring.max_messages = max_messages
        return ring
    forget(data_dir)
    ring = _open(data_dir, passphrase, max_messages)
    with _lock:
        return _unlocked.setdefault(data_dir, ring)


def keyring_for(data_dir: Path) -> Keyring:
    """The unlocked keyring of ``data_dir``: unlocked before, or by a non-interactive source now."""
    return unlock(Path(data_dir))


def is_unlocked(data_dir: Path) -> bool:
    with _lock:
        return Path(data_dir).absolute() in _unlocked


def forget(data_dir: Path | None = None) -> None:
    """Drop unlocked keyrings from memory (one, or all): the next use must unlock again."""
    with _lock:
        if data_dir is None:
            _unlocked.clear()
        else:
            _unlocked.pop(Path(data_dir).absolute(), None)


def change_passphrase(
    data_dir: Path,
    *,
    old_passphrase: str | None = None,
    source: str | None = None,
    passphrase: str | None = None,
    key_file: Path | None = None,
    credential: str | None = None,
) -> Keyring:
    """Rewrap the same keys under a new KEK (new passphrase, or another source). Data is not re-encrypted."""
    data_dir = Path(data_dir).absolute()
    forget(data_dir)
    ring = _open(data_dir, old_passphrase, DEFAULT_MAX_MESSAGES)  # proves the old secret
    info = dict(ring.info)
    info["source"] = source or info["source"]
    if info["source"] not in SOURCES:
        raise DataKeyError(f"nguồn khóa {info['source']!r} phải là một trong {', '.join(SOURCES)}")
    old_file = _key_file_path(data_dir, ring.info) if ring.info["source"] == "file" else None
    kek = _new_kek(data_dir, info, passphrase, key_file, credential)
    ring.info = info
    _store(ring, kek)
    if old_file is not None and info["source"] != "file":
        old_file.unlink(missing_ok=True)  # the old wrap is gone: the key file would unwrap nothing
    with _lock:
        _unlocked[data_dir] = ring
    return ring
