"""The offline lease on the node (SPEC §7.12, RELIABILITY §5 / P3): personal-data views lock when the
hub has not renewed the lease in time, or once the hub says this node is revoked.

The sync client verifies each lease the hub sends with the heartbeat answer (pinned hub key, this node,
this epoch) and stores it in ``sync_state`` (``lease``); the hello stores the hub's view of the node
(``hub_status``). ``pii_lock`` reads both:

- ``hub_status = revoked``                 -> locked ("đã bị thu hồi") until an admin re-enrols the node
  (a new enrollment = a new epoch, whose hello answers ``active`` and whose heartbeat brings a lease);
- a lease whose ``expires`` is past         -> locked ("quá hạn đồng bộ") until the next successful sync;
- no lease yet (never enrolled, standalone) -> not locked: a branch PC without a hub has no lease.

Locked are the views that show personal data: dossier pages and lists, search, the scans inbox, scan
thumbnails and downloads, and the API's dossier reads (``PII_PATHS``). Intake keeps working (new
dossiers, receipts, scans in hot folders) as long as the data key is unlocked and the disk is above its
watermark: a van that cannot reach the hub still serves citizens; what it can no longer do is show
stored personal data to whoever holds the laptop. The clock is injectable (tests: no sleeping).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from node.errors import PiiLocked
from protocol import Lease, decode

__all__ = ["PII_PATHS", "LockState", "is_pii_path", "lock_state", "pii_lock_middleware"]

PII_PATHS = re.compile(
    r"/hom-nay|/tim-kiem|/ho-so/han-tra|/ho-so/(?!moi$)[^/]+|/ban-quet(/[0-9a-f]{64}/.*)?"
    r"|/api/v1/dossiers(/[^/]+)?"
)


def is_pii_path(method: str, path: str) -> bool:
    """True for the GET views that show stored personal data."""
    return method in ("GET", "HEAD") and PII_PATHS.fullmatch(path) is not None


@dataclass(frozen=True, slots=True)
class LockState:
    locked: bool
    reason: str  # 'revoked', 'expired', 'valid', 'none'
    expires_ms: int | None
    message: str


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _when(ms: int) -> str:
    from node.config import TIMEZONE

    return datetime.fromtimestamp(ms / 1000, TIMEZONE).strftime("%H:%M ngày %d/%m/%Y")


async def lock_state(store: object, now_ms: int) -> LockState:
    """Whether PII views are locked now, and why (Vietnamese).

    The lease is in hub time, so it is judged at the node's clock corrected by the offset to the hub seen
    at the last hello (``clock_offset_ms``): a node whose clock is years off (S9) neither locks at once
    nor keeps its lease for years. (Turning the clock back offline moves the corrected time back too, as
    it would the plain clock; the lease is a limit for an honest node, the data key protects the disk.)"""
    rows = await store.fetchall(  # type: ignore[attr-defined]
        "SELECT key, value FROM sync_state WHERE key IN ('hub_status', 'lease', 'clock_offset_ms')"
    )
    state = {str(r[0]): str(r[1]) for r in rows}
    try:
        now_ms += int(state.get("clock_offset_ms") or 0)
    except ValueError:
        pass
    lease: Lease | None = None
    if state.get("lease"):
        lease = Lease.from_wire(decode(state["lease"].encode()))
    expires = lease.expires if lease is not None else None
    if state.get("hub_status") == "revoked":
        return LockState(
            True,
            "revoked",
            expires,
            "Máy trạm đã bị thu hồi: trung tâm đã thu hồi máy trạm này nên đã khóa xem dữ liệu cá nhân "
            "(hồ sơ, tra cứu, bản quét). Liên hệ quản trị viên để ghi danh lại máy trạm.",
        )
    if lease is None:
        return LockState(False, "none", None, "")
    if not lease.valid_at(now_ms):
        return LockState(
            True,
            "expired",
            expires,
            f"Giấy phép ngoại tuyến đã hết hạn lúc {_when(lease.expires)}: máy trạm quá lâu chưa đồng bộ với "
            "trung tâm nên đã khóa xem dữ liệu cá nhân (hồ sơ, tra cứu, bản quét). Vẫn tiếp nhận được hồ sơ "
            "mới. Hãy kết nối mạng để đồng bộ; dữ liệu sẽ mở lại ngay sau lần đồng bộ thành công.",
        )
    return LockState(False, "valid", expires, "")


def pii_lock_middleware(store: Callable[[], object], clock: Callable[[], int] | None = None) -> object:
    """aiohttp middleware: a PII view while locked raises ``PiiLocked`` (423) with the reason."""
    from aiohttp import web

    now = clock or _wall_ms

    @web.middleware
    async def middleware(request: web.Request, handler: object) -> web.StreamResponse:
        if is_pii_path(request.method, request.path):
            current = store()
            if current is not None:
                state = await lock_state(current, now())
                if state.locked:
                    raise PiiLocked(state.message, detail=state.reason)
        return await handler(request)  # type: ignore[operator,no-any-return]

    return middleware
