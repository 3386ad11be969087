"""P1 stolen disk, with real processes: a van's whole data folder yields no readable personal data.

``motcua-node init --key-source passphrase``, a scanner hot folder, ``serve`` (locked until the data
passphrase is entered on "Mở khóa dữ liệu"), dossiers with known names and ID numbers through the API,
a JPEG, a PDF and a rejected fake PDF through the hot folder, an online ``backup``; the data folder is
copied while the node runs (database, WAL, blobs, temp) and again after it stopped. Every byte of the
copies, the backup, the node's log and the hot folder (its ``rejected/`` copy) is searched for the names
(UTF-8, NFC and NFD), the ID numbers and phone numbers, ``%PDF``, the JPEG/JFIF header and the SQLite
header: 0 hits. The copy does not open without the passphrase (a named error), and opens with it.

The JPEG needle is the whole JFIF header ``FF D8 FF E0 00 10 'JFIF'``: the 3-byte ``FF D8 FF`` alone
occurs by chance about once per 16 MiB of ciphertext, which would make the test flaky, not stronger.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.node.conftest import BIRTH_DOCS
from tests.node.samples import make_image, make_pdf
from tests.node.test_cli_node import CLI, _free_port, _init, _request, run

PASSPHRASE = "mật khẩu dữ liệu xe 3"
PEOPLE = [
    ("Trần Thị Bích Ngọc", "079123456789", "0987 654 321"),
    ("Lê Hoàng Phúc Hậu", "001088123450", "0912 000 111"),
    ("Nguyễn Đức Ánh", "036099876543", "0903 222 333"),
]


def _needles() -> dict[str, bytes]:
    out: dict[str, bytes] = {
        "%PDF": b"%PDF",
        "JFIF": b"\xff\xd8\xff\xe0\x00\x10JFIF",
        "SQLite header": b"SQLite format 3\x00",
    }
    for name, id_number, phone in PEOPLE:
        for form in ("NFC", "NFD"):
            out[f"{name} ({form})"] = unicodedata.normalize(form, name).encode("utf-8")
        out[f"{name}: id"] = id_number.encode()
        out[f"{name}: phone"] = phone.encode()
        out[f"{name}: phone digits"] = phone.replace(" ", "").encode()
    return out


def _hits(roots: list[Path]) -> tuple[list[str], int, int]:
    needles = _needles()
    found, files, size = [], 0, 0
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            data = path.read_bytes()
            files += 1
            size += len(data)
            found += [f"{path}: {what}" for what, needle in needles.items() if needle in data]
    return found, files, size


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def _post_form(url: str, fields: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait(check, what: str, timeout: float = 40.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_stolen_disk_yields_no_plaintext_and_no_key(tmp_path: Path) -> None:
    data, hot, log = tmp_path / "van", tmp_path / "scan-q1", tmp_path / "serve.log"
    env = {"MOTCUA_DATA_PASSPHRASE": PASSPHRASE}
    done = _init(data, "--kind", "van", "--key-source", "passphrase")
    assert done.returncode != 0 and "mật khẩu" in done.stderr  # no passphrase given: refused, named
    shutil.rmtree(data, ignore_errors=True)
    done = run(
        "init", "--data", str(data), "--node-id", "VAN03", "--unit-code", "000.00.01.H26", "--name",
        "Xe lưu động 3", "--kind", "van", "--key-source", "passphrase", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    hot.mkdir()
    added = run(
        "scanner", "add", "--data", str(data), "--name", "quay-1", "--folder", str(hot), "--desk", "Q1"
    )
    assert added.returncode == 0, added.stderr
    token = run("token", "create", "--data", str(data), "--name", "kiosk", env=env).stdout.strip()
    assert token, "token create needs the data unlocked"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "MOTCUA_DATA_PASSPHRASE"},
        )
    try:
        _wait(lambda: _get(base + "/hom-nay")[0] == 423, "the locked page")
        status, page = _get(base + "/hom-nay")
        assert "Mở khóa dữ liệu" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]  # type: ignore[index]
        assert _post_form(base + "/mo-khoa", {"csrf": csrf, "passphrase": "sai rồi"})[0] == 403
        assert _post_form(base + "/mo-khoa", {"csrf": csrf, "passphrase": PASSPHRASE})[0] == 200
        _wait(lambda: _get(base + "/readyz")[0] == 200, "the node after unlock")
        for name, id_number, phone in PEOPLE:
            body = {
                "procedure": "1.001193",
                "applicant": {"name": name, "id_type": "cccd", "id_number": id_number, "phone": phone},
                "documents": list(BIRTH_DOCS),
            }
            status, answer = _request(base + "/api/v1/dossiers", token, body)
            assert status == 201, answer
        (hot / "CCCD Trần Thị Bích Ngọc.jpg").write_bytes(make_image("JPEG", (1200, 800), seed=5))
        (hot / "to-khai-079123456789.pdf").write_bytes(make_pdf(3, "to khai 079123456789"))
        fake = "%PDF-1.4\n<html>Nguyễn Đức Ánh 036099876543</html>\n".encode()
        (hot / "gia-mao.pdf").write_bytes(fake)
        _wait(lambda: not [p for p in hot.iterdir() if p.is_file()], "the hot folder to be emptied")
        assert sorted(p.name for p in (hot / "rejected").iterdir()) == [
            "gia-mao.pdf",
            "gia-mao.pdf.reason.txt",
        ]
        backup = run("backup", "--data", str(data), "--to", str(tmp_path / "backups" / "b.tar"), env=env)
        assert backup.returncode == 0, backup.stderr
        shutil.copytree(data, tmp_path / "stolen-running")  # with the WAL and whatever is in flight
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    shutil.copytree(data, tmp_path / "stolen")
    roots = [tmp_path / "stolen-running", tmp_path / "stolen", tmp_path / "backups", log, hot]
    found, files, size = _hits(roots)
    blobs = list((tmp_path / "stolen" / "blobs" / "sha256").rglob("*"))
    assert len([b for b in blobs if b.is_file()]) >= 3  # the JPEG, its PDF, the PDF: really on disk
    assert (tmp_path / "stolen-running" / "node.sqlite3-wal").exists()
    assert found == [], found
    print(f"P1 stolen disk: {files} files, {size} bytes searched for {len(_needles())} needles: 0 hits")

    # the thief's copy: no passphrase, no data; the right one opens it (the data is really there)
    wrong = run("status", "--data", str(tmp_path / "stolen"), env={"MOTCUA_DATA_PASSPHRASE": "thử đoán"})
    assert wrong.returncode == 3 and "Sai mật khẩu dữ liệu" in wrong.stderr, wrong.stderr
    right = run("status", "--data", str(tmp_path / "stolen"), env=env)
    assert right.returncode == 0, right.stderr
    from node import atrest
    from tests.tools import node_db

    atrest.unlock(tmp_path / "stolen", PASSPHRASE)
    db = node_db(tmp_path / "stolen" / "node.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM dossiers").fetchone()[0] == 3
        names = {r[0] for r in db.execute("SELECT raw FROM entries")}
        assert any(PEOPLE[0][1].encode() in bytes(r) for r in names)
    finally:
        db.close()
