"""Hub login throttling survives a restart (RELIABILITY W2): failures are kept in SQLite, not in memory.

A real ``central serve`` process: 10 wrong passwords for one admin, SIGTERM, a new process on the same data
directory, and the right password is still answered 429 with ``Retry-After``.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.ops.test_hub_restart_replay import _serve, _stop
from tests.ops.test_serve_notify import _free_port

CENTRAL = [sys.executable, "-m", "central"]
PASSWORD = "mật khẩu đủ dài 2026"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _login(base: str, username: str, password: str) -> tuple[int, str | None]:
    data = urllib.parse.urlencode({"username": username, "password": password}).encode()
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(f"{base}/login", data=data), timeout=30) as resp:
            return resp.status, resp.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After")


@pytest.mark.e2e
def test_login_throttle_survives_a_hub_restart(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    subprocess.run([*CENTRAL, "--data", str(data), "init"], check=True, capture_output=True, timeout=120)
    subprocess.run(
        [*CENTRAL, "--data", str(data), "user", "add", "--username", "admin1", "--role", "admin",
         "--password-stdin"],
        input=PASSWORD + "\n", text=True, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    proc = _serve(data, port)
    try:
        assert _login(base, "admin1", PASSWORD)[0] == 303  # the right password works before
        assert [_login(base, "admin1", f"sai mật khẩu {i}")[0] for i in range(10)] == [401] * 10
        assert _login(base, "admin1", PASSWORD)[0] == 429
    finally:
        _stop(proc)
    proc = _serve(data, port)
    try:
        status, retry = _login(base, "admin1", PASSWORD)  # right password, still throttled after restart
        assert status == 429 and retry is not None and int(retry) > 0
    finally:
        _stop(proc)
