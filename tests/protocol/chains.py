"""Build real signed chains for tests."""

from __future__ import annotations

from protocol import Entry, genesis_body, private_key_from_seed, public_key_text, sign_entry
from protocol.keys import Ed25519PrivateKey


def make_key(n: int = 1) -> Ed25519PrivateKey:
    return private_key_from_seed(bytes([n]) * 32)


def make_chain(
    length: int,
    *,
    key: Ed25519PrivateKey | None = None,
    log: str = "CN01",
    epoch: int = 1,
    start_ms: int = 1_795_000_000_000,
) -> list[Entry]:
    key = key or make_key()
    entries = [
        sign_entry(
            key,
            log=log,
            epoch=epoch,
            seq=1,
            prev=None,
            time=(start_ms, 0),
            kind="log.genesis",
            body=genesis_body(log, epoch, public_key_text(key)),
        )
    ]
    for seq in range(2, length + 1):
        entries.append(
            sign_entry(
                key,
                log=log,
                epoch=epoch,
                seq=seq,
                prev=entries[-1].hash,
                time=(start_ms + seq * 10, 0),
                kind="dossier.note",
                body={"dossier": f"000.00.01.H26-261122-{seq:04d}", "text": f"Hồ sơ số {seq}"},
            )
        )
    return entries
