"""S8 (RELIABILITY.md §6): node key rotation is a threshold decision (SPEC §7.11), between a real hub and a
real node on 127.0.0.1.

- A rotation signed by the old key (and the new one) and approved by 2 of 3 admins (one on the admin web
  page with CSRF and password step-up, one with the hub CLI) is accepted: the hub writes a signed
  ``hub.node_key_rotation``, the node starts epoch 2 with the new key and the old key is refused.
- After a revocation, a rotation signed by the old key is refused (``node_revoked``), even with an
  approval obtained before the revocation; a new request by the old key alone is refused too.
- Also: one approval is not enough, the same admin twice counts once, an expired approval does not count,
  a forged new-key signature and a replayed request are refused.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from central.cli import main as central_main
from central.errors import now_ms
from central.webauth import Users
from node.cli import main as node_main
from node.config import load as load_node_config
from node.reprovision import ReprovisionError, hub_state
from protocol import (
    NODE_KEY_ROTATION,
    Entry,
    Head,
    RotationRequest,
    b64url_decode,
    b64url_encode,
    canonical,
    fingerprint,
    generate_private_key,
    load_private_key,
    public_key_text,
)
from tests.e2e.realnode import HubRunner, NodeRunner, eventually

pytestmark = pytest.mark.e2e

APPROVERS = ("an.admin", "binh.admin", "chi.admin")
OUTSIDER = "dung.admin"  # an admin who is not among the rotation approvers
ADMIN_PASSWORD = "mật khẩu quản trị dài 2026"


class Clock:
    """Hub time: the real clock plus an offset a test moves forward (approvals expiring)."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return now_ms() + self.offset


async def _hub(tmp_path: Path, clock: Callable[[], int] = now_ms, **settings: Any) -> HubRunner:
    values = {"rotation_approvers": ",".join(APPROVERS), "rotation_threshold": 2, **settings}
    hub = HubRunner(tmp_path / "hub", clock=clock, settings=values)
    await hub.start()
    users = Users(hub.hub.store)
    for name in (*APPROVERS, OUTSIDER):
        await users.add(name, "admin", ADMIN_PASSWORD, agency=None, now=now_ms())
    return hub


def _cli(main: Callable[..., int], *argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO(stdin)
    try:
        if main is node_main:
            code = node_main(list(argv), out=out, err=err)
        else:
            code = main(list(argv))
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


async def node_cli(*argv: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(_cli, node_main, *argv)


async def approve_cli(hub: HubRunner, admin: str, request_id: str, fp: str) -> tuple[int, str, str]:
    data = str(hub.config.data_dir)
    argv = ("--data", data, "node", "approve-rotation", request_id, "--as", admin, "--fingerprint", fp)
    return await asyncio.to_thread(_cli, central_main, *argv, "--password-stdin", stdin=ADMIN_PASSWORD + "\n")


async def approve_web(
    hub: HubRunner, admin: str, request_id: str, fp: str, node: str, *, password: str = ADMIN_PASSWORD
) -> tuple[int, str]:
    """Log in as ``admin``, open the request's page, approve with CSRF, fingerprint, node id, password."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        login = {"username": admin, "password": ADMIN_PASSWORD}
        async with browser.post(hub.base + "/login", data=login, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
        async with browser.get(f"{hub.base}/admin/rotations/{request_id}") as resp:
            page = await resp.text()
            assert resp.status == 200, page
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match is not None
        form = {"csrf": match.group(1), "fingerprint": fp, "confirm": node, "password": password}
        async with browser.post(
            f"{hub.base}/admin/rotations/{request_id}/approve", data=form, allow_redirects=False
        ) as resp:
            return resp.status, await resp.text()


async def _synced_node(hub: HubRunner, tmp_path: Path, receptions: int = 2) -> NodeRunner:
    node = await NodeRunner.create(tmp_path / "br01", await hub.invite("BR01"), node_id="BR01", block=0)
    await node.start()
    try:
        for _ in range(receptions):
            await node.receive()
    finally:
        await node.stop()
    code, _, err = await node_cli("sync", "--data", str(node.data), "--once")
    assert code == 0, err
    return node


def _pending(out: str) -> tuple[str, str]:
    request_id = re.search(r"^pending ([0-9a-f]{64})$", out, re.M)
    fp = re.search(r"^fingerprint (\S+)$", out, re.M)
    assert request_id and fp, out
    return request_id.group(1), fp.group(1)


async def _status(hub: HubRunner, request_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hub.base}/v1/rotation/{request_id}") as resp:
            assert resp.status == 200
            return dict(await resp.json())


async def _post(hub: HubRunner, wire: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{hub.base}/v1/rotation", data=canonical(wire)) as resp:
            return resp.status, dict(await resp.json())


async def test_s8_old_key_and_two_of_three_admins_rotate_the_key(tmp_path: Path) -> None:
    hub = await _hub(tmp_path)
    try:
        node = await _synced_node(hub, tmp_path)
        config = load_node_config(node.data, {})
        old_key = load_private_key(config.key_path)
        held = await hub.head("BR01", 1)

        code, out, err = await node_cli("rotate-key", "--data", str(node.data), "--wait", "0")
        assert code == 3, err
        request_id, fp = _pending(out)
        assert "approvals 0/2" in out and fp in err
        code, _, err = await node_cli("serve", "--data", str(node.data))
        assert code != 0 and "rotation-pending.json" in err  # nothing is appended with the old key now

        status, page = await approve_web(hub, "an.admin", request_id, fp, "BR01")
        assert status == 303, page
        assert (await _status(hub, request_id))["status"] == "pending"  # one approval is not enough
        assert (await hub.hub.registry.node("BR01")).epoch == 1  # type: ignore[union-attr]
        code, out, err = await approve_cli(hub, "binh.admin", request_id, fp)
        assert code == 0, err
        assert "accepted, 2/2" in out

        answer = await _status(hub, request_id)
        assert answer["status"] == "accepted" and answer["enrollment"]["epoch"] == 2
        code, out, err = await node_cli("rotate-key", "--data", str(node.data), "--wait", "10")
        assert code == 0, err
        assert f"epoch 2\nsealed 1:{held[0]}\n" in out
        new_key = load_private_key(config.key_path)
        assert public_key_text(new_key) != public_key_text(old_key)
        assert fingerprint(public_key_text(new_key)) == fp
        assert (
            not (node.data / "rotation-pending.json").exists() and not (node.data / "node.key.next").exists()
        )

        # the hub: epoch 1 sealed at the final head, epoch 2 bound to the new key, a signed decision
        epochs = await hub.hub.registry.epochs("BR01")
        assert [(e[0], e[1], e[2] is not None) for e in epochs] == [
            (1, public_key_text(old_key), True),
            (2, public_key_text(new_key), False),
        ]
        rows = await hub.hub.store.fetchall(
            "SELECT raw FROM entries WHERE log = 'hub' AND kind = ?", (NODE_KEY_ROTATION,)
        )
        assert len(rows) == 1
        decision = Entry.parse(bytes(rows[0][0]))
        assert hub.hub.public_key.verify(b64url_decode(decision.sig, length=64), decision.signable())
        assert [a["admin"] for a in decision.body["approvals"]] == ["an.admin", "binh.admin"]
        assert decision.body["request"]["new_key"] == public_key_text(new_key)
        logged = await hub.hub.store.fetchall(
            "SELECT username, action FROM web_access_log WHERE action LIKE 'approve_rotation%' ORDER BY id"
        )
        assert logged == [("an.admin", "approve_rotation"), ("binh.admin", "approve_rotation")]
        recorded = await hub.hub.store.fetchall(
            "SELECT admin, node, fingerprint FROM rotation_approvals ORDER BY approved_ms, admin"
        )
        assert recorded == [("an.admin", "BR01", fp), ("binh.admin", "BR01", fp)]

        # the node follows: it serves with the new key, its new epoch reaches the hub, the old key is dead
        await node.start()
        try:
            await node.receive()
            await eventually(lambda: _held(hub, "BR01", 2, 2), what="epoch 2 at the hub")
            await eventually(lambda: _has_decision(node), what="the node pulled hub.node_key_rotation")
        finally:
            await node.stop()
        with pytest.raises(ReprovisionError, match="epoch_sealed"):
            await hub_state(hub.base, "BR01", 1, old_key)
        assert (await hub.hub.store.fetchone("SELECT count(*) FROM forks"))[0] == 0
        code, _, err = await node_cli("verify", "--data", str(node.data))
        assert code == 0, err
        await hub.stop()
        code, _, err = await asyncio.to_thread(
            _cli, central_main, "--data", str(hub.config.data_dir), "verify"
        )
        assert code == 0, err  # both epochs, the sealed one at the final head, and the signed decision
    finally:
        await hub.stop()


async def test_a_node_killed_after_the_key_swap_finishes_the_rotation_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from node import keyrotation

    hub = await _hub(tmp_path)
    try:
        node = await _synced_node(hub, tmp_path, receptions=1)
        code, _, err = await node_cli("rotate-key", "--data", str(node.data), "--token", "motcua1.x")
        assert code == 2 and "--token" in err  # the single-admin path is gone
        code, out, err = await node_cli("rotate-key", "--data", str(node.data), "--wait", "0")
        request_id, fp = _pending(out)
        for admin in APPROVERS[:2]:
            assert (await approve_cli(hub, admin, request_id, fp))[0] == 0

        class Killed(Exception):
            pass

        async def killed(*args: Any, **kwargs: Any) -> Any:
            raise Killed  # the process dies after the new key replaced the old one, before the genesis

        monkeypatch.setattr(keyrotation, "start_next_epoch", killed)
        config = load_node_config(node.data, {})
        with pytest.raises(Killed):
            await keyrotation.rotate_key(config, wait_s=5)
        assert fingerprint(public_key_text(load_private_key(config.key_path))) == fp
        assert (node.data / "rotation-pending.json").exists()
        code, _, err = await node_cli("serve", "--data", str(node.data))
        assert code != 0 and "rotation-pending.json" in err
        monkeypatch.undo()

        code, out, err = await node_cli("rotate-key", "--data", str(node.data), "--wait", "5")
        assert code == 0 and "epoch 2\n" in out, err
        assert not (node.data / "rotation-pending.json").exists()
        await node.start()
        try:
            await node.receive()
            await eventually(lambda: _held(hub, "BR01", 2, 2), what="epoch 2 at the hub")
        finally:
            await node.stop()
    finally:
        await hub.stop()


async def _held(hub: HubRunner, node: str, epoch: int, seq: int) -> bool:
    return (await hub.head(node, epoch))[0] >= seq


async def _has_decision(node: NodeRunner) -> bool:
    from tests.tools import node_db

    db = node_db(node.config.db_path, readonly=True)
    try:
        row = db.execute(
            "SELECT count(*) FROM entries WHERE log = 'hub' AND kind = ?", (NODE_KEY_ROTATION,)
        ).fetchone()
    finally:
        db.close()
    return row is not None and row[0] == 1


async def test_s8_after_revocation_a_rotation_by_the_old_key_is_refused(tmp_path: Path) -> None:
    hub = await _hub(tmp_path)
    try:
        node = await _synced_node(hub, tmp_path, receptions=1)
        config = load_node_config(node.data, {})
        key_before = config.key_path.read_bytes()
        await node.start()
        try:
            await node.receive()  # not yet at the hub: the request would not name the real end of the epoch
        finally:
            await node.stop()
        code, _, err = await node_cli("rotate-key", "--data", str(node.data), "--wait", "0")
        assert code != 0 and "đồng bộ hết" in err
        assert config.key_path.read_bytes() == key_before and not (node.data / "node.key.next").exists()
        assert not (node.data / "rotation-pending.json").exists()
        assert (await node_cli("sync", "--data", str(node.data), "--once"))[0] == 0
        code, out, err = await node_cli("rotate-key", "--data", str(node.data), "--wait", "0")
        assert code == 3, err
        request_id, fp = _pending(out)
        code, _, err = await approve_cli(hub, "an.admin", request_id, fp)  # before the revocation
        assert code == 0, err

        data = str(hub.config.data_dir)
        code, _, err = await asyncio.to_thread(
            _cli, central_main, "--data", data, "node", "revoke", "BR01", "--reason", "máy bị mất"
        )
        assert code == 0, err
        status, page = await approve_web(hub, "binh.admin", request_id, fp, "BR01")
        assert status == 403 and "node_revoked" in page
        answer = await _status(hub, request_id)
        assert answer["status"] == "refused" and answer["reason"].startswith("node_revoked")
        assert answer["enrollment"] is None
        assert [e[0] for e in await hub.hub.registry.epochs("BR01")] == [1]  # nothing bound

        code, _, err = await node_cli("rotate-key", "--data", str(node.data), "--wait", "0")
        assert code != 0 and "node_revoked" in err
        assert config.key_path.read_bytes() == key_before  # the old key stays; nothing half-done
        assert (
            not (node.data / "rotation-pending.json").exists() and not (node.data / "node.key.next").exists()
        )

        # the old key alone asks again after the revocation: refused at once, with the reason named
        code, _, err = await node_cli("rotate-key", "--data", str(node.data), "--wait", "0")
        assert code != 0 and "node_revoked" in err and "fresh invite" in err
        assert (
            await hub.hub.store.fetchone("SELECT count(*) FROM entries WHERE kind = ?", (NODE_KEY_ROTATION,))
        )[0] == 0
    finally:
        await hub.stop()


async def test_rotation_refusals_approvals_expiry_forgery_and_replay(tmp_path: Path) -> None:
    clock = Clock()
    hub = await _hub(tmp_path, clock, rotation_approval_ttl_s=600)
    try:
        node = await _synced_node(hub, tmp_path, receptions=1)
        config = load_node_config(node.data, {})
        old_key = load_private_key(config.key_path)
        seq, head = await hub.head("BR01", 1)
        final = Head("BR01", 1, seq, head)
        new_key = generate_private_key()

        def request(**changes: Any) -> RotationRequest:
            made = RotationRequest.make(
                node="BR01", epoch=1, old_key=old_key, new_key=new_key, final=final, time=clock()
            )
            return made if not changes else RotationRequest.from_wire({**made.to_wire(), **changes})

        # forged proofs: the new key's signature by another key, the old key's signature by another key
        intruder = generate_private_key()
        good = request()
        forged = request(new_sig=b64url_encode(intruder.sign(good.signable())))
        status, body = await _post(hub, forged.to_wire())
        assert status == 422 and body["error"] == "bad_signature" and "new key" in body["reason"]
        stolen = RotationRequest.make(
            node="BR01", epoch=1, old_key=intruder, new_key=new_key, final=final, time=clock()
        )
        status, body = await _post(hub, stolen.to_wire())
        assert status == 401 and body["error"] == "key_mismatch"
        behind = RotationRequest.make(
            node="BR01",
            epoch=1,
            old_key=old_key,
            new_key=new_key,
            final=Head("BR01", 1, 1, "0" * 64),
            time=clock(),
        )
        status, body = await _post(hub, behind.to_wire())
        assert status == 409 and body["error"] == "head_mismatch"
        status, body = await _post(hub, request(time=clock() - 3_600_000).to_wire())
        assert status == 422  # a changed field breaks both signatures

        status, body = await _post(hub, good.to_wire())
        assert status == 202 and body["status"] == "pending" and body["approvals"] == 0
        status, body = await _post(hub, good.to_wire())  # the same request again
        assert status == 409 and body["error"] == "rotation_replayed"

        fp = good.new_fingerprint
        assert (await approve_web(hub, "an.admin", good.id, fp, "BR01"))[0] == 303
        assert (await approve_web(hub, "an.admin", good.id, fp, "BR01"))[0] == 303  # again: recorded once
        code, out, _ = await approve_cli(hub, "an.admin", good.id, fp)
        assert code == 0 and "still counted once" in out
        answer = await _status(hub, good.id)
        assert (answer["status"], answer["approvals"]) == ("pending", 1)  # same admin twice: still 1
        status, page = await approve_web(hub, OUTSIDER, good.id, fp, "BR01")
        assert status == 403 and "not_an_approver" in page
        status, page = await approve_web(hub, "binh.admin", good.id, "0000-0000-0000-0000-0000", "BR01")
        assert status == 400 and "fingerprint_mismatch" in page
        status, page = await approve_web(hub, "binh.admin", good.id, fp, "BR01", password="sai mật khẩu")
        assert status == 403
        assert (await _status(hub, good.id))["approvals"] == 1
        await hub_state(hub.base, "BR01", 1, old_key)  # the old key is still in force

        clock.offset = 601_000  # an.admin's approval expires (the web pages run on the hub's clock)
        assert (await approve_web(hub, "binh.admin", good.id, fp, "BR01"))[0] == 303
        answer = await _status(hub, good.id)
        assert (answer["status"], answer["approvals"]) == ("pending", 1)  # the expired one no longer counts
        assert (await approve_web(hub, "chi.admin", good.id, fp, "BR01"))[0] == 303
        assert (await _status(hub, good.id))["status"] == "accepted"
        rows = await hub.hub.store.fetchall("SELECT raw FROM entries WHERE kind = ?", (NODE_KEY_ROTATION,))
        approvals = Entry.parse(bytes(rows[0][0])).body["approvals"]
        assert [a["admin"] for a in approvals] == ["binh.admin", "chi.admin"]

        # replays after the decision: the same request, and the old key asking again for its old epoch
        status, body = await _post(hub, good.to_wire())
        assert status == 409 and body["error"] == "rotation_replayed"
        clock.offset = 0
        again = RotationRequest.make(
            node="BR01", epoch=1, old_key=old_key, new_key=generate_private_key(), final=final, time=clock()
        )
        status, body = await _post(hub, again.to_wire())
        assert status == 403 and body["error"] == "epoch_sealed"
        assert len(await hub.hub.registry.epochs("BR01")) == 2
        assert (
            len(await hub.hub.store.fetchall("SELECT 1 FROM entries WHERE kind = ?", (NODE_KEY_ROTATION,)))
            == 1
        )
    finally:
        await hub.stop()
