"""The officers' workspace (``/officer``): dossiers waiting for the officer's agency and the actions on them.

An officer with an agency sees only dossiers of that agency (the one a transfer named, else the one the
catalog gives the procedure); others get the same 404 as for a code that does not exist. Each action is
written by ``central.officers.record_action``: a signed hub entry in the receiving branch's mailbox,
forwarded to the pickup branch, durable before the page answers. Only actions valid in the dossier's
current state are offered and accepted, so a form cannot create a conflict.

The result file of ``result_ready`` is read from the multipart stream in chunks, counted against
``result_max_bytes`` (413 past it), and its type is taken from its content (PDF, JPEG, PNG, TIFF, with
their end markers: a truncated file is refused), never from the name or the declared type.
"""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web

from central import dossier_index as index
from central.admin_review import fold_dossier
from central.officers import record_action
from central.web import MULTIPART, WEB, PageError, need, render
from protocol import nfc
from protocol.dossier import ALLOWED, PROCESSING_STEPS, Kind, mask_id

__all__ = ["ACTION_KINDS", "routes", "sniff_media_type"]

routes = web.RouteTableDef()
OPEN_STATUSES = (2, 4, 5, 6, 7)
ACTION_KINDS = {
    "transfer": Kind.TRANSFERRED,
    "processing": Kind.PROCESSING,
    "request_supplement": Kind.SUPPLEMENT_REQUESTED,
    "result_ready": Kind.RESULT_READY,
    "refuse": Kind.RESULT_READY,
    "stop": Kind.STOPPED,
}
ACTION_LABELS = {
    "transfer": "Chuyển cơ quan giải quyết",
    "processing": "Cập nhật bước xử lý",
    "request_supplement": "Yêu cầu bổ sung",
    "result_ready": "Có kết quả (kèm tệp)",
    "refuse": "Từ chối giải quyết",
    "stop": "Dừng xử lý",
}
STEP_LABELS = {
    "processing": "Đang xử lý",
    "awaiting_signature": "Chờ ký duyệt",
    "awaiting_joint_step": "Chờ thực hiện liên thông",
    "joint_result_received": "Đã nhận kết quả liên thông",
}
MAX_FIELD = 4096


def sniff_media_type(data: bytes) -> str | None:
    """The media type by content, with the format's end marker present (a cut file is not accepted)."""
    if data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]:
        return "application/pdf"
    if data.startswith(b"\xff\xd8\xff") and data.rstrip(b"\x00\r\n").endswith(b"\xff\xd9"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[-12:-4] == b"\x00\x00\x00\x00IEND":
        return "image/png"
    if data[:4] in (b"II*\x00", b"MM\x00*") and len(data) > 8:
        return "image/tiff"
    return None


def allowed_actions(state: str) -> list[str]:
    from protocol.dossier import InternalState

    current = InternalState(state)
    return [a for a, kind in ACTION_KINDS.items() if current in ALLOWED[kind]]


async def _scoped(request: web.Request, code: str) -> tuple[Any, index.IndexRow]:
    session = need(request, "officer")
    row = await index.get(request.app[WEB].hub.store, code)
    if row is None or not index.agency_matches(session.user.agency, row.agency):
        raise PageError(404, "Không có hồ sơ này trong phạm vi của bạn.")
    return session, row


@routes.get("/officer")
async def workspace(request: web.Request) -> web.Response:
    session = need(request, "officer")
    ctx = request.app[WEB]
    marks = ",".join("?" * len(OPEN_STATUSES))
    rows = await index.rows(ctx.hub.store, f"status IN ({marks})", OPEN_STATUSES, limit=2000)
    mine = [r for r in rows if index.agency_matches(session.user.agency, r.agency)]
    return render(request, "officer_list.html", {"rows": mine, "now": ctx.hub.clock()})


@routes.get("/officer/dossiers/{code}")
async def dossier(request: web.Request) -> web.Response:
    session, row = await _scoped(request, request.match_info["code"])
    ctx = request.app[WEB]
    state = await fold_dossier(ctx.hub.store, row.code)
    if state is None:
        raise PageError(404, "Không có hồ sơ này trong phạm vi của bạn.")
    await ctx.audit(session.user.username, "view_dossier", row.code)
    applicant = state.applicant
    context = {
        "row": row,
        "s": state,
        "applicant_name": applicant.name if applicant else "—",
        "applicant_id": mask_id(applicant.id_number) if applicant else "—",
        "actions": [(a, ACTION_LABELS[a]) for a in allowed_actions(row.state)],
        "steps": [(s, STEP_LABELS[s]) for s in PROCESSING_STEPS],
        "now": ctx.hub.clock(),
        "done": request.query.get("done"),
    }
    return render(request, "officer_dossier.html", context)


async def _field(part: BodyPartReader) -> str:
    data = await part.read_chunk(MAX_FIELD + 1)
    if len(data) > MAX_FIELD or (await part.read_chunk(1)):
        raise PageError(413, "Một trường của biểu mẫu quá dài.")
    return nfc(data.decode("utf-8", "replace")).strip()


async def _multipart(request: web.Request, cap: int) -> tuple[dict[str, str], bytes | None]:
    """Fields (each at most 4 KiB) and the ``file`` part (at most ``cap`` bytes), streamed and counted."""
    reader = request.get(MULTIPART) or await request.multipart()
    assert isinstance(reader, MultipartReader)
    fields: dict[str, str] = {}
    data: bytes | None = None
    for _ in range(32):  # bounded number of parts
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise PageError(400, "Biểu mẫu không hợp lệ.")
        if part.name == "file":
            buf = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                buf += chunk
                if len(buf) > cap:
                    raise PageError(413, f"Tệp kết quả quá lớn (tối đa {cap // (1024 * 1024)} MB).")
            data = bytes(buf)
        elif part.name:
            fields[part.name] = await _field(part)
    else:
        raise PageError(400, "Biểu mẫu có quá nhiều trường.")
    return fields, data


def _required(form: dict[str, str], name: str, label: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise PageError(400, f"Cần nhập {label}.")
    return value


def _build(action: str, form: dict[str, str]) -> dict[str, Any]:
    note = form.get("note") or None
    fields: dict[str, Any] = {}
    if action == "transfer":
        fields["agency"] = _required(form, "agency", "cơ quan giải quyết")
    elif action == "processing":
        step = form.get("step", "")
        if step not in PROCESSING_STEPS:
            raise PageError(400, "Chọn bước xử lý.")
        fields["step"] = step
    elif action == "request_supplement":
        items = [line.strip() for line in _required(form, "items", "giấy tờ cần bổ sung").splitlines()]
        fields["items"] = [{"name": line[:300]} for line in items if line][:50]
    elif action == "result_ready":
        fields["outcome"] = "approved"
        if form.get("document_number"):
            fields["document_number"] = form["document_number"][:64]
    elif action in ("refuse", "stop"):
        fields["reason"] = _required(form, "reason", "lý do")
        if action == "stop" and form.get("notice_number"):
            fields["notice_number"] = form["notice_number"][:64]
    if note:
        fields["note"] = note
    return fields


@routes.post("/officer/dossiers/{code}/{action}")
async def act(request: web.Request) -> web.StreamResponse:
    session, row = await _scoped(request, request.match_info["code"])
    ctx = request.app[WEB]
    action = request.match_info["action"]
    if action not in ACTION_KINDS:
        raise PageError(404, "Không có thao tác này.")
    if action not in allowed_actions(row.state):
        raise PageError(409, "Thao tác này không hợp lệ ở trạng thái hiện tại của hồ sơ.")
    result = None
    if action == "result_ready":
        form, data = await _multipart(request, ctx.config.result_max_bytes)
        if not data:
            raise PageError(400, "Cần đính kèm tệp kết quả (PDF hoặc ảnh).")
        media_type = sniff_media_type(data)
        if media_type is None:
            raise PageError(415, "Tệp kết quả phải là PDF, JPEG, PNG hoặc TIFF hoàn chỉnh.")
        pages_text = form.get("pages", "1") or "1"
        if not pages_text.isdigit() or not 1 <= int(pages_text) <= 10_000:
            raise PageError(400, "Số trang không hợp lệ.")
        result = (data, media_type, int(pages_text))
    else:
        posted = await request.post()
        form = {k: nfc(str(v)).strip()[:MAX_FIELD] for k, v in posted.items() if isinstance(v, str)}
    fields = _build(action, form)
    await record_action(
        ctx.hub,
        ctx.dossiers,
        row.code,
        action,
        fields,
        actor=f"officer:{session.user.username}",
        result=result,
    )
    await ctx.audit(session.user.username, f"officer_{action}", row.code)
    raise web.HTTPSeeOther(f"/officer/dossiers/{row.code}?done={action}")
