"""Body validation per entry kind: the step after chain verification.

A body that fails here does not break the chain: the entry is kept and quarantined for a person to
review, and what follows keeps moving. Unknown kinds are accepted, stored and carried (forward
compatibility); folds ignore them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from protocol.dossier.codes import CODE_FLOOR_KIND, validate_code_floor
from protocol.dossier.events import BODY_VALIDATORS
from protocol.entry import GENESIS_KIND
from protocol.errors import BodyInvalid
from protocol.hubkinds import HUB_VALIDATORS

__all__ = ["Validator", "is_known", "validate_body"]

Validator = Callable[[Mapping[str, Any]], None]


def _genesis(body: Mapping[str, Any]) -> None:
    """Genesis bodies are checked by the chain verifier itself (they are part of the chain)."""


_VALIDATORS: dict[str, Validator] = {
    GENESIS_KIND: _genesis,
    CODE_FLOOR_KIND: validate_code_floor,
    **HUB_VALIDATORS,
    **BODY_VALIDATORS,
}


def is_known(kind: str) -> bool:
    return kind in _VALIDATORS


def validate_body(kind: str, body: Mapping[str, Any]) -> None:
    """Raise BodyInvalid (with ``field``) when a known kind's body is not valid; unknown kinds pass."""
    validator = _VALIDATORS.get(kind)
    if validator is None:
        return
    try:
        validator(body)
    except BodyInvalid:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # a validator bug must still quarantine, not crash
        raise BodyInvalid(f"{kind}: {exc}") from None
