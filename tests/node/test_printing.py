"""Print queue semantics without a printer: idempotency, folder printers, retries with backoff, failures."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from node.blobs import BlobStore, register_blob
from node.printing import PrinterConfig, PrintWorker, cancel, enqueue, get_job, list_jobs, reprint, retry
from tests.node.samples import make_pdf
from tests.tools import require


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_000_000.0

    def __call__(self) -> float:
        return self.now


async def stage_pdf(store: BlobStore, writer, data: bytes) -> str:
    staged = store.stage_bytes(data)
    async with writer() as db:
        await register_blob(db, staged, media_type="application/pdf", pages=1, display_name="bien-nhan.pdf")
    return staged.sha256


async def test_enqueue_is_idempotent_and_shares_the_dossier_transaction(
    db: aiosqlite.Connection, writer
) -> None:
    await db.execute("CREATE TABLE dossiers (code TEXT PRIMARY KEY)")

    async def create_dossier(code: str) -> int:
        async with writer() as conn:
            await conn.execute("INSERT OR IGNORE INTO dossiers VALUES (?)", (code,))
            job = await enqueue(conn, idempotency_key=f"receipt:{code}", printer="quay-1", form="receipt",
                                pdf_path="/srv/x.pdf", dossier_code=code)  # fmt: skip
        return job.id

    first = await create_dossier("H26-0001")
    assert await create_dossier("H26-0001") == first  # double click: same job, one dossier
    with pytest.raises(RuntimeError):
        async with writer() as conn:
            await conn.execute("INSERT INTO dossiers VALUES ('H26-0002')")
            await enqueue(conn, idempotency_key="receipt:H26-0002", printer="quay-1", form="receipt",
                          pdf_path="/srv/y.pdf", dossier_code="H26-0002")  # fmt: skip
            raise RuntimeError("the dossier transaction failed")
    async with db.execute("SELECT count(*) FROM dossiers") as cur:
        assert (await cur.fetchone())[0] == 1
    assert [j.dossier_code for j in await list_jobs(db)] == ["H26-0001"]
    with pytest.raises(ValueError):
        async with writer() as conn:
            await enqueue(conn, idempotency_key="k", printer="p", form="receipt")


async def test_folder_printer_writes_copies_atomically(tmp_path: Path, store: BlobStore, writer, db) -> None:
    data = make_pdf(2, "receipt")
    sha = await stage_pdf(store, writer, data)
    out = tmp_path / "printer-out"
    printer = PrinterConfig("quay-1", kind="folder", folder=out)
    printer.validate()
    async with writer() as conn:
        job = await enqueue(conn, idempotency_key="receipt:X", printer="quay-1", form="receipt",
                            pdf_sha256=sha,
                            copies=2, dossier_code="000.00.17.H26-261122-0001")  # fmt: skip
    worker = PrintWorker(writer, {"quay-1": printer}, store)
    assert await worker.run_once() == 1
    done = await get_job(db, job.id)
    assert (done.status, done.attempts, done.last_error) == ("printed", 1, None)
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"job{job.id:06d}-000.00.17.H26-261122-0001-{k}.pdf" for k in (1, 2)]
    assert all(f.read_bytes() == data for f in files)
    status = await worker.printer_status("quay-1")
    assert status.state == "ready" and status.waiting_jobs == 2
    assert await worker.run_once() == 0


async def test_unreachable_cups_retries_with_backoff_then_fails(tmp_path: Path, store, writer, db) -> None:
    require("lp")
    sha = await stage_pdf(store, writer, make_pdf(1))
    clock = Clock()
    printer = PrinterConfig("quay-2", queue="khong-co", cups_server=str(tmp_path / "no-cupsd.sock"))
    worker = PrintWorker(writer, {"quay-2": printer}, store, max_attempts=3, backoff_base=10, clock=clock)
    async with writer() as conn:
        job = await enqueue(conn, idempotency_key="receipt:Y", printer="quay-2", form="receipt",
                            pdf_sha256=sha,
                            now_ms=int(clock.now * 1000))  # fmt: skip
    assert await worker.run_once() == 1
    j = await get_job(db, job.id)
    assert (j.status, j.attempts) == ("queued", 1)
    assert j.next_attempt_at == int(clock.now * 1000) + 10_000
    assert "CUPS" in (j.last_error or "")
    assert await worker.run_once() == 0  # not due yet
    clock.now += 10
    await worker.run_once()
    j = await get_job(db, job.id)
    assert (j.attempts, j.next_attempt_at) == (2, int(clock.now * 1000) + 20_000)
    clock.now += 20
    await worker.run_once()
    j = await get_job(db, job.id)
    assert (j.status, j.attempts) == ("failed", 3)
    status = await worker.printer_status("quay-2")
    assert status.state == "unreachable" and "CUPS" in status.message

    # The printers page offers: retry (fresh attempts), reprint (new job, once per click), cancel.
    async with writer() as conn:
        assert (await retry(conn, job.id)).status == "queued"
        again = await reprint(conn, job.id, request_key="click-1")
        assert (await reprint(conn, job.id, request_key="click-1")).id == again.id
        assert again.reprint_of == job.id and again.pdf_sha256 == sha
        assert (await cancel(conn, again.id)).status == "cancelled"
    assert len(await list_jobs(db)) == 2


async def test_missing_or_corrupt_pdf_fails_without_retry(
    store: BlobStore, writer, db, tmp_path: Path
) -> None:
    sha = await stage_pdf(store, writer, make_pdf(1, "c"))
    store.path_for(sha).write_bytes(b"%PDF-1.4 damaged")
    printer = PrinterConfig("p", kind="folder", folder=tmp_path / "out")
    async with writer() as conn:
        bad = await enqueue(conn, idempotency_key="a", printer="p", form="receipt", pdf_sha256=sha)
        lost = await enqueue(
            conn, idempotency_key="b", printer="p", form="receipt", pdf_path="/nonexistent.pdf"
        )
        nowhere = await enqueue(conn, idempotency_key="c", printer="ghost", form="receipt", pdf_path="/x.pdf")
    await PrintWorker(writer, {"p": printer}, store).run_once()
    for job_id in (bad.id, lost.id, nowhere.id):
        job = await get_job(db, job_id)
        assert job.status == "failed" and job.attempts == 1 and job.last_error, job
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_printer_config_validation() -> None:
    PrinterConfig("a", queue="HP_LaserJet-4").validate()
    for bad in (
        PrinterConfig("a", queue="bad queue; rm -rf /"),
        PrinterConfig("a", kind="folder", folder=Path("relative")),
        PrinterConfig(" ", queue="q"),
    ):
        with pytest.raises(ValueError):
            bad.validate()
