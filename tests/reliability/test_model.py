"""N6: a model-based protocol test. A Hypothesis ``RuleBasedStateMachine`` drives one node against the real
hub, in process (tests/reliability/modelsim.py, modelnode.py): real SQLite files, the hub app on an aiohttp
server on 127.0.0.1, the node's own sync client over HTTP.

Rules: intake (one or several dossiers), later events on them, sync, sync with the push's answer dropped
after the hub committed (lost ack), crash (stores closed and reopened), crash in the middle of a push
(the round cancelled while the hub holds the request, before or after its commit), offline/online, backup,
restore of a backup the way the system specifies (``restore-backup`` + a new epoch), a raw copy of a backup
started with its old key (the misuse: the hub must see the fork), restore from the hub, revoke, release
from quarantine, hub restart.

Invariants after every step (RELIABILITY.md §2.2): nothing acknowledged lost (every receipt any instance
of the node ever held is backed by the hub's bytes, every hub entry of an epoch is in the live node unless
it is a detected fork or a raw copy catching up), nothing duplicated (dossier codes received once, on both
sides, and every intake answered exactly once in the live log unless lost with a disk before the hub had
it), the hub's log a byte-identical prefix of the node's per (node, epoch), every receipt verifies under
the hub key, both chains verify (links every step, signatures incrementally), a revoked epoch never grows
past its cut, fork evidence kept once a diverged copy reached the hub (and never removed).

Failing examples are shrunk and printed as a step list; ``derandomize=True`` makes every CI run use the
same examples, and ``MOTCUA_MODEL_SEED=N`` picks another sequence (printed). A failure prints the
``@reproduce_failure`` decorator too (``print_blob=True``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, reproduce_failure, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from node.actions import perform
from node.errors import Conflict, NotFound
from node.reprovision import ForkRefused, ReprovisionError
from node.sync_client import SyncError, SyncReport
from node.syncgate import AppendBlocked
from protocol import ChainState, Receipt, parse_public_key, verify_chain
from tests.node.conftest import reception
from tests.reliability.modelnode import Branch
from tests.reliability.modelsim import World

QUICK_EXAMPLES = int(os.environ.get("MOTCUA_MODEL_EXAMPLES", "2000"))
QUICK_STEPS = int(os.environ.get("MOTCUA_MODEL_STEPS", "6"))
SLOW_EXAMPLES = int(os.environ.get("MOTCUA_MODEL_LONG_EXAMPLES", "20000"))
SLOW_STEPS = 20

_STATS: dict[str, int] = {}  # rules run, outcomes (the figures of a run)


def _count(name: str, n: int = 1) -> None:
    _STATS[name] = _STATS.get(name, 0) + n


class NodeModel(RuleBasedStateMachine):
    """One node id per example; ``world`` (the hub, the loop) is shared by the examples of a test."""

    world: World

    def __init__(self) -> None:
        super().__init__()
        self.w = self.world
        self.branch: Branch | None = None
        self.serial = 0
        self.node_id = ""
        self.unit = ""
        self.dirs: list[Path] = []
        self.signed: dict[tuple[int, int], set[str]] = {}  # every hash any instance signed at (epoch, seq)
        self.receipts: dict[tuple[int, int, str], Receipt] = {}  # every receipt any instance held
        self.verified_receipts: set[tuple[int, int, str]] = set()
        self.intakes: dict[str, tuple[int, int, str]] = {}  # code -> its reception entry
        self.lost_with_disk: set[str] = set()  # answered, never reached the hub, the disk "died"
        self.backups: list[Path] = []
        self.misused = False  # the live instance is a raw copy started with an old key
        self.revoked: dict[int, int] = {}  # epoch -> cut
        self.forks = 0
        self.pushed_diverged = False  # a round of a diverged raw copy reached the hub (current epoch)
        self.pushed_sealed = False  # a round of a raw copy of a sealed epoch reached the hub
        self.chains: dict[tuple[str, int], ChainState] = {}  # verified prefix per (side, epoch)
        self.last_error = ""

    # -- helpers ------------------------------------------------------------------------------------------

    @property
    def b(self) -> Branch:
        assert self.branch is not None
        return self.branch

    def _dir(self, what: str) -> Path:
        self.serial += 1
        path = self.w.root / f"{self.node_id}-{self.serial}-{what}"
        self.dirs.append(path)
        return path

    def _harvest(self) -> Logs:
        """Remember what the live instance signed and the receipts it holds (they outlive its disk);
        return its log per epoch."""
        mine = _logs(self.b.rows(_LOG_SQL, (self.node_id,)))
        for epoch, entries in mine.items():
            for seq, digest, _, _, _ in entries:
                self.signed.setdefault((epoch, seq), set()).add(digest)
        for log, epoch, seq, head, hub_time, sig in self.b.rows(
            "SELECT log, epoch, seq, head, hub_time, sig FROM sync_receipts WHERE log = ?", (self.node_id,)
        ):
            self.receipts.setdefault((epoch, seq, head), Receipt(log, epoch, seq, head, hub_time, sig))
        return mine

    async def _replace(self, make: Any) -> None:
        """The live instance's disk dies; ``make()`` builds the next one."""
        self._harvest()
        await self.b.close()
        self.branch = None
        self.branch = await make()
        self.chains = {k: v for k, v in self.chains.items() if k[0] == "hub"}

    def _reissued(self, code: str) -> None:
        """A code answered before comes again: only on a cloned copy (the misuse, whose fork the hub
        catches). Never after a lost disk: a restored epoch's code floor (node/code_floor.py) keeps every
        code the lost disk may have printed from naming another dossier."""
        assert self.misused, f"code {code} answered twice" + (
            " (its first dossier was lost with a disk)" if code in self.lost_with_disk else ""
        )
        self.lost_with_disk.discard(code)
        _count("code reissued by a cloned copy")

    def _diverges(self, db_path: Path) -> bool:
        """Whether the log in ``db_path`` and the hub's differ at a position both hold."""
        from tests.tools import node_db

        db = node_db(db_path, readonly=True)
        try:
            local = {
                (e, s): h
                for e, s, h in db.execute(
                    "SELECT epoch, seq, hash FROM entries WHERE log = ?", (self.node_id,)
                )
            }
        finally:
            db.close()
        return any(
            local.get((epoch, e[0]), e[1]) != e[1]
            for epoch, entries in self._hub_logs().items()
            for e in entries
        )

    def _reached_hub(self, outcome: SyncReport | SyncError) -> bool:
        return not (isinstance(outcome, SyncError) and outcome.code in ("unreachable", "stale"))

    def _diverged(self) -> bool:
        """The live copy and the hub differ in the hub's current epoch (a push of it is a fork)."""
        mine = self._node_logs()
        current = self._hub_epoch()
        for epoch, theirs in self._hub_logs().items():
            if epoch != current:
                continue
            own = mine.get(epoch, [])
            if any(x[1] != y[1] for x, y in zip(theirs, own, strict=False)):
                return True
        return False

    def _after_sync(self, outcome: SyncReport | SyncError) -> None:
        self.last_error = outcome.code if isinstance(outcome, SyncError) else ""
        _count(f"sync {self.last_error or 'ok'}")
        if isinstance(outcome, SyncError) and outcome.code not in _EXPECTED_SYNC_ERRORS:
            raise AssertionError(f"unexpected sync error {outcome.code}: {outcome.reason}")
        if self.misused and self._reached_hub(outcome):
            if self._diverged() and self._hub_status() in ("active", "quarantined"):
                self.pushed_diverged = True
            if self.b.node.journal.epoch < self._hub_epoch():
                self.pushed_sealed = True

    def _hub_status(self) -> str:
        rows = self.w.hub_rows("SELECT status FROM nodes WHERE node = ?", (self.node_id,))
        return str(rows[0][0]) if rows else ""

    def _hub_epoch(self) -> int:
        rows = self.w.hub_rows("SELECT epoch FROM nodes WHERE node = ?", (self.node_id,))
        return int(rows[0][0]) if rows else 0

    def _hub_logs(self) -> Logs:
        return _logs(self.w.hub_rows(_LOG_SQL, (self.node_id,)))

    def _node_logs(self) -> Logs:
        return _logs(self.b.rows(_LOG_SQL, (self.node_id,)))

    def _block(self) -> str:
        rows = self.b.rows("SELECT value FROM sync_state WHERE key = 'append_block'")
        return str(rows[0][0]) if rows else ""

    # -- setup --------------------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        n = next(self.w.node_serial)
        self.node_id = f"M{n:05d}"
        self.unit = f"U{n:05d}.H26"
        self.w.run(self.w.new_example())
        token = self.w.run(self.w.invite(self.node_id))
        self.branch = self.w.run(
            Branch.create(
                self.node_id, self.unit, self._dir("init"), token, self.w.base, template=self.w.template
            )
        )
        _count("examples")

    # -- rules: the node's work ----------------------------------------------------------------------------

    @rule(count=st.integers(1, 3))
    def intake(self, count: int) -> None:
        """``count`` receptions at once (the desk's group commit)."""

        async def go() -> None:
            desk = self.b.node.desk
            results = await asyncio.gather(
                *(desk.receive(reception(), actor="an.nv") for _ in range(count)), return_exceptions=True
            )
            for recorded in results:
                if isinstance(recorded, AppendBlocked):
                    _count("intake blocked")
                    continue
                if isinstance(recorded, BaseException):
                    raise recorded
                if recorded.code in self.intakes:
                    # only on a cloned copy (the misuse): never after a restore (the code floor)
                    self._reissued(recorded.code)
                self.intakes[recorded.code] = (recorded.epoch, recorded.seq, recorded.hash)
                _count("intake")

        self.w.run(go())

    @precondition(lambda self: bool(self.intakes))
    @rule(pick=st.integers(0, 1 << 16), action=st.sampled_from(["transfer", "withdrawal_request"]))
    def event(self, pick: int, action: str) -> None:
        codes = sorted(self.intakes)
        code = codes[pick % len(codes)]
        data = {"agency": "Sở Tư pháp"} if action == "transfer" else {}

        async def go() -> None:
            try:
                await perform(self.b.node.desk, code, action, data, actor="an.nv")
                _count("event")
            except (AppendBlocked, Conflict, NotFound):
                _count("event refused")

        self.w.run(go())

    # -- rules: sync and its faults ------------------------------------------------------------------------

    @rule()
    def sync(self) -> None:
        self._after_sync(self.w.run(self.b.sync()))

    @rule()
    def sync_ack_lost(self) -> None:
        """The hub commits the push, the answer is dropped on the wire."""
        self.w.faults.arm("drop_ack")
        try:
            self._after_sync(self.w.run(self.b.sync()))
        finally:
            self.w.run(self.w.faults.settle())

    @rule()
    def crash(self) -> None:
        async def go() -> None:
            self._harvest()
            offline = self.b.offline
            await self.b.close()
            self.branch = await Branch.open(self.node_id, self.b.data, self.w.base, offline=offline)

        self.w.run(go())
        _count("crash")

    @rule(when=st.sampled_from(["hold_before", "hold_after"]))
    def crash_mid_push(self, when: str) -> None:
        """The node dies while its push is at the hub (before or after the hub's commit)."""

        async def go() -> None:
            faults = self.w.faults
            faults.arm(when)
            assert faults.reached is not None
            round_ = asyncio.ensure_future(self.b.sync())
            waiter = asyncio.ensure_future(faults.reached.wait())
            await asyncio.wait({round_, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            hit = waiter.done()
            waiter.cancel()
            round_.cancel()
            await asyncio.gather(round_, waiter, return_exceptions=True)
            self._harvest()
            offline = self.b.offline
            await self.b.close()  # the node is gone; the hub side goes on by itself
            await faults.settle()
            self.branch = await Branch.open(self.node_id, self.b.data, self.w.base, offline=offline)
            _count(f"crash mid-push {when}" if hit else "crash (no push)")

        self.w.run(go())

    @rule(offline=st.booleans())
    def link(self, offline: bool) -> None:
        self.b.set_offline(offline)

    @rule()
    def restart_hub(self) -> None:
        self.w.run(self.w.restart_hub())
        _count("hub restart")

    # -- rules: backups and restores -----------------------------------------------------------------------

    @precondition(lambda self: len(self.backups) < 2)
    @rule()
    def backup(self) -> None:
        archive = self._dir("backup.tar")
        self.b.backup(archive)
        self.backups.append(archive)
        _count("backup")

    @precondition(lambda self: bool(self.backups) and not self.b.offline)
    @rule(pick=st.integers(0, 2))
    def restore_backup(self, pick: int) -> None:
        """The disk dies; the backup is restored as the system says: new key, new epoch, gap from the hub."""
        archive = self.backups[pick % len(self.backups)]

        async def make() -> Branch:
            token = await self.w.invite(self.node_id)
            target = self._dir("restored")
            try:
                return await Branch.from_backup(self.node_id, archive, target, token, self.w.base)
            except ReprovisionError as exc:
                # only a backup that holds another history than the hub may be refused (nothing written);
                # the way out is then a restore from the hub
                assert self._diverges(target / "node.sqlite3"), f"restore refused without a fork: {exc}"
                # named as such (another history than the hub's, and the way out), never a chain error
                assert isinstance(exc, ForkRefused) and "motcua-node restore" in str(exc), repr(exc)
                _count("restore refused (fork)")
                token = await self.w.invite(self.node_id)
                return await Branch.from_hub(
                    self.node_id, self.unit, self._dir("fromhub"), token, self.w.base
                )

        self.w.run(self._replace(make))
        self.misused = False
        self.pushed_diverged = self.pushed_sealed = False
        _count("restore backup")

    @precondition(lambda self: bool(self.backups))
    @rule(pick=st.integers(0, 2), appends=st.integers(0, 2))
    def raw_copy(self, pick: int, appends: int) -> None:
        """The misuse: the backup's files, old key included, started as they are (a cloned disk). With
        ``appends`` it starts offline and takes that many dossiers before the link comes back (a fork);
        without, it starts online (its preflight recovers what the hub holds)."""
        archive = self.backups[pick % len(self.backups)]
        online = not self.b.offline

        async def make() -> Branch:
            copy = await Branch.raw_copy(
                self.node_id, archive, self._dir("raw"), self.w.base, offline=appends > 0 or not online
            )
            for _ in range(appends):
                try:
                    await copy.node.desk.receive(reception(note="bản sao"), actor="an.nv")
                except AppendBlocked:
                    _count("intake blocked")
            copy.set_offline(not online)
            return copy

        self.w.run(self._replace(make))
        self.misused = True
        self.pushed_diverged = self.pushed_sealed = False
        _count("raw copy" if not appends else "raw copy + appends")

    @precondition(lambda self: not self.b.offline)
    @rule(ahead=st.integers(1, 3), appends=st.integers(0, 2))
    def stale_copy(self, ahead: int, appends: int) -> None:
        """Backup, ``ahead`` more dossiers synced to the hub, then the disk dies and the backup's raw copy
        (old key) is started: with ``appends`` it works offline first (a fork the hub must catch on the
        copy's first push), without it its preflight recovers the missing suffix from the hub."""
        archive = self._dir("backup.tar")
        self.b.backup(archive)

        async def ahead_of_backup() -> None:
            for _ in range(ahead):
                try:
                    recorded = await self.b.node.desk.receive(reception(), actor="an.nv")
                except AppendBlocked:
                    _count("intake blocked")
                    return
                if recorded.code in self.intakes:
                    self._reissued(recorded.code)
                self.intakes[recorded.code] = (recorded.epoch, recorded.seq, recorded.hash)
            self._after_sync(await self.b.sync())

        self.w.run(ahead_of_backup())
        self.backups.append(archive)
        self.raw_copy(len(self.backups) - 1, appends)

    @precondition(
        lambda self: not self.b.offline and (self.misused or self._hub_status() != "active" or self._block())
    )
    @rule()
    def restore_from_hub(self) -> None:
        """``motcua-node restore``: what an admin does for a revoked, quarantined or misused node."""

        async def make() -> Branch:
            token = await self.w.invite(self.node_id)
            return await Branch.from_hub(self.node_id, self.unit, self._dir("fromhub"), token, self.w.base)

        self.w.run(self._replace(make))
        self.misused = False
        self.pushed_diverged = self.pushed_sealed = False
        _count("restore from hub")

    # -- rules: the admin ----------------------------------------------------------------------------------

    @precondition(lambda self: self._hub_status() in ("active", "quarantined"))
    @rule()
    def revoke(self) -> None:
        epoch, cut = self.w.run(self.w.revoke(self.node_id))
        self.revoked[epoch] = cut
        _count("revoke")

    @precondition(lambda self: self._hub_status() in ("active", "quarantined"))
    @rule()
    def revoke_during_push(self) -> None:
        """The admin revokes the node while its push is at the hub, after the round's hello said
        ``active``: the hub must refuse the push itself."""

        async def go() -> None:
            faults = self.w.faults
            faults.arm("hold_before")
            assert faults.reached is not None
            round_ = asyncio.ensure_future(self.b.sync())
            waiter = asyncio.ensure_future(faults.reached.wait())
            await asyncio.wait({round_, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            hit = waiter.done()
            waiter.cancel()
            epoch, cut = await self.w.revoke(self.node_id)
            self.revoked[epoch] = cut
            await faults.settle()  # the held push goes on, now after the revocation
            self._after_sync(await round_)
            _count("revoke during a push" if hit else "revoke")

        self.w.run(go())

    @precondition(lambda self: self._hub_status() == "quarantined")
    @rule()
    def release(self) -> None:
        self.w.run(self.w.release(self.node_id))
        self.pushed_diverged = False  # the next push of a diverged copy must be caught again
        _count("release")

    # -- invariants ----------------------------------------------------------------------------------------

    @invariant()
    def protocol_invariants(self) -> None:
        if self.branch is None:
            return
        started = time.perf_counter()
        try:
            self._check()
        finally:
            timings = self.w.timings
            timings["invariants"] = timings.get("invariants", 0.0) + time.perf_counter() - started

    def _check(self) -> None:
        mine = self._harvest()
        hub = self._hub_logs()
        status = self._hub_status()
        diverged = False
        for epoch, theirs in hub.items():
            # the hub: contiguous, a verified chain (incrementally), bytes some instance of the node signed
            assert [e[0] for e in theirs] == list(range(1, len(theirs) + 1)), f"hub {epoch}: gap"
            self._verify("hub", epoch, theirs)
            for seq, digest, _, _, _ in theirs:
                assert digest in self.signed.get((epoch, seq), set()), f"hub {epoch}:{seq} never signed"
            head = self.w.hub_rows(
                "SELECT seq, hash FROM heads WHERE log = ? AND epoch = ?", (self.node_id, epoch)
            )
            assert head == [(len(theirs), theirs[-1][1])], f"hub head row {head} vs {len(theirs)}"
            # the hub's log is a prefix of the node's (unless this is a raw copy: then it may be behind
            # or diverged, and a diverged copy that reached the hub must have been caught)
            own = mine.get(epoch, [])
            agree = all(x[1] == y[1] and x[2] == y[2] for x, y in zip(theirs, own, strict=False))
            if not self.misused:
                assert len(theirs) <= len(own), f"{epoch}: hub holds {len(theirs)}, node only {len(own)}"
                assert agree, f"{epoch}: hub log is not a prefix of the node's"
            elif not agree and epoch == self._hub_epoch():
                diverged = True
        forks = self.w.hub_rows(
            "SELECT epoch, seq, stored_hash, offered_hash FROM forks WHERE log = ?", (self.node_id,)
        )
        assert len(forks) >= self.forks, "fork evidence disappeared"
        self.forks = len(forks)
        for epoch, seq, stored, offered in forks:
            assert hub[epoch][seq - 1][1] == stored, "fork evidence: stored hash is not the hub's entry"
            assert offered in self.signed.get((epoch, seq), set()), "fork evidence: offered never signed"
            assert offered != stored
        if self.misused and diverged and self.pushed_diverged:
            assert forks, "a diverged copy reached the hub and no fork evidence was kept"
            block = self._block()
            assert block in ("fork", "node_quarantined", "node_revoked"), (
                f"diverged copy, append block {block!r}"
            )
            assert status in ("quarantined", "revoked"), f"diverged copy caught, hub status {status}"
        if self.misused and self.pushed_sealed:
            assert self._block() == "epoch_sealed", f"copy of a sealed epoch, append block {self._block()!r}"
        # the node: contiguous and a verified chain per epoch
        for epoch, own in mine.items():
            assert [e[0] for e in own] == list(range(1, len(own) + 1)), f"node {epoch}: gap"
            self._verify("node", epoch, own)
        # receipts: signed by the hub, backed by the hub's bytes (nothing acknowledged lost)
        for ident, receipt in self.receipts.items():
            if ident not in self.verified_receipts:
                receipt.verify(self.w.hub.public_key)
                self.verified_receipts.add(ident)
            epoch, seq, head = ident
            theirs = hub.get(epoch, [])
            assert len(theirs) >= seq and theirs[seq - 1][1] == head, f"receipt {ident} not backed by the hub"
        # revoked epochs never grow past their cut
        for epoch, cut in self.revoked.items():
            assert len(hub.get(epoch, [])) <= cut, f"revoked {epoch} after {cut}: hub stored more"
        # no duplicates: a dossier received once per side; every answered intake once in the live log
        for side, logs in (("hub", hub), ("node", mine)):
            codes = [e[4] for entries in logs.values() for e in entries if e[3] == "dossier.received"]
            assert len(codes) == len(set(codes)), f"{side}: a dossier received twice: {sorted(codes)}"
        where = {(epoch, e[0]): e[1] for epoch, entries in mine.items() for e in entries}
        for code, (epoch, seq, digest) in self.intakes.items():
            if code in self.lost_with_disk or where.get((epoch, seq)) == digest:
                continue
            theirs = hub.get(epoch, [])
            on_hub = len(theirs) >= seq and theirs[seq - 1][1] == digest
            # acceptable only if the hub never had it (a disk lost before its sync) or, for a raw copy,
            # until the copy has caught up with the hub (it is blocked meanwhile, or exposed as a fork)
            assert not on_hub or self.misused, (
                f"intake {code} ({epoch}:{seq}) is on the hub but not in the live node"
            )
            if not on_hub:
                self.lost_with_disk.add(code)
                _count("intake lost with the disk (never on the hub)")

    def _key(self, side: str, epoch: int) -> Any:
        if side == "hub":
            rows = self.w.hub_rows(
                "SELECT key FROM node_epochs WHERE node = ? AND epoch = ?", (self.node_id, epoch)
            )
        else:
            rows = self.b.rows("SELECT public_key FROM epochs WHERE epoch = ?", (epoch,))
        return parse_public_key(str(rows[0][0]))

    def _verify(self, side: str, epoch: int, entries: list[Row]) -> None:
        state = self.chains.get((side, epoch))
        if (
            state is None
            or state.seq > len(entries)
            or (state.seq and entries[state.seq - 1][1] != state.head)
        ):
            state = ChainState.start(self.node_id, epoch, self._key(side, epoch))
        new = [e[2] for e in entries if e[0] > state.seq]
        if new:
            self.chains[(side, epoch)] = verify_chain(state, new)

    def teardown(self) -> None:
        if self.branch is not None:
            self.w.run(self.b.close())
            self.branch = None
        self.w.run(self.w.faults.settle())
        for path in self.dirs:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


Row = tuple[int, str, bytes, str, str | None]  # seq, hash, raw, kind, dossier
Logs = dict[int, list[Row]]
_LOG_SQL = "SELECT epoch, seq, hash, raw, kind, dossier FROM entries WHERE log = ? ORDER BY epoch, seq"


def _logs(rows: list[Any]) -> Logs:
    logs: Logs = {}
    for epoch, seq, digest, raw, kind, dossier in rows:
        logs.setdefault(int(epoch), []).append((int(seq), str(digest), bytes(raw), str(kind), dossier))
    return logs


_EXPECTED_SYNC_ERRORS = {
    "unreachable",  # offline, or the answer was dropped
    "fork",  # a raw copy diverged: exposed
    "diverged",
    "behind_hub",
    "node_revoked",
    "node_quarantined",
    "epoch_sealed",  # an old key (a raw copy of an earlier epoch)
    "prev_mismatch",
}


def _root() -> Iterator[Path]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="motcua-model-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _factory(seed: int) -> Any:
    """The state machine with a fixed seed (failing seeds replay); ``MOTCUA_MODEL_REPRODUCE=VERSION:BLOB``
    replays one printed ``@reproduce_failure(VERSION, BLOB)`` exactly."""

    def machine() -> NodeModel:
        return NodeModel()

    reproduce = os.environ.get("MOTCUA_MODEL_REPRODUCE")
    if reproduce:
        version, blob = reproduce.split(":", 1)
        machine = reproduce_failure(version, blob.encode())(machine)
    return hypothesis_seed(seed)(machine)


def _run(examples: int, steps: int, seed: int, figures: Any, name: str) -> None:  # noqa: ANN401
    seed = int(os.environ.get("MOTCUA_MODEL_SEED", seed))
    print(f"N6 model: seed {seed} (MOTCUA_MODEL_SEED={seed} replays this run)")
    _STATS.clear()
    for root in _root():
        world = World(root)
        NodeModel.world = world
        started = time.monotonic()
        try:
            run_state_machine_as_test(
                _factory(seed),
                settings=settings(
                    max_examples=examples,
                    stateful_step_count=steps,
                    deadline=None,
                    database=None,
                    print_blob=True,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        finally:
            elapsed = time.monotonic() - started
            world.close()
            n = _STATS.get("examples", 0)
            figures(
                name,
                seed=seed,
                examples=n,
                max_steps=steps,
                seconds=round(elapsed, 1),
                examples_per_s=round(n / elapsed, 1),
                seconds_in={k: round(v, 1) for k, v in sorted(world.timings.items(), key=lambda kv: -kv[1])},
                **{k.replace(" ", "_"): v for k, v in sorted(_STATS.items()) if k != "examples"},
            )


@pytest.mark.parametrize("part", [1, 2])
def test_model_quick(part: int, figures: Any) -> None:  # noqa: ANN401
    """2 x 1,000 examples (two parts: CI's two xdist workers run them side by side)."""
    _run(QUICK_EXAMPLES // 2, QUICK_STEPS, part, figures, f"N6 model (quick, part {part})")


@pytest.mark.slow
def test_model_long(figures: Any) -> None:  # noqa: ANN401
    _run(SLOW_EXAMPLES, SLOW_STEPS, 1000, figures, "N6 model (long)")


def _replay(steps: list[tuple[str, dict[str, Any]]]) -> None:
    """Run one example by hand (a shrunk failure kept as a regression test), invariants after each step."""
    for root in _root():
        world = World(root)
        NodeModel.world = world
        try:
            machine = NodeModel()
            try:
                machine.start()
                machine.protocol_invariants()
                for name, args in steps:
                    getattr(machine, name)(**args)
                    machine.protocol_invariants()
            finally:
                machine.teardown()
        finally:
            world.close()


def test_found_restore_of_a_diverged_backup_after_an_empty_epoch() -> None:
    """Found by N6: a backup of a cloned copy (its epoch 1 differs from the hub's) restored after an epoch
    that never pushed anything was accepted; the restored node then held another history than the hub."""
    _replay(
        [
            ("backup", {}),
            ("stale_copy", {"ahead": 1, "appends": 1}),
            ("stale_copy", {"ahead": 1, "appends": 0}),
            ("restore_backup", {"pick": 0}),
            ("restore_backup", {"pick": 2}),
        ]
    )


def test_found_restore_from_hub_after_an_empty_epoch() -> None:
    """Found by N6: ``motcua-node restore`` after a restore-backup whose new epoch had pushed nothing yet
    crashed (``LogHead.hash``; node/restore.py)."""
    _replay([("backup", {}), ("restore_backup", {"pick": 0}), ("restore_from_hub", {})])


def test_found_code_reissued_after_a_lost_disk() -> None:
    """Found by N6: receptions answered after the backup (receipts printed) and lost with the disk; the
    restored node continued after what the hub held and issued their codes again (node/code_floor.py)."""
    _replay(
        [("backup", {}), ("intake", {"count": 2}), ("restore_backup", {"pick": 0}), ("intake", {"count": 3})]
    )
    _replay([("intake", {"count": 1}), ("restore_from_hub", {}), ("intake", {"count": 2})])


def test_found_code_floor_after_restoring_a_backup_of_a_revoked_node() -> None:
    """Found by N6 (while adding the code floor): the floor was appended before the new epoch cleared the
    backup's append block (revoked), so restoring a revoked node's backup failed."""
    _replay([("revoke", {}), ("crash", {}), ("backup", {}), ("restore_backup", {"pick": 0})])
