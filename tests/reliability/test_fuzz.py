"""S10 in CI: Hypothesis drives (1) the push endpoint of a real hub process with validly signed random
NDJSON bodies, (2) the scanner validator with mutated PDFs and images. Only declared answers, never a
500, no input over 1 s. (The entry decoder's 100k-input fuzz is tests/protocol/test_encoding.py; the
1M-input soak of all three is ``python -m tests.reliability.fuzz_targets``, atheris when installed.)"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import random
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.scan_validation import Rejection, ValidScan, validate_file
from tests.reliability.fuzz_targets import corpus, mutate
from tests.reliability.hubsim import HubNode, new_hub
from tests.reliability.procs import ServerProc, free_port, spawn_cli, wait_serving
from tests.reliability.test_tamper import DECLARED

SCAN_CODES = {
    "unreadable", "not_regular", "empty", "name_unsafe", "unknown_type", "type_mismatch", "too_large",
    "pdf_incomplete", "pdf_encrypted", "pdf_invalid", "too_many_pages", "image_incomplete",
    "image_too_large", "image_invalid", "image_convert",
}  # fmt: skip


@pytest.fixture(scope="module")
def hub_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, HubNode]]:
    tmp = tmp_path_factory.mktemp("fuzzhub")
    sim = HubNode("CN01")
    asyncio.run(new_hub(tmp / "hub", [sim]))
    port = free_port()
    proc = spawn_cli("central", ["--data", str(tmp / "hub"), "serve", "--listen", f"127.0.0.1:{port}"], port,
                     tmp / "hub.log")  # fmt: skip
    asyncio.run(wait_serving(proc))
    sim.extend_to(6)
    yield proc, sim
    proc.stop()


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["v", "log", "epoch", "seq", "prev", "time", "kind", "body", "sig", "x"]), inner,
        max_size=9), max_leaves=20)  # fmt: skip


def _bodies(sim: HubNode) -> st.SearchStrategy[bytes]:
    genuine = [b"".join(e.raw + b"\n" for e in sim.entries[i:]) for i in range(1, 6)]
    mutated = st.randoms(use_true_random=False).map(lambda r: mutate(r, genuine))
    lines = st.lists(_json_values(), min_size=1, max_size=5).map(
        lambda vs: b"".join(json.dumps(v, separators=(",", ":")).encode() + b"\n" for v in vs)
    )
    return st.one_of(st.binary(max_size=2048), mutated, lines)


def _post(proc: ServerProc, sim: HubNode, body: bytes) -> tuple[int, dict[str, object], float]:
    target = "/v1/sync/logs/CN01/1"
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    started = time.perf_counter()
    try:
        conn.request("POST", target, body=body, headers=sim.headers("POST", target, body))
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(payload), time.perf_counter() - started


def test_push_endpoint_random_bodies(hub_process: tuple[ServerProc, HubNode], figures) -> None:  # type: ignore[no-untyped-def]
    proc, sim = hub_process
    seen: dict[str, int] = {}
    slowest = [0.0]

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=_bodies(sim))
    def check(body: bytes) -> None:
        status, answer, spent = _post(proc, sim, body)
        slowest[0] = max(slowest[0], spent)
        assert spent < 1.0, f"{spent:.2f} s for {body[:80]!r}"
        if status == 200:  # a genuine continuation slipped through the mutator: taken, and receipted
            assert "receipt" in answer
            seen["200 accepted"] = seen.get("200 accepted", 0) + 1
            return
        assert status in DECLARED and answer.get("error") in DECLARED[status], (status, answer, body[:200])
        key = f"{status} {answer['error']}"
        seen[key] = seen.get(key, 0) + 1

    check()
    assert proc.alive()
    answers = dict(sorted(seen.items(), key=lambda kv: -kv[1]))
    figures(
        "S10 push endpoint (hypothesis)",
        examples=sum(seen.values()),
        slowest_ms=round(slowest[0] * 1000, 1),
        answers=answers,
    )


@st.composite
def _scan_inputs(draw: st.DrawFn) -> tuple[bytes, str]:
    seeds = _scan_corpus()
    rng = random.Random(draw(st.integers(0, 2**32)))
    data = mutate(rng, seeds) if draw(st.integers(0, 4)) else draw(st.binary(max_size=4096))
    name = draw(
        st.sampled_from(["scan.pdf", "scan.jpg", "scan.jpeg", "scan.png", "scan.tif", "scan", "a.PDF"])
    )
    return data, name


_CORPUS: list[bytes] = []


def _scan_corpus() -> list[bytes]:
    if not _CORPUS:
        _CORPUS.extend(corpus("scan"))
    return _CORPUS


def test_scanner_validator_mutated_files(figures) -> None:  # type: ignore[no-untyped-def]
    seen: dict[str, int] = {}
    slowest = [0.0]

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=_scan_inputs())
    def check(case: tuple[bytes, str]) -> None:
        data, name = case
        started = time.perf_counter()
        with warnings.catch_warnings():  # Pillow warns on odd TIFF tags; production ignores warnings
            warnings.simplefilter("ignore")
            result = validate_file(io.BytesIO(data), len(data), name)
        spent = time.perf_counter() - started
        slowest[0] = max(slowest[0], spent)
        assert spent < 1.0
        if isinstance(result, ValidScan):
            seen["valid"] = seen.get("valid", 0) + 1
            return
        assert isinstance(result, Rejection) and result.code in SCAN_CODES, result
        assert result.message_vi
        seen[result.code] = seen.get(result.code, 0) + 1

    import logging

    logging.disable(logging.WARNING)  # pypdf logs every damaged xref entry
    try:
        check()
    finally:
        logging.disable(logging.NOTSET)
    answers = dict(sorted(seen.items(), key=lambda kv: -kv[1]))
    figures(
        "S10 scanner validator (hypothesis)",
        examples=sum(seen.values()),
        slowest_ms=round(slowest[0] * 1000, 1),
        answers=answers,
    )


def test_fuzz_soak_script_runs_without_atheris(tmp_path: Path) -> None:
    """The soak script's plain loop (what runs without atheris) finds nothing in 2k inputs."""
    from tests.reliability.fuzz_targets import run_plain

    for target in ("decoder", "push"):
        assert run_plain(target, 2000, seed=3)["runs"] == 2000


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_soak_plain_loop(figures) -> None:  # type: ignore[no-untyped-def]
    from tests.reliability.fuzz_targets import run_plain

    for target, runs in (("decoder", 1_000_000), ("push", 1_000_000), ("scan", 100_000)):
        figures(f"S10 fuzz soak ({target})", **run_plain(target, runs, seed=11))
