"""Fuzz targets for the long soak (S10): the entry decoder, the push path, the scanner validator.

Run with atheris (coverage-guided; not a pinned dependency: ``pip install atheris``)::

    python -m tests.reliability.fuzz_targets push -atheris_runs=1000000
    python -m tests.reliability.fuzz_targets scan -atheris_runs=1000000 -max_len=200000

Without atheris the same targets run under a seeded mutation loop over the seed corpus::

    python -m tests.reliability.fuzz_targets decoder --runs 1000000 --seed 7

A target may raise only its declared errors; anything else, or one input over 1 s, is a finding (the
input is written to ``test-artifacts/fuzz/``). ``tests/reliability/test_fuzz.py`` runs the targets
under Hypothesis in CI; this script is the 1M-input soak.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from protocol import (
    ChainState,
    DecodeError,
    Entry,
    ProtocolError,
    decode,
    private_key_from_seed,
    public_key_text,
)
from protocol.entry import genesis_body, sign_entry
from protocol.keys import parse_public_key

__all__ = ["TARGETS", "corpus"]

KEY = private_key_from_seed(b"f" * 32)
PUBLIC = parse_public_key(public_key_text(KEY))


def _chain(n: int = 4) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, n + 1):
        kind, body = ("log.genesis", genesis_body("CN01", 1, public_key_text(KEY), None)) if seq == 1 else (
            "test.note", {"n": seq, "text": "Nguyễn Văn An"})  # fmt: skip
        prev = entries[-1].hash if entries else None
        at = (1_767_225_600_000 + seq, 0)
        entries.append(
            sign_entry(KEY, log="CN01", epoch=1, seq=seq, prev=prev, time=at, kind=kind, body=body)
        )
    return entries


def target_decoder(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


def target_push(data: bytes) -> None:
    """What the hub does with a push body before touching storage: framing, strict parse, chain."""
    from central.errors import CentralError
    from central.receive import split_ndjson
    from protocol import verify_chain

    try:
        lines = split_ndjson(data, 2000)
        verify_chain(ChainState.start("CN01", 1, PUBLIC), lines)
    except (CentralError, ProtocolError):
        pass


def target_scan(data: bytes) -> None:
    from node.scan_validation import Rejection, ValidScan, validate_file

    for name in ("scan.pdf", "scan.jpg", "scan.png", "scan.tif"):
        result = validate_file(io.BytesIO(data), len(data), name)
        assert isinstance(result, (ValidScan, Rejection)), result


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decoder": target_decoder,
    "push": target_push,
    "scan": target_scan,
}


def corpus(target: str) -> list[bytes]:
    entries = _chain()
    if target == "scan":
        from tests.node.samples import make_image, make_pdf, make_tiff

        return [
            make_pdf(2, "fuzz"),
            make_image("JPEG", (64, 48)),
            make_image("PNG", (64, 48)),
            make_tiff(2, (64, 64)),
        ]
    if target == "push":
        return [b"".join(e.raw + b"\n" for e in entries[i:]) for i in range(len(entries))]
    return [e.raw for e in entries]


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    raw = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(raw)) if raw else 0
        op = rng.random()
        if op < 0.35 and raw:
            raw[i] ^= 1 << rng.randrange(8)
        elif op < 0.55 and raw:
            del raw[i : i + rng.randint(1, 64)]
        elif op < 0.75:
            raw[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op < 0.9 and raw:
            j = rng.randrange(len(raw))
            raw[i:i] = raw[j : j + rng.randint(1, 256)]
        else:
            raw = raw[: rng.randrange(len(raw) + 1)]
    return bytes(raw)


def quiet() -> None:
    """Parsers of damaged files log and warn a lot (pypdf, Pillow); a fuzz run wants only findings."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


def run_plain(name: str, runs: int, seed: int) -> dict[str, float]:
    target, seeds, rng = TARGETS[name], corpus(name), random.Random(seed)
    quiet()
    target(seeds[0])  # warm the imports outside the timing
    slowest = 0.0
    started = time.monotonic()
    for _ in range(runs):
        data = mutate(rng, seeds)
        t0 = time.perf_counter()
        try:
            target(data)
        except Exception:
            _keep(name, data)
            raise
        spent = time.perf_counter() - t0
        if spent > 1.0:
            _keep(name, data)
            raise AssertionError(f"{name}: one input took {spent:.2f} s")
        slowest = max(slowest, spent)
    return {
        "runs": runs,
        "slowest_ms": round(slowest * 1000, 2),
        "seconds": round(time.monotonic() - started, 1),
    }


def _keep(name: str, data: bytes) -> None:
    out = Path(__file__).resolve().parents[2] / "test-artifacts" / "fuzz"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{int(time.time())}.bin"
    path.write_bytes(data)
    print(f"finding kept in {path}", file=sys.stderr)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs for the plain mutation loop")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="use the mutation loop even if atheris is there")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.plain:
            raise ImportError
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        print(f"{args.target}: {run_plain(args.target, args.runs, args.seed)}")
        return 0
    target = TARGETS[args.target]
    seeds_dir = Path(__file__).resolve().parents[2] / "test-artifacts" / "fuzz" / f"corpus-{args.target}"
    seeds_dir.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(corpus(args.target)):
        (seeds_dir / f"seed-{i}").write_bytes(seed)
    quiet()
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *rest, str(seeds_dir)], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
