"""The wheelhouse installs on a machine with no package index (a branch PC without internet)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_wheelhouse_installs_without_an_index(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    subprocess.run(
        ["make", "-s", "wheelhouse", f"WHEELHOUSE={house}"],
        cwd=ROOT,
        check=True,
        timeout=600,
        capture_output=True,
    )
    assert (house / "SHA256SUMS").is_file() and (house / "requirements.lock").is_file()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [
        str(venv / "bin/python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-index",
        "--find-links",
        str(house),
    ]
    subprocess.run(
        [*pip, "--require-hashes", "-r", str(house / "requirements.lock")],
        check=True,
        timeout=600,
        capture_output=True,
    )
    wheel = next(house.glob("motcua-*.whl"))
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=300, capture_output=True)
    done = subprocess.run(
        [str(venv / "bin/python"), "-m", "protocol", "canonical"],
        input=b'{"b":1,"a":"\xc3\x90"}',
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stdout == b'{"a":"\xc3\x90","b":1}'
    for script in ("motcua-node", "motcua-central"):
        assert (venv / "bin" / script).exists()
    data = subprocess.run(
        [str(venv / "bin/python"), "-c", "import protocol.vectors as v; print(len(v.load_vectors()))"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    )
    assert int(data.stdout) > 0  # package data (vectors, catalog, calendar) ships in the wheel
