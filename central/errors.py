"""The hub's one error family and the one middleware that turns errors into HTTP answers.

    CentralError                    status, machine-readable code, reason; optional head / index
    ├── Unauthorized      401       auth_missing, auth_malformed, bad_request_signature, stale,
    │                               replayed, unknown_node, bad_token, officer_unauthorized
    ├── Forbidden         403       node_revoked, node_quarantined, cross_node, wrong_epoch, epoch_sealed,
    │                               blob_not_yours
    ├── NotFound          404       not_found, blob_unknown
    ├── BadRequest        400       body_hash_mismatch, bad_framing, bad_request, and protocol decode codes
    ├── Unprocessable     422       an entry fails verification (bad_signature, prev_mismatch, ...),
    │                               blob_mismatch, bad_action
    ├── Conflict          409       seq_gap (with the hub's head), fork (with the hub's head)
    ├── TooLarge          413       too_large, too_many_entries
    ├── RateLimited       429       rate_limited (with Retry-After)
    ├── InsufficientSpace 507       disk_full
    └── StorageFailed     503       storage_failed (an I/O error on the database: the hub restarts)

A ``ProtocolError`` that escapes a handler is answered as 400 (decode family) or 422 (entries) with its
own code. Every answer is an ``ErrorReply`` (protocol.messages) carrying the hub's time, so a node with a
wrong clock can correct its request timestamps.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
import unicodedata
from collections.abc import Awaitable, Callable

from aiohttp import web

from protocol import DecodeError, ErrorReply, LogHead, ProtocolError, canonical

__all__ = [
    "CLOCK",
    "BadRequest",
    "CentralError",
    "Conflict",
    "Forbidden",
    "InsufficientSpace",
    "NotFound",
    "RateLimited",
    "StorageFailed",
    "TooLarge",
    "Unauthorized",
    "Unprocessable",
    "error_middleware",
    "now_ms",
]

log = logging.getLogger("motcua.central")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


CLOCK = web.AppKey("clock", Callable[[], int])


class CentralError(Exception):
    """Base of the hub's errors; ``status`` is the HTTP status, ``code`` the machine-readable reason."""

    status = 500

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        head: LogHead | None = None,
        index: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.head = head
        self.index = index
        self.retry_after = retry_after


class Unauthorized(CentralError):
    """The caller is not who it claims (or its request is stale or replayed)."""

    status = 401


class Forbidden(CentralError):
    """The caller is known but may not do this."""

    status = 403


class NotFound(CentralError):
    """No such thing (or the caller may not know whether it exists)."""

    status = 404


class BadRequest(CentralError):
    """The request is malformed."""

    status = 400


class Unprocessable(CentralError):
    """Well-formed, but an entry or a chunk fails verification."""

    status = 422


class Conflict(CentralError):
    """The push does not continue the hub's copy (gap) or contradicts it (fork)."""

    status = 409


class TooLarge(CentralError):
    """Over a size or count limit."""

    status = 413


class RateLimited(CentralError):
    """Too many requests; ``retry_after`` seconds."""

    status = 429


class InsufficientSpace(CentralError):
    """The hub's disk is full: nothing was stored."""

    status = 507


class StorageFailed(CentralError):
    """An I/O error on the database's write path (e.g. EIO from fdatasync at commit): fail-stop.

    After a failed fsync the page cache may have dropped the data and cleared the error (fsyncgate), so
    the store refuses every later write and ``serve`` exits with ``EXIT_STORAGE_FAILED`` for systemd to
    restart it; SQLite's recovery at the next start settles what was stored. The push was not
    acknowledged; resending it after the restart is safe (pushes are idempotent).
    """

    status = 503

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "storage_failed",
            "the hub's storage reported an I/O error: not confirmed, the hub restarts; resend later",
        )
        self.detail = detail


def _printable(reason: str) -> str:
    """A reason safe to encode canonically: it may quote hostile input (a non-NFC string, a lone
    surrogate), and the refusal must still be sent, not turned into a 500 by the encoder."""
    return unicodedata.normalize("NFC", reason.encode("utf-8", "replace").decode("utf-8"))[:1000]


def error_response(status: int, reply: ErrorReply, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    reply = dataclasses.replace(reply, reason=_printable(reply.reason))
    return web.Response(
        status=status, body=canonical(reply.to_wire()), content_type="application/json", headers=headers
    )


def from_protocol(exc: ProtocolError) -> CentralError:
    cls: type[CentralError] = BadRequest if isinstance(exc, DecodeError) else Unprocessable
    return cls(exc.code, exc.reason, index=getattr(exc, "index", None))


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except CentralError as exc:
        err = exc
    except ProtocolError as exc:
        err = from_protocol(exc)
    except web.HTTPException:
        raise
    except ConnectionResetError:
        # The client went away mid-request (aiohttp sets "Connection lost" on the body it was reading): on
        # a flaky uplink that is every link reset during an upload, not a server fault. Nothing half-done
        # was kept (a chunk is written only once whole); the answer will not arrive, but the access log
        # and the error metrics see a client-side status instead of a 500.
        log.info("client disconnected during %s %s", request.method, request.path)
        err = BadRequest("client_disconnected", "the connection was lost before the request was read")
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            err = InsufficientSpace("disk_full", "the hub's disk is full; nothing was stored")
        else:
            log.exception("I/O error on %s %s", request.method, request.path)
            err = CentralError("internal", "internal error")
    except sqlite3.Error as exc:
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == 13:  # SQLITE_FULL: nothing was committed
            err = InsufficientSpace("disk_full", "the hub's disk is full; nothing was stored")
        else:
            log.exception("database error on %s %s", request.method, request.path)
            err = CentralError("internal", "internal error")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        err = CentralError("internal", "internal error")
    reply = ErrorReply(err.code, err.reason, request.app.get(CLOCK, now_ms)(), err.head, err.index)
    return error_response(err.status, reply, err.retry_after)
