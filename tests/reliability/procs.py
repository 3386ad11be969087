"""Real server processes for the crash and network soaks: spawn, wait until serving, SIGKILL.

``Zygote`` forks warm children (see ``tests.reliability.zygote``); ``spawn_cli`` starts the installed
``motcua-node`` / ``motcua-central`` script cold. Both give a ``ServerProc`` whose ``kill()`` is a real
``SIGKILL`` followed by a bounded wait until the process is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

__all__ = ["ROOT", "ServerProc", "Zygote", "free_port", "spawn_cli", "wait_serving"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0): look at its state. But a thread-group leader shows "Z" as soon as
    # it has exited while its other threads (an aiosqlite thread inside fdatasync, an executor thread)
    # are still dying, and the file table, with the data directory's flock, is only released when the
    # last of them is gone: a restart in that window is refused "already running". So a zombie counts
    # as gone only once it is the last task of its group.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().split(b") ", 1)[1][:1]
        if state not in (b"Z", b"X"):
            return False
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


@dataclass
class ServerProc:
    """One server process listening on ``port``."""

    pid: int
    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    kills: int = field(default=0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL, then wait (bounded) until the process no longer exists."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.kills += 1
        if self.popen is not None:
            self.popen.wait(timeout=timeout)
            return
        deadline = time.monotonic() + timeout
        while not _gone(self.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"pid {self.pid} survived SIGKILL for {timeout} s")
            time.sleep(0.002)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful), falling back to SIGKILL."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while not (self.popen.poll() is not None if self.popen else _gone(self.pid)):
            if time.monotonic() > deadline:
                self.kill()
                return
            time.sleep(0.01)

    def alive(self) -> bool:
        return self.popen.poll() is None if self.popen is not None else not _gone(self.pid)


async def wait_serving(proc: ServerProc, path: str = "/healthz", timeout: float = 30.0) -> None:
    """Poll ``path`` until it answers 200 (bounded); fail with the server's log otherwise."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                break
            try:
                async with session.get(proc.url + path) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.01)
    log = proc.log.read_text(errors="replace")[-3000:] if proc.log.exists() else ""
    raise AssertionError(
        f"server on {proc.port} not serving after {timeout} s (alive={proc.alive()}):\n{log}"
    )


def _script(tool: str) -> list[str]:
    name = "motcua-node" if tool == "node" else "motcua-central"
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-m", tool]


def spawn_cli(tool: str, argv: list[str], port: int, log: Path) -> ServerProc:
    """Start the installed script (cold start), output appended to ``log``."""
    with log.open("ab") as out:
        popen = subprocess.Popen([*_script(tool), *argv], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return ServerProc(popen.pid, port, log, popen)


class Zygote:
    """A warm parent process; ``spawn`` forks a child running ``<tool>.cli.main(argv)``."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        self.children: list[ServerProc] = []
        assert self.proc.stdout is not None
        hello = self.proc.stdout.readline()
        if not hello:
            raise AssertionError("zygote did not start")

    def spawn(self, tool: str, argv: list[str], port: int, log: Path) -> ServerProc:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"tool": tool, "argv": argv, "log": str(log)}).encode() + b"\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        child = ServerProc(int(answer["pid"]), port, log)
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            if child.alive():
                child.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
