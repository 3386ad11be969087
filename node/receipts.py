"""Printed forms of a dossier: the Mẫu 01 receipt at intake, and the other forms from the dossier page.

At intake (``Desk.receive``, through the ``ReceiptHook`` seam) the receipt is rendered and its PDF staged
durably in the blob store *before* the dossier's transaction (``prepare``); inside that transaction the
blob is registered and the print job queued with the key ``receipt:<code>`` (``commit``); the worker is
woken after the commit (``committed``). A double submit replays the first dossier and never reaches
``prepare``; the key makes a second job impossible anyway. A receipt that cannot be rendered or staged
(a bug, a full disk) does not stop the reception: it is logged, and the dossier page offers to print it.

The receipt carries the plain lookup code, which exists only on paper and in ``lookup_codes`` (for
reprints); the log holds its PBKDF2 hash. The receipt PDF is a local blob, never named by an entry, so it
is never sent to the hub.

Other forms (supplement request, refusal, apology, result return slip) are printed on demand with a
per-click request key (``<form>:<code>:<key>``): a double click queues one job.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from node.blobs import BlobStore, StagedBlob, register_blob
from node.config import NodeConfig
from node.errors import Conflict, InvalidInput, NodeError, NotFound, PrinterNotConfigured
from node.forms import (
    Agency,
    ApologyData,
    Applicant,
    DocumentItem,
    Fee,
    ReceiptData,
    RefusalData,
    ResultReturnData,
    SupplementItem,
    SupplementRequestData,
    render,
)
from node.forms.data import VN_TZ
from node.printing import PrintJob, enqueue, get_job
from node.store import Store
from protocol.catalog import Catalog, Procedure
from protocol.deadline import TimeUnit
from protocol.dossier.codes import format_lookup_code, is_dossier_code
from protocol.entry import Entry
from protocol.errors import ProtocolError

__all__ = ["FORM_LABELS", "PreparedReceipt", "Receipts", "available_forms", "receipt_data"]

log = logging.getLogger(__name__)

FORM_LABELS = {
    "receipt": "Giấy tiếp nhận hồ sơ và hẹn trả kết quả",
    "supplement_request": "Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ",
    "refusal": "Phiếu từ chối tiếp nhận giải quyết hồ sơ",
    "apology": "Văn bản xin lỗi và hẹn lại ngày trả kết quả",
    "result_return": "Phiếu trả kết quả giải quyết hồ sơ",
}
_UNITS = {
    TimeUnit.WORKING_DAYS: "ngày làm việc",
    TimeUnit.CALENDAR_DAYS: "ngày",
    TimeUnit.HOURS: "giờ làm việc",
    TimeUnit.SAME_DAY: "ngày (trả kết quả trong ngày)",
}


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, VN_TZ)


def _agency(config: NodeConfig) -> Agency:
    return Agency(
        parent=config.agency or config.name,
        unit=config.reception_unit,
        place=config.place,
        hotline=config.hotline,
    )


def _applicant(data: Mapping[str, Any]) -> Applicant:
    a = data.get("applicant") or {}
    return Applicant(
        name=str(a.get("name") or ""),
        address=str(a.get("address") or ""),
        phone=str(a.get("phone") or ""),
        email=str(a.get("email") or ""),
        id_number=str(a.get("id_number") or ""),
    )


def _procedure(catalog: Catalog, data: Mapping[str, Any]) -> Procedure | None:
    ref = data.get("procedure") or {}
    try:
        return catalog.version_of(str(ref.get("code")), str(ref.get("version")))
    except (ProtocolError, KeyError, ValueError):
        return None


def receipt_data(
    config: NodeConfig,
    code: str,
    data: Mapping[str, Any],
    procedure: Procedure | None,
    *,
    lookup_code: str,
    receiver_name: str,
) -> ReceiptData:
    """Mẫu 01 from a ``dossier.received`` body or the folded state (same keys), plus what is not in it."""
    register = data.get("register") or {}
    fee = int(data.get("fee") or 0)
    time = procedure.time if procedure is not None else None
    return ReceiptData(
        agency=_agency(config),
        number=f"{register.get('line', '')}/TNHS" if register.get("line") else "",
        dossier_code=code,
        procedure_name=procedure.name
        if procedure is not None
        else str((data.get("procedure") or {}).get("code")),
        applicant=_applicant(data),
        documents=tuple(
            DocumentItem(
                str(d["name"]), "Bản chính" if d.get("form") == "original" else "Bản sao", int(d["count"])
            )
            for d in data.get("documents") or ()
        ),
        received_at=_dt(int(data["received_at"])),
        due_at=_dt(int(data["due_at"])),
        processing_days=time.value if time is not None else 0,
        processing_unit=_UNITS.get(time.unit, "ngày làm việc") if time is not None else "ngày làm việc",
        return_place=f"Bộ phận Tiếp nhận và Trả kết quả, {config.name}",
        register_book=str(register.get("book", "")),
        register_line=str(register.get("line", "")),
        receiver_name=receiver_name,
        lookup_code=lookup_code,
        tracking_url=config.tracking_url,
        # not recorded (entries before ``fee_paid``): as those receipts were printed
        fee=Fee(fee, paid=data.get("fee_paid") is not False) if fee else None,
    )


def available_forms(state: Mapping[str, Any], *, has_lookup: bool) -> list[str]:
    """The forms that can be printed for a dossier in this state (those whose data exists)."""
    forms = []
    if state.get("received_at") and state.get("due_at") and state.get("register") and has_lookup:
        forms.append("receipt")
    if state.get("supplement_requests"):
        forms.append("supplement_request")
    if state.get("refusal_reason"):
        forms.append("refusal")
    if state.get("apologies"):
        forms.append("apology")
    if state.get("returned"):
        forms.append("result_return")
    return forms


@dataclass(frozen=True, slots=True)
class PreparedReceipt:
    """A rendered receipt whose PDF is durable in the blob store, waiting for the dossier's transaction."""

    code: str
    printer: str
    staged: StagedBlob
    title: str


class Receipts:
    """Renders and queues the dossier forms; the intake's ``ReceiptHook``."""

    def __init__(
        self,
        config: NodeConfig,
        store: Store,
        blobs: BlobStore,
        catalog: Catalog,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.store = store
        self.blobs = blobs
        self.catalog = catalog
        self.wake = wake

    # -- which printer -----------------------------------------------------------------------------

    def printer_for(self, desk: str | None) -> str | None:
        """The desk's receipt printer, else ``receipt_printer``, else the first printer; None if none."""
        by_desk = dict(self.config.receipt_printers)
        if desk and desk in by_desk:
            return by_desk[desk]
        if self.config.receipt_printer:
            return self.config.receipt_printer
        return self.config.printers[0].name if self.config.printers else None

    async def _display_name(self, actor: str) -> str:
        row = await self.store.fetchone("SELECT display_name FROM users WHERE username = ?", (actor,))
        return str(row[0]) if row is not None else actor

    async def _stage(self, form: str, data: Any) -> StagedBlob:
        def work() -> StagedBlob:
            return self.blobs.stage_bytes(render(form, data))

        return await asyncio.to_thread(work)

    # -- intake hook -------------------------------------------------------------------------------

    async def prepare(
        self, body: Mapping[str, Any], lookup: str, procedure: Procedure, actor: str, desk: str | None
    ) -> PreparedReceipt | None:
        """Render and stage the receipt of a dossier about to be recorded; None when it cannot be."""
        printer = self.printer_for(desk)
        if printer is None:
            return None
        code = str(body["dossier"])
        try:
            data = receipt_data(
                self.config,
                code,
                body,
                procedure,
                lookup_code=format_lookup_code(lookup),
                receiver_name=await self._display_name(actor),
            )
            staged = await self._stage("receipt", data)
        except Exception:
            log.exception("receipt of %s not prepared; the dossier page offers to print it", code)
            return None
        return PreparedReceipt(code, printer, staged, f"Giấy tiếp nhận {code}")

    async def commit(self, db: aiosqlite.Connection, prepared: PreparedReceipt) -> PrintJob:
        """Inside the dossier's transaction: register the PDF and queue the job (``receipt:<code>``)."""
        await register_blob(
            db,
            prepared.staged,
            media_type="application/pdf",
            pages=None,
            display_name=f"{prepared.code}-tn.pdf",
        )
        return await enqueue(
            db,
            idempotency_key=f"receipt:{prepared.code}",
            printer=prepared.printer,
            form="receipt",
            pdf_sha256=prepared.staged.sha256,
            dossier_code=prepared.code,
            title=prepared.title,
        )

    def committed(self, prepared: PreparedReceipt) -> None:
        """After the commit: let the print worker pick the job up now."""
        self.wake()

    # -- forms from the dossier page ---------------------------------------------------------------

    async def print_form(
        self, code: str, form: str, *, actor: str, request_key: str, desk: str | None = None
    ) -> PrintJob:
        """Render ``form`` for dossier ``code`` and queue it; the same ``request_key`` never queues twice."""
        if form not in FORM_LABELS or not is_dossier_code(code):
            raise NotFound("Không có mẫu in hoặc hồ sơ này.")
        if not 8 <= len(request_key) <= 128 or not request_key.isascii() or not request_key.isprintable():
            raise InvalidInput({"request": "Yêu cầu in không hợp lệ; vui lòng tải lại trang."})
        printer = self.printer_for(desk)
        if printer is None:
            raise PrinterNotConfigured("Máy trạm chưa có máy in nào (motcua-node printer add).")
        key = f"receipt:{code}" if form == "receipt" else f"{form}:{code}:{request_key}"
        existing = await self.store.fetchone("SELECT id FROM print_jobs WHERE idempotency_key = ?", (key,))
        if existing is not None:
            async with self.store.read() as db:
                return await get_job(db, int(existing[0]))
        data = await self._form_data(code, form, actor)
        try:
            staged = await self._stage(form, data)
        except NodeError:  # disk full, fsync: already a plain message
            raise
        except Exception as exc:
            log.exception("form %s of %s could not be rendered", form, code)
            raise NodeError(f"Không tạo được {FORM_LABELS[form].lower()}.", detail=repr(exc)) from exc
        async with self.store.write() as db:
            await register_blob(
                db, staged, media_type="application/pdf", pages=None, display_name=f"{code}-{form}.pdf"
            )
            job = await enqueue(
                db,
                idempotency_key=key,
                printer=printer,
                form=form,
                pdf_sha256=staged.sha256,
                dossier_code=code,
                title=f"{FORM_LABELS[form]} {code}",
            )
        self.wake()
        return job

    async def _form_data(self, code: str, form: str, actor: str) -> Any:
        async with self.store.read() as db:
            async with db.execute("SELECT state_json FROM dossiers WHERE code = ?", (code,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise NotFound(f"Không tìm thấy hồ sơ {code}.")
            state: dict[str, Any] = json.loads(row[0])
            async with db.execute("SELECT code FROM lookup_codes WHERE dossier = ?", (code,)) as cur:
                lookup = await cur.fetchone()
            supplement = await _latest(db, code, "dossier.supplement_requested")
        if form not in available_forms(state, has_lookup=lookup is not None):
            raise Conflict(f"Hồ sơ {code} chưa có dữ liệu để in “{FORM_LABELS[form].lower()}”.")
        procedure = _procedure(self.catalog, state)
        name = (
            procedure.name if procedure is not None else str((state.get("procedure") or {}).get("code", ""))
        )
        agency, applicant = _agency(self.config), _applicant(state)
        officer = await self._display_name(actor)
        if form == "receipt":
            assert lookup is not None
            created_by = await self.store.fetchone("SELECT created_by FROM dossiers WHERE code = ?", (code,))
            receiver = (
                await self._display_name(str(created_by[0])) if created_by and created_by[0] else officer
            )
            return receipt_data(
                self.config, code, state, procedure, lookup_code=format_lookup_code(str(lookup[0])),
                receiver_name=receiver,
            )  # fmt: skip
        if form == "supplement_request":
            assert supplement is not None
            body = supplement.body
            return SupplementRequestData(
                agency=agency,
                number="",
                dossier_code=code,
                procedure_name=name,
                applicant=applicant,
                items=tuple(
                    SupplementItem(str(i["name"]), str(i.get("reason") or "")) for i in body["items"]
                ),
                issued_at=_dt(supplement.time[0]),
                officer_name=await self._display_name(str(body.get("actor", actor))),
                contact_name=str(body.get("contact") or ""),
            )
        if form == "refusal":
            return RefusalData(
                agency=agency,
                number="",
                procedure_name=name,
                applicant=applicant,
                reason=str(state["refusal_reason"]),
                issued_at=_dt(int(state.get("ended_at") or state.get("received_at") or 0)),
                officer_name=officer,
                dossier_code=code,
            )
        if form == "apology":
            apology = state["apologies"][-1]
            return ApologyData(
                agency=agency,
                number="",
                dossier_code=code,
                procedure_name=name,
                applicant=applicant,
                received_at=_dt(int(state["received_at"])),
                original_due_at=_dt(int(state["due_at"])),
                new_due_at=_dt(int(apology["new_due_at"])),
                reason=str(apology["reason"]),
                issued_at=_dt(int(apology["at"])),
            )
        returned = state["returned"]
        result = state.get("result") or {}
        fee = returned.get("fee_collected")
        recipient = str((returned.get("recipient") or {}).get("name") or "")
        return ResultReturnData(
            agency=agency,
            number="",
            dossier_code=code,
            procedure_name=name,
            applicant=applicant,
            results=(
                DocumentItem(
                    "Kết quả giải quyết thủ tục hành chính"
                    + (f" (số {result['document_number']})" if result.get("document_number") else ""),
                ),
            ),
            due_at=_dt(int(state.get("promised_at") or state.get("adjusted_due_at") or state["due_at"])),
            returned_at=_dt(int(returned["at"])),
            officer_name=officer,
            recipient_name=recipient if recipient != applicant.name else "",
            fee=Fee(int(fee), paid=True) if fee else None,
        )


async def _latest(db: aiosqlite.Connection, code: str, kind: str) -> Entry | None:
    async with db.execute(
        "SELECT raw FROM entries WHERE dossier = ? AND kind = ? ORDER BY time_ms DESC, time_n DESC LIMIT 1",
        (code, kind),
    ) as cur:
        row = await cur.fetchone()
    return Entry.parse(bytes(row[0])) if row else None
