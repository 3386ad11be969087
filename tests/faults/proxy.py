"""A hostile network between a node and the hub: an asyncio TCP proxy on 127.0.0.1 with toxics.

Like toxiproxy (latency, reset_peer, limit_data, timeout) plus the two faults that matter most for
exactly-once sync: ``ack_loss`` (the request reaches the hub, the hub commits and answers, the answer
never reaches the node) and ``replay`` (a finished connection's request bytes are sent again on a new
upstream connection). Each connection draws its fate from a seeded RNG, so a failing seed replays
the same faults; every decision goes to ``events`` for the checker.

A slow, flaky mobile link (N4) adds three more, applied to every connection whatever its fate:
``bandwidth`` (bytes/s per direction, shared by all connections, like one LTE modem: a token bucket),
``slice`` (toxiproxy's slicer: each read is forwarded as small random segments with small delays
between them) and ``reset_per_window`` (the link drops: RST both sides with this probability per
``window_bytes`` forwarded in a direction; drawn from its own seeded RNG by window index, so where the
resets fall depends only on the byte count, not on timing). ``lost_bytes`` counts the request bytes a
reset threw away: what was forwarded upstream on that connection since the last response byte came back
(HTTP/1.1 without pipelining: the request in flight).
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
    bandwidth: int = 0  # bytes/s per direction, shared by every connection (0: unlimited)
    slice: tuple[int, int] = (0, 0)  # segment size range in bytes (0: forward reads whole)
    slice_delay_ms: tuple[float, float] = (0.0, 0.0)  # pause between segments
    reset_per_window: float = 0.0  # RST probability per ``window_bytes`` forwarded in one direction
    window_bytes: int = 65536


@dataclass
class _Conn:
    cid: int
    fate: str
    cut_at: int
    request: bytearray = field(default_factory=bytearray)
    in_flight: int = 0  # request bytes forwarded upstream since the last response byte


class _Bucket:
    """A token bucket of ``rate`` bytes/s (burst: 1/20 s worth), shared by one direction's connections."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.burst = max(1, rate // 20)
        self.tokens = float(self.burst)
        self.at = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= min(n, self.burst):
                    self.tokens -= n  # may go negative for a large segment: the next one waits longer
                    return
                await asyncio.sleep((min(n, self.burst) - self.tokens) / self.rate)


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
        self._buckets: dict[bool, _Bucket] = {}
        self._windows = {True: 0, False: 0}  # bytes forwarded per direction (upstream: True)
        self._reset_rng = random.Random(seed ^ 0x5EED)
        self._reset_draws: dict[bool, list[bool]] = {True: [], False: []}
        self.bytes_up = 0
        self.bytes_down = 0
        self.lost_bytes: list[int] = []  # per reset of the link: request bytes thrown away

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
            await self._forward(conn, chunk, dst, upstream=upstream)
            sent += len(chunk)

    def _link_drops(self, upstream: bool, n: int) -> bool:
        """Advance this direction's byte count by ``n``; True if a window boundary crossed drew a reset."""
        f = self.faults
        if f.reset_per_window <= 0:
            return False
        before = self._windows[upstream] // f.window_bytes
        self._windows[upstream] += n
        after = self._windows[upstream] // f.window_bytes
        draws = self._reset_draws[upstream]
        while len(draws) < after:
            draws.append(self._reset_rng.random() < f.reset_per_window)
        return any(draws[before:after])

    async def _forward(self, conn: _Conn, chunk: bytes, dst: asyncio.StreamWriter, *, upstream: bool) -> None:
        """Write ``chunk`` to ``dst`` through the link's slicer, bandwidth and random resets."""
        f = self.faults
        lo, hi = f.slice
        at = 0
        while at < len(chunk):
            size = len(chunk) - at if hi <= 0 else min(len(chunk) - at, self.rng.randint(max(1, lo), hi))
            segment = chunk[at : at + size]
            if f.bandwidth > 0:
                bucket = self._buckets.get(upstream)
                if bucket is None or bucket.rate != f.bandwidth:
                    bucket = self._buckets[upstream] = _Bucket(f.bandwidth)
                await bucket.take(len(segment))
            if time.monotonic() < self._partitioned_until:
                raise ConnectionResetError("partitioned")
            if self._link_drops(upstream, len(segment)):
                self._log(conn.cid, "link_reset")
                self.lost_bytes.append(conn.in_flight)
                _rst(dst)
                raise ConnectionResetError("link reset")
            dst.write(segment)
            await dst.drain()
            if upstream:
                self.bytes_up += len(segment)
                conn.in_flight += len(segment)
            else:
                self.bytes_down += len(segment)
                conn.in_flight = 0
            at += size
            if hi > 0 and at < len(chunk) and f.slice_delay_ms[1] > 0:
                await asyncio.sleep(self.rng.uniform(*f.slice_delay_ms) / 1000)

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
