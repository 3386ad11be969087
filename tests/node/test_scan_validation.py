"""Scan validation: content decides the type, the name is only displayed, hostile entries are refused."""

from __future__ import annotations

import io
import os
import random
import unicodedata
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from node.scan_validation import Rejection, ScanLimits, ValidScan, display_name, validate_path
from tests.node.samples import make_image, make_pdf, make_tiff


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "kind", "pages"),
    [
        ("ho-so.pdf", make_pdf(3), "pdf", 3),
        ("Giấy khai sinh.PDF", make_pdf(1), "pdf", 1),
        ("anh.jpg", make_image("JPEG"), "jpeg", 1),
        ("anh.jpeg", make_image("JPEG", seed=2), "jpeg", 1),
        ("anh.png", make_image("PNG"), "png", 1),
        ("trong-suot.png", make_image("PNG", mode="RGBA"), "png", 1),
        ("fax.tif", make_tiff(3), "tiff", 3),
        ("fax.tiff", make_tiff(1), "tiff", 1),
    ],
)
def test_valid_files(tmp_path: Path, name: str, data: bytes, kind: str, pages: int) -> None:
    result = validate_path(_write(tmp_path, name, data))
    assert isinstance(result, ValidScan), result
    assert (result.kind, result.pages, result.size) == (kind, pages, len(data))
    assert result.display_name == unicodedata.normalize("NFC", name)
    if kind == "pdf":
        assert result.pdf is None
    else:  # lossless twin: one PDF page per image page, the JPEG bytes embedded as they are
        assert result.pdf is not None and len(PdfReader(io.BytesIO(result.pdf)).pages) == pages
        if kind == "jpeg":
            assert data in result.pdf


def _polyglot_jpeg_zip() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.html", "<script>alert(1)</script>")
    return make_image("JPEG") + buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("empty.pdf", b"", "empty"),
        ("page.pdf", b"<!doctype html><html><body>not a pdf</body></html>", "unknown_type"),
        ("script.pdf", b"#!/bin/sh\nrm -rf /\n", "unknown_type"),
        ("scan.jpg", make_pdf(1), "type_mismatch"),
        ("scan.pdf", make_image("PNG"), "type_mismatch"),
        ("scan", make_pdf(1), "type_mismatch"),
        ("no-eof.pdf", make_pdf(2).replace(b"%%EOF", b"%%XXX"), "pdf_incomplete"),
        ("half.pdf", make_pdf(4)[: len(make_pdf(4)) // 2], "pdf_incomplete"),
        ("pdf-zip.pdf", make_pdf(1) + os.urandom(4096), "pdf_incomplete"),
        ("polyglot.jpg", _polyglot_jpeg_zip(), "image_incomplete"),
        ("cut.jpg", make_image("JPEG")[:-200], "image_incomplete"),
        ("cut.png", make_image("PNG")[:-30], "image_incomplete"),
        ("broken.pdf", b"%PDF-1.7\n1 0 obj garbage\n%%EOF\n", "pdf_invalid"),
        ("cut.tif", make_tiff(3)[:600], "image_incomplete"),
    ],
)
def test_rejected_files(tmp_path: Path, name: str, data: bytes, code: str) -> None:
    result = validate_path(_write(tmp_path, name, data))
    assert isinstance(result, Rejection), result
    assert result.code == code
    assert result.message_vi and result.message_vi == unicodedata.normalize("NFC", result.message_vi)


def test_pdf_truncated_at_random_offsets_never_accepted(tmp_path: Path) -> None:
    data = make_pdf(5)
    rng = random.Random(7)
    for cut in sorted(rng.sample(range(1, len(data) - 8), 40)):
        result = validate_path(_write(tmp_path, "cut.pdf", data[:cut]))
        assert isinstance(result, Rejection), f"accepted a PDF cut at {cut}/{len(data)}"


def test_jpeg_truncated_at_random_offsets_never_accepted(tmp_path: Path) -> None:
    data = make_image("JPEG", (800, 600))
    rng = random.Random(8)
    for cut in sorted(rng.sample(range(1, len(data) - 2), 40)):
        result = validate_path(_write(tmp_path, "cut.jpg", data[:cut]))
        assert isinstance(result, Rejection), f"accepted a JPEG cut at {cut}/{len(data)}"


def test_tiff_truncated_at_every_offset_never_accepted_short(tmp_path: Path) -> None:
    data = make_tiff(3)
    for cut in range(1, len(data)):
        result = validate_path(_write(tmp_path, "cut.tif", data[:cut]))
        if isinstance(result, ValidScan):  # only trailing padding may be missing: every page intact
            assert result.pages == 3 and cut >= len(data) - 2, f"accepted a TIFF cut at {cut}/{len(data)}"


def test_symlink_fifo_hardlink_directory(tmp_path: Path) -> None:
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(make_pdf(1))
    os.symlink(secret, tmp_path / "link.pdf")
    os.mkfifo(tmp_path / "pipe.pdf")
    os.link(secret, tmp_path / "hard.pdf")
    (tmp_path / "dir.pdf").mkdir()
    codes = {n: validate_path(tmp_path / n) for n in ("link.pdf", "pipe.pdf", "hard.pdf", "dir.pdf")}
    assert {n: getattr(r, "code", None) for n, r in codes.items()} == {
        "link.pdf": "symlink",
        "pipe.pdf": "not_regular",  # opened O_NONBLOCK: no writer needed, never blocks
        "hard.pdf": "hard_link",
        "dir.pdf": "not_regular",
    }


def test_size_and_pixel_limits(tmp_path: Path) -> None:
    big = _write(tmp_path, "big.pdf", make_pdf(2))
    assert getattr(validate_path(big, ScanLimits(max_bytes=100)), "code", None) == "too_large"
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, "PNG")  # 144 Mpx, tiny file
    result = validate_path(_write(tmp_path, "bomb.png", bomb.getvalue()))
    assert getattr(result, "code", None) == "image_too_large"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Nguye\u0302\u0303n Thi\u0323 A\u0301nh.pdf", "Nguyễn Thị Ánh.pdf"),  # NFD in, NFC out
        ("bill\u202egnp.pdf", "billgnp.pdf"),  # RTL override removed
        ("line\nbreak\t.pdf", "linebreak.pdf"),
        ("..hidden.pdf", "hidden.pdf"),
        ("   .pdf", "pdf"),
        ("\u200b\u200f", "ban-quet"),
        ("a:b*c?.pdf", "a_b_c_.pdf"),
        (b"\xff\xfescan.pdf".decode("utf-8", "surrogateescape"), "\ufffd\ufffdscan.pdf"),
    ],
)
def test_display_names(raw: str, expected: str) -> None:
    assert display_name(raw) == expected


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    name = display_name("Hồ sơ đăng ký " * 40 + ".pdf")
    assert len(name.encode()) <= 255 and name.endswith(".pdf")
    assert name == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize("name", ["..\\..\\windows.pdf", "a\\b.pdf", "a/b.pdf", "..", "nul\x00.pdf"])
def test_path_tricks_in_names_rejected(tmp_path: Path, name: str) -> None:
    from node.scan_validation import validate_file

    with open(_write(tmp_path, "ok.pdf", make_pdf(1)), "rb") as f:
        result = validate_file(f, os.fstat(f.fileno()).st_size, name)
    assert getattr(result, "code", None) == "name_unsafe"
