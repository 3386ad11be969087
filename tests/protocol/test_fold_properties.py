"""Property tests: the fold depends only on the set of records, and never loses one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.dossier.events import DOSSIER_KINDS
from protocol.dossier.fold import Fold, FoldResult, fold
from protocol.dossier.state import EventRecord
from tests.protocol.helpers import RECEIVED_AT, SHA_A, SHA_B, body, manifest, record

CODES = ["000.00.01.H26-261123-0001", "000.00.01.H26-261123-0002", "000.00.01.H26-261123-1001"]
LOGS = ["CN01", "CN02", "HUB"]
KINDS = sorted(DOSSIER_KINDS) + ["dossier.received"] * 3 + ["dossier.future_kind", "log.genesis"]
STEPS = ["processing", "awaiting_signature", "awaiting_joint_step", "joint_result_received"]
MINUTE = 60_000


@st.composite
def histories(draw: st.DrawFn) -> list[EventRecord]:
    """Events for a few dossiers from several logs, with colliding times, resolutions and bad bodies."""
    count = draw(st.integers(min_value=1, max_value=28))
    seqs = dict.fromkeys(LOGS, 0)
    records: list[EventRecord] = []
    for _ in range(count):
        kind = draw(st.sampled_from(KINDS))
        code = draw(st.sampled_from(CODES))
        log = draw(st.sampled_from(LOGS))
        ms = RECEIVED_AT + draw(st.integers(min_value=0, max_value=12)) * MINUTE
        seqs[log] += 1
        if kind in ("dossier.future_kind", "log.genesis"):
            data: dict[str, object] = {"dossier": code, "actor": "x"}
        else:
            extra: dict[str, object] = {}
            if kind == "dossier.received":
                extra["dossier"] = code
            elif kind == "dossier.processing":
                extra["step"] = draw(st.sampled_from(STEPS))
            elif kind in ("dossier.attachment", "dossier.attachment_discarded"):
                sha = draw(st.sampled_from([SHA_A, SHA_B]))
                extra.update({"manifest": manifest(sha)} if kind == "dossier.attachment" else {"sha256": sha})
            elif kind == "dossier.conflict_resolved" and records:
                target = draw(st.sampled_from(records))
                extra.update(conflict=target.hash, decision=draw(st.sampled_from(["apply", "dismiss"])))
                if draw(st.booleans()):
                    extra["state"] = draw(st.sampled_from(["processing", "returned", "stopped"]))
            elif kind == "dossier.result_ready":
                extra["outcome"] = draw(st.sampled_from(["approved", "refused"]))
                if extra["outcome"] == "refused":
                    extra["reason"] = "Không đủ điều kiện."
            data = body(kind, code, **extra)
            if draw(st.integers(min_value=0, max_value=15)) == 0:
                data["actor"] = ""  # an invalid body now and then
        records.append(record(kind, data, ms, log=log, seq=seqs[log], n=draw(st.integers(0, 1))))
    return records


def _dossier_records(records: list[EventRecord]) -> list[EventRecord]:
    return [r for r in records if r.kind in DOSSIER_KINDS]


@settings(max_examples=300, deadline=None)
@given(history=histories(), data=st.data())
def test_any_arrival_order_gives_the_same_result(history: list[EventRecord], data: st.DataObject) -> None:
    expected = fold(history)
    shuffled = data.draw(st.permutations(history))
    assert fold(shuffled) == expected
    incremental = Fold()
    for r in data.draw(st.permutations(history + history[: len(history) // 2])):  # with duplicates
        incremental.apply(r)
    assert incremental.result() == expected


@settings(max_examples=300, deadline=None)
@given(history=histories())
def test_every_dossier_event_is_in_a_timeline_a_conflict_or_pending(history: list[EventRecord]) -> None:
    result: FoldResult = fold(history)
    applied = [e.hash for s in result.dossiers.values() for e in s.timeline]
    conflicted = [c.record.hash for c in result.conflicts]
    pending = [r.hash for rs in result.pending.values() for r in rs]
    placed = applied + conflicted + pending
    assert sorted(placed) == sorted({r.hash for r in _dossier_records(history)})
    assert len(placed) == len(set(placed)), "an event is placed exactly once"


@settings(max_examples=200, deadline=None)
@given(history=histories())
def test_conflicts_of_a_dossier_are_listed_globally_in_fold_order(history: list[EventRecord]) -> None:
    result = fold(history)
    per_dossier = sorted(
        (c for s in result.dossiers.values() for c in s.conflicts), key=lambda c: c.record.order_key
    )
    assert [c for c in result.conflicts if c.dossier is not None] == per_dossier
    keys = [c.record.order_key for c in result.conflicts]
    assert keys == sorted(keys)
    for state in result.dossiers.values():
        keys = [(e.time, e.log, e.epoch, e.seq) for e in state.timeline]
        assert keys == sorted(keys), "the timeline follows fold order"
