"""``make demo`` end to end: a hub, a branch and a van as real processes; a sample dossier reaches the hub;
Ctrl-C (SIGINT) stops everything cleanly; a second run reuses the state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("demo")]


def _start(data: Path) -> tuple[subprocess.Popen[str], dict[str, str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "central.demo", "--data", str(data), "--free-ports"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("URLS "):
            return proc, json.loads(line[5:]), lines
    proc.kill()
    raise AssertionError("the demo printed no URLs line:\n" + "\n".join(lines))


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        return dict(json.loads(resp.read()))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the demo did not stop within 20 s of SIGINT") from None
    assert proc.returncode == 0, out
    return out


def _hub_has(data: Path, code: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "central", "--data", str(data / "hub"), "log", "export", "--log", "CN01"],
        capture_output=True,
        timeout=60,
    )
    return done.returncode == 0 and code.encode() in done.stdout


def test_demo_runs_syncs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    proc, urls, lines = _start(data)
    try:
        assert set(urls) == {"hub", "CN01", "VAN01"}
        for url in urls.values():
            assert _get(url + "/healthz")["status"] == "ok"
        text = "\n".join(lines)
        assert "admin / demo-" in text and "an.nv / demo-" in text and "đã lên trung tâm" in text
        state = json.loads((data / "demo.json").read_text("utf-8"))
        code = state["dossiers"]["CN01"][0]
        assert _hub_has(data, code)  # a sample dossier received on the branch is at the hub
        assert (data / "scans" / "CN01").is_dir() and (data / "scans" / "VAN01").is_dir()
    finally:
        if proc.poll() is None:
            out = _stop(proc)
    assert "Đã dừng" in out
    for name in ("hub", "CN01", "VAN01"):  # every child got SIGTERM and shut down, nothing left listening
        log = (data / "logs" / f"{name}.log").read_text("utf-8", "replace")
        assert "Traceback" not in log, log[-2000:]

    # a second run reuses demo-data: same dossiers, no second enrollment
    proc, urls, lines = _start(data)
    try:
        again = json.loads((data / "demo.json").read_text("utf-8"))
        assert again["dossiers"] == state["dossiers"] and again["api_tokens"] == state["api_tokens"]
        assert _get(urls["CN01"] + "/healthz")["status"] == "ok"
    finally:
        _stop(proc)
