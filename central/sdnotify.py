"""systemd notification protocol (sd_notify), UTF-8 safe, no dependency.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET``; we send ``READY=1`` once the store is open and
the port is bound, ``STATUS=`` lines people read in ``systemctl status`` (Vietnamese is fine: the
datagram is UTF-8), ``WATCHDOG=1`` from a task on the event loop (a wedged loop stops the pings and
systemd restarts the service) and ``STOPPING=1`` on shutdown. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["notify", "watchdog_interval", "watchdog_loop"]


def _address(environ: Mapping[str, str]) -> str | None:
    addr = environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr[0] == "@":  # abstract namespace
        return "\0" + addr[1:]
    return addr


def notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send newline-separated ``KEY=VALUE`` text; return False when not under systemd."""
    addr = _address(os.environ if environ is None else environ)
    if addr is None:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(addr)
        sock.sendall(message.encode("utf-8"))
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when no watchdog is asked for."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000


async def watchdog_loop(
    healthy: Callable[[], Awaitable[bool]], *, environ: Mapping[str, str] | None = None
) -> None:
    """Ping the watchdog while ``healthy()`` says so; runs until cancelled. No-op without a watchdog."""
    interval = watchdog_interval(environ)
    if interval is None:
        return
    while True:
        if await healthy():
            notify("WATCHDOG=1", environ=environ)
        await asyncio.sleep(interval)
