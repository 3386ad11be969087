"""The dossier fold: the transition table, lifecycle data, timeliness, conflicts, resolution, pending."""

from __future__ import annotations

import pytest

from protocol.deadline import Timeliness
from protocol.dossier.fold import Fold, fold, timeliness_as_of
from protocol.dossier.state import ConflictReason, DossierState, EventRecord
from protocol.dossier.status import InternalState as S
from protocol.dossier.status import NationalStatus
from tests.protocol.helpers import CODE, DUE_AT, RECEIVED_AT, SHA_A, SHA_B, body, manifest, record

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

P4 = [
    S.TRANSFERRED,
    S.PROCESSING,
    S.AWAITING_SIGNATURE,
    S.AWAITING_JOINT_STEP,
    S.JOINT_RESULT_RECEIVED,
    S.SUPPLEMENTED,
    S.FINANCIAL_OBLIGATION_MET,
]

# How to reach each state: a list of (kind, extra body fields).
PATHS: dict[S | None, list[tuple[str, dict[str, object]]]] = {
    None: [],
    S.SUBMITTED: [("dossier.submitted", {})],
    S.GUIDANCE: [("dossier.submitted", {}), ("dossier.supplement_requested", {})],
    S.RECEIVED: [("dossier.received", {})],
    S.REFUSED: [("dossier.refused", {})],
    S.TRANSFERRED: [("dossier.received", {}), ("dossier.transferred", {})],
    S.PROCESSING: [("dossier.received", {}), ("dossier.processing", {"step": "processing"})],
    S.AWAITING_SIGNATURE: [("dossier.received", {}), ("dossier.processing", {"step": "awaiting_signature"})],
    S.AWAITING_JOINT_STEP: [
        ("dossier.received", {}),
        ("dossier.processing", {"step": "awaiting_joint_step"}),
    ],
    S.JOINT_RESULT_RECEIVED: [
        ("dossier.received", {}),
        ("dossier.processing", {"step": "joint_result_received"}),
    ],
    S.SUPPLEMENT_REQUESTED: [
        ("dossier.received", {}),
        ("dossier.transferred", {}),
        ("dossier.supplement_requested", {}),
    ],
    S.SUPPLEMENTED: [
        ("dossier.received", {}),
        ("dossier.transferred", {}),
        ("dossier.supplement_requested", {}),
        ("dossier.supplement_provided", {}),
    ],
    S.FINANCIAL_OBLIGATION: [
        ("dossier.received", {}),
        ("dossier.transferred", {}),
        ("dossier.financial_obligation", {}),
    ],
    S.FINANCIAL_OBLIGATION_MET: [
        ("dossier.received", {}),
        ("dossier.transferred", {}),
        ("dossier.financial_obligation", {}),
        ("dossier.financial_obligation_met", {}),
    ],
    S.WITHDRAWAL_REQUESTED: [("dossier.received", {}), ("dossier.withdrawal_requested", {})],
    S.WITHDRAWN: [("dossier.received", {}), ("dossier.withdrawal_requested", {}), ("dossier.withdrawn", {})],
    S.STOPPED: [("dossier.received", {}), ("dossier.transferred", {}), ("dossier.stopped", {})],
    S.RESULT_READY: [("dossier.received", {}), ("dossier.transferred", {}), ("dossier.result_ready", {})],
    S.RETURNED: [
        ("dossier.received", {}),
        ("dossier.transferred", {}),
        ("dossier.result_ready", {}),
        ("dossier.returned", {}),
    ],
}

# The expected table, written from DOMAIN.md §5.2 (not read from the code under test).
VALID: dict[tuple[S | None, str], S] = {
    (None, "dossier.submitted"): S.SUBMITTED,
    (None, "dossier.received"): S.RECEIVED,
    (S.SUBMITTED, "dossier.received"): S.RECEIVED,
    (None, "dossier.refused"): S.REFUSED,
    (S.SUBMITTED, "dossier.refused"): S.REFUSED,
    (S.SUBMITTED, "dossier.supplement_requested"): S.GUIDANCE,
    (S.GUIDANCE, "dossier.supplement_provided"): S.SUBMITTED,
    (S.RECEIVED, "dossier.transferred"): S.TRANSFERRED,
    (S.RECEIVED, "dossier.processing"): S.PROCESSING,
    (S.SUPPLEMENT_REQUESTED, "dossier.supplement_provided"): S.SUPPLEMENTED,
    (S.FINANCIAL_OBLIGATION, "dossier.financial_obligation_met"): S.FINANCIAL_OBLIGATION_MET,
    (S.WITHDRAWAL_REQUESTED, "dossier.withdrawn"): S.WITHDRAWN,
    (S.RESULT_READY, "dossier.returned"): S.RETURNED,
}
for _s in P4:
    VALID[(_s, "dossier.transferred")] = S.TRANSFERRED
    VALID[(_s, "dossier.processing")] = S.PROCESSING
    VALID[(_s, "dossier.supplement_requested")] = S.SUPPLEMENT_REQUESTED
    VALID[(_s, "dossier.financial_obligation")] = S.FINANCIAL_OBLIGATION
    VALID[(_s, "dossier.result_ready")] = S.RESULT_READY
    VALID[(_s, "dossier.stopped")] = S.STOPPED
for _s in [*P4, S.RECEIVED, S.SUPPLEMENT_REQUESTED, S.FINANCIAL_OBLIGATION]:
    VALID[(_s, "dossier.withdrawal_requested")] = S.WITHDRAWAL_REQUESTED
    VALID[(_s, "dossier.apology")] = _s
for _s in S:
    VALID[(_s, "dossier.rating")] = _s
    VALID[(_s, "dossier.attachment")] = _s

MATRIX_KINDS = sorted({kind for _, kind in VALID})


def run(
    steps: list[tuple[str, dict[str, object]]], *, start: int = RECEIVED_AT, code: str = CODE
) -> list[EventRecord]:
    """Records for ``steps``, one minute apart, all in log CN01."""
    return [
        record(kind, body(kind, code, **extra), start + i * MINUTE, seq=i + 1)
        for i, (kind, extra) in enumerate(steps)
    ]


def state_of(records: list[EventRecord], code: str = CODE) -> DossierState:
    return fold(records).dossiers[code]


@pytest.mark.parametrize("start", list(PATHS), ids=lambda s: s.value if s else "none")
@pytest.mark.parametrize("kind", MATRIX_KINDS)
def test_transition_table(start: S | None, kind: str) -> None:
    steps = PATHS[start] + [(kind, {"step": "processing"} if kind == "dossier.processing" else {})]
    result = fold(run(steps))
    last = run(steps)[-1]
    expected = VALID.get((start, kind))
    if expected is not None:
        state = result.dossiers[CODE]
        assert state.state is expected
        assert state.timeline[-1].hash == last.hash
        assert not state.conflicts
    elif start is None:
        assert CODE in result.pending and not result.dossiers  # nothing created it: held, not judged
    else:
        state = result.dossiers[CODE]
        assert state.state is start, "an invalid event must not change the state"
        assert [c.record.hash for c in state.conflicts] == [last.hash]
        conflict = state.conflicts[0]
        assert conflict.reason is ConflictReason.INVALID_TRANSITION and conflict.state is start
        assert conflict.after == state.timeline[-1].hash and conflict.open


def test_paths_reach_their_states() -> None:
    for target, steps in PATHS.items():
        if target is not None:
            assert state_of(run(steps)).state is target


def test_full_lifecycle() -> None:
    t = RECEIVED_AT
    records = [
        record("dossier.received", body("dossier.received"), t, seq=1),
        record("dossier.attachment", body("dossier.attachment"), t + MINUTE, seq=2),
        record("dossier.transferred", body("dossier.transferred"), t + HOUR, seq=3),
        record(
            "dossier.supplement_requested", body("dossier.supplement_requested"), t + DAY, log="HUB", seq=1
        ),
        record(
            "dossier.supplement_provided",
            body("dossier.supplement_provided", due_at=DUE_AT + DAY),
            t + 2 * DAY,
            seq=4,
        ),
        record(
            "dossier.result_ready",
            body("dossier.result_ready", document_number="12/GXN"),
            t + 3 * DAY,
            log="HUB",
            seq=2,
        ),
        record("dossier.returned", body("dossier.returned"), t + 3 * DAY + HOUR, log="CN02", seq=1),
        record(
            "dossier.rating",
            body("dossier.rating", value=1, comment="Chờ lâu"),
            t + 3 * DAY + 2 * HOUR,
            log="CN02",
            seq=2,
        ),
    ]
    state = state_of(records)
    assert state.status is NationalStatus.RETURNED and state.state is S.RETURNED
    assert state.applicant is not None and state.applicant.name == "Nguyễn Văn An"
    assert state.procedure is not None and state.procedure.code == "1.004194"
    assert (
        state.received_at == RECEIVED_AT and state.due_at == DUE_AT and state.adjusted_due_at == DUE_AT + DAY
    )
    assert state.receiving_node == "CN01" and state.pickup_node == "CN01"
    assert state.supplement_requests == 1
    assert [(p.start, p.end, p.reason) for p in state.pauses] == [(t + DAY, t + 2 * DAY, "supplement")]
    assert state.result is not None and state.result.document_number == "12/GXN"
    assert state.returned is not None and state.returned.recipient.name == "Nguyễn Văn An"
    assert state.rating is not None and state.rating.dislike
    assert [a.sha256 for a in state.attachments] == [SHA_A]
    assert state.ended_at == t + 3 * DAY
    assert state.timeliness is Timeliness.EARLY
    assert [e.kind for e in state.timeline] == [r.kind for r in records]
    assert state.timeline[3].actor == "officer.1" and state.timeline[3].log == "HUB"
    assert state.fee == 15000 and state.register is not None and state.register.line == 412


def test_late_and_two_supplement_requests() -> None:
    late = run(PATHS[S.TRANSFERRED] + [("dossier.result_ready", {})], start=DUE_AT - 2 * MINUTE + 1)
    assert state_of(late).timeliness is Timeliness.LATE
    on_time = run(PATHS[S.TRANSFERRED] + [("dossier.result_ready", {})], start=DUE_AT - 3 * HOUR)
    assert state_of(on_time).timeliness is Timeliness.ON_TIME
    twice = run(
        PATHS[S.SUPPLEMENTED]
        + [("dossier.supplement_requested", {}), ("dossier.supplement_provided", {})]
        + [("dossier.result_ready", {})]
    )
    state = state_of(twice)
    assert state.supplement_requests == 2 and state.timeliness is Timeliness.LATE


def test_timeliness_not_set_before_the_end() -> None:
    state = state_of(run(PATHS[S.PROCESSING]))
    assert state.timeliness is None
    assert timeliness_as_of(state, DUE_AT - HOUR) is Timeliness.ON_TIME
    assert timeliness_as_of(state, DUE_AT + 1) is Timeliness.LATE
    waiting = state_of(run(PATHS[S.SUPPLEMENT_REQUESTED]))
    assert timeliness_as_of(waiting, DUE_AT + 10 * DAY) is Timeliness.EARLY  # request time counts as the end
    refused = state_of(run(PATHS[S.REFUSED]))
    assert refused.timeliness is None and timeliness_as_of(refused, DUE_AT) is None


def test_withdrawal_ends_at_the_request() -> None:
    steps = PATHS[S.TRANSFERRED] + [("dossier.withdrawal_requested", {}), ("dossier.withdrawn", {})]
    records = run(steps)
    state = state_of(records)
    assert state.status is NationalStatus.STOPPED and state.ended_at == records[2].at


def test_apology_keeps_the_statutory_due_date() -> None:
    state = state_of(run(PATHS[S.TRANSFERRED] + [("dossier.apology", {})]))
    assert state.due_at == DUE_AT and state.adjusted_due_at == DUE_AT
    assert state.promised_at == DUE_AT + DAY and state.apologies[0].reason == "Cần xác minh thêm."


def test_financial_obligation_pause() -> None:
    records = run(PATHS[S.FINANCIAL_OBLIGATION_MET])
    state = state_of(records)
    assert state.obligations == (("Lệ phí trước bạ", 500_000),)
    assert [(p.start, p.end, p.reason) for p in state.pauses] == [
        (records[2].at, records[3].at, "financial_obligation")
    ]
    assert state.supplement_requests == 0


def test_guidance_before_acceptance_is_not_a_pause() -> None:
    state = state_of(run(PATHS[S.GUIDANCE] + [("dossier.supplement_provided", {}), ("dossier.received", {})]))
    assert state.state is S.RECEIVED and state.supplement_requests == 0 and not state.pauses
    assert state.submitted_at == RECEIVED_AT - HOUR


def test_attachments_discard_and_replace() -> None:
    steps = [
        ("dossier.received", {}),
        ("dossier.attachment", {}),
        ("dossier.attachment", {"manifest": manifest(SHA_B), "document": "Tờ khai"}),
        ("dossier.attachment", {"document": "Giấy chứng sinh"}),
        ("dossier.attachment_discarded", {"sha256": SHA_B}),
    ]
    state = state_of(run(steps))
    assert [(a.sha256, a.document) for a in state.attachments] == [(SHA_A, "Giấy chứng sinh")]
    assert [a.sha256 for a in state.discarded] == [SHA_B]
    unknown = state_of(run([("dossier.received", {}), ("dossier.attachment_discarded", {"sha256": SHA_B})]))
    assert unknown.conflicts[0].reason is ConflictReason.UNKNOWN_ATTACHMENT


def test_conflict_resolved_by_applying_the_event() -> None:
    # The centre stops the dossier (hub) while an offline branch records the result afterwards.
    records = run(PATHS[S.TRANSFERRED])
    stop = record("dossier.stopped", body("dossier.stopped"), RECEIVED_AT + HOUR, log="HUB", seq=1)
    result = record("dossier.result_ready", body("dossier.result_ready"), RECEIVED_AT + 2 * HOUR, seq=9)
    before = state_of([*records, stop, result])
    assert before.state is S.STOPPED and before.open_conflicts[0].record.hash == result.hash
    assert before.open_conflicts[0].after == stop.hash
    fix = record(
        "dossier.conflict_resolved",
        body("dossier.conflict_resolved", conflict=result.hash, decision="apply"),
        RECEIVED_AT + DAY,
        log="HUB",
        seq=2,
    )
    after = fold([*records, stop, result, fix])
    state = after.dossiers[CODE]
    assert state.state is S.RESULT_READY and state.result is not None
    assert not after.open_conflicts and after.conflicts[0].resolved_by == fix.hash
    assert after.conflicts[0].decision == "apply" and state.timeline[-1].hash == fix.hash


def test_conflict_dismissed_with_a_state_override() -> None:
    records = run(PATHS[S.RETURNED] + [("dossier.stopped", {})])
    bad = records[-1]
    fix = record(
        "dossier.conflict_resolved",
        body("dossier.conflict_resolved", conflict=bad.hash, decision="dismiss", state="returned"),
        RECEIVED_AT + DAY,
        seq=50,
    )
    state = state_of([*records, fix])
    assert state.state is S.RETURNED and not state.open_conflicts and state.stop_reason is None


def test_resolution_problems_are_conflicts_themselves() -> None:
    records = run(PATHS[S.RECEIVED])
    unknown = record("dossier.conflict_resolved", body("dossier.conflict_resolved"), RECEIVED_AT + DAY, seq=7)
    state = state_of([*records, unknown])
    assert [c.reason for c in state.conflicts] == [ConflictReason.UNKNOWN_CONFLICT]
    broken = body("dossier.rating", value=9)
    invalid = record("dossier.rating", broken, RECEIVED_AT + HOUR, seq=5)
    apply = record(
        "dossier.conflict_resolved",
        body("dossier.conflict_resolved", conflict=invalid.hash, decision="apply"),
        RECEIVED_AT + DAY,
        seq=8,
    )
    state = state_of([*records, invalid, apply])
    assert [c.reason for c in state.conflicts] == [ConflictReason.BODY_INVALID, ConflictReason.CANNOT_APPLY]
    assert state.rating is None


def test_events_without_their_creation_are_pending_then_judged() -> None:
    created = record("dossier.received", body("dossier.received"), RECEIVED_AT, seq=1)
    early = record("dossier.transferred", body("dossier.transferred"), RECEIVED_AT - HOUR, log="HUB", seq=1)
    later = record("dossier.transferred", body("dossier.transferred"), RECEIVED_AT + HOUR, log="HUB", seq=2)
    partial = fold([early, later])
    assert not partial.dossiers and [r.hash for r in partial.pending[CODE]] == [early.hash, later.hash]
    assert not partial.conflicts
    full = fold([early, later, created])
    assert not full.pending
    state = full.dossiers[CODE]
    assert state.state is S.TRANSFERRED
    assert [c.record.hash for c in state.conflicts] == [early.hash] and state.conflicts[0].state is None


def test_duplicates_unknown_kinds_and_other_dossiers() -> None:
    other = "000.00.01.H26-261123-0013"
    records = run(PATHS[S.TRANSFERRED]) + run(PATHS[S.RECEIVED], code=other)
    genesis = EventRecord("CN01", 1, 1, (0, 0), "log.genesis", {"node": "CN01"}, "c" * 64)
    future = record("dossier.teleported", {"dossier": CODE, "actor": "x"}, RECEIVED_AT + DAY, seq=99)
    result = fold([*records, *records, genesis, future])
    assert set(result.dossiers) == {CODE, other}
    assert len(result.dossiers[CODE].timeline) == 2 and result.dossiers[other].state is S.RECEIVED
    assert not result.conflicts


def test_invalid_bodies_are_kept_as_conflicts() -> None:
    records = run(PATHS[S.RECEIVED])
    no_code = record(
        "dossier.transferred", {"dossier": "??", "actor": "a", "agency": "X"}, RECEIVED_AT + HOUR, seq=2
    )
    bad = record("dossier.transferred", body("dossier.transferred", agency=""), RECEIVED_AT + HOUR, seq=3)
    result = fold([*records, no_code, bad])
    assert [c.dossier for c in result.conflicts] == [None, CODE]
    assert all(c.reason is ConflictReason.BODY_INVALID for c in result.conflicts)
    assert result.dossiers[CODE].state is S.RECEIVED


def test_incremental_fold_matches_full_fold_in_and_out_of_order() -> None:
    records = run(PATHS[S.RETURNED] + [("dossier.rating", {}), ("dossier.stopped", {})])
    in_order = Fold()
    for r in records:
        in_order.apply(r)
    reverse = Fold()
    for r in reversed(records):
        reverse.apply(r)
    expected = fold(records)
    assert in_order.result() == expected == reverse.result()
    assert in_order.state(CODE) == expected.dossiers[CODE]
    assert in_order.state("000.00.01.H26-261123-0099") is None


@pytest.mark.parametrize("kind", ["dossier.received", "dossier.refused", "dossier.submitted"])
def test_fold_one_is_the_fold_of_one_creating_event(kind: str) -> None:
    from protocol.dossier.fold import fold_one

    rec = record(kind, body(kind), RECEIVED_AT)
    expected = fold([rec]).dossiers.get(CODE)
    assert expected is not None
    assert fold_one(rec) == expected
    assert fold_one(rec, validated=True) == expected  # the caller validated it: same state


def test_fold_one_of_an_invalid_body_is_what_fold_gives() -> None:
    from protocol.dossier.fold import fold_one

    bad = record("dossier.received", body("dossier.received", channel=99), RECEIVED_AT)
    assert fold([bad]).dossiers.get(CODE) is None  # an invalid creating event creates nothing (pending)
    assert fold_one(bad) is None
