"""Hypothesis strategies for canonical JSON values and signed chains."""

from __future__ import annotations

import unicodedata

from hypothesis import strategies as st

from protocol.encoding import MAX_SAFE_INT

nfc_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12).map(
    lambda s: unicodedata.normalize("NFC", s)
)

scalars = st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | nfc_text

json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nfc_text, children, max_size=4),
    max_leaves=20,
)
