"""The one error family of ``node``, and the one middleware that turns errors into HTTP answers.

Every error carries a stable machine-readable ``code`` (logs, API bodies, tests), a ``message`` in plain
Vietnamese for staff, and the HTTP ``status`` it maps to. ``retryable`` tells a caller whether the same
action can succeed later without a person fixing something first.

    NodeError
    ├── ConfigError             node.toml / MOTCUA_NODE_* invalid (names the key)
    ├── NodeExists              ``init`` on a folder that already holds a node
    ├── StoreClosed             the store was used after close()
    ├── InvalidInput    422     request fields fail validation; ``fields`` maps field -> message
    ├── NotFound        404
    ├── Conflict        409     the action is not possible in the dossier's current state
    ├── AuthRequired    401     no (valid) session or bearer token
    ├── Forbidden       403     role too low, or CSRF / cross-site check failed
    ├── Throttled       429     too many failed logins; ``retry_after`` seconds
    ├── CodeExhausted   503     the node's daily block of dossier numbers is used up
    ├── JournalError    500     the log cannot be appended to (head mismatch, signing failure)
    ├── StorageError    500     the blob store could not keep a file
    │   ├── DiskFull        507 below the low-disk watermark, or ENOSPC mid-write (retryable)
    │   ├── FsyncFailed     500 fsync/rename failed: the write is lost, never retried to "success"
    │   ├── BlobNotFound    404
    │   └── BlobCorrupt     500 the stored bytes no longer hash to their name
    ├── ScanNotFound    404     no such scan in the unassigned inbox
    ├── DataKeyError    500     the data key (node.atrest) cannot be used
    │   ├── DataLocked      423 the data key is not unlocked yet (passphrase at shift start)
    │   ├── WrongDataKey    403 the passphrase / key file / credential does not unwrap the data key,
    │   │                       or the database does not open with it
    │   └── BlobAuthFailed  500 an encrypted blob fails authentication (flipped or truncated bytes)
    ├── PiiLocked       423     PII views locked: the hub's lease expired or the node was revoked
    ├── ThumbnailFailed 503     the first page could not be rendered (pdftoppm missing, timeout...)
    └── PrintError      500     printers and the print queue
        ├── PrinterNotConfigured 409
        ├── PrintJobNotFound     404
        └── PrintSubmitFailed    503 lp/folder write failed (retryable)
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar

from aiohttp import web

__all__ = [
    "DUMPS",
    "AuthRequired",
    "BlobCorrupt",
    "BlobAuthFailed",
    "BlobNotFound",
    "DataKeyError",
    "DataLocked",
    "PiiLocked",
    "WrongDataKey",
    "DiskFull",
    "FsyncFailed",
    "PrintError",
    "PrintJobNotFound",
    "PrintSubmitFailed",
    "PrinterNotConfigured",
    "ScanNotFound",
    "StorageError",
    "StorageFailed",
    "ThumbnailFailed",
    "CodeExhausted",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "JournalError",
    "NodeError",
    "NodeExists",
    "NotFound",
    "StoreClosed",
    "Throttled",
    "error_middleware",
]

log = logging.getLogger("motcua.node")
DUMPS = functools.partial(json.dumps, ensure_ascii=False)
"""JSON for answers: Vietnamese stays readable (UTF-8), not \\u-escaped."""


class NodeError(Exception):
    """Base of every error raised by ``node``."""

    code: ClassVar[str] = "node"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "Đã xảy ra lỗi trên máy trạm."

    def __init__(self, message: str = "", *, detail: str = "") -> None:
        self.message = message or self.default_message
        #: technical detail for logs; never shown as the main message
        self.detail = detail
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (f" ({self.detail})" if self.detail else "")

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message}


class ConfigError(NodeError):
    """The configuration file or an environment override is invalid; the message names the key."""

    code = "config"
    default_message = "Cấu hình máy trạm không hợp lệ."


class NodeExists(NodeError):
    """``init`` refuses to overwrite an existing node."""

    code = "node_exists"
    status = 409
    default_message = "Thư mục này đã chứa một máy trạm; không ghi đè."


class StoreClosed(NodeError):
    """The store was used after it was closed."""

    code = "store_closed"
    status = 503
    default_message = "Cơ sở dữ liệu của máy trạm đã đóng."


class InvalidInput(NodeError):
    """Request fields fail validation. Nothing was written."""

    code = "invalid_input"
    status = 422
    default_message = "Thông tin nhập chưa hợp lệ. Vui lòng kiểm tra các trường được đánh dấu."

    def __init__(self, fields: Mapping[str, str], message: str = "") -> None:
        super().__init__(message)
        self.fields = dict(fields)

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "fields": self.fields}


class NotFound(NodeError):
    """No such dossier, user, token or page."""

    code = "not_found"
    status = 404
    default_message = "Không tìm thấy."


class Conflict(NodeError):
    """The action does not fit the dossier's current state (e.g. returning a result twice)."""

    code = "conflict"
    status = 409
    default_message = "Thao tác không phù hợp với trạng thái hiện tại của hồ sơ."


class AuthRequired(NodeError):
    """No valid session or bearer token."""

    code = "auth_required"
    status = 401
    default_message = "Vui lòng đăng nhập."


class Forbidden(NodeError):
    """Authenticated but not allowed, or a cross-site / CSRF check failed."""

    code = "forbidden"
    status = 403
    default_message = "Bạn không có quyền thực hiện thao tác này."


class Throttled(NodeError):
    """Too many failed logins for the account or the address."""

    code = "throttled"
    status = 429
    retryable = True
    default_message = "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau."

    def __init__(self, retry_after: int, message: str = "") -> None:
        super().__init__(message or f"{self.default_message[:-1]} {retry_after} giây.")
        self.retry_after = max(1, retry_after)


class CodeExhausted(NodeError):
    """Every dossier number of the node's daily block is used."""

    code = "code_exhausted"
    status = 503
    default_message = "Đã dùng hết dải số hồ sơ của máy trạm trong ngày. Liên hệ quản trị."


class JournalError(NodeError):
    """The log could not be appended to."""

    code = "journal"
    status = 500
    default_message = "Không ghi được nhật ký của máy trạm. Dữ liệu chưa được lưu."


class StorageError(NodeError):
    """The blob store could not keep a file."""

    status = 500
    code = "storage"
    default_message = "Không lưu được tệp vào kho lưu trữ của máy trạm."


class DiskFull(StorageError):
    """Free space is below the low-disk watermark, or the disk filled up while writing."""

    status = 507
    code = "disk_full"
    retryable = True
    default_message = "Ổ đĩa máy trạm đã đầy: tạm dừng nhận tệp. Hãy giải phóng dung lượng rồi thử lại."


class FsyncFailed(StorageError):
    """fsync or rename failed: the data may not be on disk, so the write is discarded (fsyncgate)."""

    status = 500
    code = "fsync_failed"
    default_message = (
        "Lỗi ghi ổ đĩa: tệp chưa được lưu an toàn và đã bị huỷ. Hãy kiểm tra ổ đĩa rồi quét lại."
    )


class StorageFailed(StorageError):
    """The database reported an I/O error on a write or a commit: the store is failed (fail-stop).

    After a failed fsync the kernel may have dropped the dirty pages and cleared the error, so neither
    retrying nor carrying on is safe (fsyncgate). The store refuses every further write with this error
    and ``serve`` exits with ``EXIT_STORAGE_FAILED`` so systemd restarts it; the database as reopened
    from disk then settles what was saved. The message never says the dossier does not exist.
    """

    status = 503
    code = "storage_failed"
    default_message = (
        "Lỗi ghi ổ đĩa: thao tác chưa được xác nhận đã lưu. Máy trạm đang tự khởi động lại; "
        "sau khi khởi động lại, hãy kiểm tra danh sách hồ sơ trước khi nhập lại."
    )


class BlobNotFound(StorageError):
    """No blob with this SHA-256 is registered or on disk."""

    status = 404
    code = "blob_not_found"
    default_message = "Không tìm thấy tệp trong kho lưu trữ."


class BlobCorrupt(StorageError):
    """A stored blob no longer hashes to its name."""

    status = 500
    code = "blob_corrupt"
    default_message = "Tệp trong kho lưu trữ bị hỏng (mã băm không khớp)."


class DataKeyError(NodeError):
    """The node's data key (envelope encryption at rest, node.atrest) cannot be used."""

    code = "data_key"
    default_message = "Không dùng được khóa dữ liệu của máy trạm."


class DataLocked(DataKeyError):
    """The data key is still wrapped: staff must unlock it (passphrase) before PII can be read."""

    status = 423
    code = "data_locked"
    default_message = "Dữ liệu của máy trạm đang khóa. Hãy mở khóa dữ liệu (Mở khóa dữ liệu) trước."


class WrongDataKey(DataKeyError):
    """The passphrase, key file or credential does not unwrap the data key, or the DB refuses the key."""

    status = 403
    code = "wrong_data_key"
    default_message = "Sai mật khẩu dữ liệu hoặc sai khóa: không mở được dữ liệu đã mã hóa."


class BlobAuthFailed(DataKeyError, BlobCorrupt):
    """An encrypted blob fails AES-GCM authentication: changed, truncated or from another node."""

    status = 500
    code = "blob_auth_failed"
    default_message = "Tệp mã hóa trong kho lưu trữ không xác thực được (bị sửa, cắt cụt hoặc sai khóa)."


class PiiLocked(NodeError):
    """PII views are locked: the hub's offline lease expired, or the hub revoked this node."""

    status = 423
    code = "pii_locked"
    default_message = (
        "Đã khóa xem dữ liệu cá nhân: máy trạm quá hạn đồng bộ với trung tâm "
        "(hết hạn giấy phép ngoại tuyến). Hãy kết nối mạng để đồng bộ."
    )


class ScanNotFound(NodeError):
    """The scan is not (or no longer) in the unassigned inbox."""

    status = 404
    code = "scan_not_found"
    default_message = "Không tìm thấy bản quét trong danh sách chưa gán hồ sơ."


class ThumbnailFailed(NodeError):
    """The first page of a scan could not be rendered as a thumbnail."""

    status = 503
    code = "thumbnail_failed"
    retryable = True
    default_message = "Không tạo được ảnh xem trước của bản quét."


class PrintError(NodeError):
    """Printers and the print queue."""

    status = 500
    code = "print"
    default_message = "Lỗi in ấn."


class PrinterNotConfigured(PrintError):
    """The job names a printer that is not in the node configuration."""

    status = 409
    code = "printer_not_configured"
    default_message = "Máy in chưa được cấu hình trên máy trạm."


class PrintJobNotFound(PrintError):
    """No print job with this id."""

    status = 404
    code = "print_job_not_found"
    default_message = "Không tìm thấy lệnh in."


class PrintSubmitFailed(PrintError):
    """Handing the job to CUPS (or writing it to the printer folder) failed; it will be retried."""

    status = 503
    code = "print_submit_failed"
    retryable = True
    default_message = "Không gửi được lệnh in tới máy in."


Renderer = Callable[[web.Request, NodeError], Awaitable[web.StreamResponse]]


def wants_json(request: web.Request) -> bool:
    """API paths and JSON clients get JSON; pages get HTML."""
    return (
        request.path.startswith("/api/")
        or request.path in ("/healthz", "/readyz", "/metrics")
        or (
            "application/json" in request.headers.get("Accept", "")
            and "text/html" not in request.headers.get("Accept", "")
        )
    )


def _json(error: NodeError) -> web.Response:
    response = web.json_response(error.to_json(), status=error.status, dumps=DUMPS)
    if isinstance(error, Throttled):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def error_middleware(render_html: Renderer) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The only place errors become HTTP: NodeError by its status, HTTP errors as is, others as 500."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except NodeError as exc:
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.path, exc)
            if wants_json(request):
                return _json(exc)
            response = await render_html(request, exc)
            if isinstance(exc, Throttled):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except web.HTTPException as exc:
            if exc.status == 404:
                return await middleware_not_found(request, render_html)
            if exc.status == 405 and wants_json(request):
                return web.json_response(
                    {"error": "method_not_allowed", "message": "Phương thức không được hỗ trợ."},
                    status=405,
                    dumps=DUMPS,
                )
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            error = NodeError()
            return _json(error) if wants_json(request) else await render_html(request, error)

    return middleware


async def middleware_not_found(request: web.Request, render_html: Renderer) -> web.StreamResponse:
    error = NotFound("Không tìm thấy trang hoặc tài nguyên này.")
    return _json(error) if wants_json(request) else await render_html(request, error)
