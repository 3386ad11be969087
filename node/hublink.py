"""The node's link to the central hub: enrollment with a one-time token, and the pinned hub key.

An admin runs ``motcua-central node invite CN01 ...`` and gives the printed ``motcua1.`` token to whoever
sets up the node. The token carries the hub URL, the fingerprint of the hub's key, the node id and a
secret (SPEC §7.1). ``request_enrollment`` posts the node's public key with a proof of possession to
``/v1/enroll``; the hub answers with a signed enrollment binding (node, epoch, key). The node accepts it
only if the hub key in it has the token's fingerprint (pinning) and the signature verifies; the link
(hub URL, hub key, epoch, the signed enrollment) is kept in ``hub_link`` and the URL in ``node.toml``.

``enroll_existing`` links a node created offline (``motcua-node init`` without a token) whose log is
still at epoch 1. A node id the hub already knows cannot be linked that way: its history is at the hub,
so the node must be restored from it (``motcua-node restore``, node.restore).

    NodeError
    └── EnrollError                 enrollment refused or impossible; the message says what to do
        ├── TokenRefused    422     malformed, unknown, used, expired or other-node token; key reused
        ├── HubUnreachable  503     no answer from the hub at the token's URL
        └── HubMismatch     422     the hub's key does not match the token's fingerprint (or bad answer)
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import config as config_module
from node.config import CONFIG_FILE, NodeConfig
from node.dbcipher import OperationalError
from node.errors import NodeError
from protocol import (
    Enrollment,
    EnrollmentRequest,
    ErrorReply,
    InviteToken,
    ProtocolError,
    PublicKey,
    canonical,
    decode,
    fingerprint,
    parse_public_key,
    public_key_text,
)

__all__ = [
    "HUB_LINK_SQL",
    "EnrollError",
    "HubLink",
    "HubMismatch",
    "HubUnreachable",
    "TokenRefused",
    "current_link",
    "enroll_existing",
    "parse_token",
    "request_enrollment",
    "save_link",
    "set_hub_url",
]

HUB_LINK_SQL = """
CREATE TABLE hub_link (
    epoch       INTEGER PRIMARY KEY,       -- the node epoch this enrollment bound
    hub_url     TEXT NOT NULL,             -- the URL the node enrolled at (node.toml hub_url may override)
    hub_key     TEXT NOT NULL,             -- the pinned hub public key (base64url)
    fingerprint TEXT NOT NULL,             -- its fingerprint, as printed by the hub and in the token
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    enrollment  BLOB NOT NULL,             -- canonical bytes of the hub-signed enrollment
    enrolled_at INTEGER NOT NULL           -- node wall clock, unix ms
) STRICT;
"""


class EnrollError(NodeError):
    """Enrollment with the hub was refused or could not be done."""

    code = "enroll"
    status = 422
    default_message = "Không đăng ký được máy trạm với trung tâm."


class TokenRefused(EnrollError):
    """The token is malformed, or the hub refused it (unknown, used, expired, for another node)."""

    code = "token_refused"


class HubUnreachable(EnrollError):
    """The hub did not answer."""

    code = "hub_unreachable"
    status = 503
    retryable = True


class HubMismatch(EnrollError):
    """The hub's key is not the one the token names, or its answer is not a valid enrollment."""

    code = "hub_mismatch"


_REFUSALS = (
    ("already used", "Mã mời này đã được dùng. Đề nghị quản trị trung tâm cấp mã mời mới."),
    ("expired", "Mã mời đã hết hạn. Đề nghị quản trị trung tâm cấp mã mời mới."),
    ("another node", "Mã mời này dành cho máy trạm khác."),
    ("not known", "Trung tâm không nhận ra mã mời này (sai mã, hoặc mã của trung tâm khác)."),
)


@dataclass(frozen=True, slots=True)
class HubLink:
    """The enrollment of one epoch: where the hub is and which key it signs with."""

    epoch: int
    hub_url: str
    hub_key: PublicKey
    kind: str
    name: str
    enrollment: Enrollment

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.hub_key)


def parse_token(text: str) -> InviteToken:
    try:
        return InviteToken.parse(text)
    except ProtocolError as exc:
        raise TokenRefused(
            "Mã mời không hợp lệ (phải bắt đầu bằng motcua1. và được chép đầy đủ).", detail=exc.reason
        ) from None


async def request_enrollment(
    token: InviteToken, key: Ed25519PrivateKey, *, hub_url: str | None = None, timeout: float = 30.0
) -> tuple[Enrollment, PublicKey]:
    """Enroll ``key`` for ``token.node`` at the hub (``hub_url`` or the token's); return the verified
    enrollment and the pinned hub key. Nothing is stored here."""
    base = (hub_url or token.hub).rstrip("/")
    request = EnrollmentRequest.make(token, key)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(
                base + "/v1/enroll",
                data=canonical(request.to_wire()),
                headers={"Content-Type": "application/json"},
            ) as resp:
                status, payload = resp.status, await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise HubUnreachable(
            f"Không kết nối được trung tâm tại {base}. Kiểm tra mạng và địa chỉ trung tâm rồi thử lại "
            "(mã mời chưa bị dùng).",
            detail=repr(exc),
        ) from None
    if status != 200:
        try:
            reply = ErrorReply.from_wire(decode(payload, max_bytes=None))
            code, reason = reply.error, reply.reason
        except (ProtocolError, ValueError):
            code, reason = f"http_{status}", payload[:200].decode("utf-8", "replace")
        if code == "key_reused":
            raise TokenRefused(
                "Khóa này đã được đăng ký trước đó; một lần đăng ký cần một khóa mới.", detail=reason
            )
        if code == "bad_token":
            message = next((m for needle, m in _REFUSALS if needle in reason), "Trung tâm từ chối mã mời.")
            raise TokenRefused(message, detail=reason)
        raise HubMismatch(f"Trung tâm trả lời lỗi {status} ({code}) khi đăng ký.", detail=reason)
    try:
        enrollment = Enrollment.from_wire(decode(payload, max_bytes=None))
        hub_key = enrollment.verify(token, public_key_text(key))
    except ProtocolError as exc:
        raise HubMismatch(
            "Máy chủ trả lời không phải là trung tâm ghi trong mã mời (khóa hoặc chữ ký không khớp "
            f"dấu vân tay {token.fp}). Không lưu gì; kiểm tra địa chỉ trung tâm.",
            detail=exc.reason,
        ) from None
    return enrollment, hub_key


async def save_link(db: aiosqlite.Connection, enrollment: Enrollment, hub_url: str, now: int) -> None:
    """Keep the enrollment of its epoch (in the caller's write transaction)."""
    await db.execute(
        "INSERT INTO hub_link (epoch, hub_url, hub_key, fingerprint, kind, name, enrollment, enrolled_at)"
        " VALUES (?,?,?,?,?,?,?,?)",
        (
            enrollment.epoch,
            hub_url.rstrip("/"),
            enrollment.hub_key,
            fingerprint(parse_public_key(enrollment.hub_key)),
            enrollment.kind,
            enrollment.name,
            canonical(enrollment.to_wire()),
            now,
        ),
    )


async def current_link(db: aiosqlite.Connection, epoch: int | None = None) -> HubLink | None:
    """The enrollment of ``epoch`` (default: the latest one), or None if the node never enrolled."""
    sql = "SELECT epoch, hub_url, hub_key, kind, name, enrollment FROM hub_link"
    args: tuple[int, ...] = ()
    if epoch is not None:
        sql, args = sql + " WHERE epoch = ?", (epoch,)
    async with db.execute(sql + " ORDER BY epoch DESC LIMIT 1", args) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    hub_key = str(row[2])
    try:  # a key the sync client pinned from a verified hub.key_rotation (SPEC §7.10), for this epoch
        async with db.execute("SELECT value FROM sync_state WHERE key = 'pinned_hub_key'") as cursor:
            pinned = await cursor.fetchone()
    except OperationalError:
        pinned = None
    if pinned is not None and str(pinned[0]).partition(" ")[0] == str(row[0]):
        hub_key = str(pinned[0]).partition(" ")[2]
    return HubLink(
        epoch=int(row[0]),
        hub_url=str(row[1]),
        hub_key=parse_public_key(hub_key),
        kind=str(row[3]),
        name=str(row[4]),
        enrollment=Enrollment.from_wire(decode(bytes(row[5]), max_bytes=None)),
    )


def set_hub_url(data_dir: Path, hub_url: str) -> NodeConfig:
    """Write ``hub_url`` into ``node.toml`` (atomically; other keys unchanged, environment not baked in)."""
    config = dataclasses.replace(config_module.load(data_dir, {}), hub_url=hub_url.rstrip("/"))
    config_module.validate(config)
    tmp = data_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text(config_module.dump(config), encoding="utf-8")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, data_dir / CONFIG_FILE)
    return config


async def enroll_existing(config: NodeConfig, token_text: str, *, hub_url: str | None = None) -> HubLink:
    """Link a node created offline to the hub (``motcua-node enroll``): the node keeps its key and its log.

    Only a node whose current epoch the hub binds with the same genesis can be linked: for a node id the
    hub never saw, epoch 1 with no previous epoch. Otherwise the hub holds another history of this id and
    the node must be restored from it instead (the message says so; the token is then used up).
    """
    from node.store import Store
    from protocol import load_private_key

    token = parse_token(token_text)
    if token.node != config.node_id:
        raise TokenRefused(f"Mã mời dành cho máy trạm {token.node}, không phải {config.node_id}.")
    key = load_private_key(config.key_path)
    base = (hub_url or config.hub_url or token.hub).rstrip("/")
    store = await Store.open(config.db_path)
    try:
        async with store.read() as db:
            async with db.execute("SELECT max(epoch) FROM epochs") as cursor:
                row = await cursor.fetchone()
            epoch = int(row[0]) if row and row[0] is not None else 0
            linked = await current_link(db, epoch)
            async with db.execute(
                "SELECT raw FROM entries WHERE log = ? AND epoch = ? AND seq = 1", (config.node_id, epoch)
            ) as cursor:
                genesis_row = await cursor.fetchone()
        if linked is not None:
            raise EnrollError(
                f"Máy trạm {config.node_id} đã đăng ký với trung tâm {linked.hub_url} (epoch {epoch}, "
                f"dấu vân tay {linked.fingerprint})."
            )
        if genesis_row is None:
            raise EnrollError(detail=f"no genesis for epoch {epoch}")
        from protocol import Entry

        genesis = Entry.parse(bytes(genesis_row[0]))
        enrollment, _ = await request_enrollment(token, key, hub_url=base)
        previous = enrollment.previous
        named = genesis.body.get("previous")
        expected = (
            None
            if previous is None
            else {"epoch": previous.epoch, "seq": previous.seq, "head": previous.hash}
        )
        if enrollment.epoch != epoch or named != expected:
            raise EnrollError(
                f"Trung tâm đã có nhật ký của mã máy trạm {config.node_id} (trung tâm cấp epoch "
                f"{enrollment.epoch}, máy này đang ở epoch {epoch}); nhật ký trên máy này không thể nối "
                "tiếp. Hãy dùng 'motcua-node restore' trên một thư mục trống với mã mời mới.",
                detail=f"enrollment epoch {enrollment.epoch} previous {previous}",
            )
        async with store.write() as db:
            await save_link(db, enrollment, base, int(time.time() * 1000))
            link = await current_link(db, epoch)
    finally:
        await store.close()
    set_hub_url(config.data_dir, base)
    assert link is not None
    return link
