"""The ceiling for scan upload: a raw aiohttp upload sink that hashes and fsyncs, nothing else.

    python -m bench.upload_sink --dir DIR        # prints {"port": N} once listening on 127.0.0.1

``PUT /sink/<name>``: the body is read as it streams, hashed (SHA-256) and written to ``DIR/<name>``,
the file is fsynced, and the answer is ``{"sha256": ...}``. No authentication, no manifest, no database:
what any upload over this HTTP stack on this disk costs at least. It runs in its own process, as the hub
does, so the client's and the server's work overlap the same way. ``upload(base, files)`` is the client:
one aiohttp session, the files PUT one after another (as the sync client sends chunks).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

__all__ = ["upload"]

_NAME = re.compile(r"[0-9a-zA-Z_-]{1,80}")


def _write_fsync(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def make_app(root: Path) -> web.Application:
    async def put(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not _NAME.fullmatch(name):
            raise web.HTTPNotFound()
        hasher = hashlib.sha256()
        buf = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            hasher.update(chunk)
            buf += chunk
        await asyncio.to_thread(_write_fsync, root / name, bytes(buf))
        return web.json_response({"sha256": hasher.hexdigest()})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_put("/sink/{name}", put)
    return app


async def upload(base: str, files: Sequence[Path]) -> int:
    """PUT each file to the sink; returns the bytes sent. Checks every answer's hash."""
    sent = 0
    async with aiohttp.ClientSession() as session:
        for i, path in enumerate(files):
            data = path.read_bytes()
            async with session.put(f"{base}/sink/f{i}", data=data) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            assert answer["sha256"] == hashlib.sha256(data).hexdigest()
            sent += len(data)
    return sent


async def _serve(root: Path) -> None:
    runner = web.AppRunner(make_app(root), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"port": port}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(_serve(args.dir))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
