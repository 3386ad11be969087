"""Server-side SVG charts for the dashboard (no JavaScript, no external assets).

Pure functions from numbers to an SVG string: a node's backlog, lag and contacts over the last days.
Times are UTC milliseconds; labels are in Vietnam time (UTC+7) and Vietnamese.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from html import escape

__all__ = ["Point", "bar_chart", "line_chart"]

VN = timezone(timedelta(hours=7))
_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 56, 12, 24, 28


@dataclass(frozen=True, slots=True)
class Point:
    """One sample: UTC milliseconds and a value (None marks a gap: the node was not heard from)."""

    at_ms: int
    value: float | None


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}".replace(",", ".")
    return f"{value:.1f}".replace(".", ",")


def _day_label(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(VN).strftime("%d/%m")


def _frame(title: str, width: int, height: int) -> list[str]:
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{t}" class="chart">',
        f"<title>{t}</title>",
        f'<text x="{_PAD_LEFT}" y="15" class="chart-title" font-size="13">{t}</text>',
    ]


def _axes(parts: list[str], width: int, height: int, top: float, unit: str, start: int, end: int) -> None:
    x0, x1 = _PAD_LEFT, width - _PAD_RIGHT
    y0, y1 = height - _PAD_BOTTOM, _PAD_TOP
    for frac in (0.0, 0.5, 1.0):
        y = y0 - (y0 - y1) * frac
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#ddd" />')
        label = escape(f"{_fmt(top * frac)} {unit}".strip())
        parts.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{label}</text>')
    day = 86_400_000
    first = start - (start + 7 * 3_600_000) % day + day  # next midnight in Vietnam time
    for tick in range(first, end, day):
        x = x0 + (x1 - x0) * (tick - start) / max(1, end - start)
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}" stroke="#888" />')
        parts.append(
            f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle" font-size="10">{_day_label(tick)}</text>'
        )


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    unit: str = "",
    start_ms: int,
    end_ms: int,
    width: int = 640,
    height: int = 160,
) -> str:
    """A line chart of ``points`` between ``start_ms`` and ``end_ms``; gaps (None) break the line."""
    parts = _frame(title, width, height)
    inside = [p for p in points if start_ms <= p.at_ms <= end_ms]
    values = [p.value for p in inside if p.value is not None]
    if not values:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="12">'
            "Chưa có dữ liệu</text></svg>"
        )
        return "".join(parts)
    top = _nice_max(max(values))
    _axes(parts, width, height, top, unit, start_ms, end_ms)
    x0, x1 = _PAD_LEFT, width - _PAD_RIGHT
    y0, y1 = height - _PAD_BOTTOM, _PAD_TOP
    span = max(1, end_ms - start_ms)
    runs: list[list[str]] = [[]]
    for p in sorted(inside, key=lambda p: p.at_ms):
        if p.value is None:
            if runs[-1]:
                runs.append([])
            continue
        x = x0 + (x1 - x0) * (p.at_ms - start_ms) / span
        y = y0 - (y0 - y1) * (p.value / top)
        runs[-1].append(f"{x:.1f},{y:.1f}")
    for run in runs:
        if len(run) == 1:
            cx, cy = run[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" class="chart-line" fill="#1f5fa8" />')
        elif run:
            parts.append(
                f'<polyline points="{" ".join(run)}" fill="none" stroke="#1f5fa8" stroke-width="1.5" '
                'class="chart-line" />'
            )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    buckets: Sequence[tuple[int, float]],
    *,
    title: str,
    unit: str = "",
    start_ms: int,
    end_ms: int,
    bucket_ms: int,
    width: int = 640,
    height: int = 160,
) -> str:
    """Bars for counts per bucket (e.g. contacts per hour); ``buckets`` are (bucket start ms, value)."""
    parts = _frame(title, width, height)
    inside = [(at, v) for at, v in buckets if start_ms <= at < end_ms]
    if not inside:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="12">'
            "Chưa có dữ liệu</text></svg>"
        )
        return "".join(parts)
    top = _nice_max(max(v for _, v in inside))
    _axes(parts, width, height, top, unit, start_ms, end_ms)
    x0, x1 = _PAD_LEFT, width - _PAD_RIGHT
    y0, y1 = height - _PAD_BOTTOM, _PAD_TOP
    span = max(1, end_ms - start_ms)
    bar_w = max(1.0, (x1 - x0) * bucket_ms / span - 1)
    for at, value in inside:
        x = x0 + (x1 - x0) * (at - start_ms) / span
        h = (y0 - y1) * (value / top)
        label = escape(f"{_day_label(at)}: {_fmt(value)} {unit}".strip())
        parts.append(
            f'<rect x="{x:.1f}" y="{y0 - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="#4a8a3a" '
            f'class="chart-bar"><title>{label}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)
