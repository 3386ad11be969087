"""Unit files verify cleanly and score well; sd_notify speaks the real datagram protocol."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from central import sdnotify as central_sdnotify
from node import sdnotify
from tests.tools import require

ROOT = Path(__file__).resolve().parents[2]
UNITS = ["motcua-node.service", "motcua-central.service"]


def _stage(unit: str, root: Path) -> Path:
    """Copy a unit under a temporary root with an executable stub at its ExecStart path."""
    text = (ROOT / "systemd" / unit).read_text("utf-8")
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    binary = exec_start.split("=", 1)[1].split()[0]
    stub = root / binary.lstrip("/")
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    (unit_dir / unit).write_text(text, "utf-8")
    return unit_dir / unit


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_without_any_warning(unit: str, tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    _stage(unit, tmp_path)
    done = subprocess.run(
        [analyze, "verify", f"--root={tmp_path}", "--recursive-errors=no", unit],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys only warn: any output is a failure


@pytest.mark.parametrize("unit", UNITS)
def test_unit_security_exposure_at_most_2(unit: str, tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    path = _stage(unit, tmp_path)
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", "--json=short", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, list) and report


def test_units_name_the_real_commands() -> None:
    for unit in UNITS:
        text = (ROOT / "systemd" / unit).read_text("utf-8")
        assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=always" in text
    assert "motcua-node serve" in (ROOT / "systemd/motcua-node.service").read_text()
    assert "User=motcua\n" in (ROOT / "systemd/motcua-node.service").read_text()


@pytest.mark.parametrize("abstract", [False, True])
@pytest.mark.parametrize("module", [sdnotify, central_sdnotify])
def test_notify_sends_utf8_over_a_real_datagram_socket(tmp_path: Path, abstract: bool, module) -> None:  # type: ignore[no-untyped-def]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        if abstract:
            name = f"motcua-test-{os.getpid()}-{id(tmp_path)}"
            server.bind("\0" + name)
            env = {"NOTIFY_SOCKET": "@" + name}
        else:
            path = str(tmp_path / "notify.sock")
            server.bind(path)
            env = {"NOTIFY_SOCKET": path}
        server.settimeout(5)
        message = "READY=1\nSTATUS=Đang đồng bộ 3 hồ sơ với trung tâm"
        assert module.notify(message, environ=env)
        assert server.recv(4096).decode("utf-8") == message


def test_notify_is_a_no_op_outside_systemd() -> None:
    assert sdnotify.notify("READY=1", environ={}) is False
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None


async def test_watchdog_pings_only_while_healthy(tmp_path: Path) -> None:
    path = str(tmp_path / "wd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.setblocking(False)
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}  # ping every 10 ms
        healthy = True

        async def check() -> bool:
            return healthy

        task = asyncio.create_task(sdnotify.watchdog_loop(check, environ=env))
        await asyncio.sleep(0.1)
        pings = _drain(server)
        assert pings and set(pings) == {"WATCHDOG=1"}
        healthy = False
        await asyncio.sleep(0.03)
        _drain(server)
        await asyncio.sleep(0.1)
        assert _drain(server) == []  # an unhealthy loop stops the pings, so systemd restarts us
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out
