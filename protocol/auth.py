"""Request authentication between a node and the hub (SPEC.md §7.2).

Every node-to-hub request carries these headers::

    X-Motcua-Node       CN01
    X-Motcua-Epoch      1
    X-Motcua-Time       1767225600000        (the node's idea of hub time, UTC ms)
    X-Motcua-Nonce      16 random bytes, base64url
    X-Motcua-Body       lower-case hex SHA-256 of the exact body bytes (of b"" when there is none)
    X-Motcua-Signature  base64url Ed25519 signature by the key of (node, epoch)

The signature covers ``AUTH_DOMAIN`` + canonical({"body","epoch","method","node","nonce","target","time"})
where ``target`` is the path with its query string exactly as sent. The verifier checks the freshness of
``time`` against its own clock (``window_ms`` either way) and keeps every accepted signature until it is
stale, refusing a second use (``replayed``). A node whose clock is wrong learns the hub's time from the
``stale`` answer and corrects the timestamps of its *requests* (never of its entries). The cache is in
memory, so the hub also refuses any request signed before the hub process started (``before_start``):
a request captured before a restart cannot be replayed after it; the node re-signs and retries once.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.encoding import MAX_SAFE_INT, b64url_decode, b64url_encode, canonical
from protocol.entry import HASH_RE, NODE_ID_RE
from protocol.errors import ProtocolError
from protocol.keys import PublicKey

__all__ = [
    "AUTH_DOMAIN",
    "AUTH_HEADERS",
    "DEFAULT_WINDOW_MS",
    "AuthError",
    "AuthMalformed",
    "AuthMissing",
    "BadRequestSignature",
    "ReplayCache",
    "ReplayedRequest",
    "RequestBeforeStart",
    "RequestClaims",
    "StaleRequest",
    "body_digest",
    "parse_auth_headers",
    "sign_request",
    "verify_request",
]

AUTH_DOMAIN = b"motcua/request/v1\x00"
DEFAULT_WINDOW_MS = 5 * 60 * 1000
H_NODE = "X-Motcua-Node"
H_EPOCH = "X-Motcua-Epoch"
H_TIME = "X-Motcua-Time"
H_NONCE = "X-Motcua-Nonce"
H_BODY = "X-Motcua-Body"
H_SIG = "X-Motcua-Signature"
AUTH_HEADERS = (H_NODE, H_EPOCH, H_TIME, H_NONCE, H_BODY, H_SIG)
_METHOD_RE = re.compile(r"[A-Z]{3,7}")
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{22}")
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{86}")
_DIGITS_RE = re.compile(r"[1-9][0-9]{0,15}|0")


class AuthError(ProtocolError):
    """A request's authentication headers are missing, malformed, stale, replayed or wrongly signed."""

    code = "auth"


class AuthMissing(AuthError):
    """An authentication header is missing."""

    code = "auth_missing"


class AuthMalformed(AuthError):
    """An authentication header does not have its format."""

    code = "auth_malformed"


class StaleRequest(AuthError):
    """The request time is outside the freshness window of the hub's clock (the answer carries hub time)."""

    code = "stale"
    retryable = True


class ReplayedRequest(AuthError):
    """The request signature was already used."""

    code = "replayed"


class RequestBeforeStart(AuthError):
    """The request was signed before the hub process started: the replay cache of an earlier run is gone,
    so such a request could be a capture replayed across the restart. The node signs it again (fresh time
    and nonce) and retries once."""

    code = "before_start"
    retryable = True


class BadRequestSignature(AuthError):
    """The request signature does not verify under the key of (node, epoch)."""

    code = "bad_request_signature"


@dataclass(frozen=True, slots=True)
class RequestClaims:
    """The signed parts of one request, as read from its headers (before the signature is checked)."""

    node: str
    epoch: int
    method: str
    target: str
    time: int
    nonce: str
    body: str
    sig: str

    def signable(self) -> bytes:
        return AUTH_DOMAIN + canonical(
            {
                "body": self.body,
                "epoch": self.epoch,
                "method": self.method,
                "node": self.node,
                "nonce": self.nonce,
                "target": self.target,
                "time": self.time,
            }
        )


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sign_request(
    key: Ed25519PrivateKey,
    *,
    node: str,
    epoch: int,
    method: str,
    target: str,
    time_ms: int,
    body_sha256: str,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """The authentication headers for one request (``target`` = path + query exactly as sent)."""
    claims = RequestClaims(
        node=node,
        epoch=epoch,
        method=method.upper(),
        target=target,
        time=time_ms,
        nonce=b64url_encode(nonce if nonce is not None else os.urandom(16)),
        body=body_sha256,
        sig="",
    )
    sig = b64url_encode(key.sign(claims.signable()))
    return {
        H_NODE: node,
        H_EPOCH: str(epoch),
        H_TIME: str(time_ms),
        H_NONCE: claims.nonce,
        H_BODY: body_sha256,
        H_SIG: sig,
    }


def parse_auth_headers(headers: Mapping[str, str], *, method: str, target: str) -> RequestClaims:
    """Read and shape-check the authentication headers; raises AuthError (no key needed yet)."""
    values: dict[str, str] = {}
    for name in AUTH_HEADERS:
        value = headers.get(name)
        if value is None:
            raise AuthMissing(f"header {name} is missing")
        values[name] = value
    node, epoch, time_text = values[H_NODE], values[H_EPOCH], values[H_TIME]
    if not NODE_ID_RE.fullmatch(node):
        raise AuthMalformed(f"{H_NODE} is not a node id")
    if not _DIGITS_RE.fullmatch(epoch) or int(epoch) < 1:
        raise AuthMalformed(f"{H_EPOCH} must be an integer >= 1")
    if not _DIGITS_RE.fullmatch(time_text) or int(time_text) > MAX_SAFE_INT:
        raise AuthMalformed(f"{H_TIME} must be UTC milliseconds")
    if not _NONCE_RE.fullmatch(values[H_NONCE]):
        raise AuthMalformed(f"{H_NONCE} must be 16 bytes of base64url")
    if not HASH_RE.fullmatch(values[H_BODY]):
        raise AuthMalformed(f"{H_BODY} must be a lower-case hex SHA-256")
    if not _SIG_RE.fullmatch(values[H_SIG]):
        raise AuthMalformed(f"{H_SIG} must be 64 bytes of base64url")
    if not _METHOD_RE.fullmatch(method) or not target.startswith("/"):
        raise AuthMalformed("bad method or target")
    return RequestClaims(
        node=node,
        epoch=int(epoch),
        method=method,
        target=target,
        time=int(time_text),
        nonce=values[H_NONCE],
        body=values[H_BODY],
        sig=values[H_SIG],
    )


class ReplayCache:
    """Signatures accepted within the freshness window; a second use is a replay.

    Bounded: entries older than the window are dropped (a stale request is refused by time anyway), and
    past ``max_entries`` the oldest go first.
    """

    def __init__(
        self, window_ms: int = DEFAULT_WINDOW_MS, max_entries: int = 200_000, floor_ms: int = 0
    ) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        # The hub's start time: the cache is in memory, so a request signed before it cannot be checked
        # against the earlier run's cache and is refused (``before_start``) instead. No write per request.
        self.floor_ms = floor_ms
        self._seen: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, sig: str, request_time: int, now_ms: int) -> bool:
        """False if ``sig`` was seen before; otherwise remember it and return True."""
        horizon = now_ms - 2 * self.window_ms
        while self._seen:
            oldest_sig, seen_at = next(iter(self._seen.items()))
            if seen_at >= horizon and len(self._seen) < self.max_entries:
                break
            del self._seen[oldest_sig]
        if sig in self._seen:
            return False
        self._seen[sig] = now_ms
        return True


def verify_request(
    claims: RequestClaims,
    key: PublicKey,
    *,
    now_ms: int,
    replay: ReplayCache | None,
    window_ms: int = DEFAULT_WINDOW_MS,
) -> None:
    """Check freshness, signature and (last, so forgeries cannot fill it) the replay cache."""
    if abs(claims.time - now_ms) > window_ms:
        raise StaleRequest(
            f"request time {claims.time} is {claims.time - now_ms:+d} ms from hub time {now_ms}; "
            f"allowed ±{window_ms} ms",
        )
    try:
        signature = b64url_decode(claims.sig, length=64)
    except ValueError:
        raise AuthMalformed("signature is not 64 bytes of base64url") from None
    if not key.verify(signature, claims.signable()):
        raise BadRequestSignature(f"request signature does not verify for {claims.node}/{claims.epoch}")
    if replay is not None and claims.time < replay.floor_ms:
        raise RequestBeforeStart(
            f"request time {claims.time} predates the hub start {replay.floor_ms}; sign it again and retry",
        )
    if replay is not None and not replay.check_and_add(claims.sig, claims.time, now_ms):
        raise ReplayedRequest("this request signature was already used")
