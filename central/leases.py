"""Offline leases (SPEC §7.12, RELIABILITY §5 / P3): how long a node may show personal data unsynced.

Every heartbeat of an active node is answered with a fresh lease signed by the hub key, valid for the
node's hours (``node_leases.hours``, set by an admin per node, else the hub's ``lease_hours``). A
revoked node's requests are refused (central.sync_api), so it is never renewed and its lease runs out;
its hello already tells it ``revoked`` and it locks at once. The last lease issued is kept per node for
the dashboard: valid until when, expired, or revoked.
"""

from __future__ import annotations

from dataclasses import dataclass

from central.store import SqliteStore
from protocol import Lease, sign_lease
from protocol.keys import Ed25519PrivateKey

__all__ = ["LeaseView", "Leases", "MAX_HOURS"]

MAX_HOURS = 2160  # 90 days (protocol.lease.MAX_LEASE_MS)


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What the dashboard shows of one node's lease."""

    node: str
    hours: int
    custom: bool  # an admin set the hours for this node
    expires_ms: int | None
    state: str  # 'valid', 'expired', 'revoked', 'none'
    label: str  # Vietnamese


@dataclass
class Leases:
    store: SqliteStore
    default_hours: int = 72

    async def hours(self, node: str) -> tuple[int, bool]:
        row = await self.store.fetchone("SELECT hours FROM node_leases WHERE node = ?", (node,))
        if row is None or row[0] is None:
            return self.default_hours, False
        return int(row[0]), True

    async def set_hours(self, node: str, hours: int | None) -> None:
        """Per-node lease length in hours (1..2160), or None for the hub default."""
        if hours is not None and not 1 <= hours <= MAX_HOURS:
            raise ValueError(f"lease hours must be 1..{MAX_HOURS}")
        async with self.store.write() as db:
            await db.execute(
                "INSERT INTO node_leases (node, hours) VALUES (?, ?) "
                "ON CONFLICT (node) DO UPDATE SET hours = excluded.hours",
                (node, hours),
            )

    async def issue(self, node: str, epoch: int, key: Ed25519PrivateKey, now: int) -> Lease:
        """A lease for ``node`` from ``now``; recorded for the dashboard."""
        hours, _ = await self.hours(node)
        lease = sign_lease(key, node, epoch, now, now + hours * 3_600_000)
        async with self.store.write() as db:
            await db.execute(
                "INSERT INTO node_leases (node, epoch, issued_ms, expires_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET epoch = excluded.epoch, issued_ms = excluded.issued_ms, "
                "expires_ms = excluded.expires_ms",
                (node, epoch, lease.issued, lease.expires),
            )
        return lease

    async def views(self, now: int) -> dict[str, LeaseView]:
        rows = await self.store.fetchall(
            "SELECT n.node, n.status, l.hours, l.expires_ms FROM nodes n "
            "LEFT JOIN node_leases l ON l.node = n.node"
        )
        out: dict[str, LeaseView] = {}
        for node, status, hours, expires in rows:
            custom = hours is not None
            hours = int(hours) if custom else self.default_hours
            if status == "revoked":
                state, label = "revoked", "Đã thu hồi: máy trạm khóa dữ liệu cá nhân"
            elif expires is None:
                state, label = "none", "Chưa cấp"
            elif now < expires:
                state, label = "valid", "Còn hiệu lực"
            else:
                state, label = "expired", "Hết hạn: máy trạm khóa dữ liệu cá nhân"
            out[node] = LeaseView(node, hours, custom, expires, state, label)
        return out
