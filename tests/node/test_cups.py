"""Printing through a real, private cupsd: a raw queue sends the job to a TCP listener on 127.0.0.1.

Each module run starts its own cupsd (unix socket only, state under a fresh /tmp dir), so it never
touches the system's CUPS and parallel workers do not collide.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node.blobs import BlobStore, register_blob
from node.cups import printer_status
from node.forms import render
from node.printing import PrinterConfig, PrintWorker, enqueue, get_job
from tests.node.test_forms import receipt
from tests.tools import in_ci, require

pytestmark = [pytest.mark.cups, pytest.mark.xdist_group("cups")]
QUEUE = "motcua-test"

CUPSD_CONF = """\
Listen {root}/cups.sock
LogLevel warn
WebInterface No
Browsing No
DefaultAuthType None
MaxJobTime 60
<Location />
  Order allow,deny
  Allow all
</Location>
<Location /admin>
  Order allow,deny
  Allow all
</Location>
<Policy default>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
"""
CUPS_FILES_CONF = """\
ServerRoot {root}
RequestRoot {root}/spool
CacheDir {root}/cache
StateDir {root}/state
TempDir {root}/spool/tmp
AccessLog {root}/access_log
ErrorLog {root}/error_log
PageLog {root}/page_log
ServerBin /usr/lib/cups
DataDir /usr/share/cups
User lp
Group lp
SystemGroup root
FileDevice No
"""


def _run(*argv: str, server: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUPS_SERVER": server, "LC_ALL": "C"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def cupsd() -> Iterator[str]:
    """Start a private cupsd; yields its CUPS_SERVER value (the socket path)."""
    exe = require("/usr/sbin/cupsd")
    for tool in ("lpadmin", "lp", "lpstat", "cupsenable", "cupsdisable"):
        require(tool)
    if not os.path.exists("/usr/lib/cups/backend/socket"):
        (pytest.fail if in_ci() else pytest.skip)("the cups package (socket backend) is not installed")
    root = Path(tempfile.mkdtemp(prefix="motcua-cups-", dir="/tmp"))
    for sub in ("spool/tmp", "cache", "state", "ppd"):
        (root / sub).mkdir(parents=True)
    (root / "cupsd.conf").write_text(CUPSD_CONF.format(root=root))
    (root / "cups-files.conf").write_text(CUPS_FILES_CONF.format(root=root))
    subprocess.run(["chgrp", "-R", "lp", str(root)], check=True)
    subprocess.run(["chmod", "-R", "g+rwX,o-rwx", str(root)], check=True)
    proc = subprocess.Popen(
        [exe, "-f", "-c", str(root / "cupsd.conf"), "-s", str(root / "cups-files.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = str(root / "cups.sock")
    try:
        deadline = time.monotonic() + 15
        while "is running" not in _run("lpstat", "-r", server=server).stdout:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (root / "error_log").read_text() if (root / "error_log").exists() else ""
                pytest.fail(f"cupsd did not start: {log[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


class Listener:
    """A tiny AppSocket/JetDirect printer: each connection's bytes are one captured job."""

    def __init__(self) -> None:
        self.jobs: asyncio.Queue[bytes] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.close()
        await self.jobs.put(data)


@pytest.fixture
async def printer(cupsd: str) -> AsyncIterator[tuple[PrinterConfig, Listener]]:
    listener = Listener()
    await listener.start()
    done = _run("lpadmin", "-p", QUEUE, "-v", f"socket://127.0.0.1:{listener.port}", "-E", server=cupsd)
    assert done.returncode == 0, done.stderr
    _run("cupsenable", QUEUE, server=cupsd)
    yield PrinterConfig("quay-1", queue=QUEUE, cups_server=cupsd), listener
    _run("cancel", "-a", QUEUE, server=cupsd)
    assert listener.server is not None
    listener.server.close()


async def _receipt_job(store: BlobStore, writer, key: str) -> tuple[bytes, int]:
    pdf = render("receipt", receipt())
    staged = await asyncio.to_thread(store.stage_bytes, pdf)
    async with writer() as db:  # the dossier transaction: blob + print job together
        await register_blob(db, staged, media_type="application/pdf", pages=2, display_name="bien-nhan.pdf")
        job = await enqueue(
            db,
            idempotency_key=key,
            printer="quay-1",
            form="receipt",
            pdf_sha256=staged.sha256,
            dossier_code=receipt().dossier_code,
            title="Biên nhận 000.00.17.H26-261122-0001",
        )
    return pdf, job.id


async def _until_printed(worker: PrintWorker, db, job_id: int, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await get_job(db, job_id)).status != "printed":
        assert loop.time() < deadline, await get_job(db, job_id)
        await asyncio.sleep(0.2)
        await worker.run_once()


async def test_receipt_reaches_the_printer_byte_for_byte(printer, store: BlobStore, writer, db) -> None:
    config, listener = printer
    pdf, job_id = await _receipt_job(store, writer, "receipt:1")
    worker = PrintWorker(writer, {"quay-1": config}, store)
    await worker.run_once()
    job = await get_job(db, job_id)
    assert job.status in ("submitted", "printed") and job.cups_job and job.cups_job.startswith(f"{QUEUE}-")
    captured = await asyncio.wait_for(listener.jobs.get(), 30)
    assert captured == pdf
    await _until_printed(worker, db, job_id)


async def test_stopped_queue_holds_the_job_until_enabled(printer, cupsd: str, store, writer, db) -> None:
    config, listener = printer
    assert _run("cupsdisable", "-r", "Hết giấy", QUEUE, server=cupsd).returncode == 0
    pdf, job_id = await _receipt_job(store, writer, "receipt:2")
    worker = PrintWorker(writer, {"quay-1": config}, store)
    await worker.run_once()
    assert (await get_job(db, job_id)).status == "submitted"
    status = await worker.printer_status("quay-1")
    assert status.state == "stopped" and status.waiting_jobs == 1, status
    assert "tạm dừng" in status.message and "Hết giấy" in status.message
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(listener.jobs.get(), 1.0)
    await worker.run_once()
    assert (await get_job(db, job_id)).status == "submitted"  # still waiting in CUPS' spool

    assert _run("cupsenable", QUEUE, server=cupsd).returncode == 0
    assert await asyncio.wait_for(listener.jobs.get(), 30) == pdf
    await _until_printed(worker, db, job_id)
    assert (await worker.printer_status("quay-1")).state in ("ready", "printing")


async def test_unknown_queue_is_reported_in_vietnamese(cupsd: str, store, writer, db) -> None:
    status = await printer_status("quay-9", "khong-ton-tai", cupsd)
    assert status.state == "missing" and "Không tìm thấy hàng đợi in" in status.message
    config = PrinterConfig("quay-1", queue="khong-ton-tai", cups_server=cupsd)
    _, job_id = await _receipt_job(store, writer, "receipt:3")
    await PrintWorker(writer, {"quay-1": config}, store).run_once()
    job = await get_job(db, job_id)
    assert (
        job.status == "queued"
        and job.attempts == 1
        and "Không tìm thấy hàng đợi in" in (job.last_error or "")
    )
