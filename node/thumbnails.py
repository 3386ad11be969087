"""First-page thumbnails of scans for the dossier page.

Thumbnails are a cache, not data, and they show personal data (ID cards): they live only in memory
(a bounded LRU of ``CACHE_ENTRIES`` PNGs per process), never on disk (RELIABILITY P1). The scan is
decrypted in memory (node.blobs) and PDFs go through poppler's ``pdftoppm`` on stdin (``-``) with the
PNG on stdout, in a subprocess with a timeout (a hostile PDF cannot hang the node); images through
Pillow with the same pixel cap as validation.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import warnings
from collections import OrderedDict

from PIL import Image

from node.blobs import BlobStore
from node.errors import ThumbnailFailed

__all__ = ["CACHE_ENTRIES", "THUMBNAIL_PX", "thumbnail"]

THUMBNAIL_PX = 320
CACHE_ENTRIES = 256
_MAX_PIXELS = 120_000_000
_cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()


async def thumbnail(
    store: BlobStore,
    sha256: str,
    media_type: str,
    *,
    size_px: int = THUMBNAIL_PX,
    timeout: float = 20.0,
) -> bytes:
    """A PNG of the first page of blob ``sha256`` (at most ``size_px`` on its long side)."""
    key = (sha256, size_px)
    cached = _cache.get(key)
    if cached is not None:
        _cache.move_to_end(key)
        return cached
    if media_type == "application/pdf":
        data = await asyncio.to_thread(store.read_bytes, sha256)
        png = await _pdf_first_page(data, size_px, timeout)
    elif media_type.startswith("image/"):
        data = await asyncio.to_thread(store.read_bytes, sha256)
        png = await asyncio.to_thread(_image_first_page, data, size_px)
    else:
        raise ThumbnailFailed(detail=f"no thumbnail for {media_type}")
    _cache[key] = png
    while len(_cache) > CACHE_ENTRIES:
        _cache.popitem(last=False)
    return png


async def _pdf_first_page(pdf: bytes, size_px: int, timeout: float) -> bytes:
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise ThumbnailFailed("Máy trạm thiếu công cụ pdftoppm (gói poppler-utils) để tạo ảnh xem trước.")
    argv = [
        exe,
        "-png",
        "-f",
        "1",
        "-l",
        "1",
        "-singlefile",
        "-scale-to",
        str(size_px),
        "-",
    ]  # the PDF on stdin, no root: PNG on stdout
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(pdf), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise ThumbnailFailed(detail=f"pdftoppm timed out after {timeout}s") from None
    if proc.returncode != 0 or not out.startswith(b"\x89PNG"):
        raise ThumbnailFailed(detail=err.decode("utf-8", "replace")[-300:])
    return out


def _image_first_page(data: bytes, size_px: int) -> bytes:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.size[0] * im.size[1] > _MAX_PIXELS:
                    raise ThumbnailFailed(detail=f"image too large: {im.size}")
                im.seek(0)
                im.thumbnail((size_px, size_px))
                out = io.BytesIO()
                im.convert("RGBA" if "A" in im.getbands() else "RGB").save(out, "PNG")
                return out.getvalue()
    except ThumbnailFailed:
        raise
    except Exception as exc:
        raise ThumbnailFailed(detail=f"{type(exc).__name__}: {exc}") from exc
