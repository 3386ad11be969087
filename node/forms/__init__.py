"""Printed forms: A4 PDFs rendered with fpdf2 and the vendored Liberation Serif.

``render(form, data)`` is the one entry point the node uses; the receipt goes through a per-procedure
template id (``ReceiptData.template``, default ``mau01``) so a procedure with its own form (e.g. the
police's CT04) registers a renderer with ``register_receipt_template``.

Fonts: ``fonts/LiberationSerif-*.ttf`` copied from Debian's fonts-liberation2 2.1.5 (SIL OFL 1.1,
full text in ``fonts/LICENSE``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from node.forms.data import (
    Agency,
    ApologyData,
    Applicant,
    DocumentItem,
    Fee,
    ReceiptData,
    RefusalData,
    ResultReturnData,
    SupplementItem,
    SupplementRequestData,
)
from node.forms.notices import render_apology, render_refusal, render_result_return, render_supplement_request
from node.forms.receipt import render_receipt

__all__ = [
    "FORMS",
    "Agency",
    "ApologyData",
    "Applicant",
    "DocumentItem",
    "Fee",
    "ReceiptData",
    "RefusalData",
    "ResultReturnData",
    "SupplementItem",
    "SupplementRequestData",
    "register_receipt_template",
    "render",
    "render_apology",
    "render_receipt",
    "render_refusal",
    "render_result_return",
    "render_supplement_request",
]

_RECEIPT_TEMPLATES: dict[str, Callable[[ReceiptData], bytes]] = {"mau01": render_receipt}


def register_receipt_template(template_id: str, renderer: Callable[[ReceiptData], bytes]) -> None:
    """Add a receipt layout for procedures whose ``ReceiptData.template`` names it."""
    _RECEIPT_TEMPLATES[template_id] = renderer


def _receipt(data: ReceiptData) -> bytes:
    try:
        renderer = _RECEIPT_TEMPLATES[data.template]
    except KeyError:
        raise ValueError(f"unknown receipt template {data.template!r}") from None
    return renderer(data)


#: form id (as stored in print_jobs.form) -> (input type, renderer)
FORMS: dict[str, tuple[type, Callable[[Any], bytes]]] = {
    "receipt": (ReceiptData, _receipt),
    "supplement_request": (SupplementRequestData, render_supplement_request),
    "refusal": (RefusalData, render_refusal),
    "apology": (ApologyData, render_apology),
    "result_return": (ResultReturnData, render_result_return),
}


def render(form: str, data: Any) -> bytes:
    """Render form ``form`` (a key of FORMS) from its data class instance."""
    try:
        kind, renderer = FORMS[form]
    except KeyError:
        raise ValueError(f"unknown form {form!r}") from None
    if not isinstance(data, kind):
        raise TypeError(f"form {form!r} needs {kind.__name__}, got {type(data).__name__}")
    return renderer(data)
