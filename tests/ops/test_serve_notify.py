"""``motcua-node serve`` and ``motcua-central serve`` speak sd_notify as systemd sees it.

The services run as real subprocesses with ``NOTIFY_SOCKET`` pointing at a datagram socket the test
binds and ``WATCHDOG_USEC`` set: READY=1 must arrive only once the port accepts connections, WATCHDOG=1
pings must follow from the event loop, and SIGTERM must give STOPPING=1 and a clean exit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node import service as node_service

NODE = [sys.executable, "-m", "node"]
CENTRAL = [sys.executable, "-m", "central"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _receive(sock: socket.socket, deadline: float) -> str | None:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return sock.recv(4096).decode("utf-8")
    except TimeoutError:
        return None


def _run_service(cmd: list[str], port: int, tmp_path: Path) -> list[str]:
    """Start ``cmd`` under a fake systemd; return every notification, in order, until it exited."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
        env.pop("WATCHDOG_PID", None)
        log = (tmp_path / "serve.log").open("wb")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        messages: list[str] = []
        try:
            deadline = time.monotonic() + 30
            ready_seen_listening: bool | None = None
            while time.monotonic() < deadline:
                message = _receive(server, deadline)
                if message is None:
                    break
                messages.append(message)
                if "READY=1" in message.splitlines():
                    # the port must already accept connections at the moment READY=1 was sent
                    ready_seen_listening = _accepts(port)
                if sum(m == "WATCHDOG=1" for m in messages) >= 3:
                    break
            assert ready_seen_listening is True, (messages, (tmp_path / "serve.log").read_text())
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, (tmp_path / "serve.log").read_text()
            while (message := _receive(server, time.monotonic() + 0.5)) is not None:
                messages.append(message)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return messages


def _check_sequence(messages: list[str]) -> None:
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m.splitlines())
    pings = [i for i, m in enumerate(messages) if m == "WATCHDOG=1"]
    stopping = [i for i, m in enumerate(messages) if "STOPPING=1" in m.splitlines()]
    assert len(pings) >= 3 and min(pings) > ready, messages
    assert stopping and stopping[-1] > max(pings), messages
    assert any(line.startswith("STATUS=") for line in messages[ready].splitlines()), messages


@pytest.mark.e2e
def test_node_serve_notifies_ready_after_bind_then_watchdog_then_stopping(tmp_path: Path) -> None:
    data = tmp_path / "node"
    subprocess.run(
        [*NODE, "init", "--data", str(data), "--node-id", "CN01", "--unit-code", "000.00.01.H26",
         "--name", "Chi nhánh Tây Hồ"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    port = _free_port()
    cmd = [*NODE, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"]
    messages = _run_service(cmd, port, tmp_path)
    _check_sequence(messages)
    ready = next(m for m in messages if "READY=1" in m.splitlines())
    assert "STATUS=Đang phục vụ CN01 (Chi nhánh Tây Hồ)" in ready  # Vietnamese survives the datagram


@pytest.mark.e2e
def test_central_serve_notifies_ready_after_bind_then_watchdog_then_stopping(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    subprocess.run([*CENTRAL, "--data", str(data), "init"], check=True, capture_output=True)
    port = _free_port()
    # --data after the command, exactly as systemd/motcua-central.service writes it
    cmd = [*CENTRAL, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"]
    _check_sequence(_run_service(cmd, port, tmp_path))


async def test_watchdog_pings_only_while_healthy_and_reports_status_changes(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.setblocking(False)
        answers = [[], [], ["database not writable: disk I/O error"], ["database not writable: x"], []]
        calls = 0

        async def health() -> list[str]:
            nonlocal calls
            calls += 1
            return answers[min(calls - 1, len(answers) - 1)]

        env = {"NOTIFY_SOCKET": str(path)}
        task = asyncio.create_task(node_service.watch(health, ok_status="OK", environ=env, interval=0.02))
        while calls < 6:
            await asyncio.sleep(0.01)
        task.cancel()
        received = []
        while True:
            try:
                received.append(server.recv(4096).decode())
            except BlockingIOError:
                break
    # ready twice (READY=1 already carried the status), two failures (no pings, a status naming each
    # problem), ready again (ping, status back to normal)
    assert received == [
        "WATCHDOG=1",
        "WATCHDOG=1",
        "STATUS=Không sẵn sàng: database not writable: disk I/O error",
        "STATUS=Không sẵn sàng: database not writable: x",
        "WATCHDOG=1",
        "STATUS=OK",
        *["WATCHDOG=1"] * (len(received) - 6),
    ]


async def test_watchdog_hung_check_counts_as_failure(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.setblocking(False)

        async def hangs() -> list[str]:
            await asyncio.sleep(3600)
            return []

        task = asyncio.create_task(
            node_service.watch(hangs, ok_status="OK", environ={"NOTIFY_SOCKET": str(path)}, interval=0.05)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        received = []
        while True:
            try:
                received.append(server.recv(4096).decode())
            except BlockingIOError:
                break
    assert "WATCHDOG=1" not in received
    assert received and received[0].startswith("STATUS=Không sẵn sàng")


def test_watch_does_nothing_without_a_watchdog() -> None:
    async def never() -> list[str]:
        raise AssertionError("must not be called without WATCHDOG_USEC")

    asyncio.run(node_service.watch(never, ok_status="OK", environ={}))
