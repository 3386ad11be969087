"""Shared helpers for protocol tests: mutate JSON by path, build event records and typical bodies."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

from protocol.calendar import from_local
from protocol.dossier.codes import LookupHash
from protocol.dossier.state import EventRecord

DELETE = object()
"""Marker for ``set_path``: remove the key or list item."""

CODE = "000.00.01.H26-261123-0012"
RECEIVED_AT = from_local(date(2026, 11, 23), 9, 30)
DUE_AT = from_local(date(2026, 11, 26), 17)
LOOKUP = LookupHash(hash="ab" * 32)
SHA_A = "a" * 64
SHA_B = "b" * 64


def set_path(data: Any, path: str, value: object) -> None:
    """Set (or, with ``DELETE``, remove) the value at a dotted path; parts index lists in lists."""
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value


def applicant() -> dict[str, object]:
    return {"name": "Nguyễn Văn An", "id_type": "cccd", "id_number": "001203012345", "phone": "0912345678"}


def received(code: str = CODE, **over: object) -> dict[str, object]:
    """A valid ``dossier.received`` body; keyword arguments replace fields."""
    body: dict[str, object] = {
        "dossier": code,
        "actor": "clerk.cn01",
        "applicant": applicant(),
        "procedure": {"code": "1.004194", "version": "2025-07-01"},
        "documents": [
            {"name": "Tờ khai thay đổi thông tin cư trú (Mẫu CT01)", "form": "original", "count": 1}
        ],
        "channel": 1,
        "pickup": "CN01",
        "fee": 15000,
        "received_at": RECEIVED_AT,
        "due_at": DUE_AT,
        "register": {"book": "2026-11", "line": 412},
        "lookup": LOOKUP.to_body(),
    }
    body.update(over)
    return body


def manifest(sha: str = SHA_A, size: int = 2_500_000) -> dict[str, object]:
    chunks = -(-size // 1_048_576)
    return {
        "sha256": sha,
        "size": size,
        "media_type": "application/pdf",
        "pages": 3,
        "chunk_size": 1_048_576,
        "chunks": [format(i, "064x") for i in range(chunks)],
    }


MINIMAL: dict[str, dict[str, object]] = {
    "dossier.submitted": {
        "applicant": applicant(),
        "procedure": {"code": "1.001193", "version": "2025-07-01"},
        "channel": 2,
        "submitted_at": RECEIVED_AT - 3_600_000,
    },
    "dossier.refused": {"reason": "Hồ sơ không thuộc thẩm quyền giải quyết."},
    "dossier.supplement_requested": {"items": [{"name": "Giấy tờ chứng minh chỗ ở hợp pháp"}]},
    "dossier.supplement_provided": {},
    "dossier.transferred": {"agency": "Công an phường Tây Hồ"},
    "dossier.processing": {"step": "processing"},
    "dossier.financial_obligation": {"items": [{"name": "Lệ phí trước bạ", "amount": 500_000}]},
    "dossier.financial_obligation_met": {},
    "dossier.result_ready": {"outcome": "approved"},
    "dossier.returned": {"recipient": {"name": "Nguyễn Văn An"}, "proxy": False, "channel": 1},
    "dossier.withdrawal_requested": {},
    "dossier.withdrawn": {},
    "dossier.stopped": {"reason": "Thông báo dừng giải quyết hồ sơ."},
    "dossier.apology": {"new_due_at": DUE_AT + 86_400_000, "reason": "Cần xác minh thêm."},
    "dossier.rating": {"scale": "three_level", "value": 3, "channel": "kiosk"},
    "dossier.attachment": {"document": "chưa phân loại", "role": "document", "manifest": manifest()},
    "dossier.attachment_discarded": {"sha256": SHA_A, "reason": "Quét nhầm."},
    "dossier.conflict_resolved": {"conflict": SHA_B, "decision": "dismiss", "note": "Đã kiểm tra."},
}


def body(kind: str, code: str = CODE, **over: object) -> dict[str, object]:
    """A minimal valid body of ``kind`` for ``code``."""
    if kind == "dossier.received":
        return received(code, **over)
    base: dict[str, object] = {"dossier": code, "actor": "officer.1"}
    base.update(json.loads(json.dumps(MINIMAL[kind])))
    base.update(over)
    return base


def record(
    kind: str,
    data: dict[str, object],
    ms: int,
    *,
    log: str = "CN01",
    epoch: int = 1,
    seq: int = 1,
    n: int = 0,
) -> EventRecord:
    """An event record whose hash is derived from all its fields."""
    digest = hashlib.sha256(
        json.dumps([log, epoch, seq, [ms, n], kind, data], sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()
    return EventRecord(log=log, epoch=epoch, seq=seq, time=(ms, n), kind=kind, body=data, hash=digest)
