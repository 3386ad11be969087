from __future__ import annotations

import subprocess
import sys

from protocol.vectors import load_vectors

VECTORS = load_vectors()


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "protocol", *args], input=stdin, capture_output=True, timeout=60
    )


def test_canonical_command() -> None:
    done = run("canonical", stdin='{ "b": 1, "a": "Đồng" }'.encode())
    assert done.returncode == 0 and done.stdout == '{"a":"Đồng","b":1}'.encode()
    bad = run("canonical", stdin=b'{"fee": 1.5}')
    assert bad.returncode == 1 and b"float" in bad.stderr
    dup = run("canonical", stdin=b'{"a":1,"a":2}')
    assert dup.returncode == 1 and b"duplicate_key" in dup.stderr
    nfd = run("canonical", stdin='{"a":"Nguye\u0302\u0303n"}'.encode())
    assert nfd.returncode == 1 and b"not_nfc" in nfd.stderr


def test_verify_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = VECTORS["keys"][0]["public"]
    entries = [e["canonical"] for e in VECTORS["chain"]["entries"]]
    log = tmp_path / "log.ndjson"
    log.write_text("\n".join(entries) + "\n", "utf-8")
    done = run("verify", "--key", key, str(log))
    assert done.returncode == 0, done.stdout
    assert done.stdout.decode().strip() == f"ok CN01 1 3 {VECTORS['chain']['entries'][2]['hash']}"
    first = VECTORS["chain"]["entries"][0]
    done = run(
        "verify",
        "--key",
        key,
        "--after",
        f"1:{first['hash']}",
        stdin=("\n".join(entries[1:]) + "\n").encode(),
    )
    assert done.returncode == 0 and done.stdout.decode().startswith("ok CN01 1 3 ")
    tampered = entries[1].replace("Ánh", "Anh")
    log.write_text("\n".join([entries[0], tampered, entries[2]]) + "\n", "utf-8")
    done = run("verify", "--key", key, str(log))
    assert done.returncode == 1
    assert done.stdout.decode().startswith("error at line 2: bad_signature: ")
    wrong_key = VECTORS["keys"][1]["public"]
    log.write_text("\n".join(entries) + "\n", "utf-8")
    done = run("verify", "--key", wrong_key, str(log))
    assert done.returncode == 1 and done.stdout.decode().startswith("error at line 1: bad_signature")
