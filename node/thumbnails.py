"""First-page thumbnails of scans for the dossier page.

Thumbnails are a cache, not data: ``<cache_dir>/<sha256>.png``, rebuilt on demand, written with a
rename (no fsync: losing one costs a re-render). PDFs go through poppler's ``pdftoppm`` in a
subprocess with a timeout (a hostile PDF cannot hang the node); images through Pillow with the same
pixel cap as validation.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from PIL import Image

from node.blobs import BlobStore
from node.errors import ThumbnailFailed

__all__ = ["THUMBNAIL_PX", "thumbnail"]

THUMBNAIL_PX = 320
_MAX_PIXELS = 120_000_000


async def thumbnail(
    store: BlobStore,
    sha256: str,
    media_type: str,
    cache_dir: Path,
    *,
    size_px: int = THUMBNAIL_PX,
    timeout: float = 20.0,
) -> Path:
    """Path of a PNG of the first page of blob ``sha256`` (at most ``size_px`` on its long side)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{store.path_for(sha256).name}-{size_px}.png"
    if target.exists():
        return target
    if media_type == "application/pdf":
        png = await _pdf_first_page(store.path_for(sha256), size_px, timeout)
    elif media_type.startswith("image/"):
        data = await asyncio.to_thread(store.read_bytes, sha256)
        png = await asyncio.to_thread(_image_first_page, data, size_px)
    else:
        raise ThumbnailFailed(detail=f"no thumbnail for {media_type}")
    fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=".tmp", dir=cache_dir)
    with os.fdopen(fd, "wb") as f:
        f.write(png)
    os.replace(tmp, target)
    return target


async def _pdf_first_page(path: Path, size_px: int, timeout: float) -> bytes:
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
        str(path),
    ]  # no root: PNG on stdout
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
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
