"""The one error family of ``node``.

Every error carries a stable machine-readable ``code`` (logs, API bodies, tests) and a ``message`` in
plain Vietnamese for the staff UI. ``retryable`` tells a caller whether the same action can succeed later
without a person fixing something first. One middleware (node core) maps them to HTTP.

    NodeError
    ├── StorageError            the blob store could not keep a file
    │   ├── DiskFull            below the low-disk watermark, or ENOSPC mid-write (retryable)
    │   ├── FsyncFailed         fsync/rename failed: the write is lost, never retried to "success"
    │   ├── BlobNotFound
    │   └── BlobCorrupt         the stored bytes no longer hash to their name
    ├── ScanNotFound            no such scan in the unassigned inbox
    ├── ThumbnailFailed         the first page could not be rendered (pdftoppm missing, timeout...)
    └── PrintError              printers and the print queue
        ├── PrinterNotConfigured
        ├── PrintJobNotFound
        └── PrintSubmitFailed   lp/folder write failed (retryable)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BlobCorrupt",
    "BlobNotFound",
    "DiskFull",
    "FsyncFailed",
    "NodeError",
    "PrintError",
    "PrintJobNotFound",
    "PrintSubmitFailed",
    "PrinterNotConfigured",
    "ScanNotFound",
    "StorageError",
    "ThumbnailFailed",
]


class NodeError(Exception):
    """Base of every error raised by ``node``."""

    code: ClassVar[str] = "node"
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "Đã xảy ra lỗi trên máy trạm."

    def __init__(self, message: str = "", *, detail: str = "") -> None:
        self.message = message or self.default_message
        #: technical detail for logs (errno text, stderr of a tool); never shown as the main message
        self.detail = detail
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (f" ({self.detail})" if self.detail else "")


class StorageError(NodeError):
    """The blob store could not keep a file."""

    code = "storage"
    default_message = "Không lưu được tệp vào kho lưu trữ của máy trạm."


class DiskFull(StorageError):
    """Free space is below the low-disk watermark, or the disk filled up while writing."""

    code = "disk_full"
    retryable = True
    default_message = "Ổ đĩa máy trạm đã đầy: tạm dừng nhận tệp. Hãy giải phóng dung lượng rồi thử lại."


class FsyncFailed(StorageError):
    """fsync or rename failed: the data may not be on disk, so the write is discarded (fsyncgate)."""

    code = "fsync_failed"
    default_message = (
        "Lỗi ghi ổ đĩa: tệp chưa được lưu an toàn và đã bị huỷ. Hãy kiểm tra ổ đĩa rồi quét lại."
    )


class BlobNotFound(StorageError):
    """No blob with this SHA-256 is registered or on disk."""

    code = "blob_not_found"
    default_message = "Không tìm thấy tệp trong kho lưu trữ."


class BlobCorrupt(StorageError):
    """A stored blob no longer hashes to its name."""

    code = "blob_corrupt"
    default_message = "Tệp trong kho lưu trữ bị hỏng (mã băm không khớp)."


class ScanNotFound(NodeError):
    """The scan is not (or no longer) in the unassigned inbox."""

    code = "scan_not_found"
    default_message = "Không tìm thấy bản quét trong danh sách chưa gán hồ sơ."


class ThumbnailFailed(NodeError):
    """The first page of a scan could not be rendered as a thumbnail."""

    code = "thumbnail_failed"
    retryable = True
    default_message = "Không tạo được ảnh xem trước của bản quét."


class PrintError(NodeError):
    """Printers and the print queue."""

    code = "print"
    default_message = "Lỗi in ấn."


class PrinterNotConfigured(PrintError):
    """The job names a printer that is not in the node configuration."""

    code = "printer_not_configured"
    default_message = "Máy in chưa được cấu hình trên máy trạm."


class PrintJobNotFound(PrintError):
    """No print job with this id."""

    code = "print_job_not_found"
    default_message = "Không tìm thấy lệnh in."


class PrintSubmitFailed(PrintError):
    """Handing the job to CUPS (or writing it to the printer folder) failed; it will be retried."""

    code = "print_submit_failed"
    retryable = True
    default_message = "Không gửi được lệnh in tới máy in."
