"""motcua-node as operators run it: subprocesses, exit codes, a served node killed mid-way and restarted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.node.conftest import PASSWORD, reception

CLI = [sys.executable, "-m", "node"]


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _init(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "init",
        "--data",
        str(data),
        "--node-id",
        "CN01",
        "--unit-code",
        "000.00.01.H26",
        "--name",
        "Chi nhánh Tây Hồ",
        *extra,
    )


def test_init_user_token_status_verify_export(tmp_path: Path) -> None:
    data = tmp_path / "n"
    done = _init(data, "--code-block", "3", "--kind", "van")
    assert done.returncode == 0, done.stderr
    assert "code block 3000-3999" in done.stdout
    key = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("key "))
    assert oct((data / "node.key").stat().st_mode & 0o777) == "0o600"
    assert (data / "blobs").is_dir() and (data / "node.toml").is_file()
    again = _init(data)
    assert again.returncode == 2 and "không ghi đè" in again.stderr
    assert (
        run(
            "user",
            "add",
            "--data",
            str(data),
            "--username",
            "an.nv",
            "--role",
            "staff",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        ).returncode
        == 0
    )
    short = run(
        "user",
        "add",
        "--data",
        str(data),
        "--username",
        "b.c",
        "--role",
        "staff",
        "--password-stdin",
        stdin="ngan\n",
    )
    assert short.returncode == 2 and "ít nhất 12 ký tự" in short.stderr
    token = run("token", "create", "--data", str(data), "--name", "kiosk1")
    assert token.returncode == 0 and token.stdout.startswith("mct_") and "một lần" in token.stderr
    status = run("status", "--data", str(data), "--json")
    info = json.loads(status.stdout)
    assert (
        info["node"] == "CN01" and info["kind"] == "van" and info["head"]["seq"] == 1 and info["unsent"] == 1
    )
    verify = run("verify", "--data", str(data))
    assert verify.returncode == 0 and "ok projections" in verify.stdout
    export = tmp_path / "log.ndjson"
    assert run("log", "export", "--data", str(data), "--output", str(export)).returncode == 0
    checked = subprocess.run(
        [sys.executable, "-m", "protocol", "verify", "--key", key, str(export)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and checked.stdout.startswith("ok CN01 1 1 ")
    assert run("log", "export", "--data", str(data), "--epoch", "7").returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--data", "/nonexistent/motcua"], "motcua-node init"),
        (["init", "--data", "{tmp}/x", "--node-id", "cn 1", "--unit-code", "U1", "--name", "X"], "node_id"),
        (
            [
                "init",
                "--data",
                "{tmp}/x",
                "--node-id",
                "CN01",
                "--unit-code",
                "U1",
                "--name",
                "X",
                "--code-block",
                "10",
            ],
            "code_block_index",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    done = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "x" / "node.toml").exists()
    assert run("frobnicate").returncode == 2


def test_env_override_errors_name_the_variable(tmp_path: Path) -> None:
    assert _init(tmp_path / "n").returncode == 0
    done = run("status", "--data", str(tmp_path / "n"), env={"MOTCUA_NODE_SESSION_IDLE_MINUTES": "0"})
    assert done.returncode == 2 and "session_idle_minutes" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    log = data.parent / "serve.log"
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [*CLI, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"serve did not become ready: {log.read_text(errors='replace')}")


def test_serve_killed_mid_way_loses_nothing_and_codes_continue(tmp_path: Path) -> None:
    data = tmp_path / "n"
    assert _init(data).returncode == 0
    token = run("token", "create", "--data", str(data), "--name", "kiosk1").stdout.strip()
    port = _free_port()
    proc = _serve(data, port)
    acknowledged: list[str] = []
    try:
        for _ in range(5):
            status, body = _request(f"http://127.0.0.1:{port}/api/v1/dossiers", token, reception())
            assert status == 201, body
            acknowledged.append(body["code"])
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown: what was acknowledged must be on disk
        proc.wait(timeout=30)
    proc = _serve(data, port)
    try:
        status, body = _request(f"http://127.0.0.1:{port}/api/v1/dossiers", token, reception())
        assert status == 201
        for code in acknowledged:
            assert _request(f"http://127.0.0.1:{port}/api/v1/dossiers/{code}", token)[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    seqs = [int(c[-4:]) for c in [*acknowledged, body["code"]]]
    assert seqs == list(range(1, 7))
    verify = run("verify", "--data", str(data))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "seq 7" in verify.stdout


def test_verify_fails_on_a_tampered_database(tmp_path: Path) -> None:
    from tests.tools import node_db

    data = tmp_path / "n"
    assert _init(data).returncode == 0
    db = node_db(data / "node.sqlite3")
    raw = db.execute("SELECT raw FROM entries WHERE seq = 1").fetchone()[0]
    db.execute(
        "UPDATE entries SET raw = ? WHERE seq = 1", (bytes(raw).replace(b'"node":"CN01"', b'"node":"CN02"'),)
    )
    db.commit()
    db.close()
    done = run("verify", "--data", str(data))
    assert done.returncode == 1 and done.stdout.startswith("FAIL log CN01/1:1")


def test_settle_heap_freezes_what_startup_allocated() -> None:
    """``serve`` moves the objects alive after startup out of the collector's view (gc.freeze), so a
    full collection under load does not walk them (bench.intake: ~100 ms stalls before)."""
    import gc

    from node.service import settle_heap

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
