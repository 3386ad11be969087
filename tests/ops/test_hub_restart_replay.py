"""A signed request captured before a hub restart cannot be replayed after it (``before_start``).

Real ``central serve`` processes on a free 127.0.0.1 port and one data directory: a request is signed and
captured (headers + body bytes) while the first process runs, the hub is stopped and started again, and
the replay is refused with 0 changes to the database. The node's client, whose requests are signed with a
time a little behind the restarted hub, re-signs and goes on without a failed call.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.sync_client import HttpTransport, SyncClient
from protocol import canonical, generate_private_key, public_key_text, sign_request
from protocol.auth import body_digest
from protocol.enrollment import EnrollmentRequest, InviteToken
from protocol.entry import genesis_body, sign_entry
from tests.central.helpers import dump_db
from tests.ops.test_serve_notify import _accepts, _free_port

CENTRAL = [sys.executable, "-m", "central"]


def _serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*CENTRAL, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not _accepts(port):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the hub did not start listening"
        time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()


def _wall() -> int:
    return time.time_ns() // 1_000_000


def _entries(key: Any, node: str, n: int) -> list[Any]:
    now = _wall() - 60_000
    out = [
        sign_entry(
            key, log=node, epoch=1, seq=1, prev=None, time=(now, 0), kind="log.genesis",
            body=genesis_body(node, 1, public_key_text(key), None),
        )
    ]  # fmt: skip
    for i in range(n):
        last = out[-1]
        out.append(
            sign_entry(
                key, log=node, epoch=1, seq=last.seq + 1, prev=last.hash, time=(now + 1000 * (i + 1), 0),
                kind="test.note", body={"n": i},
            )
        )  # fmt: skip
    return out


def _signed(key: Any, node: str, method: str, target: str, body: bytes, time_ms: int) -> dict[str, str]:
    return sign_request(
        key, node=node, epoch=1, method=method, target=target, time_ms=time_ms, body_sha256=body_digest(body)
    )


@pytest.mark.e2e
def test_captured_request_is_refused_after_a_hub_restart_and_the_node_resigns(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    subprocess.run(
        [*CENTRAL, "--data", str(data), "init", "--listen", f"127.0.0.1:{port}", "--public-url", base],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    invite = subprocess.run(
        [*CENTRAL, "--data", str(data), "node", "invite", "CN01", "--kind", "branch", "--name", "Tây Hồ"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    token = InviteToken.parse(invite.stdout.strip().splitlines()[0])
    key = generate_private_key()
    entries = _entries(key, "CN01", 4)
    target = "/v1/sync/logs/CN01/1"
    first_body = b"".join(e.raw + b"\n" for e in entries[:3])
    later_body = b"".join(e.raw + b"\n" for e in entries)

    async def scenario() -> None:
        async with aiohttp.ClientSession(base) as http:
            # before the restart: enrol, push 1..3 (delivered), and sign a push of 1..5 an attacker captures
            resp = await http.post("/v1/enroll", data=canonical(EnrollmentRequest.make(token, key).to_wire()))
            assert resp.status == 200, await resp.text()
            delivered = _signed(key, "CN01", "POST", target, first_body, _wall())
            resp = await http.post(target, data=first_body, headers=delivered)
            assert resp.status == 200, await resp.text()
            resp = await http.post(target, data=first_body, headers=delivered)
            assert resp.status == 401 and (await resp.json())["error"] == "replayed"
            captured.append(_signed(key, "CN01", "POST", target, later_body, _wall()))

    async def replay() -> list[tuple[int, str]]:
        out = []
        async with aiohttp.ClientSession(base) as http:
            for headers, body in ((delivered_again[0], first_body), (captured[0], later_body)):
                resp = await http.post(target, data=body, headers=headers)
                out.append((resp.status, (await resp.json())["error"]))
        return out

    captured: list[dict[str, str]] = []
    proc = _serve(data, port)
    try:
        asyncio.run(scenario())
    finally:
        _stop(proc)
    delivered_again = [_signed(key, "CN01", "POST", target, first_body, _wall() - 1)]  # signed before restart
    before = dump_db(data / "hub.sqlite3")
    time.sleep(0.01)
    proc = _serve(data, port)
    try:
        assert asyncio.run(replay()) == [(401, "before_start"), (401, "before_start")]
        assert dump_db(data / "hub.sqlite3") == before  # 0 state changes

        async def node_client() -> None:
            # the node's clock is 60 s behind the restarted hub: its first request predates the start
            client = SyncClient(
                "CN01", 1, key, None, None, HttpTransport(base), wall=lambda: _wall() - 60_000
            )  # type: ignore[arg-type]
            try:
                client.offset_ms = 0
                await client.call("POST", target, later_body)  # refused before_start once, re-signed, stored
                assert client.offset_ms > 0  # corrected from the answer's hub_time
            finally:
                await client.transport.close()  # type: ignore[attr-defined]

        asyncio.run(node_client())
        assert dump_db(data / "hub.sqlite3") != before
    finally:
        _stop(proc)
