"""A real hub for the benchmarks: ``motcua-central serve`` in its own process on a free loopback port.

The hub gets a fresh state directory (its key, ``central.toml``, an empty database) and the nodes the
benchmark needs are invited before it starts, so every request the benchmark times goes to the real
server over TCP. Its memory is read from ``/proc/<pid>/status`` (``rss_mib``, ``peak_rss_mib``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from central.config import load
from central.errors import now_ms
from central.hub import Hub
from protocol import InviteToken, private_key_from_seed, save_private_key

__all__ = ["HubProcess", "free_port", "proc_rss_mib"]

START_TIMEOUT = 30.0
HUB_SEED = b"bench-hub-key-seed-0123456789abc"[:32]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    if len(values) != 2:
        raise ProcessLookupError(f"process {pid} has exited")
    return values["VmRSS"], values["VmHWM"]


def _toml(settings: dict[str, Any]) -> str:
    return "".join(f"{k} = {v!r}\n" if isinstance(v, int) else f'{k} = "{v}"\n' for k, v in settings.items())


class HubProcess:
    """``python -m central --data DIR serve`` with ``settings`` in DIR/central.toml."""

    def __init__(self, data: Path, **settings: Any) -> None:
        self.data = data
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.settings = {
            "listen": f"127.0.0.1:{self.port}",
            "public_url": self.base,
            # Benchmarks push far more than a branch does; the per-node budget is not what they measure.
            "push_rate_per_s": 10**9,
            **settings,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.profiler: subprocess.Popen[bytes] | None = None

    async def prepare(self, nodes: Sequence[str]) -> list[InviteToken]:
        """Create the state directory and invite ``nodes`` (before the server runs)."""
        self.data.mkdir(parents=True, exist_ok=True)
        save_private_key(private_key_from_seed(HUB_SEED), self.data / "hub.key")
        (self.data / "central.toml").write_text(_toml(self.settings))
        hub = await Hub.open(load(self.data, environ={}), now_ms)
        try:
            return [
                await hub.registry.invite(
                    node,
                    "branch",
                    node,
                    hub_url=self.base,
                    hub_key=hub.public_key,
                    now=now_ms(),
                    ttl_ms=3600_000,
                )
                for node in nodes
            ]
        finally:
            await hub.close()

    async def start(self) -> None:
        log = open(self.data / "hub.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "central", "--data", str(self.data), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"hub exited: {(self.data / 'hub.log').read_text()[-2000:]}")
                try:
                    async with session.get(self.base + "/healthz") as resp:
                        if resp.status == 200:
                            self._profile()
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"hub did not answer /healthz within {START_TIMEOUT:.0f} s")
                await asyncio.sleep(0.05)

    def _profile(self) -> None:
        """Investigation aid: with MOTCUA_BENCH_PYSPY=PATH (and py-spy installed by hand), sample the hub."""
        out = os.environ.get("MOTCUA_BENCH_PYSPY")
        if out:
            cmd = [
                "py-spy",
                "record",
                "--pid",
                str(self.pid),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                out,
                "--threads",
            ]
            self.profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> tuple[float, float]:
        return proc_rss_mib(self.pid)

    def stop(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            self.profiler.wait(30)
            self.profiler = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
