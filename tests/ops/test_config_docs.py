"""docs/configuration.md matches the config dataclasses; env overrides work; bad keys and values are named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from central import cli as central_cli
from central import config as central_config
from node import config as node_config
from node.errors import ConfigError as NodeConfigError
from tests.ops import config_docs

BASE = 'node_id = "CN01"\nunit_code = "000.00.01.H26"\nname = "Chi nhánh Tây Hồ"\n'


def test_generated_tables_are_current() -> None:
    text = config_docs.DOC.read_text("utf-8")
    parts = config_docs.generated_parts(text)
    assert set(parts) == set(config_docs.SECTIONS)
    for section, body in parts.items():
        assert body == config_docs.render(section), (
            f"docs/configuration.md section {section} is stale: run python -m tests.ops.config_docs"
        )


@pytest.mark.parametrize("section", sorted(config_docs.SECTIONS))
def test_every_field_has_help_and_a_row(section: str) -> None:
    cls, prefix, skip = config_docs.SECTIONS[section]
    text = config_docs.generated_parts(config_docs.DOC.read_text("utf-8"))[section]
    for f in dataclasses.fields(cls):
        help_text = str(f.metadata.get("help", "")).strip()
        assert len(help_text) >= 10, f"{section}.{f.name} has no help text"
        if f.name not in skip:
            assert f"| `{f.name}` |" in text and help_text.replace("|", "\\|") in text, f.name


def test_a_stale_table_is_detected() -> None:
    text = config_docs.DOC.read_text("utf-8")
    damaged = text.replace("| `listen` |", "| `listen_typo` |", 1)
    parts = config_docs.generated_parts(damaged)
    assert any(body != config_docs.render(name) for name, body in parts.items())
    assert config_docs.regenerate(damaged) == text


def _node(tmp_path: Path, text: str = BASE) -> Path:
    (tmp_path / "node.toml").write_text(text, "utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("MOTCUA_NODE_LISTEN", "0.0.0.0:9001", "listen", "0.0.0.0:9001"),
        ("MOTCUA_NODE_HUB_URL", "https://hub.example:8470", "hub_url", "https://hub.example:8470"),
        ("MOTCUA_NODE_HUB_URL", "", "hub_url", None),
        ("MOTCUA_NODE_SESSION_IDLE_MINUTES", " 45 ", "session_idle_minutes", 45),
        ("MOTCUA_NODE_SECURE_COOKIES", "yes", "secure_cookies", True),
        ("MOTCUA_NODE_SECURE_COOKIES", "0", "secure_cookies", False),
        ("MOTCUA_NODE_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
        ("MOTCUA_NODE_NAME", "Xe lưu động số 1", "name", "Xe lưu động số 1"),
    ],
)
def test_node_env_overrides_the_file(
    tmp_path: Path, variable: str, value: str, field: str, expected: object
) -> None:
    text = BASE + 'hub_url = "https://old.example"\nsecure_cookies = true\n'
    config = node_config.load(_node(tmp_path, text), {variable: value, "UNRELATED": "x"})
    assert getattr(config, field) == expected


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MOTCUA_NODE_LISTN": "1.2.3.4:5"}, "MOTCUA_NODE_LISTN"),
        ({"MOTCUA_NODE_DATA_DIR": "/tmp"}, "MOTCUA_NODE_DATA_DIR"),
        ({"MOTCUA_NODE_SECURE_COOKIES": "maybe"}, "MOTCUA_NODE_SECURE_COOKIES"),
        ({"MOTCUA_NODE_LOW_DISK_MB": "-1"}, "low_disk_mb"),
    ],
)
def test_node_bad_env_is_named(tmp_path: Path, environ: dict[str, str], named: str) -> None:
    with pytest.raises(NodeConfigError) as caught:
        node_config.load(_node(tmp_path), environ)
    assert named in caught.value.message


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("MOTCUA_CENTRAL_LISTEN", "0.0.0.0:9470", "listen", "0.0.0.0:9470"),
        ("MOTCUA_CENTRAL_PUBLIC_URL", "https://hub.hanoi.example", "public_url", "https://hub.hanoi.example"),
        ("MOTCUA_CENTRAL_INVITE_TTL_H", "24", "invite_ttl_h", 24),
        ("MOTCUA_CENTRAL_VERIFY_THREADS", "4", "verify_threads", 4),
    ],
)
def test_central_env_overrides_the_file(
    tmp_path: Path, variable: str, value: str, field: str, expected: object
) -> None:
    (tmp_path / "central.toml").write_text('listen = "127.0.0.1:1234"\ninvite_ttl_h = 48\n', "utf-8")
    config = central_config.load(tmp_path, {variable: value, "PATH": "/bin"})
    assert getattr(config, field) == expected
    assert central_config.load(tmp_path, {}).listen == "127.0.0.1:1234"


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("invite_ttl = 5\n", {}, "invite_ttl (did you mean invite_ttl_h?)"),
        ("[tls]\ncert = 'x'\n", {}, "unknown keys tls"),
        ("data_dir = '/elsewhere'\n", {}, "unknown keys data_dir"),
        ('invite_ttl_h = "24"\n', {}, "invite_ttl_h must be an integer"),
        ("invite_ttl_h = true\n", {}, "invite_ttl_h must be an integer"),
        ("listen = 8470\n", {}, "listen must be a string"),
        ("invite_ttl_h = 0\n", {}, "invite_ttl_h must be >= 1"),
        ("listen = 'nohost'\n", {}, "listen must be HOST:PORT"),
        ("", {"MOTCUA_CENTRAL_LISTN": "x"}, "MOTCUA_CENTRAL_LISTN (did you mean MOTCUA_CENTRAL_LISTEN?)"),
        ("", {"MOTCUA_CENTRAL_listen": "x"}, "MOTCUA_CENTRAL_listen"),
        ("", {"MOTCUA_CENTRAL_MAX_PUSH_BYTES": "1k"}, "MOTCUA_CENTRAL_MAX_PUSH_BYTES must be an integer"),
        ("max_push_bytes = 1000\n", {}, "max_push_bytes must hold at least one 64 KiB entry"),
    ],
)
def test_central_bad_keys_and_values_are_named(
    tmp_path: Path, toml: str, environ: dict[str, str], message: str
) -> None:
    (tmp_path / "central.toml").write_text(toml, "utf-8")
    with pytest.raises(central_config.ConfigError) as caught:
        central_config.load(tmp_path, environ)
    assert message in str(caught.value)


def test_central_cli_reports_a_bad_config_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "central.toml").write_text("max_push_entreis = 5\n", "utf-8")
    monkeypatch.delenv("MOTCUA_CENTRAL_LISTEN", raising=False)
    assert central_cli.main(["--data", str(tmp_path), "node", "list"]) == 1
    err = capsys.readouterr().err
    assert "max_push_entreis (did you mean max_push_entries?)" in err
