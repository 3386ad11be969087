"""What sync tells the journal before it signs: whether this node may append, and the newest hub time seen.

Both live in ``sync_state`` (``node.sync_client.SYNC_SQL``) and are read inside the append's own write
transaction, so a block set by the sync task is never missed by an append that commits after it:

- ``append_block``: a reason code while the node must not sign new entries as if trusted. Set by the
  sync service when the hub answers that the key is revoked (``node_revoked``), the node is quarantined
  after a fork (``node_quarantined``, ``fork``), this copy's epoch was sealed by a re-provisioning
  elsewhere (``epoch_sealed``), or while the node recovers entries of its own epoch that the hub holds
  and it does not (``behind_hub``: a node restored from an old backup). Cleared when the hub answers
  ``active`` again and nothing is missing. Blocks survive restarts.
- ``observed_hlc``: the largest hybrid-logical time of the entries pulled from the hub (stored by the
  sync store as ``"<ms:016d>:<n:010d>"``), so a local event recorded after a hub decision orders after
  it (SPEC §5); a time beyond the drift bound of the local wall clock is not adopted.
"""

from __future__ import annotations

import sqlite3
from typing import ClassVar

import aiosqlite

from node.errors import NodeError
from protocol.hlc import HybridClock, Timestamp

__all__ = ["BLOCK_MESSAGES", "AppendBlocked", "clock_for_append", "read_gate", "read_gate_sync", "set_block"]

BLOCK_MESSAGES = {
    "node_revoked": (
        "Trung tâm đã thu hồi khóa ký của máy trạm này. Máy không được ghi thêm hồ sơ hay thao tác nào; "
        "liên hệ quản trị hệ thống để cấp lại (khôi phục) máy trạm."
    ),
    "node_quarantined": (
        "Trung tâm đã tạm khóa máy trạm này vì phát hiện hai bản nhật ký khác nhau (có thể máy được chạy từ "
        "bản sao lưu cũ hoặc ổ đĩa sao chép). Máy tạm ngừng ghi; liên hệ quản trị hệ thống."
    ),
    "fork": (
        "Nhật ký trên máy này khác với bản trung tâm đang giữ (có thể máy được khôi phục từ bản sao lưu cũ). "
        "Máy ngừng ghi để không tạo hai lịch sử; liên hệ quản trị để khôi phục máy trạm "
        "(motcua-node restore)."
    ),
    "epoch_sealed": (
        "Máy trạm này đã được cấp lại ở nơi khác (khóa ký cũ đã bị niêm phong). Bản này phải dừng; "
        "liên hệ quản trị hệ thống."
    ),
    "behind_hub": (
        "Máy trạm đang lấy lại từ trung tâm các bản ghi mà máy chưa có (khôi phục từ bản sao lưu). "
        "Vui lòng thử lại sau ít phút."
    ),
}


class AppendBlocked(NodeError):
    """The node may not sign new entries now (revoked, quarantined, forked, sealed or catching up)."""

    code = "append_blocked"
    status = 503
    default_message = "Máy trạm tạm thời không ghi được nhật ký."
    reasons: ClassVar[dict[str, str]] = BLOCK_MESSAGES

    def __init__(self, reason: str) -> None:
        super().__init__(BLOCK_MESSAGES.get(reason, self.default_message), detail=reason)
        self.reason = reason
        self.retryable = reason == "behind_hub"  # type: ignore[misc]

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "reason": self.reason, "message": self.message}


def _parse_time(text: str) -> Timestamp | None:
    ms, sep, n = text.partition(":")
    if not sep or not ms.isdigit() or not n.isdigit():
        return None
    return int(ms), int(n)


async def read_gate(db: aiosqlite.Connection) -> tuple[str, Timestamp | None]:
    """(block reason or "", observed hub time or None), in the caller's transaction."""
    async with db.execute(
        "SELECT key, value FROM sync_state WHERE key IN ('append_block', 'observed_hlc')"
    ) as cursor:
        values = {str(k): str(v) async for k, v in cursor}
    observed = values.get("observed_hlc")
    return values.get("append_block", ""), _parse_time(observed) if observed else None


def read_gate_sync(conn: sqlite3.Connection) -> tuple[str, Timestamp | None]:
    """``read_gate`` on the plain connection (on its own thread, in the caller's transaction)."""
    rows = conn.execute("SELECT key, value FROM sync_state WHERE key IN ('append_block', 'observed_hlc')")
    values = {str(k): str(v) for k, v in rows}
    observed = values.get("observed_hlc")
    return values.get("append_block", ""), _parse_time(observed) if observed else None


async def set_block(db: aiosqlite.Connection, reason: str) -> None:
    """Set (or with "" clear) the append block, in the caller's write transaction."""
    await db.execute(
        "INSERT INTO sync_state (key, value) VALUES ('append_block', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (reason,),
    )


def clock_for_append(last: Timestamp, observed: Timestamp | None, wall_ms: int) -> HybridClock:
    """The clock for the next local entry: after the log's last entry and after the hub times observed
    (within the drift bound of ``wall_ms``)."""
    clock = HybridClock(last=last)
    if observed is not None:
        clock.observe(observed, wall_ms)
    return clock
