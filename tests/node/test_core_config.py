"""Configuration: TOML + MOTCUA_NODE_* overrides, errors naming the key, documented fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import FIELDS, NodeConfig, help_text, load
from node.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "node.toml").write_text(text, encoding="utf-8")
    return tmp_path


BASE = 'node_id = "CN01"\nunit_code = "000.00.01.H26"\nname = "Chi nhánh Tây Hồ"\n'


def test_defaults_and_env_overrides(tmp_path: Path) -> None:
    config = load(
        _write(tmp_path, BASE),
        {"MOTCUA_NODE_LISTEN": "0.0.0.0:9000", "MOTCUA_NODE_SECURE_COOKIES": "true", "OTHER": "ignored"},
    )
    assert isinstance(config, NodeConfig)
    assert config.host_port == ("0.0.0.0", 9000) and config.secure_cookies is True
    assert config.code_block.start == 1 and config.code_block.last == 999
    assert config.data_dir == tmp_path


@pytest.mark.parametrize(
    ("text", "environ", "key"),
    [
        (BASE + "colour = 1\n", {}, "colour"),
        (BASE + "[scanners]\nx = 1\n", {}, "scanners"),
        (BASE + 'kind = "bus"\n', {}, "kind"),
        (BASE + "code_block_size = 0\n", {}, "code_block_size"),
        (BASE + 'session_idle_minutes = "30"\n', {}, "session_idle_minutes"),
        (BASE.replace("CN01", "cn 1"), {}, "node_id"),
        ('node_id = "CN01"\nname = "X"\n', {}, "unit_code"),
        (BASE, {"MOTCUA_NODE_LOGIN_MAX_FAILURES": "many"}, "MOTCUA_NODE_LOGIN_MAX_FAILURES"),
        (BASE, {"MOTCUA_NODE_NOPE": "1"}, "MOTCUA_NODE_NOPE"),
        (BASE + "listen = 'nohost'\n", {}, "listen"),
        (BASE + "node_id = 'CN02'\n", {}, "node.toml"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(_write(tmp_path, text), environ)
    assert key in caught.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="motcua-node init"):
        load(tmp_path, {})


def test_every_field_has_help_and_is_documented() -> None:
    docs = (ROOT / "docs" / "node.md").read_text(encoding="utf-8")
    for name in FIELDS:
        assert help_text()[name].strip(), name
        if name != "data_dir":
            assert f"`{name}`" in docs, f"docs/node.md does not document {name}"
