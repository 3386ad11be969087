"""Positions in a log: small ordered, printable values (litestream's Pos)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Head", "Position"]


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an entry sits: ``CN01/1:42`` is seq 42 of epoch 1 of log CN01. seq 0 means "nothing yet"."""

    log: str
    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"{self.log}/{self.epoch}:{self.seq}"

    def is_zero(self) -> bool:
        return self.seq == 0


@dataclass(frozen=True, slots=True)
class Head:
    """The last entry of a log epoch: its position and hash (``None`` before the first entry)."""

    log: str
    epoch: int
    seq: int
    hash: str | None

    @property
    def position(self) -> Position:
        return Position(self.log, self.epoch, self.seq)

    def __str__(self) -> str:
        return f"{self.log}/{self.epoch}:{self.seq}@{(self.hash or '-')[:12]}"
