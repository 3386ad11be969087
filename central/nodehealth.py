"""Sync health of every node, as the dashboard shows it: facts read from the hub's tables, then judged.

``read_facts`` gathers what the hub knows of one node (registry row, last heartbeat, heads, receipts,
pending scan bytes, quarantined entries, forks, open alarms, recent refused pushes); ``assess`` is pure
and turns facts into a ``NodeHealth``: its problems (each with a level and a Vietnamese label) and a
severity, the highest level of its problems. docs/admin.md explains the rules.

Levels: 4 alarm (integrity: fork, quarantined entries awaiting review, node quarantined, entries refused
for their signature or chain), 3 offline (an enrolled node not heard from within the online window),
2 warning (time uncertain, low disk, printer or scanner fault, old backlog, last error, other refusals),
1 notice (invited but not yet enrolled, revoked with nothing left to review), 0 healthy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from central.registry import Registry
from central.store import SqliteStore
from protocol import Heartbeat, decode
from protocol.blobs import CHUNK_SIZE

__all__ = [
    "HEALTHY_DEVICE_STATES",
    "INTEGRITY_CODES",
    "LEVEL_LABELS",
    "NodeFacts",
    "NodeHealth",
    "Problem",
    "Refusal",
    "RefusalLog",
    "Thresholds",
    "assess",
    "read_all",
    "read_facts",
]

ALARM, OFFLINE, WARNING, NOTICE, HEALTHY = 4, 3, 2, 1, 0
LEVEL_LABELS = {
    ALARM: "Báo động",
    OFFLINE: "Mất kết nối",
    WARNING: "Cảnh báo",
    NOTICE: "Lưu ý",
    HEALTHY: "Bình thường",
}
HEALTHY_DEVICE_STATES = frozenset({"ok", "ready", "idle", "printing", "scanning", "busy"})
# Refusals that say a node's data or identity is wrong, not merely that it was late or too fast.
INTEGRITY_CODES = frozenset(
    {
        "bad_signature",
        "prev_mismatch",
        "fork",
        "bad_genesis",
        "cross_node",
        "bad_request_signature",
        "replayed",
        "wrong_epoch",
        "epoch_sealed",
        "body_hash_mismatch",
        "not_canonical",
        "time_backwards",
        "bad_shape",
        "key_mismatch",
        "wrong_log",
    }
)
REFUSAL_WINDOW_MS = 24 * 3600 * 1000
KIND_LABELS = {"branch": "Chi nhánh", "van": "Xe lưu động", "point": "Điểm tiếp nhận"}


@dataclass(frozen=True, slots=True)
class Refusal:
    at_ms: int
    op: str
    code: str


@dataclass
class RefusalLog:
    """Recent refused sync requests per enrolled node (in memory, bounded; the hub's metrics keep totals)."""

    per_node: int = 50
    items: dict[str, deque[Refusal]] = field(default_factory=dict)

    def add(self, node: str, refusal: Refusal) -> None:
        self.items.setdefault(node, deque(maxlen=self.per_node)).append(refusal)

    def recent(self, node: str, since_ms: int) -> list[Refusal]:
        return [r for r in self.items.get(node, ()) if r.at_ms >= since_ms]


@dataclass(frozen=True, slots=True)
class Thresholds:
    online_window_ms: int
    skew_warn_ms: int
    lag_warn_ms: int
    disk_warn_bytes: int


@dataclass(frozen=True, slots=True)
class NodeFacts:
    node: str
    kind: str
    name: str
    status: str
    reason: str
    epoch: int
    created_ms: int
    contacts: tuple[int, ...]  # heartbeat times, newest first (bounded)
    last_contact_ms: int | None
    beat: Heartbeat | None
    skew_ms: int | None
    held_seq: int
    last_receipt: tuple[int, int] | None  # (seq, hub_time)
    scan_bytes_pending: int
    quarantined_pending: int
    forks: int
    alarms: tuple[tuple[str, str, int], ...]  # (kind, message, created_ms), open ones
    refusals: tuple[Refusal, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    level: int
    code: str
    label: str


@dataclass(frozen=True, slots=True)
class NodeHealth:
    facts: NodeFacts
    online: bool
    since_ms: int | None  # online since / offline since (None: never heard from)
    oldest_unacked_age_ms: int | None
    problems: tuple[Problem, ...]

    @property
    def severity(self) -> int:
        return max((p.level for p in self.problems), default=HEALTHY)

    @property
    def severity_label(self) -> str:
        return LEVEL_LABELS[self.severity]

    @property
    def node(self) -> str:
        return self.facts.node

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.facts.kind, self.facts.kind)

    @property
    def reported_seq(self) -> int | None:
        beat = self.facts.beat
        if beat is None:
            return None
        heads = [h.seq for h in beat.heads if h.log == self.facts.node and h.epoch == self.facts.epoch]
        return max(heads) if heads else None


def _online_since(contacts: Sequence[int], window: int) -> int | None:
    """Start of the current unbroken run of contacts (no gap longer than the window)."""
    if not contacts:
        return None
    since = contacts[0]
    for newer, older in zip(contacts, contacts[1:], strict=False):
        if newer - older > window:
            break
        since = older
    return since


def _devices(kind: str, items: Iterable[dict[str, Any]]) -> list[Problem]:
    problems = []
    for item in items:
        state = str(item.get("state", "unknown"))[:40]
        if state.lower() not in HEALTHY_DEVICE_STATES:
            name = str(item.get("name", "?"))[:60]
            label = {"printer": "Máy in", "scanner": "Máy quét"}[kind]
            problems.append(Problem(WARNING, f"{kind}_fault", f"{label} {name}: {state}"))
    return problems


def assess(facts: NodeFacts, now: int, limits: Thresholds) -> NodeHealth:
    """Judge one node's facts at hub time ``now`` (pure)."""
    problems: list[Problem] = []
    last = facts.last_contact_ms
    online = last is not None and now - last <= limits.online_window_ms
    if online:
        since = _online_since(facts.contacts, limits.online_window_ms) if facts.contacts else last
        since = min(since, last) if since is not None else last
    else:
        since = last
    if facts.status == "invited":
        problems.append(Problem(NOTICE, "invited", "Đã mời, chưa ghi danh"))
    if facts.status == "quarantined":
        problems.append(Problem(ALARM, "node_quarantined", f"Nút bị cách ly: {facts.reason}"))
    if facts.status == "revoked":
        level = ALARM if facts.quarantined_pending else NOTICE
        problems.append(Problem(level, "revoked", f"Khóa đã thu hồi: {facts.reason}"))
    if facts.forks:
        problems.append(Problem(ALARM, "fork", f"Rẽ nhánh nhật ký: {facts.forks} vị trí"))
    if facts.quarantined_pending:
        problems.append(
            Problem(ALARM, "quarantine", f"{facts.quarantined_pending} bản ghi bị cách ly chờ xem xét")
        )
    recent = [r for r in facts.refusals if now - r.at_ms <= REFUSAL_WINDOW_MS]
    integrity = sorted({r.code for r in recent if r.code in INTEGRITY_CODES})
    other = sorted({r.code for r in recent if r.code not in INTEGRITY_CODES})
    if integrity:
        problems.append(Problem(ALARM, "refused_integrity", "Bị từ chối (toàn vẹn): " + ", ".join(integrity)))
    if other:
        problems.append(Problem(WARNING, "refused", "Bị từ chối: " + ", ".join(other)))
    if facts.status in ("active", "quarantined") and not online:
        label = "Chưa từng liên lạc" if last is None else "Không liên lạc quá thời hạn"
        problems.append(Problem(OFFLINE, "offline", label))
    beat = facts.beat
    age = None
    if beat is not None:
        if beat.oldest_unacked_ms is not None and beat.unacked_entries:
            age = max(0, now - beat.oldest_unacked_ms)
            if age > limits.lag_warn_ms:
                problems.append(Problem(WARNING, "lag", "Tồn đọng chưa đồng bộ quá lâu"))
        if beat.disk_free_bytes < limits.disk_warn_bytes:
            problems.append(Problem(WARNING, "disk_low", "Sắp hết dung lượng đĩa"))
        problems.extend(_devices("printer", beat.printers))
        problems.extend(_devices("scanner", beat.scanners))
        if beat.last_error:
            problems.append(Problem(WARNING, "last_error", f"Lỗi gần nhất: {beat.last_error[:120]}"))
    if facts.skew_ms is not None and abs(facts.skew_ms) > limits.skew_warn_ms:
        problems.append(Problem(WARNING, "time_uncertain", "Đồng hồ không tin cậy (lệch giờ)"))
    problems.sort(key=lambda p: -p.level)
    return NodeHealth(facts, online, since, age, tuple(problems))


async def read_facts(
    store: SqliteStore, registry: Registry, node: str, refusals: RefusalLog, now: int
) -> NodeFacts | None:
    row = await store.fetchone(
        "SELECT node, kind, name, status, status_reason, epoch, created_ms, last_seen_ms FROM nodes "
        "WHERE node = ?",
        (node,),
    )
    if row is None:
        return None
    contacts = tuple(
        r[0]
        for r in await store.fetchall(
            "SELECT received_ms FROM heartbeats WHERE node = ? ORDER BY received_ms DESC LIMIT 500", (node,)
        )
    )
    latest = await store.fetchone(
        "SELECT skew_ms, body FROM heartbeats WHERE node = ? ORDER BY received_ms DESC LIMIT 1", (node,)
    )
    beat = Heartbeat.from_wire(decode(bytes(latest[1]))) if latest else None
    held = await store.fetchone("SELECT seq FROM heads WHERE log = ? AND epoch = ?", (node, row[5]))
    pushed = await store.fetchone("SELECT MAX(received_ms) FROM entries WHERE log = ?", (node,))
    receipt = await store.fetchone(
        "SELECT seq, hub_time FROM receipts WHERE log = ? ORDER BY epoch DESC, seq DESC LIMIT 1", (node,)
    )
    pending = await store.fetchone(
        "SELECT COALESCE(SUM(MAX(0, b.size - ? * (SELECT COUNT(*) FROM blob_chunks c "
        "WHERE c.sha256 = b.sha256))), 0) FROM blobs b WHERE b.state = 'partial' AND EXISTS "
        "(SELECT 1 FROM blob_refs r WHERE r.sha256 = b.sha256 AND r.log = ?)",
        (CHUNK_SIZE, node),
    )
    quarantined = await store.fetchone(
        "SELECT COUNT(*) FROM quarantine WHERE log = ? AND decision IS NULL", (node,)
    )
    forks = await store.fetchone("SELECT COUNT(DISTINCT seq) FROM forks WHERE log = ?", (node,))
    alarms = await store.fetchall(
        "SELECT kind, message, created_ms FROM alarms WHERE node = ? AND cleared_ms IS NULL ORDER BY id",
        (node,),
    )
    seen = [t for t in (row[7], registry.last_seen.get(node), pushed[0] if pushed else None) if t is not None]
    return NodeFacts(
        node=row[0],
        kind=row[1],
        name=row[2],
        status=row[3],
        reason=row[4],
        epoch=row[5],
        created_ms=row[6],
        contacts=contacts,
        last_contact_ms=max(seen) if seen else None,
        beat=beat,
        skew_ms=latest[0] if latest else None,
        held_seq=held[0] if held else 0,
        last_receipt=(receipt[0], receipt[1]) if receipt else None,
        scan_bytes_pending=int(pending[0]) if pending else 0,
        quarantined_pending=quarantined[0],
        # evidence stays forever; it is an alarm while its alarm row is open (release clears it)
        forks=forks[0] if any(a[0] == "fork" for a in alarms) else 0,
        alarms=tuple((a[0], a[1], a[2]) for a in alarms),
        refusals=tuple(refusals.recent(node, now - REFUSAL_WINDOW_MS)),
    )


async def read_all(
    store: SqliteStore, registry: Registry, refusals: RefusalLog, now: int, limits: Thresholds
) -> list[NodeHealth]:
    """Every node, most severe first (then longest without contact, then by id)."""
    nodes = [r[0] for r in await store.fetchall("SELECT node FROM nodes ORDER BY node")]
    rows = []
    for node in nodes:
        facts = await read_facts(store, registry, node, refusals, now)
        if facts is not None:
            rows.append(assess(facts, now, limits))
    rows.sort(key=lambda h: (-h.severity, h.facts.last_contact_ms or 0, h.node))
    return rows
