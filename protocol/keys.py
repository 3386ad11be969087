"""Ed25519 keys: generation, files (mode 0600), public-key text (base64url) and fingerprints."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.encoding import b64url_decode, b64url_encode
from protocol.errors import KeyError_

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "PublicKey",
    "fingerprint",
    "generate_private_key",
    "load_private_key",
    "parse_public_key",
    "private_key_from_seed",
    "public_key_text",
    "save_private_key",
]

# Encodings (sign bit cleared) of points of small order, and non-canonical encodings of them.
# A public key that is one of these verifies forged signatures for many messages; refuse it.
_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


class PublicKey:
    """A verified-usable Ed25519 public key with its text form; cheap to compare and hash."""

    __slots__ = ("text", "raw", "_key")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise KeyError_(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
        if bytes([*raw[:31], raw[31] & 0x7F]) in _SMALL_ORDER:
            raise KeyError_("public key is a point of small order")
        self.raw = raw
        self.text = b64url_encode(raw)
        self._key = Ed25519PublicKey.from_public_bytes(raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.text})"


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """A private key from its 32-byte seed (test vectors, restore)."""
    if len(seed) != 32:
        raise KeyError_("an Ed25519 seed is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as base64url without padding (43 characters)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return b64url_encode(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def parse_public_key(text: str) -> PublicKey:
    """Parse base64url public-key text; raises KeyError_ naming the problem."""
    try:
        raw = b64url_decode(text, length=32)
    except ValueError as exc:
        raise KeyError_(f"public key text: {exc}") from None
    return PublicKey(raw)


def fingerprint(key: str | PublicKey) -> str:
    """Short display form for people comparing keys: first 80 bits of SHA-256, grouped, e.g. 3f9a-1c0e-..."""
    raw = key.raw if isinstance(key, PublicKey) else parse_public_key(key).raw
    digest = hashlib.sha256(raw).hexdigest()[:20]
    return "-".join(digest[i : i + 4] for i in range(0, 20, 4))


def save_private_key(key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> None:
    """Write the key as PKCS#8 PEM, mode 0600, atomically; refuses to overwrite an existing file."""
    target = Path(path)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, target)  # fails if target exists: never overwrite a key
    except FileExistsError:
        raise KeyError_(f"{target} already exists; refusing to overwrite a key") from None
    finally:
        os.unlink(tmp)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM Ed25519 key; refuses a file that group or others can access."""
    target = Path(path)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyError_(f"no key file at {target}") from None
    except OSError as exc:
        raise KeyError_(f"cannot open key file {target}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyError_(f"{target} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyError_(
                f"{target} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"run: chmod 600 {target}"
            )
        data = os.read(fd, 64 * 1024)
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{target} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{target} holds a {type(key).__name__}, not an Ed25519 key")
    return key
