"""Real scanner-like files, generated in the test: PDFs with fpdf2, JPEG/PNG/TIFF with Pillow."""

from __future__ import annotations

import io
import random
from datetime import datetime

from fpdf import FPDF
from PIL import Image


def make_pdf(pages: int = 2, label: str = "scan", seed: int = 0) -> bytes:
    pdf = FPDF()
    pdf.set_creation_date(datetime(2026, 11, 22, 8, 30))
    rng = random.Random(seed)
    for i in range(pages):
        pdf.add_page()
        pdf.set_font("helvetica", size=14)
        pdf.cell(0, 10, f"{label} page {i + 1} {rng.random():.12f}")
        pdf.rect(20, 40, 100 + rng.randint(0, 60), 80)
    return bytes(pdf.output())


def make_image(fmt: str, size: tuple[int, int] = (640, 480), seed: int = 0, mode: str = "RGB") -> bytes:
    rng = random.Random(seed)
    im = Image.new(mode, size, (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))[: len(mode)])
    for _ in range(40):
        x, y = rng.randint(0, size[0] - 20), rng.randint(0, size[1] - 20)
        im.paste((rng.randint(0, 255),) * len(mode), (x, y, x + 20, y + 20))
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def make_tiff(pages: int = 3, size: tuple[int, int] = (400, 560)) -> bytes:
    frames = [Image.new("1", size, 1) for _ in range(pages)]
    for i, f in enumerate(frames):
        f.paste(0, (10 * i, 10, 10 * i + 100, 60))
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:], compression="group4")
    return buf.getvalue()
