"""First-page thumbnails: pdftoppm for PDFs, Pillow for images; a cache beside the store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from node.blobs import BlobStore
from node.errors import ThumbnailFailed
from node.thumbnails import thumbnail
from tests.node.samples import make_image, make_pdf
from tests.tools import require


async def test_pdf_and_image_thumbnails(store: BlobStore, tmp_path: Path) -> None:
    require("pdftoppm")
    pdf = store.stage_bytes(make_pdf(3, "thumb"))
    png = await thumbnail(store, pdf.sha256, "application/pdf", size_px=200)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and max(im.size) == 200
    assert await thumbnail(store, pdf.sha256, "application/pdf", size_px=200) is png  # cached in memory

    jpg = store.stage_bytes(make_image("JPEG", (1600, 1200)))
    out = await thumbnail(store, jpg.sha256, "image/jpeg", size_px=200)
    with Image.open(io.BytesIO(out)) as im:
        assert im.size == (200, 150)
    assert [p.name for p in tmp_path.rglob("*.png")] == []  # thumbnails never land on disk


async def test_broken_pdf_thumbnail_is_an_error_not_a_hang(store: BlobStore, tmp_path: Path) -> None:
    require("pdftoppm")
    bad = store.stage_bytes(b"%PDF-1.7\n" + b"\x00" * 5000 + b"\n%%EOF\n")
    with pytest.raises(ThumbnailFailed):
        await thumbnail(store, bad.sha256, "application/pdf", timeout=10)
