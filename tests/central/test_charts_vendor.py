from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

from central.charts import Point, bar_chart, line_chart

NS = "{http://www.w3.org/2000/svg}"
DAY = 86_400_000
START = 1_795_000_000_000


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_line_chart_draws_points_and_breaks_at_gaps() -> None:
    pts = [Point(START + i * 3_600_000, float(i)) for i in range(10)]
    pts.insert(5, Point(START + 4 * 3_600_000 + 1, None))
    root = parse(
        line_chart(pts, title="Tồn đọng <chưa gửi>", unit="mục", start_ms=START, end_ms=START + 7 * DAY)
    )
    lines = root.findall(f"{NS}polyline")
    assert len(lines) == 2
    assert sum(len(line.get("points", "").split()) for line in lines) == 10
    assert root.find(f"{NS}title").text == "Tồn đọng <chưa gửi>"  # escaped in the markup, intact when parsed
    day_labels = [t.text for t in root.findall(f"{NS}text") if t.text and "/" in t.text]
    assert len(day_labels) == 7


def test_line_chart_scales_to_nice_maximum() -> None:
    root = parse(
        line_chart(
            [Point(START, 730.0), Point(START + DAY, 10.0)], title="x", start_ms=START, end_ms=START + DAY
        )
    )
    labels = [t.text for t in root.findall(f"{NS}text")]
    assert "1.000" in labels and "500" in labels


def test_empty_chart_says_so() -> None:
    svg = line_chart([], title="Độ trễ", start_ms=START, end_ms=START + DAY)
    assert "Chưa có dữ liệu" in svg
    parse(svg)
    assert "Chưa có dữ liệu" in bar_chart(
        [], title="x", start_ms=START, end_ms=START + DAY, bucket_ms=3_600_000
    )


def test_bar_chart_one_bar_per_bucket_in_range() -> None:
    buckets = [(START + h * 3_600_000, float(h % 3)) for h in range(-5, 30)]
    root = parse(
        bar_chart(buckets, title="Lượt liên lạc", start_ms=START, end_ms=START + DAY, bucket_ms=3_600_000)
    )
    assert len(root.findall(f"{NS}rect")) == 24


def test_vendored_files_match_recorded_hashes() -> None:
    vendor = Path(__file__).resolve().parents[2] / "central" / "static" / "vendor"
    lines = (vendor / "SHA256SUMS").read_text().splitlines()
    assert lines
    for line in lines:
        digest, name = line.split()
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
