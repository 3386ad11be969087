"""Shared page furniture of the administrative forms (Nghị định 30/2020/NĐ-CP style).

A4, margins 20/15/20/30 mm (top/right/bottom/left), vendored Liberation Serif (Times New Roman
metrics) so the output does not depend on the node's installed fonts, Vietnamese long dates, the
national motto block, signature blocks, and the Code128/QR codes as embedded vector SVG.
Output is deterministic: the creation date comes from the form data, never from the clock.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import barcode
import segno
from barcode.writer import SVGWriter
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from node.forms.data import Agency, local_time

__all__ = [
    "FONT_DIR",
    "FormPDF",
    "clock_time",
    "code128_svg",
    "long_date",
    "money",
    "qr_svg",
    "two_digits",
]

FONT_DIR = Path(__file__).resolve().parent / "fonts"
_FONT = "LiberationSerif"


def two_digits(n: int) -> str:
    return f"{n:02d}"


def long_date(value: datetime) -> str:
    """ "ngày 05 tháng 02 năm 2026": day < 10 and months 1, 2 take a leading zero (NĐ 30/2020)."""
    v = local_time(value)
    month = f"{v.month:02d}" if v.month < 3 else str(v.month)
    return f"ngày {v.day:02d} tháng {month} năm {v.year}"


def clock_time(value: datetime) -> str:
    """ "8 giờ 30 phút, ngày 22 tháng 11 năm 2026"."""
    v = local_time(value)
    return f"{v.hour} giờ {v.minute:02d} phút, {long_date(v)}"


def money(amount_vnd: int) -> str:
    """ "1.250.000 đồng" (Vietnamese thousands separator is the dot)."""
    return f"{amount_vnd:,}".replace(",", ".") + " đồng"


def code128_svg(text: str, *, module_height_mm: float = 9.0) -> bytes:
    """Code128 of ``text`` as SVG (python-barcode), with a viewBox so fpdf2 scales it exactly."""
    buf = io.BytesIO()
    barcode.Code128(text, writer=SVGWriter()).write(
        buf, options={"write_text": False, "module_height": module_height_mm, "quiet_zone": 2.0}
    )
    svg = buf.getvalue().decode()
    m = re.search(r'width="([\d.]+)mm" height="([\d.]+)mm"', svg)
    if m is None:  # pragma: no cover - python-barcode output format changed
        raise RuntimeError("unexpected python-barcode SVG header")
    # fpdf2 resolves the mm lengths inside the SVG to points: the viewBox must be in points too
    w, h = float(m.group(1)) * 72 / 25.4, float(m.group(2)) * 72 / 25.4
    return svg.replace(m.group(0), f'{m.group(0)} viewBox="0 0 {w:.3f} {h:.3f}"', 1).encode()


def qr_svg(text: str) -> bytes:
    """QR code of ``text`` (segno, error level M) as SVG with a viewBox."""
    buf = io.BytesIO()
    segno.make(text, error="m", micro=False).save(buf, kind="svg", border=2, omitsize=True)
    return buf.getvalue()


class FormPDF(FPDF):
    """An A4 portrait document with the fonts registered and the helpers the forms share."""

    def __init__(
        self, *, title: str, created: datetime, subject: str = "", body_size: float = 13, line: float = 6.2
    ) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.body_size = body_size
        self.line_h = line  # mm per body line
        self.set_margins(30, 20, 15)
        self.set_auto_page_break(True, margin=20)
        for style, suffix in (("", "Regular"), ("B", "Bold"), ("I", "Italic")):
            self.add_font(_FONT, style, str(FONT_DIR / f"LiberationSerif-{suffix}.ttf"))
        self.set_font(_FONT, size=13)
        self.set_creation_date(local_time(created))
        self.set_lang("vi")
        self.set_title(title)
        self.set_subject(subject or title)
        self.set_creator("motcua")

    # -- text ----------------------------------------------------------------------------------

    def font(self, style: str = "", size: float | None = None) -> None:
        self.set_font(_FONT, style=style, size=size or self.body_size)

    def centered(self, text: str, style: str = "", size: float | None = None, h: float | None = None) -> None:
        self.font(style, size)
        self.multi_cell(0, h or self.line_h, text, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def field(self, label: str, value: str) -> None:
        """Label (bold) and value as one wrapping paragraph."""
        h = self.line_h
        self.set_x(self.l_margin)
        self.font("B")
        self.write(h, label)
        self.font("")
        self.write(h, value)
        self.ln(h)

    def para(
        self, text: str, style: str = "", size: float | None = None, h: float | None = None, indent: float = 0
    ) -> None:
        self.font(style, size)
        self.set_x(self.l_margin + indent)
        self.multi_cell(0, h or self.line_h, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # -- blocks ----------------------------------------------------------------------------------

    def header_block(self, agency: Agency, number: str, number_suffix: str, date: datetime | None) -> None:
        """Left: agency, unit, "Số: …"; right: Quốc hiệu, tiêu ngữ, place and date."""
        top = self.get_y()
        left_w, gap = 70.0, 2.0
        right_x = self.l_margin + left_w + gap
        right_w = self.w - self.r_margin - right_x
        self.set_xy(self.l_margin, top)
        self.font("", 12)
        self.multi_cell(left_w, 5.5, agency.parent.upper(), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.font("B", 12)
        self.multi_cell(left_w, 5.5, agency.unit.upper(), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        y = self.get_y() + 0.8
        self.line(self.l_margin + left_w / 2 - 12, y, self.l_margin + left_w / 2 + 12, y)
        self.set_y(y + 1.5)
        self.font("", 13)
        number_text = f"Số: {number}" if number else f"Số: ......../{number_suffix}"
        self.multi_cell(left_w, 6, number_text, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        left_bottom = self.get_y()

        self.set_xy(right_x, top)
        self.font("B", 12)
        self.multi_cell(
            right_w, 5.5, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", align="C", new_x=XPos.LEFT, new_y=YPos.NEXT
        )
        self.font("B", 13)
        self.multi_cell(
            right_w, 6, "Độc lập - Tự do - Hạnh phúc", align="C", new_x=XPos.LEFT, new_y=YPos.NEXT
        )
        y = self.get_y() + 0.5
        half = self.get_string_width("Độc lập - Tự do - Hạnh phúc") / 2
        mid = right_x + right_w / 2
        self.line(mid - half, y, mid + half, y)
        self.set_xy(right_x, y + 2.5)
        if date is not None:
            self.font("I", 13)
            self.multi_cell(
                right_w, 6, f"{agency.place}, {long_date(date)}", align="C", new_x=XPos.LEFT, new_y=YPos.NEXT
            )
        self.set_y(max(left_bottom, self.get_y()) + 4)

    def form_title(self, text: str, subtitle: str = "") -> None:
        self.centered(text, "B", 14, 7)
        if subtitle:
            self.centered(subtitle, "I", 13)
        self.ln(2)

    def codes(self, dossier_code: str) -> None:
        """Mã hồ sơ in words, as Code128 and as QR, on one band."""
        y = self.get_y()
        qr = 22.0
        self.qr(dossier_code, x=self.w - self.r_margin - qr, y=y, size=qr)
        self.set_xy(self.l_margin, y + 1)
        self.field("Mã hồ sơ: ", dossier_code)
        self.image(io.BytesIO(code128_svg(dossier_code)), x=self.l_margin, y=self.get_y() + 1, h=12)
        self.set_y(y + qr + 2)

    def qr(self, text: str, *, x: float, y: float, size: float) -> None:
        self.image(io.BytesIO(qr_svg(text)), x=x, y=y, w=size, h=size)

    def grid(
        self,
        headings: tuple[str, ...],
        widths: tuple[int, ...],
        rows: Sequence[tuple[str, ...]],
        align: tuple[str, ...] | None = None,
    ) -> None:
        """A bordered table with a bold heading row (numbers centred by default)."""
        self.font("", 12)
        if align is None:
            align = ("CENTER",) + ("LEFT",) * (len(widths) - 3) + ("CENTER", "CENTER")
        with self.table(
            col_widths=widths,
            text_align=align,
            line_height=5.8,
            first_row_as_headings=True,
            headings_style=FontFace(emphasis="BOLD"),
        ) as t:
            t.row(headings)
            for r in rows:
                t.row(r)
        self.ln(1.5)

    def signatures(self, left: tuple[str, str], right: tuple[str, str], space: float = 20) -> None:
        """Two signature columns: (TITLE, name). An empty title leaves that column blank."""
        if self.will_page_break(space + 20):
            self.add_page()
        y = self.get_y() + 2
        col = (self.w - self.l_margin - self.r_margin) / 2
        for i, (role, name) in enumerate((left, right)):
            if not role:
                continue
            x = self.l_margin + i * col
            self.set_xy(x, y)
            self.font("B", 13)
            self.multi_cell(col, 6, role, align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)
            self.font("I", 12)
            self.multi_cell(col, 5.5, "(Ký và ghi rõ họ tên)", align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)
            self.set_xy(x, self.get_y() + space)
            self.font("B", 13)
            self.multi_cell(col, 6, name, align="C", new_x=XPos.LEFT, new_y=YPos.NEXT)
        self.set_xy(self.l_margin, self.get_y() + 4)

    def finish(self) -> bytes:
        return bytes(self.output())
