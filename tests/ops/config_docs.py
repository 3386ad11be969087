"""The field tables of docs/configuration.md, rendered from the config dataclasses' help text.

``python -m tests.ops.config_docs`` rewrites the generated parts of docs/configuration.md (between the
``<!-- generated: ... -->`` markers); ``tests/ops/test_config_docs.py`` fails when they are stale. It
lives under tests/ because it imports both node/ and central/, which never import each other.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from central import config as central_config
from node import config as node_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
SECTIONS = {
    "node": (node_config.NodeConfig, "MOTCUA_NODE_", {"data_dir"}),
    "central": (central_config.CentralConfig, "MOTCUA_CENTRAL_", {"data_dir"}),
}
_MARK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "required"
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _type(f: dataclasses.Field[Any]) -> str:
    text = str(f.type)
    return {"str | None": "string (optional)", "str": "string", "int": "integer", "bool": "boolean"}.get(
        text, "table" if text.startswith("tuple") else text
    )


def render(section: str) -> str:
    """The markdown table of one config dataclass: key, type, default, environment variable, meaning."""
    cls, prefix, skip = SECTIONS[section]
    lines = ["| key | type | default | environment variable | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        help_text = str(f.metadata["help"]).replace("|", "\\|")
        env = "(file only)" if _type(f) == "table" else f"`{prefix}{f.name.upper()}`"
        lines.append(f"| `{f.name}` | {_type(f)} | {_default(f)} | {env} | {help_text} |")
    return "\n".join(lines) + "\n"


def generated_parts(text: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in _MARK.finditer(text)}


def regenerate(text: str) -> str:
    return _MARK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), text)


def main() -> int:
    text = DOC.read_text("utf-8")
    new = regenerate(text)
    if new != text:
        DOC.write_text(new, "utf-8")
        print(f"updated {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
