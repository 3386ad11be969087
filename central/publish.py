"""Broadcast data: the procedure catalog and the holiday calendar (``motcua-central publish``).

``publish(hub, "catalog" | "calendar", data)`` validates ``data`` exactly as a node will
(``Catalog.from_data`` / ``Calendar.from_data``; the error names the first bad field), then writes
``hub.catalog`` ``{version, catalog}`` or ``hub.calendar`` ``{version, calendar}`` in the broadcast log
``hub``, signed and committed before it returns. Nodes pull it and put the newest valid one in force for
new dossiers (node.hubdata).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from central.errors import CentralError
from central.hub import Hub
from central.mailbox import BROADCAST, Post
from protocol import BodyInvalid, Entry, canonical, decode, nfc
from protocol.calendar import Calendar
from protocol.catalog import Catalog
from protocol.errors import CalendarInvalid, CatalogInvalid, ProtocolError

__all__ = ["KINDS", "PublishError", "publish", "read_data"]

KINDS = ("catalog", "calendar")


class PublishError(CentralError):
    """The file cannot be published: unreadable, not JSON, or invalid (``field`` names where)."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__("publish_invalid", reason)
        self.field = field


def read_data(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PublishError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PublishError(f"{path} must hold a JSON object")
    return data


async def publish(hub: Hub, what: str, data: dict[str, Any]) -> Entry:
    """Validate ``data`` as a catalog or calendar and broadcast it; returns the signed entry."""
    if what not in KINDS:
        raise PublishError(f"unknown kind {what}; one of {', '.join(KINDS)}")
    data = nfc(data)
    try:
        data = decode(canonical(data))  # what nodes will read: canonical JSON (no floats, NFC)
    except ProtocolError as exc:
        raise PublishError(f"{what} is not canonical JSON: {exc}") from None
    try:
        version = (Catalog.from_data(data) if what == "catalog" else Calendar.from_data(data)).version
    except (CatalogInvalid, CalendarInvalid) as exc:
        raise PublishError(f"invalid {what}: {exc}", field=exc.field) from None
    try:
        [entry] = await hub.mailbox.post([Post(BROADCAST, f"hub.{what}", {"version": version, what: data})])
    except BodyInvalid as exc:
        raise PublishError(f"invalid {what}: {exc.reason}", field=exc.field) from None
    return entry
