"""``motcua-central``: init, serve, node invite/list/revoke/release/rotations/approve-rotation, officer add,
publish catalog/calendar, log export, verify."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from central.app import HUB, make_app
from central.audit import verify_all
from central.backup import BackupError
from central.config import ConfigError, load
from central.errors import CentralError, now_ms
from central.hub import Hub
from central.mailbox import BROADCAST, Post
from central.monitoring import configure_logging
from central.officers import add_officer
from central.webcli import register as register_user_commands
from protocol import ProtocolError, fingerprint, generate_private_key, public_key_text, save_private_key

__all__ = ["main"]


def _data(args: argparse.Namespace) -> Path:
    return Path(args.data).resolve()


def cmd_init(args: argparse.Namespace) -> int:
    data = _data(args)
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = data / "hub.key"
    if key_path.exists():
        print(f"error: {data} is already initialised (hub.key exists)", file=sys.stderr)
        return 1
    key = generate_private_key()
    save_private_key(key, key_path)
    config = load(data, listen=args.listen, public_url=args.public_url)

    async def create() -> None:
        hub = await Hub.open(config, now_ms)
        await hub.close()

    asyncio.run(create())
    print(f"hub initialised in {data}")
    print(f"hub key: {public_key_text(key)}")
    print(f"fingerprint: {fingerprint(public_key_text(key))}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from central.instance import AlreadyRunning, instance_lock
    from central.service import hub_problems, serve

    config = load(_data(args), listen=args.listen)
    configure_logging()  # JSON lines on stdout, with request ids (central.monitoring)

    async def health(app: web.Application) -> list[str]:
        return await hub_problems(app[HUB])

    try:
        with instance_lock(config.data_dir):
            asyncio.run(
                serve(
                    make_app(config),
                    config.host,
                    config.port,
                    health=health,
                    ready_status=f"hub serving on http://{config.listen}/",
                    stopping_status="hub stopping",
                    announce=lambda line: print(line, file=sys.stderr),
                    on_fatal=lambda app, report: app[HUB].store.on_failure.append(
                        lambda exc: report(exc.detail or exc.reason)
                    ),
                )
            )
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


async def _with_hub(args: argparse.Namespace, work):  # type: ignore[no-untyped-def]
    hub = await Hub.open(load(_data(args)), now_ms)
    try:
        return await work(hub)
    finally:
        await hub.close()


def cmd_node(args: argparse.Namespace) -> int:
    async def invite(hub: Hub) -> int:
        ttl = hub.config.invite_ttl_h * 3600 * 1000
        url = args.url or hub.config.public_url
        token = await hub.registry.invite(
            args.id, args.kind, args.name, hub_url=url, hub_key=hub.public_key, now=now_ms(), ttl_ms=ttl
        )
        print(token.encode())
        print(
            f"one-time token for {args.id}, valid {hub.config.invite_ttl_h} h; hub key {token.fp}",
            file=sys.stderr,
        )
        return 0

    async def listing(hub: Hub) -> int:
        rows = await hub.registry.nodes()
        if args.json:
            print(json.dumps([dataclasses.asdict(n) for n in rows], ensure_ascii=False))
            return 0
        for n in rows:
            seen = hub.registry.last_seen.get(n.node)
            print(
                f"{n.node:<12} {n.kind:<7} epoch {n.epoch:<3} {n.status:<12} {n.name} {n.reason}".rstrip()
                + ("" if seen is None else f" seen {seen}")
            )
        return 0

    async def revoke(hub: Hub) -> int:
        epoch, cut = await hub.registry.revoke(args.id, after=args.after, reason=args.reason, now=now_ms())
        body = {"node": args.id, "epoch": epoch, "after_seq": cut, "reason": args.reason}
        await hub.mailbox.post([Post(BROADCAST, "hub.revocation", body)])
        print(f"{args.id}/{epoch} revoked; entries after seq {cut} are quarantined for review")
        return 0

    async def release(hub: Hub) -> int:
        await hub.registry.release(args.id, now=now_ms())
        print(f"{args.id} released from quarantine")
        return 0

    async def rotations(hub: Hub) -> int:
        from central.noderotation import NodeRotations

        domain = NodeRotations(hub)
        for r in await domain.listing(pending_only=not args.all):
            admins = ",".join(a.admin + ("" if a.valid else "(expired)") for a in r.approvals) or "-"
            print(
                f"{r.id} {r.node:<12} epoch {r.request.epoch}->{r.request.new_epoch} key {r.fingerprint} "
                f"{r.status:<8} {r.valid_approvals}/{domain.threshold} {admins} {r.reason}".rstrip()
            )
        return 0

    async def approve_rotation(hub: Hub) -> int:
        from central.errors import CentralError
        from central.noderotation import NodeRotations
        from central.webauth import Users, normalize_username

        username = normalize_username(args.as_user)
        if not args.password_stdin:
            print("error: re-enter your password on standard input with --password-stdin", file=sys.stderr)
            return 2
        password = sys.stdin.readline().rstrip("\r\n")
        if await Users(hub.store).authenticate(username, password) is None:
            print(f"error: wrong password for {username} (or no such active user)", file=sys.stderr)
            return 1
        domain = NodeRotations(hub)
        try:
            view, added = await domain.approve(args.request, username, fingerprint_seen=args.fingerprint)
        except CentralError as exc:
            print(f"error: {exc.code}: {exc.reason}", file=sys.stderr)
            return 1
        async with hub.store.write() as db:
            await db.execute(
                "INSERT INTO web_access_log (at_ms, username, action, target) VALUES (?, ?, ?, ?)",
                (hub.clock(), username, "approve_rotation" if added else "approve_rotation_again",
                 f"{view.node} {view.fingerprint} {view.status} (cli)"),
            )  # fmt: skip
        note = "" if added else " (you had already approved it: still counted once)"
        print(
            f"{view.node} {view.fingerprint}: {view.status}, {view.valid_approvals}/{domain.threshold}{note}"
        )
        return 0

    async def lease(hub: Hub) -> int:
        from central.leases import Leases

        leases = Leases(hub.store, hub.config.lease_hours)
        if await hub.registry.node(args.id) is None:
            raise SystemExit(f"unknown node {args.id}")
        if args.hours is not None or args.default:
            await leases.set_hours(args.id, None if args.default else args.hours)
        view = (await leases.views(now_ms()))[args.id]
        print(f"{args.id} lease {view.hours} h{' (node)' if view.custom else ' (hub default)'} {view.state}"
              f" expires_ms={view.expires_ms}")  # fmt: skip
        return 0

    work = {
        "invite": invite,
        "list": listing,
        "revoke": revoke,
        "release": release,
        "rotations": rotations,
        "approve-rotation": approve_rotation,
        "lease": lease,
    }[args.node_command]
    return int(asyncio.run(_with_hub(args, work)))


def cmd_officer(args: argparse.Namespace) -> int:
    async def add(hub: Hub) -> int:
        token = await add_officer(hub.store, args.id, args.name, now=now_ms())
        print(token)
        return 0

    return int(asyncio.run(_with_hub(args, add)))


def cmd_publish(args: argparse.Namespace) -> int:
    from central.publish import publish, read_data

    data = read_data(Path(args.file))  # before opening the hub: a bad file changes nothing

    async def run(hub: Hub) -> int:
        entry = await publish(hub, args.what, data)
        print(f"{args.what} {entry.body['version']} published as hub/1:{entry.seq} ({entry.hash})")
        return 0

    return int(asyncio.run(_with_hub(args, run)))


def cmd_log_export(args: argparse.Namespace) -> int:
    async def export(hub: Hub) -> int:
        epoch = args.epoch
        if epoch is None:
            info = await hub.registry.node(args.log)
            epoch = info.epoch if info is not None and info.epoch else 1
        after = 0
        out = sys.stdout.buffer
        while True:
            page = await hub.store.entries(args.log, epoch, after, 1000)
            if not page:
                break
            for raw in page:
                out.write(raw + b"\n")
            after += len(page)
        out.flush()
        if after == 0:
            print(f"no entries for {args.log}/{epoch}", file=sys.stderr)
            return 1
        return 0

    return int(asyncio.run(_with_hub(args, export)))


def cmd_verify(args: argparse.Namespace) -> int:
    async def verify(hub: Hub) -> int:
        report = await verify_all(hub, progress=not args.quiet)
        for line in report.problems:
            print(f"problem: {line}")
        print(
            f"verified {report.logs} logs, {report.entries} entries, {report.receipts} receipts: "
            f"{'ok' if not report.problems else f'{len(report.problems)} problems'}"
        )
        return 0 if not report.problems else 1

    return int(asyncio.run(_with_hub(args, verify)))


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Rotate the hub key (SPEC §7.10); the hub must be stopped: this refuses while its port answers."""
    import socket

    from central.rotation import RotationError, rotate

    config = load(_data(args))
    try:
        with socket.create_connection((config.host, config.port), timeout=1.0):
            serving = True
    except OSError:
        serving = False
    if serving:
        print(f"error: a hub answers on {config.listen}; stop it before rotate-key", file=sys.stderr)
        return 1

    async def run(hub: Hub) -> int:
        old = hub.public_key.text
        try:
            entry = await rotate(hub)
        except RotationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"hub key rotated at hub/{entry.epoch}:{entry.seq}")
        print(f"old key: {old} (fingerprint {fingerprint(old)})")
        print(f"new key: {hub.public_key.text}")
        print(f"fingerprint: {fingerprint(hub.public_key.text)}")
        return 0

    return int(asyncio.run(_with_hub(args, run)))


def cmd_backup(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from central.backup import create_backup

    with tqdm(desc="backup", unit="B", unit_scale=True, file=sys.stderr, disable=None) as bar:
        manifest = create_backup(_data(args), Path(args.to), with_key=args.with_key, progress=bar.update)
    blobs = sum(1 for name in manifest.files if name.startswith("blobs/sha256/"))
    key = "included" if args.with_key else "not included"
    print(f"backup {args.to}: {len(manifest.heads)} logs, {blobs} blobs, key {key}")
    if not args.with_key:
        print("the hub key is not in the backup: keep its offline copy to restore", file=sys.stderr)
    return 0


def cmd_restore_backup(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from central.backup import restore_backup

    source = Path(args.source)
    key_file = Path(args.key) if args.key else None
    size = source.stat().st_size
    with tqdm(desc="restore", total=size, unit="B", unit_scale=True, file=sys.stderr, disable=None) as bar:
        manifest = restore_backup(source, _data(args), key_file=key_file, progress=bar.update)
    print(f"hub restored into {_data(args)} from the backup of {manifest.created_ms}")
    print(
        "entries and receipts after the backup are gone from the hub: nodes push them again when they sync",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motcua-central", description="motcua central hub")
    parser.add_argument("--data", default=".", help="hub state directory (default: current directory)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="create the hub key and database")
    p.add_argument("--listen", default=None)
    p.add_argument("--public-url", default=None)
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("serve", help="run the hub")
    p.add_argument("--listen", default=None, help="HOST:PORT (default 127.0.0.1:8470)")
    p.set_defaults(func=cmd_serve)
    node = sub.add_parser("node", help="enrolled nodes").add_subparsers(dest="node_command", required=True)
    p = node.add_parser("invite", help="print a one-time enrollment token")
    p.add_argument("id")
    p.add_argument("--kind", choices=("branch", "van", "point"), required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--url", default=None, help="hub URL for the node (default: public_url)")
    p = node.add_parser("list", help="nodes, epochs and status")
    p.add_argument("--json", action="store_true")
    p = node.add_parser("revoke", help="refuse a node's key from now on")
    p.add_argument("id")
    p.add_argument("--after", type=int, default=None, help="last trusted seq (default: what the hub holds)")
    p.add_argument("--reason", default="revoked by an administrator")
    p = node.add_parser("release", help="clear a node quarantined after a fork")
    p.add_argument("id")
    p = node.add_parser("rotations", help="node key rotation requests awaiting approval (--all: every one)")
    p.add_argument("--all", action="store_true")
    p = node.add_parser(
        "approve-rotation",
        help="approve a node key rotation as a hub admin (password re-entered on stdin)",
        description="Check the new key's fingerprint with the branch first. The rotation is accepted when "
        "rotation_threshold distinct admins approved it (SPEC §7.11).",
    )
    p.add_argument("request", help="the request id (motcua-central node rotations)")
    p.add_argument("--as", dest="as_user", required=True, help="your web user name (an admin)")
    p.add_argument("--fingerprint", required=True, help="the new key's fingerprint the branch read out")
    p.add_argument("--password-stdin", action="store_true", help="read your password from standard input")
    p = node.add_parser("lease", help="show or set a node's offline lease (hours of PII access unsynced)")
    p.add_argument("id")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--hours", type=int, help="lease length for this node (1..2160)")
    group.add_argument("--default", action="store_true", help="back to the hub's lease_hours")
    for p in node.choices.values():
        p.set_defaults(func=cmd_node)
    officer = sub.add_parser("officer", help="officers").add_subparsers(dest="officer_command", required=True)
    p = officer.add_parser("add", help="create an officer and print their API token")
    p.add_argument("id")
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_officer)
    register_user_commands(sub)
    p = sub.add_parser("publish", help="broadcast a procedure catalog or holiday calendar to every node")
    p.add_argument("what", choices=("catalog", "calendar"))
    p.add_argument("file", help="the JSON file (format of protocol/data/catalog.json, calendar-vn.json)")
    p.set_defaults(func=cmd_publish)
    log = sub.add_parser("log", help="stored logs").add_subparsers(dest="log_command", required=True)
    p = log.add_parser("export", help="write a stored log epoch as NDJSON to stdout")
    p.add_argument("--log", required=True)
    p.add_argument("--epoch", type=int, default=None)
    p.set_defaults(func=cmd_log_export)
    p = sub.add_parser("rotate-key", help="replace the hub key (stop the hub first; nodes follow on sync)")
    p.set_defaults(func=cmd_rotate_key)
    p = sub.add_parser("verify", help="re-verify every stored log and every receipt issued")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("backup", help="consistent backup of database, blobs, config (key: --with-key)")
    p.add_argument("--to", required=True, help="archive to write (replaced atomically, mode 0600)")
    p.add_argument("--with-key", action="store_true", help="include hub.key (keep the archive offline)")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore-backup", help="restore a backup into an empty --data folder")
    p.add_argument("--from", dest="source", required=True, help="archive made by backup")
    p.add_argument("--key", default=None, help="the hub key file, if the backup has none")
    p.set_defaults(func=cmd_restore_backup)
    _data_after_subcommand(sub)
    return parser


def _data_after_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Accept ``--data`` after the command too (``motcua-central serve --data DIR``, as in the unit)."""
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            _data_after_subcommand(action)
        if not nested and "--data" not in parser._option_string_actions:
            parser.add_argument("--data", default=argparse.SUPPRESS, help="hub state directory")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, CentralError, ProtocolError, BackupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
