"""Is a scanner's file a complete PDF/JPEG/PNG/TIFF that we may take? (RELIABILITY.md S12, S13, D6)

The file is opened once with ``O_NOFOLLOW | O_NONBLOCK`` and everything else reads that descriptor:
a symlink is refused by the kernel, a FIFO cannot block us, and ``fstat`` must show a regular file
with a single link. The type is decided by content (magic bytes, end markers, a real parse), never by
the name; the name only has to agree with the content and becomes a sanitised NFC display name that
is never used as a path. Images get a lossless PDF twin (img2pdf) next to the original.

Result: ``ValidScan`` or ``Rejection(code, message_vi)``. ``Rejection.maybe_incomplete`` marks
files that look cut short, which the hot folder retries a few times before rejecting for good
(a scanner may still be writing).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import unicodedata
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import img2pdf
from PIL import Image
from pypdf import PdfReader

__all__ = [
    "MEDIA_TYPES",
    "OpenedScan",
    "Rejection",
    "ScanLimits",
    "ValidScan",
    "display_name",
    "open_scan",
    "unsafe_name",
    "validate_file",
    "validate_path",
]

MEDIA_TYPES = {"pdf": "application/pdf", "jpeg": "image/jpeg", "png": "image/png", "tiff": "image/tiff"}
_EXTENSIONS = {".pdf": "pdf", ".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".tif": "tiff", ".tiff": "tiff"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "tiff": "TIFF"}
_FALLBACK_NAME = "ban-quet"


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """Caps against oversized and decompression-bomb inputs."""

    max_bytes: int = 200 << 20
    max_image_bytes: int = 60 << 20
    max_pixels: int = 120_000_000  # A3 at 600 dpi is ~70 Mpx
    max_pages: int = 2000
    max_name_bytes: int = 255


@dataclass(frozen=True, slots=True)
class ValidScan:
    """A complete scan: what it is, how many pages, and for images the lossless PDF made from it."""

    kind: str  # pdf | jpeg | png | tiff
    media_type: str
    size: int
    pages: int
    display_name: str
    pdf: bytes | None = None  # img2pdf output for images; None when the original is already a PDF


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a file was not taken; ``message_vi`` is shown to staff and written to the reason file."""

    code: str
    message_vi: str
    detail: str = ""
    maybe_incomplete: bool = False


def _reject(code: str, message: str, detail: str = "", *, incomplete: bool = False) -> Rejection:
    return Rejection(code, message, detail, incomplete)


# -- names ---------------------------------------------------------------------------------------


def _as_text(raw: str | bytes) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    # os.listdir() hands undecodable bytes over as lone surrogates (surrogateescape)
    return raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def unsafe_name(raw: str | bytes) -> str | None:
    """Why a name is a path trick (separator, NUL, dot-dot), or None when it is an ordinary name."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    if "\x00" in text:
        return "chứa ký tự NUL"
    if "/" in text or "\\" in text:
        return "chứa dấu phân cách thư mục"
    if text in ("", ".", ".."):
        return "là tên thư mục đặc biệt"
    return None


def display_name(raw: str | bytes, max_bytes: int = 255) -> str:
    """A name safe to show and to use as a file *name* (never a path): NFC, no controls/bidi marks."""
    text = unicodedata.normalize("NFC", _as_text(raw))
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            continue  # controls, bidi overrides, zero-width, unassigned
        kept.append("_" if ch in '/\\:*?"<>|' else (" " if cat == "Zs" else ch))
    name = " ".join("".join(kept).split()).strip(" .")
    if not name:
        name = _FALLBACK_NAME
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 10:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = max_bytes - len(suffix.encode())
    while len(stem.encode()) > budget:
        stem = stem[:-1]
    return unicodedata.normalize("NFC", stem.rstrip(" .") or _FALLBACK_NAME) + suffix


# -- opening -------------------------------------------------------------------------------------


@dataclass(slots=True)
class OpenedScan:
    """A scanner file opened safely: read only through ``file``; ``st`` is its fstat at open."""

    file: BinaryIO
    st: os.stat_result

    def unchanged(self) -> bool:
        """True when the descriptor still shows the size and mtime seen at open."""
        now = os.fstat(self.file.fileno())
        return (now.st_size, now.st_mtime_ns) == (self.st.st_size, self.st.st_mtime_ns)


@contextmanager
def open_scan(path: Path, limits: ScanLimits = ScanLimits()) -> Iterator[OpenedScan | Rejection]:
    """Open ``path`` without following symlinks or blocking; yield the opened file or a Rejection."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path):
            yield _reject(
                "symlink",
                "Tệp là liên kết tượng trưng (symlink): không đọc, để tránh lộ dữ liệu ngoài thư mục quét.",
                os.readlink(path),
            )
        else:
            yield _reject("unreadable", "Không mở được tệp để đọc.", f"{exc.strerror}")
        return
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        yield _reject(
            "not_regular",
            "Không phải tệp thông thường (thư mục, FIFO hoặc thiết bị): bỏ qua.",
            stat.filemode(st.st_mode),
        )
        return
    with os.fdopen(fd, "rb") as f:
        if st.st_nlink > 1:
            yield _reject(
                "hard_link",
                "Tệp có nhiều liên kết cứng (hard link): không nhận, vì nội dung có thể "
                "thuộc một tệp ngoài thư mục quét.",
                f"nlink={st.st_nlink}",
            )
        elif st.st_size == 0:
            yield _reject("empty", "Tệp rỗng (0 byte).", incomplete=True)
        elif st.st_size > limits.max_bytes:
            yield _reject(
                "too_large",
                f"Tệp quá lớn: {st.st_size / 1048576:.1f} MB, giới hạn {limits.max_bytes / 1048576:.0f} MB.",
                f"size={st.st_size}",
            )
        else:
            yield OpenedScan(f, st)


# -- content -------------------------------------------------------------------------------------


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    return None


def _tail(f: BinaryIO, size: int, n: int) -> bytes:
    f.seek(max(0, size - n))
    return f.read(n)


def validate_file(
    f: BinaryIO, size: int, name: str, limits: ScanLimits = ScanLimits()
) -> ValidScan | Rejection:
    """Check an open binary file of ``size`` bytes whose scanner name is ``name``."""
    why = unsafe_name(name)
    if why:
        return _reject("name_unsafe", f"Tên tệp không hợp lệ ({why}).", repr(name))
    shown = display_name(name, limits.max_name_bytes)
    f.seek(0)
    kind = _sniff(f.read(16))
    if kind is None:
        return _reject(
            "unknown_type", "Không nhận dạng được nội dung tệp: chỉ nhận PDF, JPEG, PNG hoặc TIFF."
        )
    ext = os.path.splitext(shown)[1].lower()
    named = _EXTENSIONS.get(ext)
    if named != kind:
        return _reject(
            "type_mismatch",
            f"Phần mở rộng “{ext or '(không có)'}” không khớp nội dung tệp ({kind.upper()}).",
            f"ext={ext} content={kind}",
        )
    if kind == "pdf":
        return _validate_pdf(f, size, shown, limits)
    if size > limits.max_image_bytes:
        return _reject(
            "too_large",
            f"Tệp ảnh quá lớn: {size / 1048576:.1f} MB, giới hạn {limits.max_image_bytes / 1048576:.0f} MB.",
        )
    f.seek(0)
    return _validate_image(f.read(), kind, shown, limits)


def validate_path(
    path: Path, limits: ScanLimits = ScanLimits(), name: str | None = None
) -> ValidScan | Rejection:
    """Open and validate in one call (the hot folder keeps the descriptor open instead)."""
    with open_scan(path, limits) as opened:
        if isinstance(opened, Rejection):
            return opened
        return validate_file(opened.file, opened.st.st_size, name or path.name, limits)


def _validate_pdf(f: BinaryIO, size: int, shown: str, limits: ScanLimits) -> ValidScan | Rejection:
    if b"%%EOF" not in _tail(f, size, 1024):
        return _reject(
            "pdf_incomplete",
            "Tệp PDF chưa hoàn chỉnh (thiếu dấu kết thúc %%EOF): có thể bị cắt "
            "cụt, đang được ghi, hoặc có dữ liệu lạ ghép phía sau.",
            incomplete=True,
        )
    f.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(f, strict=True)
            if reader.is_encrypted:
                return _reject("pdf_encrypted", "Tệp PDF được đặt mật khẩu hoặc mã hoá: không nhận.")
            pages = len(reader.pages)
            for page in reader.pages[: min(pages, 3)]:
                _ = page.mediabox  # touch the first page objects: a broken xref fails here
    except Exception as exc:  # pypdf raises many types on hostile input
        return _reject(
            "pdf_invalid",
            "Tệp PDF bị hỏng, không đọc được cấu trúc.",
            f"{type(exc).__name__}: {exc}",
            incomplete=True,
        )
    if pages < 1:
        return _reject("pdf_invalid", "Tệp PDF không có trang nào.")
    if pages > limits.max_pages:
        return _reject("too_many_pages", f"Tệp PDF có {pages} trang, vượt giới hạn {limits.max_pages} trang.")
    return ValidScan("pdf", MEDIA_TYPES["pdf"], size, pages, shown)


def _validate_image(data: bytes, kind: str, shown: str, limits: ScanLimits) -> ValidScan | Rejection:
    if kind == "jpeg" and not data.endswith(b"\xff\xd9"):
        return _reject(
            "image_incomplete",
            "Tệp JPEG chưa hoàn chỉnh (thiếu dấu kết thúc FFD9): có thể bị cắt "
            "cụt, đang được ghi, hoặc có dữ liệu lạ ghép phía sau.",
            incomplete=True,
        )
    if kind == "tiff" and (why := _tiff_incomplete(data)):
        return _reject(
            "image_incomplete",
            "Tệp TIFF chưa hoàn chỉnh (cấu trúc trang trỏ ra ngoài tệp): có thể bị cắt cụt, đang được ghi.",
            why,
            incomplete=True,
        )
    if kind == "png" and not data.endswith(_PNG_IEND):
        return _reject(
            "image_incomplete",
            "Tệp PNG chưa hoàn chỉnh (thiếu khối IEND): có thể bị cắt cụt, "
            "đang được ghi, hoặc có dữ liệu lạ ghép phía sau.",
            incomplete=True,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as im:
                width, height = im.size
                if width * height > limits.max_pixels:
                    return _reject("image_too_large", f"Ảnh quá lớn ({width}×{height} điểm ảnh).")
                im.verify()
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as im:
                pages = getattr(im, "n_frames", 1)
                if pages > limits.max_pages:
                    return _reject("too_many_pages", f"Ảnh TIFF có {pages} trang, vượt giới hạn.")
                for i in range(pages):
                    im.seek(i)
                    if im.size[0] * im.size[1] > limits.max_pixels:
                        return _reject("image_too_large", f"Trang {i + 1} của ảnh quá lớn.")
                    im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _reject("image_too_large", "Ảnh quá lớn (số điểm ảnh vượt giới hạn).", str(exc))
    except Exception as exc:  # Pillow: OSError (truncated), SyntaxError, ValueError, EOFError...
        return _reject(
            "image_invalid",
            "Tệp ảnh bị hỏng hoặc bị cắt cụt, không đọc được.",
            f"{type(exc).__name__}: {exc}",
            incomplete=True,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pdf = img2pdf.convert(data, nodate=True)
    except Exception as exc:  # img2pdf refuses some exotic modes
        return _reject(
            "image_convert",
            "Không chuyển được ảnh sang PDF (định dạng ảnh không hỗ trợ).",
            f"{type(exc).__name__}: {exc}",
        )
    return ValidScan(kind, MEDIA_TYPES[kind], len(data), pages, shown, pdf=bytes(pdf))


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def _tiff_values(data: bytes, endian: str, typ: int, count: int, pos: int) -> list[int] | None:
    width = {3: 2, 4: 4}.get(typ)
    if width is None or count > 1_000_000:
        return None
    if count * width > 4:
        (pos,) = struct.unpack_from(endian + "I", data, pos)
        if pos + count * width > len(data):
            return None
    return list(struct.unpack_from(f"{endian}{count}{'H' if width == 2 else 'I'}", data, pos))


def _tiff_incomplete(data: bytes) -> str | None:
    """Walk the IFD chain: every directory and every strip/tile must lie inside the file.

    Pillow silently stops at a next-IFD pointer past the end, so a multi-page TIFF cut short would
    otherwise be accepted with fewer pages.
    """
    endian = "<" if data[:2] == b"II" else ">"
    size = len(data)
    try:
        (offset,) = struct.unpack_from(endian + "I", data, 4)
        seen: set[int] = set()
        while offset:
            if offset in seen or len(seen) > 10_000:
                return "IFD loop"
            seen.add(offset)
            (n,) = struct.unpack_from(endian + "H", data, offset)
            end = offset + 2 + 12 * n + 4
            if end > size:
                return f"IFD at {offset} runs past the end"
            tags = {}
            for i in range(n):
                entry = offset + 2 + 12 * i
                tag, typ, count = struct.unpack_from(endian + "HHI", data, entry)
                tags[tag] = (typ, count, entry + 8)
                length = _TIFF_TYPE_SIZES.get(typ, 1) * count
                if length > 4 and struct.unpack_from(endian + "I", data, entry + 8)[0] + length > size:
                    return f"tag {tag} value runs past the end"
            for offsets_tag, counts_tag in ((273, 279), (324, 325)):
                if offsets_tag in tags and counts_tag in tags:
                    offs = _tiff_values(data, endian, *tags[offsets_tag])
                    lens = _tiff_values(data, endian, *tags[counts_tag])
                    if (
                        offs is None
                        or lens is None
                        or any(o + c > size for o, c in zip(offs, lens, strict=False))
                    ):
                        return "image data runs past the end"
            (offset,) = struct.unpack_from(endian + "I", data, end - 4)
    except struct.error:
        return "header runs past the end"
    return None
