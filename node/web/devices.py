"""Staff pages for the branch's devices: scan inbox, thumbnails and downloads, desks, printers, forms.

    GET  /ban-quet                      unassigned scans, open desks, scanners, rejected files
    POST /ban-quet/{id}/gan             attach an inbox scan to a dossier (document from its checklist)
    POST /ban-quet/{id}/huy             discard an inbox scan (reason; signed scan.discarded entry)
    GET  /ban-quet/{sha256}/anh.png     first-page thumbnail (cached PNG, nosniff)
    GET  /ban-quet/{sha256}/tep         the scan itself, as a download; every download is logged
    POST /quay/mo                       "Quét vào hồ sơ này": the desk's scans go to a dossier
    POST /quay/dong                     stop scanning into it
    POST /in/{code}/{form}              print a form of a dossier (per-click request key)
    GET  /may-in                        printers (CUPS status in plain Vietnamese) and print jobs
    POST /may-in/lenh/{id}/{op}         in-lai (reprint, per-click key), thu-lai (retry), huy (cancel)

Handlers parse, call the domain (``scan_attach``, ``receipts``, ``printing``) and redirect after the
commit. ``context_middleware`` puts the device banner (low disk, scanner trouble, failed print jobs) into
every page and the scanning/printing panel into the dossier page, without touching their handlers.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import warnings
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from node import printing
from node.devices import DEVICES, Devices
from node.errors import BlobNotFound, InvalidInput, NotFound
from node.receipts import FORM_LABELS, available_forms
from node.scan_attach import (
    attach_from_inbox,
    attachment_documents,
    close_desk,
    desk_sessions,
    discard_from_inbox,
    log_scan_access,
    open_desk,
)
from node.scan_inbox import list_unassigned
from node.thumbnails import thumbnail
from node.web.pages import render
from node.web.security import principal
from protocol.dossier.codes import is_dossier_code

__all__ = ["DESK_COOKIE", "context_middleware", "routes"]

routes = web.RouteTableDef()
DESK_COOKIE = "motcua_desk"
_SHA = re.compile(r"[0-9a-f]{64}")
_DESK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_DETAIL = re.compile(r"/ho-so/([^/]+)")
_JOB_LABELS = {
    "queued": "Đang chờ in",
    "submitted": "Đã gửi tới máy in",
    "printed": "Đã in",
    "failed": "In lỗi",
    "cancelled": "Đã huỷ",
}


def _now() -> int:
    return time.time_ns() // 1_000_000


def _devices(request: web.Request) -> Devices:
    return request.app[DEVICES]


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _code(value: object) -> str:
    code = str(value or "").strip()
    if not is_dossier_code(code):
        raise InvalidInput({"dossier": "Mã hồ sơ không đúng định dạng (ví dụ 000.00.01.H26-251122-1001)."})
    return code


def desk_of(request: web.Request) -> str | None:
    """The desk this browser works at (cookie set when opening a dossier for scanning), if known."""
    desk = request.cookies.get(DESK_COOKIE, "")
    return desk if _DESK.fullmatch(desk) else None


# -- context for every page -----------------------------------------------------------------------------


async def _banner(devices: Devices) -> list[str]:
    messages = []
    disk = devices.disk_message()
    if disk:
        messages.append(disk)
    messages += devices.scanner_problems()
    row = await devices.node.store.fetchone("SELECT count(*) FROM print_jobs WHERE status = 'failed'")
    if row and row[0]:
        messages.append(f"Có {row[0]} lệnh in bị lỗi: xem trang Máy in để in lại hoặc huỷ.")
    return messages


async def _dossier_panel(request: web.Request, devices: Devices, code: str) -> dict[str, Any] | None:
    store = devices.node.store
    async with store.read() as db:
        async with db.execute("SELECT state_json FROM dossiers WHERE code = ?", (code,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        state = json.loads(row[0])
        async with db.execute("SELECT 1 FROM lookup_codes WHERE dossier = ?", (code,)) as cur:
            has_lookup = await cur.fetchone() is not None
        sessions = await desk_sessions(
            db, now=_now(), session_ms=devices.config.scan_session_minutes * 60_000
        )
        jobs = await printing.list_jobs(db, dossier_code=code, limit=50)
        inbox = await list_unassigned(db)
    return {
        "desks": devices.desks,
        "my_desk": desk_of(request),
        "open": [s for s in sessions if s.dossier == code and s.live],
        "documents": attachment_documents(state),
        "attachments": state.get("attachments") or [],
        "inbox": inbox,
        "forms": [
            (f, FORM_LABELS[f])
            for f in available_forms(state, has_lookup=has_lookup)
            # once the receipt has a job, printing it again is "In lại" on that job
            if not (f == "receipt" and any(j.idempotency_key == f"receipt:{code}" for j in jobs))
        ],
        "has_printer": bool(devices.config.printers),
        "jobs": jobs,
        "job_labels": _JOB_LABELS,
        "request_key": secrets.token_urlsafe(18),
    }


@web.middleware
async def context_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Device banner on every staff page; the scanning/printing panel on the dossier page."""
    devices = request.app.get(DEVICES)
    path = request.path
    if (
        devices is not None
        and request.method == "GET"
        and not path.startswith(("/api/", "/static/", "/healthz", "/readyz", "/metrics", "/dang-nhap"))
        and principal_or_none(request)
    ):
        context: dict[str, Any] = {"devbar": await _banner(devices)}
        match = _DETAIL.fullmatch(path)
        if match and is_dossier_code(match.group(1)):
            context["dev"] = await _dossier_panel(request, devices, match.group(1))
        with warnings.catch_warnings():
            # aiohttp_jinja2 merges this plain-string request key into every template's context
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            request[aiohttp_jinja2.REQUEST_CONTEXT_KEY] = {
                **request.get(aiohttp_jinja2.REQUEST_CONTEXT_KEY, {}),
                **context,
            }
    return await handler(request)


def principal_or_none(request: web.Request) -> bool:
    try:
        principal(request)
    except Exception:
        return False
    return True


# -- scans ----------------------------------------------------------------------------------------------


@routes.get("/ban-quet")
async def inbox_page(request: web.Request) -> web.StreamResponse:
    devices = _devices(request)
    async with devices.node.store.read() as db:
        inbox = await list_unassigned(db)
        sessions = await desk_sessions(
            db, now=_now(), session_ms=devices.config.scan_session_minutes * 60_000
        )
    rejected = await asyncio.to_thread(devices.rejected)
    return await render(
        request,
        "scans.html",
        {
            "inbox": inbox,
            "sessions": sessions,
            "scanners": list(devices.scanners.values()),
            "rejected": rejected[:200],
            "errors": {},
            "failed_scan": None,
            "values": {},
        },
    )


async def _scan_blob(request: web.Request) -> tuple[Devices, str, str, str]:
    """(devices, sha256, media type, display name) of a scan blob named in the URL; 404 otherwise."""
    sha = request.match_info["sha256"]
    if not _SHA.fullmatch(sha):
        raise NotFound("Không tìm thấy bản quét.")
    devices = _devices(request)
    row = await devices.node.store.fetchone(
        "SELECT b.media_type, b.display_name FROM scans s JOIN blobs b ON b.sha256 = ?"
        " WHERE s.pdf_sha256 = ? OR s.original_sha256 = ? LIMIT 1",
        (sha, sha, sha),
    )
    if row is None:
        raise NotFound("Không tìm thấy bản quét.")
    return devices, sha, str(row[0]), str(row[1])


@routes.get("/ban-quet/{sha256}/anh.png")
async def scan_thumbnail(request: web.Request) -> web.StreamResponse:
    devices, sha, media_type, _ = await _scan_blob(request)
    body = await thumbnail(devices.blobs, sha, media_type)
    return web.Response(body=body, content_type="image/png", headers={"X-Content-Type-Options": "nosniff"})


@routes.get("/ban-quet/{sha256}/tep")
async def scan_download(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    devices, sha, media_type, name = await _scan_blob(request)
    dossier = request.query.get("ho-so")
    if dossier is not None and not is_dossier_code(dossier):
        dossier = None
    try:  # decrypt and hash the whole file first: a corrupted blob is an error, never a silent download
        body = await asyncio.to_thread(devices.blobs.read_bytes, sha)
    except BlobNotFound:
        raise NotFound("Tệp của bản quét không còn trong kho lưu trữ.") from None
    await log_scan_access(
        devices.node.store, actor=who.actor, sha256=sha, dossier=dossier, action="download", now=_now()
    )
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or f"{sha[:12]}"
    return web.Response(
        body=body,
        headers={
            "Content-Type": media_type,
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
            "X-Content-Type-Options": "nosniff",
        },
    )


@routes.post("/ban-quet/{scan_id:\\d+}/gan")
async def inbox_attach(request: web.Request) -> web.StreamResponse:
    devices = _devices(request)
    who = principal(request)
    form = await request.post()
    code = _code(form.get("dossier"))
    document = str(form.get("document") or "").strip() or "chưa phân loại"
    await attach_from_inbox(
        devices.node.store,
        devices.node.journal,
        scan_id=int(request.match_info["scan_id"]),
        dossier=code,
        document=document,
        actor=who.actor,
    )
    return _see_other(f"/ho-so/{code}?da-gan=1#ban-quet")


@routes.post("/ban-quet/{scan_id:\\d+}/huy")
async def inbox_discard(request: web.Request) -> web.StreamResponse:
    devices = _devices(request)
    who = principal(request)
    form = await request.post()
    await discard_from_inbox(
        devices.node.store,
        devices.node.journal,
        scan_id=int(request.match_info["scan_id"]),
        reason=str(form.get("reason") or ""),
        actor=who.actor,
    )
    return _see_other("/ban-quet?da-huy=1")


# -- desks ----------------------------------------------------------------------------------------------


@routes.post("/quay/mo")
async def desk_open(request: web.Request) -> web.StreamResponse:
    devices = _devices(request)
    who = principal(request)
    form = await request.post()
    desk = str(form.get("desk") or "")
    code = _code(form.get("dossier"))
    await open_desk(
        devices.node.store,
        desk=desk,
        dossier=code,
        document=str(form.get("document") or "chưa phân loại"),
        actor=who.actor,
        now=_now(),
        desks=set(devices.desks),
    )
    response = _see_other(f"/ho-so/{code}?dang-quet={quote(desk)}#quet")
    response.set_cookie(DESK_COOKIE, desk, httponly=True, samesite="Strict", path="/", max_age=365 * 86400)
    return response


@routes.post("/quay/dong")
async def desk_close(request: web.Request) -> web.StreamResponse:
    devices = _devices(request)
    form = await request.post()
    code = str(form.get("dossier") or "")
    await close_desk(devices.node.store, desk=str(form.get("desk") or ""), dossier=code or None)
    return _see_other(f"/ho-so/{code}#quet" if is_dossier_code(code) else "/ban-quet")


# -- printing -------------------------------------------------------------------------------------------


@routes.post("/in/{code}/{form}")
async def print_form(request: web.Request) -> web.StreamResponse:
    devices = _devices(request)
    who = principal(request)
    code, form_name = request.match_info["code"], request.match_info["form"]
    if form_name not in FORM_LABELS or not is_dossier_code(code):
        raise NotFound("Không có mẫu in hoặc hồ sơ này.")
    form = await request.post()
    await devices.receipts.print_form(
        code,
        form_name,
        actor=who.actor,
        request_key=str(form.get("request_key") or ""),
        desk=desk_of(request),
    )
    return _see_other(f"/ho-so/{code}?da-in={form_name}#in-an")


@routes.get("/may-in")
async def printers_page(request: web.Request) -> web.StreamResponse:
    devices = _devices(request)
    statuses = await devices.printer_statuses()
    async with devices.node.store.read() as db:
        jobs = await printing.list_jobs(db, limit=200)
    return await render(
        request,
        "printers.html",
        {
            "statuses": statuses,
            "printers": devices.config.printers,
            "jobs": jobs,
            "job_labels": _JOB_LABELS,
            "request_key": secrets.token_urlsafe(18),
        },
    )


@routes.post("/may-in/lenh/{job_id:\\d+}/{op}")
async def job_action(request: web.Request) -> web.StreamResponse:
    devices = _devices(request)
    job_id, op = int(request.match_info["job_id"]), request.match_info["op"]
    form = await request.post()
    if op == "in-lai":
        key = str(form.get("request_key") or "")
        if not 8 <= len(key) <= 128 or not key.isascii() or not key.isprintable():
            raise InvalidInput({"request": "Yêu cầu in không hợp lệ; vui lòng tải lại trang."})
        async with devices.node.store.write() as db:
            await printing.reprint(db, job_id, request_key=key)
        devices.worker.wake()
    elif op == "thu-lai":
        async with devices.node.store.write() as db:
            await printing.retry(db, job_id)
        devices.worker.wake()
    elif op == "huy":
        await devices.worker.cancel_submitted(job_id)
    else:
        raise NotFound("Không có thao tác này.")
    back = str(form.get("next") or "")
    safe = back.startswith("/") and not back.startswith("//") and "\\" not in back
    return _see_other(back if safe else "/may-in")
