"""One ``serve`` per data directory, for the node and the hub; a crash (SIGKILL) never blocks a restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ops.test_serve_notify import _accepts, _free_port

NODE = [sys.executable, "-m", "node"]
CENTRAL = [sys.executable, "-m", "central"]


def _start(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not _accepts(port):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the service did not start listening"
        time.sleep(0.05)
    return proc


def _second_refused(cmd: list[str], needle: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert needle in done.stderr


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()


@pytest.mark.e2e
def test_node_refuses_a_second_serve_and_restarts_after_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "node"
    subprocess.run(
        [*NODE, "init", "--data", str(data), "--node-id", "CN01", "--unit-code", "000.00.01.H26",
         "--name", "Chi nhánh Tây Hồ"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port, other = _free_port(), _free_port()
    first = _start([*NODE, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"], port)
    try:
        _second_refused(
            [*NODE, "serve", "--data", str(data), "--listen", f"127.0.0.1:{other}"], f"tiến trình {first.pid}"
        )
        assert not _accepts(other)
    finally:
        _kill(first)
    again = _start([*NODE, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"], port)
    _kill(again)


@pytest.mark.e2e
def test_hub_refuses_a_second_serve_and_restarts_after_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    subprocess.run([*CENTRAL, "--data", str(data), "init"], check=True, capture_output=True, timeout=120)
    port, other = _free_port(), _free_port()
    cmd = [*CENTRAL, "serve", "--data", str(data), "--listen"]
    first = _start([*cmd, f"127.0.0.1:{port}"], port)
    try:
        _second_refused([*cmd, f"127.0.0.1:{other}"], f"already running (pid {first.pid})")
    finally:
        _kill(first)
    _kill(_start([*cmd, f"127.0.0.1:{port}"], port))
