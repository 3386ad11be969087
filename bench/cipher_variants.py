"""CPU per dossier of ``Desk.receive`` in process under SQLCipher settings (issue 9, encryption cost).

``python -m bench.cipher_variants [--rounds 4] [--dossiers 600]``: for each round, for each variant in
turn (interleaved A/B, so load drifts hit every variant alike), a fresh node in a temp dir, 50 warm-up
receptions, then ``--dossiers`` receptions one after the other; ``time.process_time`` (CPU of every
thread: the event loop and both aiosqlite threads) and wall time per dossier. Prints the per-round
figures and the median per variant. Variants swap ``node.dbcipher.connect`` for one that issues the
variant's pragmas right after ``PRAGMA key`` (page size and HMAC algorithm must be set before the first
read of every connection, on creation and on every open).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import node.dbcipher as dbcipher

_ORIGINAL = dbcipher.connect

VARIANTS: dict[str, tuple[str, ...] | None] = {
    "plain (SQLCipher, no key)": None,
    "keyed default": (),
    "HMAC_SHA256": ("PRAGMA cipher_hmac_algorithm = HMAC_SHA256",),
    "page 8192": ("PRAGMA cipher_page_size = 8192",),
    "page 16384": ("PRAGMA cipher_page_size = 16384",),
    "cache 64 MB": ("PRAGMA cache_size = -64000",),
    "HMAC_SHA256 + page 8192": (
        "PRAGMA cipher_hmac_algorithm = HMAC_SHA256",
        "PRAGMA cipher_page_size = 8192",
    ),
}


def _variant_connect(pragmas: tuple[str, ...] | None) -> Any:
    from sqlcipher3 import dbapi2 as sqlcipher

    def connect(path: str | Path, key: bytes | None, **kwargs: Any) -> Any:
        if str(path) == ":memory:":
            return _ORIGINAL(path, key, **kwargs)
        kwargs.setdefault("isolation_level", None)
        kwargs.setdefault("check_same_thread", False)
        con = sqlcipher.connect(str(path), **kwargs)
        if pragmas is not None:
            assert key is not None
            con.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
            for pragma in pragmas:
                con.execute(pragma)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        con.execute("PRAGMA temp_store = MEMORY")
        return con

    return connect


async def _one(pragmas: tuple[str, ...] | None, dossiers: int, warm: int = 50) -> tuple[float, float]:
    from node.provision import Node, init_node
    from tests.node.conftest import FAST_LOOKUP, UNIT, reception

    dbcipher.connect = _variant_connect(pragmas)
    tmp = Path(tempfile.mkdtemp(prefix="cipher-variants-", dir=os.environ.get("MOTCUA_BENCH_DIR")))
    try:
        config = await init_node(tmp / "node", node_id="CN01", unit_code=UNIT, name="Bench", code_block=1)
        node = await Node.open(config, lookup_iterations=FAST_LOOKUP)
        try:
            for _ in range(warm):
                await node.desk.receive(reception(), actor="an.nv")
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(dossiers):
                await node.desk.receive(reception(), actor="an.nv")
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            await node.close()
    finally:
        dbcipher.connect = _ORIGINAL
        shutil.rmtree(tmp, ignore_errors=True)
    return cpu / dossiers * 1000, wall / dossiers * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--dossiers", type=int, default=600)  # one code block holds 1,000 a day
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    names = [n for n in VARIANTS if not args.only or any(n.startswith(o) for o in args.only)]
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            cpu, wall = await _one(VARIANTS[name], args.dossiers)
            results[name].append((cpu, wall))
            print(f"round {r + 1} {name}: {cpu:.3f} ms CPU / {wall:.3f} ms wall per dossier", flush=True)
    print(f"load average {os.getloadavg()}")
    for name in names:
        cpus = [c for c, _ in results[name]]
        walls = [w for _, w in results[name]]
        print(
            f"{name:28s} CPU median {statistics.median(cpus):.3f} ms (min {min(cpus):.3f}) "
            f"wall median {statistics.median(walls):.3f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
