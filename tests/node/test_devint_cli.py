"""``motcua-node scanner|printer add|list`` and the device tables of node.toml (errors name the key)."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from node.cli import main
from node.config import load
from node.errors import ConfigError

BASE = 'node_id = "CN01"\nunit_code = "000.00.01.H26"\nname = "Chi nhánh Tây Hồ"\n'


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_scanner_and_printer_add_then_list_rewrites_node_toml_atomically(tmp_path: Path) -> None:
    data = tmp_path / "node"
    assert _cli("init", "--data", str(data), "--node-id", "CN01", "--unit-code", "000.00.01.H26",
                "--name", "Chi nhánh Tây Hồ", "--code-block", "2")[0] == 0  # fmt: skip
    toml = data / "node.toml"
    os.chmod(toml, 0o640)
    before = load(data, {})
    scan = tmp_path / "samba" / "quay-1"

    code, _, err = _cli("scanner", "add", "--data", str(data), "--name", "quay-1", "--folder", str(scan),
                        "--desk", "Q1")  # fmt: skip
    assert code == 0 and "quầy Q1" in err and "Khởi động lại" in err
    assert stat.S_IMODE(os.stat(scan).st_mode) == 0o770 and stat.S_IMODE(os.stat(toml).st_mode) == 0o640
    code, _, err = _cli("scanner", "add", "--data", str(data), "--name", "quay-1", "--folder",
                        str(tmp_path / "other"), "--desk", "Q2")  # fmt: skip
    assert code == 2 and "đã có máy quét tên 'quay-1'" in err and not (tmp_path / "other").exists()
    code, _, err = _cli("scanner", "add", "--data", str(data), "--name", "quay-2", "--folder", str(scan),
                        "--desk", "Q2")  # fmt: skip
    assert code == 2 and "scanner[1].folder" in err  # the same hot folder twice
    code, _, _ = _cli("scanner", "add", "--data", str(data), "--name", "mang", "--folder",
                      str(tmp_path / "cifs"), "--desk", "Q2", "--polling")  # fmt: skip
    assert code == 0

    printed = tmp_path / "printed"
    assert _cli("printer", "add", "--data", str(data), "--name", "may-in-q1", "--cups-queue", "HP_M404",
                "--desk", "Q1")[0] == 0  # fmt: skip
    assert _cli("printer", "add", "--data", str(data), "--name", "thu-muc", "--folder", str(printed))[0] == 0
    code, _, err = _cli("printer", "add", "--data", str(data), "--name", "may-in-q1", "--cups-queue", "X")
    assert code == 2 and "đã có máy in" in err
    code, _, err = _cli("printer", "add", "--data", str(data), "--name", "vong", "--folder", str(scan / "in"))
    assert code == 2 and "printer[2].folder" in err  # a printer folder inside a hot folder: refused
    code, _, err = _cli("printer", "add", "--data", str(data), "--name", "q", "--cups-queue", "bad queue")
    assert code == 2 and "printer[2].queue" in err
    with pytest.raises(SystemExit):  # exactly one of --cups-queue / --folder
        _cli("printer", "add", "--data", str(data), "--name", "x", "--cups-queue", "A", "--folder", "/tmp/y")

    after = load(data, {})
    assert after.code_block_index == 2 and after.name == before.name and after.listen == before.listen
    scanners = [(s.name, s.desk, s.polling) for s in after.scanners]
    assert scanners == [("quay-1", "Q1", False), ("mang", "Q2", True)]
    assert [(p.name, p.kind) for p in after.printers] == [("may-in-q1", "cups"), ("thu-muc", "folder")]
    assert after.receipt_printers == (("Q1", "may-in-q1"),) and printed.is_dir()
    assert not list(data.glob(".node.toml.tmp"))

    code, out, _ = _cli("scanner", "list", "--data", str(data), "--json")
    assert code == 0 and [s["name"] for s in json.loads(out)] == ["quay-1", "mang"]
    code, out, _ = _cli("printer", "list", "--data", str(data))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and "queue=HP_M404" in lines[0]
    assert "receipt_desks=['Q1']" in lines[0]


def test_env_overrides_are_not_written_into_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "node"
    assert _cli("init", "--data", str(data), "--node-id", "CN01", "--unit-code", "000.00.01.H26",
                "--name", "Chi nhánh")[0] == 0  # fmt: skip
    monkeypatch.setenv("MOTCUA_NODE_LISTEN", "0.0.0.0:9999")
    assert _cli("scanner", "add", "--data", str(data), "--name", "q", "--folder", str(tmp_path / "s"),
                "--desk", "Q1")[0] == 0  # fmt: skip
    assert "0.0.0.0:9999" not in (data / "node.toml").read_text(encoding="utf-8")


def test_world_writable_or_symlinked_hot_folder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "node"
    assert _cli("init", "--data", str(data), "--node-id", "CN01", "--unit-code", "000.00.01.H26",
                "--name", "Chi nhánh")[0] == 0  # fmt: skip
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    os.chmod(open_folder, 0o777)
    code, _, err = _cli("scanner", "add", "--data", str(data), "--name", "q", "--folder", str(open_folder),
                        "--desk", "Q1")  # fmt: skip
    assert code == 2 and "chmod o-w" in err
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    code, _, err = _cli("scanner", "add", "--data", str(data), "--name", "q", "--folder", str(link),
                        "--desk", "Q1")  # fmt: skip
    assert code == 2 and "liên kết tượng trưng" in err
    assert load(data, {}).scanners == ()  # nothing written


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[scanner]]\nname = "q"\nfolder = "/srv/s"\n', "scanner[0].desk"),
        ('[[scanner]]\nname = "q"\nfolder = "rel"\ndesk = "Q1"\n', "scanner[0].folder"),
        ('[[scanner]]\nname = "q"\nfolder = "/srv/s"\ndesk = "Q1"\ncolour = 1\n', "scanner[0].colour"),
        ('[[scanner]]\nname = "q"\nfolder = "/srv/s"\ndesk = "Q 1"\n', "scanner[0].desk"),
        ('[[scanner]]\nname = "q"\nfolder = "/srv/s"\ndesk = "Q1"\npolling = "yes"\n', "scanner[0].polling"),
        ('[[printer]]\nname = "p"\nkind = "fax"\n', "printer[0].kind"),
        ('[[printer]]\nname = "p"\nkind = "folder"\n', "printer[0].folder"),
        ('receipt_printer = "none"\n', "receipt_printer"),
        ('[receipt_printers]\nQ1 = "none"\n', "receipt_printers.Q1"),
        ('tracking_url = "ftp://x"\n', "tracking_url"),
        ("scan_session_minutes = 0\n", "scan_session_minutes"),
    ],
)
def test_device_tables_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    top, tables = (text, "") if not text.startswith("[") else ("", text)
    (tmp_path / "node.toml").write_text(BASE + top + tables, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {})
    assert key in caught.value.message


def test_device_tables_cannot_come_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text(BASE, encoding="utf-8")
    with pytest.raises(ConfigError, match="MOTCUA_NODE_SCANNERS"):
        load(tmp_path, {"MOTCUA_NODE_SCANNERS": "[]"})
