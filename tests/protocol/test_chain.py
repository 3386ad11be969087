from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    ChainState,
    Entry,
    Head,
    ProtocolError,
    genesis_body,
    parse_public_key,
    private_key_from_seed,
    public_key_text,
    sign_entry,
    signable_bytes,
    verify_chain,
)
from protocol.errors import BadGenesis, BadSignature, KeyMismatch, SequenceGap, TimeWentBackwards
from protocol.vectors import load_vectors
from tests.protocol.chains import make_chain, make_key

VECTORS = load_vectors()
POOL = ThreadPoolExecutor(max_workers=2)


def start(key=None, log: str = "CN01", epoch: int = 1) -> ChainState:  # type: ignore[no-untyped-def]
    return ChainState.start(log, epoch, parse_public_key(public_key_text(key or make_key())))


def outcome(state: ChainState, items: list, executor=None):  # type: ignore[no-untyped-def]
    try:
        result = verify_chain(state, items, executor=executor, batch=3)
        return ("ok", result.seq, result.head)
    except ProtocolError as exc:
        return ("error", exc.code, exc.index)  # type: ignore[attr-defined]


def test_vectors_chain_verifies_byte_for_byte() -> None:
    seed = bytes.fromhex(VECTORS["keys"][0]["seed_hex"])
    key = private_key_from_seed(seed)
    assert public_key_text(key) == VECTORS["keys"][0]["public"]
    state = ChainState.start("CN01", 1, parse_public_key(VECTORS["keys"][0]["public"]))
    raws = [v["canonical"].encode() for v in VECTORS["chain"]["entries"]]
    final = verify_chain(state, raws)
    assert final.seq == 3 and final.head == VECTORS["chain"]["entries"][-1]["hash"]
    for vector, raw in zip(VECTORS["chain"]["entries"], raws, strict=True):
        entry = Entry.parse(raw)
        assert entry.hash == vector["hash"]
        assert entry.signable().hex() == vector["signable_hex"] == signable_bytes(entry.to_dict()).hex()
        # Ed25519 is deterministic: re-signing the same fields gives the same bytes.
        again = sign_entry(
            key,
            log=entry.log,
            epoch=entry.epoch,
            seq=entry.seq,
            prev=entry.prev,
            time=entry.time,
            kind=entry.kind,
            body=entry.body,
        )
        assert again.raw == raw


@pytest.mark.parametrize("case", VECTORS["chain_bad"], ids=lambda c: c["name"])
def test_vectors_bad_entries(case: dict) -> None:
    state = ChainState.start("CN01", 1, parse_public_key(VECTORS["keys"][0]["public"]))
    raws = [v["canonical"].encode() for v in VECTORS["chain"]["entries"]]
    state = verify_chain(state, raws[: case["after"]])
    with pytest.raises(ProtocolError) as info:
        verify_chain(state, [case["entry"].encode()])
    assert info.value.code == case["error"]


def test_epoch2_genesis_names_sealed_head() -> None:
    g2 = VECTORS["epoch2_genesis"]
    entry = Entry.parse(g2["canonical"].encode())
    state = ChainState.start("CN01", 2, parse_public_key(VECTORS["keys"][1]["public"]))
    assert verify_chain(state, [entry]).seq == 1
    assert entry.body["previous"] == {"epoch": 1, "seq": 3, "head": VECTORS["chain"]["entries"][2]["hash"]}


def test_genesis_rules() -> None:
    key, other = make_key(1), make_key(2)
    text = public_key_text(key)
    with pytest.raises(KeyMismatch):
        e = sign_entry(
            key,
            log="CN01",
            epoch=1,
            seq=1,
            prev=None,
            time=(1, 0),
            kind="log.genesis",
            body=genesis_body("CN01", 1, public_key_text(other)),
        )
        verify_chain(start(key), [e])
    with pytest.raises(BadGenesis):
        e = sign_entry(key, log="CN01", epoch=1, seq=1, prev=None, time=(1, 0), kind="dossier.note", body={})
        verify_chain(start(key), [e])
    with pytest.raises(BadGenesis):  # epoch 2 must name the sealed head
        e = sign_entry(
            key,
            log="CN01",
            epoch=2,
            seq=1,
            prev=None,
            time=(1, 0),
            kind="log.genesis",
            body=genesis_body("CN01", 2, text),
        )
        verify_chain(start(key, epoch=2), [e])
    chain = make_chain(2, key=key)
    g = sign_entry(
        key,
        log="CN01",
        epoch=1,
        seq=3,
        prev=chain[-1].hash,
        time=(2_000_000_000_000, 0),
        kind="log.genesis",
        body=genesis_body("CN01", 1, text, Head("CN01", 1, 2, chain[-1].hash)),
    )
    with pytest.raises(BadGenesis):
        verify_chain(start(key), [*chain, g])


def test_time_may_not_go_backwards() -> None:
    key = make_key()
    chain = make_chain(2, key=key)
    back = sign_entry(
        key,
        log="CN01",
        epoch=1,
        seq=3,
        prev=chain[-1].hash,
        time=(chain[-1].time[0] - 1, 5),
        kind="dossier.note",
        body={},
    )
    with pytest.raises(TimeWentBackwards):
        verify_chain(start(key), [*chain, back])


def test_gap_reports_expected_seq() -> None:
    chain = make_chain(5)
    with pytest.raises(SequenceGap) as info:
        verify_chain(start(), [chain[0], chain[1], chain[3]])
    assert (info.value.expected, info.value.got, info.value.index) == (3, 4, 2)  # type: ignore[attr-defined]
    good = info.value.state  # type: ignore[attr-defined]
    assert isinstance(good, ChainState) and (good.seq, good.head, good.time) == (
        2,
        chain[1].hash,
        chain[1].time,
    )


CHAIN = make_chain(6)
RAWS = [e.raw for e in CHAIN]
OTHER = make_chain(6, key=make_key(9))


@settings(max_examples=300)
@given(st.integers(0, len(RAWS) - 1), st.data())
def test_any_single_bit_flip_is_rejected(which: int, data: st.DataObject) -> None:
    raw = bytearray(RAWS[which])
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    items = [*RAWS[:which], bytes(raw), *RAWS[which + 1 :]]
    seq_result = outcome(start(), items)
    assert seq_result[0] == "error" and seq_result[2] == which
    assert outcome(start(), items, POOL) == seq_result


@settings(max_examples=300)
@given(st.data())
def test_truncation_reorder_duplication_splice_rejected(data: st.DataObject) -> None:
    items = list(RAWS)
    op = data.draw(st.sampled_from(["truncate_bytes", "swap", "duplicate", "splice", "drop"]))
    i = data.draw(st.integers(0, len(items) - 3))  # dropping the very last entry leaves a valid prefix
    if op == "truncate_bytes":
        items[i] = items[i][: data.draw(st.integers(0, len(items[i]) - 1))]
    elif op == "swap":
        items[i], items[i + 1] = items[i + 1], items[i]
    elif op == "duplicate":
        items.insert(i + 1, items[i])
    elif op == "splice":
        items[i + 1] = OTHER[i + 1].raw
    else:
        del items[i + 1]
    result = outcome(start(), items)
    assert result[0] == "error"
    assert outcome(start(), items, POOL) == result
    expected = {
        "swap": {"seq_gap"},
        "duplicate": {"seq_gap"},
        "drop": {"seq_gap"},
        "splice": {"prev_mismatch", "bad_signature"},
    }
    if op in expected:
        assert result[1] in expected[op]


def test_parallel_matches_sequential_on_valid_chain() -> None:
    chain = make_chain(200)
    seq = verify_chain(start(), [e.raw for e in chain])
    par = verify_chain(start(), [e.raw for e in chain], executor=POOL, batch=16)
    assert seq == par and seq.seq == 200


def test_signature_with_s_plus_l_is_rejected() -> None:
    """Signature malleability: S and S+L must not both verify."""
    from protocol.encoding import b64url_decode, b64url_encode

    chain = make_chain(2)
    sig = b64url_decode(chain[1].sig)
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + order
    if s >= 2**256:
        pytest.skip("S+L does not fit 32 bytes for this signature")
    forged_sig = b64url_encode(sig[:32] + s.to_bytes(32, "little"))
    fields = chain[1].to_dict()
    fields["sig"] = forged_sig
    from protocol import canonical

    with pytest.raises(BadSignature):
        verify_chain(start(), [chain[0].raw, canonical(fields)])


def test_dossier_bodies_are_validated_after_the_chain() -> None:
    from protocol import BodyInvalid, validate_body

    validate_body("some.future_kind", {"anything": 1})  # unknown kinds are carried, not refused
    with pytest.raises(BodyInvalid) as info:
        validate_body("dossier.received", {"dossier": "not a code"})
    assert info.value.code == "body_invalid"


def _signed(key, prev: Entry, *, seq: int, kind: str = "dossier.note", time_ms: int | None = None) -> Entry:  # type: ignore[no-untyped-def]
    return sign_entry(
        key,
        log=prev.log,
        epoch=prev.epoch,
        seq=seq,
        prev=prev.hash,
        time=(prev.time[0] + 10 if time_ms is None else time_ms, 0),
        kind=kind,
        body={"text": "x"} if kind != "log.genesis" else genesis_body(prev.log, 1, public_key_text(key)),
    )


LONG = make_chain(12)
FAULTS = ["sig", "garbage", "foreign", "genesis_again", "time_back", "gap"]


def _with_fault(items: list[bytes], at: int, fault: str) -> None:
    key = make_key()
    before = LONG[at - 1] if at > 0 else None
    if fault == "sig":
        items[at] = _tamper_sig(items[at])
    elif fault == "garbage":
        items[at] = items[at][:-1] + b" "
    elif fault == "foreign":
        items[at] = make_chain(12, key=make_key(9))[at].raw
    elif fault == "genesis_again" and before is not None:
        items[at] = _signed(key, before, seq=at + 1, kind="log.genesis").raw
    elif fault == "time_back" and before is not None:
        items[at] = _signed(key, before, seq=at + 1, time_ms=before.time[0] - 1).raw
    elif fault == "gap" and before is not None:
        items[at] = _signed(key, before, seq=at + 2).raw


def _tamper_sig(raw: bytes) -> bytes:
    out = bytearray(raw)
    at = out.index(b'"sig":"') + 10
    out[at] = ord("B") if out[at] == ord("A") else ord("A")
    return bytes(out)


def _full_outcome(items: list[bytes], executor=None, batch: int = 3):  # type: ignore[no-untyped-def]
    parsed: list[Entry] = []
    seen: list[int] = []
    try:
        result = verify_chain(
            start(),
            items,
            executor=executor,
            batch=batch,
            parsed=parsed,
            inspect=lambda e: e.seq,
            inspected=seen,
        )
        return ("ok", result, [e.hash for e in parsed], seen)
    except ProtocolError as exc:
        state = exc.state  # type: ignore[attr-defined]
        return ("error", type(exc), exc.code, exc.index, state, [e.hash for e in parsed])  # type: ignore[attr-defined]


@settings(max_examples=250, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(LONG) - 1), st.sampled_from(FAULTS)), max_size=3),
    st.integers(1, 5),
    st.sampled_from([1, 2, 3]),
)
def test_parallel_names_the_sequential_first_error_with_several_faults(
    faults: list[tuple[int, str]], batch: int, threads: int
) -> None:
    """Several faults of different phases anywhere, any chunk size, one to three threads: the parallel
    verifier raises the same error class, code, index and last good state as the sequential one, and
    hands back the same parsed entries (and inspection results) up to it."""
    items = [e.raw for e in LONG]
    for at, fault in faults:
        _with_fault(items, at, fault)
    expected = _full_outcome(items)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        assert _full_outcome(items, pool, batch) == expected
    if not faults:
        assert expected[0] == "ok" and expected[3] == list(range(1, len(LONG) + 1))
