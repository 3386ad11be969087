"""Chain verification rate against the raw Ed25519 verify rate measured in the same run.

    python -m bench.chain [--entries N]

Goal (issue "Foundation"): chain verification >= 0.9 x raw verify (the signature is the only real cost).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from bench.report import figure
from protocol import (
    ChainState,
    b64url_decode,
    genesis_body,
    parse_public_key,
    private_key_from_seed,
    public_key_text,
    sign_entry,
    verify_chain,
)

BODY = {
    "dossier": "000.00.01.H26-261122-1001",
    "applicant": {"name": "Nguyễn Thị Hồng Ánh", "id_number": "001190012345", "phone": "0912345678"},
    "procedure": {"code": "1.001193", "version": "QĐ 1234/QĐ-UBND 2025"},
    "documents": [{"name": "Tờ khai đăng ký khai sinh", "form": "original", "count": 1}],
    "fee": 0,
}


def make_chain(n: int) -> tuple[list[bytes], str]:
    key = private_key_from_seed(bytes(range(32)))
    text = public_key_text(key)
    entry = sign_entry(
        key,
        log="CN01",
        epoch=1,
        seq=1,
        prev=None,
        time=(1, 0),
        kind="log.genesis",
        body=genesis_body("CN01", 1, text),
    )
    raws = [entry.raw]
    for seq in range(2, n + 1):
        entry = sign_entry(
            key,
            log="CN01",
            epoch=1,
            seq=seq,
            prev=entry.hash,
            time=(1_700_000_000_000 + seq, 0),
            kind="dossier.received",
            body=BODY,
        )
        raws.append(entry.raw)
    return raws, text


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def best_cpu_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    """Best thread CPU seconds of ``runs`` calls (less sensitive to other processes than wall time)."""
    best = float("inf")
    for _ in range(runs):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    raws, key_text = make_chain(args.entries)
    key = parse_public_key(key_text)
    from protocol.entry import Entry

    pairs = [(b64url_decode(e.sig), e.signable()) for e in map(Entry.parse, raws)]
    raw_s = best_of(args.runs, lambda: [key.verify(sig, msg) for sig, msg in pairs])
    chain_s = best_of(args.runs, lambda: verify_chain(ChainState.start("CN01", 1, key), raws))
    raw_rate = len(pairs) / raw_s
    chain_rate = len(raws) / chain_s
    print(f"entry size: {len(raws[-1])} bytes; entries: {len(raws)}")
    figure("raw_ed25519_verify", raw_rate, "verifies/s", 1.0, 1.0)
    figure("chain_verify", chain_rate, "entries/s", chain_rate / raw_rate, 0.9)
    with ThreadPoolExecutor(max_workers=2) as pool:
        par_s = best_of(
            args.runs, lambda: verify_chain(ChainState.start("CN01", 1, key), raws, executor=pool)
        )
    par_rate = len(raws) / par_s
    figure("chain_verify_2_threads", par_rate, "entries/s", par_rate / raw_rate, 1.5)
    raw_cpu = best_cpu_of(args.runs, lambda: [key.verify(sig, msg) for sig, msg in pairs]) / len(pairs)
    chain_cpu = best_cpu_of(args.runs, lambda: verify_chain(ChainState.start("CN01", 1, key), raws)) / len(
        raws
    )
    print(
        f"thread CPU per entry, one thread: raw verify {raw_cpu * 1e6:.1f} us, chain verify "
        f"{chain_cpu * 1e6:.1f} us, ratio {raw_cpu / chain_cpu:.3f}"
    )


if __name__ == "__main__":
    main()
