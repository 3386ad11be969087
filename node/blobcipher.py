"""Encrypted blob files: chunked AES-256-GCM with counter nonces (a STREAM construction).

A blob's address stays the SHA-256 of its plaintext (manifests and hub uploads need it); the file at
that address holds::

    header (36 bytes)  b"MCBE" | version (1) | generation (u32) | chunk size (u32) | salt (16) | prefix (7)
    chunk 0 .. n-1     AES-256-GCM(plaintext[i*C:(i+1)*C]) with its 16-byte tag; n >= 1 (an empty blob
                       is one empty final chunk)

- blob key     = HKDF-SHA256(keyring blob key of ``generation``, salt, info "motcua blob v1"): a fresh
  key per blob, from 16 random bytes;
- nonce(i)     = prefix (7 random bytes) | i (u32 big-endian) | final flag (1 for the last chunk, else 0):
  never repeats under one blob key (the counter), and a file cut at a chunk boundary fails because its
  new last chunk was sealed with flag 0 (truncation-safe);
- AAD          = header | plaintext SHA-256 (hex) | node id: a file moved to another address, another
  node, or given a changed header fails authentication.

Any failure to authenticate raises ``BlobAuthFailed`` naming the blob and the chunk. The encryptor
counts one message per blob against its key generation (node.atrest.Keyring.next_blob_key), which
rotates before the configured bound.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from node.atrest import Keyring
from node.errors import BlobAuthFailed

__all__ = [
    "ENC_CHUNK",
    "HEADER_SIZE",
    "MAGIC",
    "VERSION",
    "DecryptingReader",
    "ciphertext_size",
    "encrypt_chunks",
    "seal_file",
]

MAGIC = b"MCBE"
VERSION = 1
ENC_CHUNK = 64 * 1024
TAG = 16
_HEADER = struct.Struct(">4sBII16s7s")
HEADER_SIZE = _HEADER.size  # 36
_INFO = b"motcua blob v1"


def _blob_key(master: bytes, salt: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(master))


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def _aad(header: bytes, sha256: str, node_id: str) -> bytes:
    return header + sha256.encode("ascii") + node_id.encode("utf-8")


def ciphertext_size(size: int, chunk: int = ENC_CHUNK) -> int:
    """Bytes on disk for ``size`` plaintext bytes."""
    chunks = max(1, -(-size // chunk))
    return HEADER_SIZE + size + chunks * TAG


def encrypt_chunks(
    ring: Keyring, sha256: str, pieces: Iterable[bytes | memoryview], *, chunk: int = ENC_CHUNK
) -> Iterator[bytes]:
    """The encrypted file of the plaintext ``pieces`` (whose SHA-256 is ``sha256``), header first.

    ``pieces`` may be cut anywhere; they are re-chunked to ``chunk`` bytes. Counts one message (blob)
    against the current key generation.
    """
    generation, master = ring.next_blob_key()
    salt, prefix = secrets.token_bytes(16), secrets.token_bytes(7)
    header = _HEADER.pack(MAGIC, VERSION, generation, chunk, salt, prefix)
    aead, aad = _blob_key(master, salt), _aad(header, sha256, ring.node_id)
    yield header
    index = 0
    pending = bytearray()
    for piece in pieces:
        pending += piece
        while len(pending) > chunk:  # keep at least one byte back: the last chunk is sealed as final
            yield aead.encrypt(_nonce(prefix, index, False), bytes(pending[:chunk]), aad)
            del pending[:chunk]
            index += 1
    yield aead.encrypt(_nonce(prefix, index, True), bytes(pending), aad)


def seal_file(ring: Keyring, source: Path, target: Path) -> str:
    """Encrypt the file ``source`` into ``target`` (temp name, fsync, rename); ``source`` is gone after.

    ``target`` may be ``source`` itself: the ciphertext replaces the plaintext in one rename.

    For copies kept outside the blob store (a scanner's ``rejected/`` files): the same format, with the
    plaintext SHA-256 in the AAD; returns that hash. ``source`` is read twice (hash, then encrypt).
    """
    import hashlib
    import tempfile

    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # never block on a FIFO or read a device
        os.close(fd)
        raise OSError(f"{source}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        handle.seek(0)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for sealed in encrypt_chunks(ring, digest, iter(lambda: handle.read(ENC_CHUNK), b"")):
                    out.write(sealed)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if Path(source).absolute() != Path(target).absolute():
        os.unlink(source)
    return digest


class DecryptingReader(io.RawIOBase):
    """A read-only, seekable plaintext view of one encrypted blob file; authenticates chunk by chunk."""

    def __init__(self, raw: BinaryIO, ring: Keyring, sha256: str) -> None:
        super().__init__()
        self._raw = raw
        self._sha = sha256
        header = raw.read(HEADER_SIZE)
        if len(header) != HEADER_SIZE:
            raw.close()
            raise BlobAuthFailed(detail=f"{sha256}: header truncated ({len(header)} bytes)")
        magic, version, generation, chunk, salt, prefix = _HEADER.unpack(header)
        if magic != MAGIC or version != VERSION or not 1 <= chunk <= 1 << 24:
            raw.close()
            raise BlobAuthFailed(detail=f"{sha256}: not an encrypted blob v{VERSION} (magic {magic!r})")
        master = ring.blob_keys.get(generation)
        if master is None:
            raw.close()
            raise BlobAuthFailed(detail=f"{sha256}: no key generation {generation} (changed header?)")
        self._chunk, self._prefix = chunk, prefix
        self._aead, self._aad = _blob_key(master, salt), _aad(header, sha256, ring.node_id)
        body = os.fstat(raw.fileno()).st_size - HEADER_SIZE
        self._chunks = max(1, -(-body // (chunk + TAG)))
        self.size = body - self._chunks * TAG
        if self.size < 0 or (self._chunks > 1 and body - (self._chunks - 1) * (chunk + TAG) <= TAG):
            raw.close()
            raise BlobAuthFailed(detail=f"{sha256}: truncated (body {body} bytes)")
        self._pos = 0
        self._buf_index = -1
        self._buf = b""

    def _load(self, index: int) -> bytes:
        if index != self._buf_index:
            self._raw.seek(HEADER_SIZE + index * (self._chunk + TAG))
            sealed = self._raw.read(self._chunk + TAG)
            final = index == self._chunks - 1
            try:
                self._buf = self._aead.decrypt(_nonce(self._prefix, index, final), sealed, self._aad)
            except InvalidTag:
                raise BlobAuthFailed(
                    detail=f"{self._sha}: chunk {index}/{self._chunks} fails authentication"
                ) from None
            if not final and len(self._buf) != self._chunk:
                raise BlobAuthFailed(detail=f"{self._sha}: chunk {index} short")
            self._buf_index = index
        return self._buf

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise io.UnsupportedOperation("an encrypted blob has no plaintext file descriptor")

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._pos >= self.size:
            return 0
        index, offset = divmod(self._pos, self._chunk)
        data = self._load(index)[offset:]
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        self._pos += n
        return n

    def readall(self) -> bytes:
        out = bytearray()
        while True:
            index, offset = divmod(self._pos, self._chunk)
            if self._pos >= self.size:
                if self.size == 0 and self._buf_index < 0:
                    self._load(0)  # authenticate the (empty) final chunk
                return bytes(out)
            data = self._load(index)[offset:]
            out += data
            self._pos += len(data)

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0:
            return self.readall()
        out = bytearray()
        while len(out) < size:  # across chunk boundaries: a short read only at the end
            buf = bytearray(size - len(out))
            n = self.readinto(buf)
            if not n:
                break
            out += buf[:n]
        return bytes(out)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
