"""``motcua-central verify``: re-verify every stored log (every link and signature) and every receipt."""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm import tqdm

from central.hub import Hub
from central.rotation import key_history, public_keys
from protocol import (
    ChainState,
    Entry,
    ProtocolError,
    PublicKey,
    Receipt,
    is_hub_log,
    verify_chain,
    verify_hub_chain,
)

__all__ = ["AuditReport", "verify_all"]

PAGE = 2000


@dataclass
class AuditReport:
    logs: int = 0
    entries: int = 0
    receipts: int = 0
    problems: list[str] = field(default_factory=list)


async def _key(hub: Hub, log: str, epoch: int, history: list[PublicKey]) -> PublicKey | None:
    if is_hub_log(log):  # the key its genesis names, if it is one of the hub's keys (rotations follow)
        raw = await hub.store.raw_entry(log, epoch, 1)
        named = None if raw is None else Entry.parse(raw).body.get("key")
        return next((k for k in history if k.text == named), hub.public_key)
    return await hub.registry.key(log, epoch)


async def verify_all(hub: Hub, *, progress: bool = False) -> AuditReport:
    report = AuditReport()
    history = public_keys(key_history(hub.config.db_path)) or [hub.public_key]
    heads = await hub.store.fetchall("SELECT log, epoch, seq, hash FROM heads ORDER BY log, epoch")
    total = sum(r[2] for r in heads)
    bar = tqdm(total=total, unit="entry", disable=not progress or None, leave=False)
    try:
        for log, epoch, seq, head_hash in heads:
            report.logs += 1
            key = await _key(hub, log, epoch, history)
            if key is None:
                report.problems.append(f"{log}/{epoch}: no key registered")
                continue
            state = ChainState.start(log, epoch, key)
            while state.seq < seq:
                page = await hub.store.entries(log, epoch, state.seq, PAGE)
                if not page:
                    report.problems.append(f"{log}/{epoch}: entries stop at {state.seq}, head says {seq}")
                    break
                try:
                    state = (verify_hub_chain if is_hub_log(log) else verify_chain)(state, page)
                except ProtocolError as exc:
                    report.problems.append(
                        f"{log}/{epoch}: entry {state.seq + getattr(exc, 'index', 0) + 1}: {exc}"
                    )
                    break
                report.entries += len(page)
                bar.update(len(page))
            else:
                if state.head != head_hash:
                    report.problems.append(f"{log}/{epoch}: head hash differs from the last entry")
        rows = await hub.store.fetchall("SELECT log, epoch, seq, head, hub_time, sig FROM receipts")
        for log, epoch, seq, head, hub_time, sig in rows:
            report.receipts += 1
            receipt = Receipt(log, epoch, seq, head, hub_time, sig)
            for key in reversed(history):  # signed by the key in force when issued
                try:
                    receipt.verify(key)
                    break
                except ProtocolError as exc:
                    failure = exc
            else:
                report.problems.append(f"receipt {log}/{epoch}:{seq}: {failure}")
                continue
            held = await hub.store.hashes(log, epoch, seq, seq)
            if held.get(seq) != head:
                report.problems.append(f"receipt {log}/{epoch}:{seq} names a head the hub does not hold")
    finally:
        bar.close()
    return report
