"""A hostile network between a node and the hub: an asyncio TCP proxy on 127.0.0.1 with toxics.

Like toxiproxy (latency, reset_peer, limit_data, timeout) plus the two faults that matter most for
exactly-once sync: ``ack_loss`` (the request reaches the hub, the hub commits and answers, the answer
never reaches the node) and ``replay`` (a finished connection's request bytes are sent again on a new
upstream connection). Each connection draws its fate from a seeded RNG, so a failing seed replays
the same faults; every decision goes to ``events`` for the checker.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from dataclasses import dataclass, field

__all__ = ["FaultProxy", "Faults"]


@dataclass
class Faults:
    """Probabilities per connection (0..1) and the latency range added to every forwarded chunk."""

    delay_ms: tuple[int, int] = (0, 0)
    refuse: float = 0.0  # accept, then close at once
    reset: float = 0.0  # RST both sides after a random number of forwarded bytes
    truncate: float = 0.0  # forward part of the response, then close cleanly (FIN)
    ack_loss: float = 0.0  # forward the request; drop the whole response and RST the client
    replay: float = 0.0  # after a clean close, resend the captured request upstream once


@dataclass
class _Conn:
    cid: int
    fate: str
    cut_at: int
    request: bytearray = field(default_factory=bytearray)


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Listen on 127.0.0.1:<free port> and forward to ``upstream`` with faults."""

    def __init__(
        self, upstream_port: int, *, seed: int, faults: Faults | None = None, upstream_host: str = "127.0.0.1"
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.events: list[tuple[float, int, str]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._partitioned_until = 0.0
        self._live: set[asyncio.StreamWriter] = set()
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._live):
                writer.transport.abort()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def partition(self, seconds: float) -> None:
        """Cut the link: abort every live connection and refuse new ones for ``seconds``."""
        self._partitioned_until = time.monotonic() + seconds
        self._log(-1, f"partition {seconds:.1f}s")
        for writer in list(self._live):
            _rst(writer)

    def heal(self) -> None:
        self._partitioned_until = 0.0
        self._log(-1, "heal")

    def count(self, event: str) -> int:
        return sum(1 for _, _, e in self.events if e == event)

    def _log(self, cid: int, event: str) -> None:
        self.events.append((time.monotonic(), cid, event))

    def _draw(self) -> str:
        f = self.faults
        roll = self.rng.random()
        for name, p in (
            ("refuse", f.refuse),
            ("reset", f.reset),
            ("truncate", f.truncate),
            ("ack_loss", f.ack_loss),
            ("replay", f.replay),
        ):
            if roll < p:
                return name
            roll -= p
        return "clean"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next += 1
        cid = self._next
        if time.monotonic() < self._partitioned_until:
            self._log(cid, "partitioned")
            _rst(writer)
            return
        conn = _Conn(cid, self._draw(), cut_at=self.rng.randint(1, 4096))
        self._log(cid, conn.fate)
        if conn.fate == "refuse":
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._log(cid, "upstream_down")
            _rst(writer)
            return
        self._live.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pump(conn, reader, up_writer, upstream=True),
                self._pump(conn, up_reader, writer, upstream=False),
            )
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._live.discard(writer)
            self._live.discard(up_writer)
            for w in (writer, up_writer):
                w.transport.abort() if w.transport.is_closing() else w.close()
        if conn.fate == "replay" and conn.request:
            task = asyncio.create_task(self._replay(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        sent = 0
        while True:
            chunk = await src.read(65536)
            if not chunk:
                with contextlib.suppress(OSError):
                    if dst.can_write_eof():
                        dst.write_eof()
                return
            lo, hi = self.faults.delay_ms
            if hi > 0:
                await asyncio.sleep(self.rng.uniform(lo, hi) / 1000)
            if time.monotonic() < self._partitioned_until:
                raise ConnectionResetError("partitioned")
            if upstream:
                conn.request += chunk
            elif conn.fate == "ack_loss":
                self._log(conn.cid, "response_dropped")
                _rst(dst)
                raise ConnectionResetError("ack lost")
            elif conn.fate == "truncate" and sent + len(chunk) >= conn.cut_at:
                dst.write(chunk[: max(0, conn.cut_at - sent)])
                await dst.drain()
                self._log(conn.cid, "truncated")
                dst.close()
                raise ConnectionResetError("truncated")
            if conn.fate == "reset" and sent + len(chunk) >= conn.cut_at:
                self._log(conn.cid, "reset")
                _rst(dst)
                raise ConnectionResetError("reset")
            dst.write(chunk)
            await dst.drain()
            sent += len(chunk)

    async def _replay(self, conn: _Conn) -> None:
        try:
            reader, writer = await asyncio.open_connection(*self.upstream)
            writer.write(bytes(conn.request))
            await writer.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(65536), timeout=5)
            writer.close()
            self._log(conn.cid, "replayed")
        except OSError:
            self._log(conn.cid, "replay_failed")
