"""D4/D5 on the paths the existing tests do not reach (tests/node/test_blobs.py and test_disk_full.py
cover the blob store): the SQLite journal path under a real ENOSPC (tmpfs) and under EIO from
``fdatasync`` (LD_PRELOAD shim in a real node process), and an enumerated fault sweep of scan ingest
(every write/fsync/rename call of the blob path failing in turn, EIO and ENOSPC).

Promises checked: a clear error with a Vietnamese message and never a 201; nothing half-written
(integrity_check, chain + projections verify, every 201 present); no fsync retried to "success" (a
transient fault still fails its request); recovery without manual repair.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.app import make_app
from node.auth import create_token
from node.blobs import BlobStore, FileOps
from node.config import load as load_node_config
from node.provision import init_node
from node.scan_intake import Deferred, Registered, ScanIntake
from node.store import Store
from tests.node.conftest import FAST_LOOKUP, reception
from tests.node.samples import make_image, make_pdf
from tests.reliability.faultfs import build_shim, tmpfs
from tests.reliability.nodecheck import NodeChecker
from tests.reliability.procs import ServerProc, free_port, wait_serving
from tests.tools import keyring

NODE = "CN01"


async def _new_node(data: Path) -> str:
    await init_node(
        data, node_id=NODE, unit_code="000.00.01.H26", name="Chi nhánh Tây Hồ", code_block_size=9999
    )
    store = await Store.open(data / "node.sqlite3")
    try:
        return await create_token(store, "faults")
    finally:
        await store.close()


def _vietnamese(message: str) -> bool:
    return any(ch in message for ch in "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")


# -- ENOSPC on the database (tmpfs) ------------------------------------------------------------------


async def test_database_disk_full_refuses_clearly_and_recovers_without_repair(
    tmp_path: Path,
    aiohttp_client,
    figures,  # type: ignore[no-untyped-def]
) -> None:
    with tmpfs(tmp_path / "fs", "3m") as fs:
        data = fs / "node"
        token = await _new_node(data)
        headers = {"Authorization": f"Bearer {token}"}
        client = await aiohttp_client(make_app(load_node_config(data, {}), lookup_iterations=FAST_LOOKUP))
        filler = fs / "filler"
        free = shutil.disk_usage(fs).free
        filler.write_bytes(b"\0" * max(0, free - 400_000))
        created: list[str] = []
        refusals: dict[str, int] = {}
        for _ in range(2000):
            resp = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
            body = await resp.json()
            if resp.status == 201:
                created.append(body["code"])
                continue
            assert (resp.status, body["error"]) == (507, "disk_full"), body
            assert _vietnamese(body["message"]), body
            refusals[f"{resp.status} {body['error']}"] = refusals.get(f"{resp.status} {body['error']}", 0) + 1
            if len(refusals) and sum(refusals.values()) >= 3:
                break
        assert refusals, "the disk never filled up"
        checker = NodeChecker(data, NODE)
        state = await checker.check(full=True)  # while the node still runs: integrity and chain hold
        assert set(created) <= state.dossiers and len(state.dossiers) == len(created)
        filler.unlink()  # free space: the same running node takes intakes again, no repair step
        resp = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
        assert resp.status == 201, await resp.text()
        created.append((await resp.json())["code"])
        ready = await (await client.get("/readyz")).json()
        # the database takes writes again; the small test filesystem stays under the free-space floor
        assert ready["checks"]["db_writable"] == "ok" and ready["checks"]["migrations"] == "ok", ready
        assert set(ready["failed"]) <= {"disk_free"}, ready
        await client.close()
        state = await checker.check(full=True)
        assert set(created) == state.dossiers
        figures("D5 database disk full", intakes_before_full=len(created) - 1, refusals=refusals)


# -- EIO from fdatasync on the database (LD_PRELOAD shim, real process) ---------------------------------


def _spawn_with_shim(
    data: Path, shim: Path, ctl: Path, port: int, log: Path, extra_env: dict[str, str] | None = None
) -> ServerProc:
    import subprocess
    import sys

    env = dict(os.environ, LD_PRELOAD=str(shim), SYNCFAULT_CTL=str(ctl), SYNCFAULT_MATCH="node.sqlite3")
    env.update(extra_env or {})
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "node", "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    return ServerProc(popen.pid, port, log, popen)


async def _post(session: aiohttp.ClientSession, url: str, token: str, key: str) -> tuple[int, dict[str, Any]]:
    async with session.post(
        url + "/api/v1/dossiers",
        data=json.dumps(reception(note=key)),
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        },
    ) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("mode", ["transient", "persistent"])
async def test_fsync_eio_on_the_database_is_fail_stop(tmp_path: Path, mode: str, figures) -> None:  # type: ignore[no-untyped-def]
    """EIO on ``fdatasync`` at an intake's commit (real ``motcua-node serve``, LD_PRELOAD shim): the
    answer is 503 ``storage_failed`` (Vietnamese, "not confirmed": never "does not exist"), the process
    exits with EXIT_STORAGE_FAILED without another fsync on the database (no retry, no checkpoint), and
    after a restart the chain verifies, integrity_check is ok and the failed intake is either whole or
    absent; a resend with its Idempotency-Key gives exactly one dossier."""
    import socket

    from node.service import EXIT_STORAGE_FAILED

    shim = build_shim(tmp_path)
    data = tmp_path / "node"
    token = await _new_node(data)
    ctl = tmp_path / "syncfault.ctl"
    port = free_port()
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # a fake systemd: what it is told
    systemd.bind(str(tmp_path / "notify.sock"))
    systemd.setblocking(False)
    notify_env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    proc = _spawn_with_shim(data, shim, ctl, port, tmp_path / "node.log", notify_env)
    acked: dict[str, str] = {}
    try:
        await wait_serving(proc)
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                key = uuid.uuid4().hex
                status, body = await _post(session, proc.url, token, key)
                assert status == 201, body
                acked[key] = body["code"]
            ctl.write_text("t" if mode == "transient" else "p")
            failed = uuid.uuid4().hex
            status, body = await _post(session, proc.url, token, failed)
            # never a 201, never retried to "success"
            assert (status, body["error"]) == (503, "storage_failed"), (status, body)
            assert _vietnamese(body["message"]) and "chưa được xác nhận" in body["message"], body
            assert "kiểm tra danh sách hồ sơ" in body["message"] and "không tồn tại" not in body["message"]
        assert proc.popen is not None
        code = proc.popen.wait(timeout=15)  # fail-stop: the node exits by itself for systemd to restart it
        assert code == EXIT_STORAGE_FAILED, (code, proc.log.read_text(errors="replace")[-2000:])
        eio_calls = len((tmp_path / "syncfault.ctl.log").read_text().splitlines())
        assert eio_calls == 1, "an fsync on the database ran again after the failed one"
    finally:
        if proc.alive():
            proc.kill()
        messages = []
        while True:
            try:
                messages.append(systemd.recv(4096).decode())
            except BlockingIOError:
                break
        systemd.close()
    failing = "STATUS=Lỗi ghi ổ đĩa, đang khởi động lại"
    failed_at = [i for i, m in enumerate(messages) if m.startswith(failing)]
    assert failed_at, messages
    assert "WATCHDOG=1" not in messages[failed_at[0] :], messages  # no ping once the store failed
    assert not any("STOPPING=1" in m for m in messages), messages  # a crash for systemd, not a stop
    ctl.unlink(missing_ok=True)
    checker = NodeChecker(data, NODE)
    state = await checker.check(full=True)  # integrity_check, chain from genesis, projections refold
    lost = {k: c for k, c in acked.items() if state.by_key.get(k) != c}
    assert not lost, lost
    present = failed in state.by_key
    assert len(state.dossiers) == len(state.by_key) == len(acked) + present  # whole or absent
    proc = _spawn_with_shim(data, shim, ctl, port, tmp_path / "node.log")  # systemd's restart
    try:
        await wait_serving(proc)
        async with aiohttp.ClientSession() as session:
            async with session.get(proc.url + "/readyz") as resp:
                assert resp.status == 200, await resp.text()
            status, body = await _post(session, proc.url, token, failed)
            assert status == (200 if present else 201), body
    finally:
        proc.stop()
    state = await checker.check(full=True)
    assert len(state.dossiers) == len(state.by_key) == len(acked) + 1
    figures(f"D4 fdatasync EIO fail-stop ({mode})", failed_requests=1, eio_calls=eio_calls,
            exit_code=code, failed_present_after_restart=int(present), acked_lost=0)  # fmt: skip


async def test_hub_fsync_eio_is_fail_stop(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    """The hub under the same rule: EIO on fdatasync during a push (real ``motcua-central serve``) is
    503 ``storage_failed``, the hub exits with EXIT_STORAGE_FAILED without another fsync, and after a
    restart the database checks out and the resent push is acknowledged exactly once."""
    import subprocess
    import sys

    from central.service import EXIT_STORAGE_FAILED
    from protocol import Receipt
    from tests.reliability.hubsim import HubNode, check_hub_db, new_hub
    from tests.reliability.procs import ROOT

    shim = build_shim(tmp_path)
    sim = HubNode("CN01")
    data = tmp_path / "hub"
    hub_key = await new_hub(data, [sim])
    ctl = tmp_path / "syncfault.ctl"
    port = free_port()

    def spawn() -> ServerProc:
        env = dict(os.environ, LD_PRELOAD=str(shim), SYNCFAULT_CTL=str(ctl), SYNCFAULT_MATCH="hub.sqlite3")
        with (tmp_path / "hub.log").open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "central", "--data", str(data), "serve",
                 "--listen", f"127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            )  # fmt: skip
        return ServerProc(popen.pid, port, tmp_path / "hub.log", popen)

    proc = spawn()
    try:
        await wait_serving(proc)
        async with aiohttp.ClientSession() as session:
            status, body = await sim.push(session, proc.url, 1, 5)
            assert status == 200, body
            sim.receipts.append(Receipt.from_wire(body["receipt"]))
            ctl.write_text("p")
            status, body = await sim.push(session, proc.url, 6, 8)
            assert (status, body["error"]) == (503, "storage_failed"), (status, body)
        assert proc.popen is not None
        code = proc.popen.wait(timeout=15)
        assert code == EXIT_STORAGE_FAILED, (code, proc.log.read_text(errors="replace")[-2000:])
        eio_calls = len((tmp_path / "syncfault.ctl.log").read_text().splitlines())
        assert eio_calls == 1, "an fsync on the hub database ran again after the failed one"
    finally:
        if proc.alive():
            proc.kill()
    ctl.unlink()
    held = check_hub_db(data / "hub.sqlite3", [sim], hub_key)["CN01"]
    assert held in (5, 8), held  # the failed push whole or absent
    proc = spawn()
    try:
        await wait_serving(proc)
        async with aiohttp.ClientSession() as session:
            status, body = await sim.push(session, proc.url, 6, 8)
            assert status == 200, body
            sim.receipts.append(Receipt.from_wire(body["receipt"]))
    finally:
        proc.stop()
    assert check_hub_db(data / "hub.sqlite3", [sim], hub_key)["CN01"] == 8
    done = subprocess.run(
        [sys.executable, "-m", "central", "--data", str(data), "verify", "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures("D4 hub fdatasync EIO fail-stop", eio_calls=eio_calls, exit_code=code,
            failed_push_present_after_restart=int(held == 8))  # fmt: skip


# -- enumerated faults on the scan ingest path (FileOps seam) -------------------------------------------


class CountingOps:
    """FileOps whose ``n``-th call of ``which`` fails with ``err``; counts every call."""

    def __init__(self, which: str, n: int, err: int) -> None:
        self.which, self.n, self.err = which, n, err
        self.calls = {"write": 0, "fsync": 0, "replace": 0}
        self.failed = False
        self.after_failure: list[str] = []

    def _hook(self, name: str) -> None:
        if self.failed:
            self.after_failure.append(name)
        self.calls[name] += 1
        if name == self.which and self.calls[name] == self.n:
            self.failed = True
            raise OSError(self.err, os.strerror(self.err))

    def ops(self) -> FileOps:
        def write(fd: int, view: memoryview) -> int:
            self._hook("write")
            return os.write(fd, view)

        def fsync(fd: int) -> None:
            self._hook("fsync")
            os.fsync(fd)

        def replace(a: str, b: str) -> None:
            self._hook("replace")
            os.replace(a, b)

        return FileOps(write=write, fsync=fsync, replace=replace, free_bytes=lambda p: 1 << 40)


async def _reset(db) -> None:  # type: ignore[no-untyped-def]
    for table in ("unassigned_scans", "scans", "blob_links", "blobs"):
        await db.execute(f"DELETE FROM {table}")


async def _one_fault(db, writer, state: Path, name: str, payload: bytes, counting: CountingOps) -> str | None:  # type: ignore[no-untyped-def]
    """Ingest one scan with ``counting``'s fault; None when the fault point lies past the last call."""
    folder = state / "in"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(payload)
    BlobStore(state, keyring=keyring(state))  # its folders exist: the faults hit the write path only
    outcome = await ScanIntake(BlobStore(state, keyring=keyring(state), ops=counting.ops()), writer).process(
        folder / name, scanner="s1", desk="q1"
    )
    if not counting.failed:
        assert isinstance(outcome, Registered), outcome
        await _reset(db)
        return None
    assert isinstance(outcome, Deferred) and _vietnamese(outcome.message), outcome
    assert "fsync" not in counting.after_failure, "an fsync ran again after a failure"
    (count,) = await (await db.execute("SELECT count(*) FROM blobs")).fetchone()
    assert count == 0, "a blob was registered after a failed write"
    assert not list((state / "blobs" / "tmp").iterdir()), "a temp file was left"
    assert (folder / name).read_bytes() == payload, "the scanner's file was touched"
    healed = await ScanIntake(BlobStore(state, keyring=keyring(state)), writer).process(
        folder / name, scanner="s1", desk="q1"
    )
    assert isinstance(healed, Registered) and not (folder / name).exists(), healed  # no manual repair
    await _reset(db)
    return outcome.code


async def test_scan_ingest_fault_sweep(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    """Fail the 1st, 2nd, ... write / fsync / rename of the blob path (EIO, then ENOSPC) until the
    fault point lies past the last call, like SQLite's faultsim loop; every run must defer cleanly."""
    from tests.node.conftest import make_writer, open_db

    db = await open_db(tmp_path / "node.sqlite3")
    writer = make_writer(db)
    scans = {"a.pdf": make_pdf(3, "sweep"), "b.jpg": make_image("JPEG", seed=4)}
    outcomes: dict[str, int] = {}
    runs = 0
    try:
        for name, payload in scans.items():
            for which in ("write", "fsync", "replace"):
                for err in (errno.EIO, errno.ENOSPC):
                    for n in range(1, 50):
                        runs += 1
                        code = await _one_fault(
                            db, writer, tmp_path / f"s-{runs}", name, payload, CountingOps(which, n, err)
                        )
                        if code is None:
                            break
                        if err == errno.ENOSPC:
                            assert code == "disk_full"
                        key = f"{which} {errno.errorcode[err]} -> {code}"
                        outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        await db.close()
    figures("D4 scan ingest fault sweep", runs=runs, failures=sum(outcomes.values()), outcomes=outcomes)


# -- ENOSPC on the hub's database ------------------------------------------------------------------------


async def test_hub_disk_full_refuses_with_507_and_recovers(tmp_path: Path, aiohttp_client, figures) -> None:  # type: ignore[no-untyped-def]
    from central.app import make_app as make_hub_app
    from tests.central.helpers import SimNode, hub_clock, hub_of, make_hub_dir

    with tmpfs(tmp_path / "fs", "3m") as fs:
        config = make_hub_dir(fs / "hub")
        client = await aiohttp_client(make_hub_app(config, clock=hub_clock))
        sim = SimNode(client, "CN01")
        await sim.enroll(hub_of(client))
        filler = fs / "filler"
        filler.write_bytes(b"\0" * max(0, shutil.disk_usage(fs).free - 300_000))
        held, refusals = 0, {}
        for _ in range(500):
            sim.notes(20)
            status, body = await sim.push(sim.entries[held:])
            if status == 200:
                held = body["receipt"]["seq"]
                continue
            refusals[f"{status} {body['error']}"] = refusals.get(f"{status} {body['error']}", 0) + 1
            assert (status, body["error"]) == (507, "disk_full"), body
            if sum(refusals.values()) >= 3:
                break
        assert refusals, "the hub's disk never filled up"
        assert await hub_of(client).store.entries("CN01", 1, 0, 100_000) == [
            e.raw for e in sim.entries[:held]
        ]
        filler.unlink()
        status, body = await sim.push(sim.entries[held:])
        assert status == 200, body
        figures("D5 hub database disk full", entries_before_full=held, refusals=refusals)
