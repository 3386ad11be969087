"""Clerks at the desk, in a process of their own: GETs of staff pages and the JSON API of a node, timed.

``python -m tests.reliability.staff_load URL API_TOKEN LIMIT PAUSE STOP_FILE`` logs in as the seeded
clerk, then cycles over ``/hom-nay``, ``/api/v1/status``, ``/tim-kiem`` and ``/api/v1/dossiers`` until
``STOP_FILE`` exists or ``LIMIT`` requests were made, and prints the latencies (seconds) as one JSON
list. Its own process, so what it measures is the node's answer time, not the test process's event loop
(which runs the fault proxy).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path

import aiohttp

STAFF_PASSWORD = "mat-khau-rat-dai-12"
PATHS = [("page", "/hom-nay"), ("api", "/api/v1/status"), ("page", "/tim-kiem"), ("api", "/api/v1/dossiers")]


async def run(url: str, token: str, limit: int, pause: float, stop: Path) -> list[float]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=timeout) as browser,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as api,
    ):
        async with browser.get(url + "/dang-nhap") as resp:
            match = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
            assert match, "no csrf field on the login page"
        async with browser.post(
            url + "/dang-nhap",
            data={"csrf": match[1], "username": "an.nv", "password": STAFF_PASSWORD, "next": "/hom-nay"},
            headers={"Origin": url},
        ) as resp:
            assert resp.status == 200, resp.status
        latencies: list[float] = []
        for i in range(limit):
            if stop.exists():
                break
            kind, path = PATHS[i % len(PATHS)]
            started = time.perf_counter()
            async with (browser if kind == "page" else api).get(url + path) as resp:
                await resp.read()
                assert resp.status == 200, (path, resp.status)
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(pause)
        return latencies


def main() -> None:
    url, token, limit, pause, stop = sys.argv[1:6]
    print(json.dumps(asyncio.run(run(url, token, int(limit), float(pause), Path(stop)))))


if __name__ == "__main__":
    main()
