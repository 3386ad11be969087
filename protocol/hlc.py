"""Hybrid logical clock: wall milliseconds (UTC) plus a counter, never going backwards.

``now()`` stamps a local event; ``observe()`` folds in a time seen on an entry from another log
(e.g. a hub decision pulled from the mailbox) so that what this node records afterwards orders after
it. Remote times too far ahead of the local wall clock are not adopted (a peer with a broken clock
must not drag this log into the future); ``observe`` reports that instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.encoding import MAX_SAFE_INT

__all__ = ["MAX_COUNTER", "HybridClock", "Timestamp"]

Timestamp = tuple[int, int]
MAX_COUNTER = 2**31 - 1


@dataclass(slots=True)
class HybridClock:
    """HLC state for one log. ``max_drift_ms`` bounds how far a remote time may pull us ahead."""

    last: Timestamp = (0, 0)
    max_drift_ms: int = 5 * 60 * 1000

    def now(self, wall_ms: int) -> Timestamp:
        """The timestamp for a new local event at wall time ``wall_ms``; strictly after ``last``."""
        ms, n = self.last
        if wall_ms > ms:
            stamp = (wall_ms, 0)
        elif n < MAX_COUNTER:
            stamp = (ms, n + 1)
        else:  # counter exhausted within one millisecond: borrow the next millisecond
            stamp = (ms + 1, 0)
        if stamp[0] > MAX_SAFE_INT:
            raise OverflowError("hybrid clock beyond 2**53-1 ms")
        self.last = stamp
        return stamp

    def observe(self, remote: Timestamp, wall_ms: int) -> bool:
        """Merge a remote timestamp; return False (and ignore it) if it is beyond the drift bound."""
        if remote[0] > wall_ms + self.max_drift_ms:
            return False
        if remote > self.last:
            self.last = (remote[0], remote[1])
        return True

    def skew_ms(self, wall_ms: int) -> int:
        """How far the clock's last stamp is ahead of the wall clock (0 when not ahead)."""
        return max(0, self.last[0] - wall_ms)
