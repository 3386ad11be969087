"""Cost of encryption at rest, in isolation: SQLCipher vs plain SQLite, and blob AES-GCM throughput.

Interleaved rounds (plain, encrypted, plain, ...) on the same disk with the node's pragmas (WAL,
``synchronous=FULL``, ``temp_store=MEMORY``), so machine load hits both alike; medians are printed:

- ``commit``: one transaction inserting one 600-byte row (an intake's entry is about that size);
- ``commit_off``: the same with ``synchronous=OFF``: the CPU cost alone, no fsync;
- ``read``:   one query reading 2,000 such rows (cold cache per round: a new connection);
- blob encrypt / decrypt+verify MiB/s for a 5 MiB scan (node.blobs, 64 KiB AES-GCM chunks).

    python -m bench.atrest [--rounds 5] [--commits 300]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from node import atrest
from node.blobs import BlobStore
from node.dbcipher import connect

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA temp_store=MEMORY")
ROW = os.urandom(300).hex()


def _open(path: Path, key: bytes | None, sync: str = "FULL") -> object:
    con = connect(path, key) if key is not None else sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        con.execute(pragma)
    con.execute(f"PRAGMA synchronous={sync}")
    return con


def _commits(path: Path, key: bytes | None, n: int, sync: str = "FULL") -> float:
    con = _open(path, key, sync)
    con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")  # type: ignore[attr-defined]
    start = time.perf_counter()
    for _ in range(n):
        con.execute("BEGIN IMMEDIATE")  # type: ignore[attr-defined]
        con.execute("INSERT INTO t (body) VALUES (?)", (ROW,))  # type: ignore[attr-defined]
        con.execute("COMMIT")  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    con.close()  # type: ignore[attr-defined]
    return elapsed / n * 1000


def _reads(path: Path, key: bytes | None) -> float:
    con = _open(path, key)
    start = time.perf_counter()
    rows = con.execute("SELECT body FROM t ORDER BY id DESC LIMIT 2000").fetchall()  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - start
    con.close()  # type: ignore[attr-defined]
    assert rows
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commits", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-atrest-", dir=Path.cwd()) as tmp:
        root = Path(tmp)
        ring = atrest.create_keyring(root / "enc", "CN01")
        plain_db, enc_db = root / "plain.sqlite3", root / "enc" / "node.sqlite3"
        names = ("commit_plain", "commit_enc", "commit_off_plain", "commit_off_enc", "read_plain", "read_enc")
        got: dict[str, list[float]] = {k: [] for k in names}
        for _ in range(args.rounds):
            got["commit_plain"].append(_commits(plain_db, None, args.commits))
            got["commit_enc"].append(_commits(enc_db, ring.db_key, args.commits))
            got["commit_off_plain"].append(_commits(plain_db, None, args.commits, "OFF"))
            got["commit_off_enc"].append(_commits(enc_db, ring.db_key, args.commits, "OFF"))
            got["read_plain"].append(_reads(plain_db, None))
            got["read_enc"].append(_reads(enc_db, ring.db_key))
        store = BlobStore(root / "enc", low_disk_bytes=0, keyring=ring)
        scan = os.urandom(5 << 20)
        enc, dec = [], []
        for i in range(args.rounds):
            data = i.to_bytes(8, "big") + scan[8:]
            start = time.perf_counter()
            sha = store.stage_bytes(data).sha256
            enc.append(5 / (time.perf_counter() - start))
            start = time.perf_counter()
            assert store.read_bytes(sha) == data
            dec.append(5 / (time.perf_counter() - start))
        med = {k: statistics.median(v) for k, v in got.items()}
        print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.rounds} interleaved rounds")
        labels = (
            ("commit", "commit (1 row, synchronous=FULL)"),
            ("commit_off", "commit (1 row, synchronous=OFF: CPU only)"),
            ("read", "read 2,000 rows, cold"),
        )
        for what, label in labels:
            plain, enc_ms = med[f"{what}_plain"], med[f"{what}_enc"]
            print(f"{label}: plain {plain:.2f} ms, SQLCipher {enc_ms:.2f} ms ({enc_ms / plain:.2f}x)")
        print(f"blob 5 MiB: stage (hash + encrypt + fsync) {statistics.median(enc):.0f} MiB/s, "
              f"read (decrypt + verify) {statistics.median(dec):.0f} MiB/s")  # fmt: skip


if __name__ == "__main__":
    main()
