"""Blob manifests: a file cut into 1 MiB chunks, the SHA-256 of each and of the whole.

A ``dossier.attachment`` entry carries the manifest ``{"sha256","size","media_type","pages","chunk_size",
"chunks"}``; because the entry is signed, so is every chunk hash. The hub checks each uploaded chunk
against it and the whole file at the end, so an interrupted upload costs at most one chunk.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from protocol.errors import ProtocolError

__all__ = [
    "CHUNK_SIZE",
    "MANIFEST_FIELDS",
    "MAX_CHUNKS",
    "BlobMismatch",
    "Manifest",
    "WholeFileHasher",
    "manifest_for_bytes",
]

CHUNK_SIZE = 1_048_576
MAX_CHUNKS = 900
MANIFEST_FIELDS = frozenset({"sha256", "size", "media_type", "pages", "chunk_size", "chunks"})
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_MEDIA_RE = re.compile(r"[a-z]+/[a-z0-9.+-]+")


class BlobMismatch(ProtocolError):
    """A chunk or a whole file does not match the manifest in the signed entry."""

    code = "blob_mismatch"


@dataclass(frozen=True, slots=True)
class Manifest:
    """The signed description of one blob."""

    sha256: str
    size: int
    media_type: str
    pages: int
    chunk_size: int
    chunks: tuple[str, ...]

    @classmethod
    def from_body(cls, value: object) -> Manifest:
        """Read a manifest object; raises BlobMismatch naming the problem."""
        if not isinstance(value, Mapping) or value.keys() != MANIFEST_FIELDS:
            raise BlobMismatch("a manifest has exactly " + ", ".join(sorted(MANIFEST_FIELDS)))
        sha, size, media, pages = value["sha256"], value["size"], value["media_type"], value["pages"]
        chunk_size, chunks = value["chunk_size"], value["chunks"]
        if type(sha) is not str or not _SHA_RE.fullmatch(sha):
            raise BlobMismatch("manifest sha256 must be 64 lower-case hex digits")
        if type(chunk_size) is not int or chunk_size != CHUNK_SIZE:
            raise BlobMismatch(f"manifest chunk_size must be {CHUNK_SIZE}")
        if type(size) is not int or not 0 <= size <= MAX_CHUNKS * CHUNK_SIZE:
            raise BlobMismatch("manifest size out of range")
        if type(media) is not str or not _MEDIA_RE.fullmatch(media):
            raise BlobMismatch("manifest media_type")
        if type(pages) is not int or pages < 0:
            raise BlobMismatch("manifest pages")
        if type(chunks) is not list or not all(type(c) is str and _SHA_RE.fullmatch(c) for c in chunks):
            raise BlobMismatch("manifest chunks must be a list of SHA-256 hex digests")
        if len(chunks) != max(1, -(-size // chunk_size)):
            raise BlobMismatch(f"a file of {size} bytes has {max(1, -(-size // chunk_size))} chunks")
        return cls(sha, size, media, pages, chunk_size, tuple(chunks))

    def to_body(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "media_type": self.media_type,
            "pages": self.pages,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
        }

    @property
    def count(self) -> int:
        return len(self.chunks)

    def chunk_length(self, index: int) -> int:
        """How many bytes chunk ``index`` holds (the last one may be short)."""
        if not 0 <= index < self.count:
            raise BlobMismatch(f"chunk {index} is outside 0..{self.count - 1}")
        if index < self.count - 1:
            return self.chunk_size
        return self.size - self.chunk_size * (self.count - 1)

    def check_chunk(self, index: int, data: bytes) -> None:
        expected = self.chunk_length(index)
        if len(data) != expected:
            raise BlobMismatch(f"chunk {index} has {len(data)} bytes, the manifest says {expected}")
        if hashlib.sha256(data).hexdigest() != self.chunks[index]:
            raise BlobMismatch(f"chunk {index} does not match its SHA-256 in the manifest")

    def check_whole(self, size: int, sha256: str) -> None:
        if size != self.size or sha256 != self.sha256:
            raise BlobMismatch(f"assembled file ({size} bytes, {sha256[:12]}) does not match the manifest")


class WholeFileHasher:
    """Feed chunks in order; ``check(manifest)`` compares size and SHA-256 of the whole."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def check(self, manifest: Manifest) -> None:
        manifest.check_whole(self.size, self.hexdigest())


def manifest_for_bytes(data: bytes, media_type: str, pages: int, chunk_size: int = CHUNK_SIZE) -> Manifest:
    """The manifest of a file held in memory (tests, small result files)."""
    pieces: Iterable[bytes] = (data[i : i + chunk_size] for i in range(0, max(len(data), 1), chunk_size))
    chunks = tuple(hashlib.sha256(p).hexdigest() for p in pieces)
    return Manifest(hashlib.sha256(data).hexdigest(), len(data), media_type, pages, chunk_size, chunks)
