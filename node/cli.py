"""``motcua-node``: create, run, inspect and verify a branch node.

    motcua-node init   --data DIR --node-id ID --unit-code CODE --name NAME [--kind K] [--code-block N]
                       [--hub URL --token TOKEN]
    motcua-node serve  --data DIR [--listen HOST:PORT]
    motcua-node status --data DIR [--json]
    motcua-node verify --data DIR
    motcua-node log export --data DIR [--epoch N] [--output FILE]
    motcua-node user add --data DIR --username U --role staff|supervisor [--display-name N] [--password-stdin]
    motcua-node token create --data DIR --name NAME [--role staff|supervisor]
    motcua-node token revoke --data DIR --name NAME
    motcua-node enroll --data DIR --token TOKEN [--hub URL]
    motcua-node sync --data DIR --once [--json]
    motcua-node restore --hub URL --token TOKEN --data DIR [--unit-code C] [--code-block N]
    motcua-node backup | restore-backup | reprovision | rotate-key | purge-scans   (see node/opscli.py)
    motcua-node scanner add --data DIR --name NAME --folder PATH --desk DESK [--polling]
    motcua-node scanner list --data DIR [--json]
    motcua-node printer add --data DIR --name NAME (--cups-queue Q [--cups-server S] | --folder PATH)
                            [--desk DESK]
    motcua-node printer list --data DIR [--json]

Exit codes: 0 success, 1 verification found a problem, 2 bad arguments or configuration, 3 runtime error.
Progress and messages go to stderr; machine-readable output (exports, ``--json``, tokens) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from node import config as config_module
from node import keycli, opscli, sync_cli
from node.auth import add_user, create_token
from node.config import KINDS, NodeConfig
from node.errors import ConfigError, InvalidInput, NodeError, StorageFailed
from node.provision import init_node
from node.store import Store
from node.syncstate import sync_summary
from protocol.errors import ProtocolError
from protocol.keys import fingerprint, load_private_key, public_key_text

__all__ = ["main"]

EXIT_OK, EXIT_VERIFY, EXIT_USAGE, EXIT_RUNTIME = 0, 1, 2, 3
EXIT_STORAGE_FAILED = 75  # node.service.EXIT_STORAGE_FAILED: an I/O error on the database, restart


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motcua-node", description="Máy trạm một cửa (motcua branch node).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, type=Path, help="state directory of the node")

    p = sub.add_parser("init", help="create a new node (key pair, database, config, blob folder)")
    data(p)
    p.add_argument("--node-id", required=True, help="node id, e.g. CN01 ([A-Z0-9][A-Z0-9-]{1,31})")
    p.add_argument(
        "--unit-code", required=True, help="unit code that prefixes dossier codes, e.g. 000.00.01.H26"
    )
    p.add_argument("--name", required=True, help="name of the site shown in the UI and on receipts")
    p.add_argument("--kind", choices=KINDS, default="branch", help="site type (default: branch)")
    p.add_argument("--code-block", type=int, default=0, help="index of this node's daily block of numbers")
    p.add_argument("--code-block-size", type=int, default=1000, help="numbers per block (default 1000)")
    p.add_argument("--hub", help="URL of the central hub (with --token: enroll now)")
    p.add_argument("--token", help="one-time invite token from the hub administrator: enroll at init")
    p.add_argument(
        "--key-source",
        choices=("file", "passphrase", "systemd-creds"),
        default="file",
        help="what wraps the data key: file (default, no prompt; no protection against a stolen disk), "
        "passphrase (asked at shift start), systemd-creds (TPM2/host key)",
    )
    p.add_argument(
        "--key-file", type=Path, help="key file for --key-source file (default <data>/datakey.kek)"
    )

    p = sub.add_parser("serve", help="run the web UI and API")
    data(p)
    p.add_argument("--listen", help="HOST:PORT (default: the config's listen, 127.0.0.1:8471)")

    p = sub.add_parser("status", help="identity, log head, entries not yet acknowledged by the hub")
    data(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("verify", help="verify the whole log and the projections against a refold")
    data(p)

    log = sub.add_parser("log", help="the signed log").add_subparsers(dest="log_command", required=True)
    p = log.add_parser(
        "export", help="NDJSON of the exact entry bytes (verify with python -m protocol verify)"
    )
    data(p)
    p.add_argument("--epoch", type=int, help="only this epoch (default: the current one)")
    p.add_argument("--output", type=Path, help="file to write (default: stdout)")

    user = sub.add_parser("user", help="staff accounts").add_subparsers(dest="user_command", required=True)
    p = user.add_parser("add", help="create a staff account")
    data(p)
    p.add_argument("--username", required=True)
    p.add_argument("--role", required=True, choices=("staff", "supervisor"))
    p.add_argument("--display-name", help="full name shown in the UI (default: the username)")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )

    sync_cli.add_parsers(sub)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    p = token.add_parser("create", help="create an API token (printed once)")
    data(p)
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=("staff", "supervisor"), default="staff")
    p = token.add_parser("revoke", help="revoke an API token")
    data(p)
    p.add_argument("--name", required=True)
    opscli.add_parsers(sub)
    keycli.add_parsers(sub)
    _device_parsers(sub, data)
    return parser


def _device_parsers(sub: Any, data: Any) -> None:
    scanner = sub.add_parser("scanner", help="scanners (hot folders)").add_subparsers(
        dest="scanner_command", required=True
    )
    p = scanner.add_parser("add", help="add a scanner: its hot folder and its desk (restart serve to apply)")
    data(p)
    p.add_argument("--name", required=True, help="scanner name, e.g. quay-1")
    p.add_argument("--folder", required=True, type=Path, help="hot folder (created 0770 if missing)")
    p.add_argument("--desk", required=True, help="desk (quầy) whose open dossier its scans go to, e.g. Q1")
    p.add_argument("--polling", action="store_true", help="poll the folder (a CIFS/NFS mount)")
    p = scanner.add_parser("list", help="list scanners")
    data(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    printer = sub.add_parser("printer", help="printers (CUPS queues or folders)").add_subparsers(
        dest="printer_command", required=True
    )
    p = printer.add_parser("add", help="add a printer (restart serve to apply)")
    data(p)
    p.add_argument("--name", required=True, help="printer name, e.g. may-in-quay-1")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--cups-queue", help="CUPS queue (lp -d QUEUE)")
    target.add_argument("--folder", type=Path, help="folder that receives one PDF per copy")
    p.add_argument("--cups-server", default="", help="CUPS server (host:port or socket); default: local")
    p.add_argument("--desk", help="print the receipts of this desk here")
    p = printer.add_parser("list", help="list printers")
    data(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def _load(args: argparse.Namespace) -> NodeConfig:
    return config_module.load(args.data, os.environ)


async def _open_store(config: NodeConfig) -> Store:
    if not config.db_path.exists():
        raise ConfigError(f"không tìm thấy cơ sở dữ liệu {config.db_path}")
    keycli.ensure_unlocked(config)
    return await Store.open(config.db_path)


def _key_extra(args: argparse.Namespace) -> dict[str, object]:
    extra: dict[str, object] = {"key_source": args.key_source}
    if args.key_file:
        extra["key_file"] = str(args.key_file.absolute())
    return extra


async def _init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.token:
        return await sync_cli.init_from_hub(args, out, err)
    config = await init_node(
        args.data,
        node_id=args.node_id,
        unit_code=args.unit_code,
        name=args.name,
        kind=args.kind,
        code_block=args.code_block,
        code_block_size=args.code_block_size,
        extra={**({"hub_url": args.hub} if args.hub else {}), **_key_extra(args)},
        passphrase=keycli.new_passphrase() if args.key_source == "passphrase" else None,
    )
    key_text = public_key_text(load_private_key(config.key_path))
    block = config.code_block
    err.write(f"Đã khởi tạo máy trạm {config.node_id} tại {config.data_dir}\n")
    out.write(f"node {config.node_id}\nkey {key_text}\nfingerprint {fingerprint(key_text)}\n")
    out.write(f"code block {block.start:04d}-{block.last:04d}\n")
    return EXIT_OK


def _serve(args: argparse.Namespace, err: TextIO) -> int:
    from aiohttp import web

    from node.app import make_app
    from node.health import watchdog_problems
    from node.instance import instance_lock
    from node.reprovision import refuse_if_pending
    from node.service import serve
    from node.web.keys import NODE

    config = _load(args)
    refuse_if_pending(config.data_dir)
    if args.listen:
        config = dataclasses.replace(config, listen=args.listen)
        config_module.validate(config)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = config.host_port
    app = make_app(config)
    locked = False
    if config.key_source == "passphrase":
        from node.atrest import is_unlocked

        locked = not is_unlocked(config.data_dir)

    async def health(app: web.Application) -> list[str]:
        return await watchdog_problems(app[NODE])

    async def main() -> None:
        if locked:  # the data passphrase first ("Mở khóa dữ liệu"), then the node itself
            from node.provision import unlock_data_key
            from node.web.unlock import wait_for_unlock

            await wait_for_unlock(
                config,
                host,
                port,
                lambda passphrase: unlock_data_key(config, passphrase),
                announce=lambda line: err.write(f"{line}\n"),
            )
        await serve(
            app,
            host,
            port,
            health=health,
            ready_status=f"Đang phục vụ {config.node_id} ({config.name}) tại http://{config.listen}/",
            stopping_status=f"Đang dừng {config.node_id}",
            announce=lambda line: err.write(f"{line}\n"),
            on_fatal=lambda app, report: app[NODE].store.on_failure.append(
                lambda exc: report(exc.detail or exc.message)
            ),
        )

    with instance_lock(config.data_dir):
        asyncio.run(main())
    return EXIT_OK


async def _status(args: argparse.Namespace, out: TextIO) -> int:
    config = _load(args)
    store = await _open_store(config)
    try:
        async with store.read() as db:
            async with db.execute(
                "SELECT epoch, seq, hash FROM entries WHERE log = ? ORDER BY epoch DESC, seq DESC LIMIT 1",
                (config.node_id,),
            ) as cursor:
                head = await cursor.fetchone()
            async with db.execute("SELECT count(*) FROM dossiers") as cursor:
                dossiers = (await cursor.fetchone() or (0,))[0]
            summary = await sync_summary(db, config.node_id)
    finally:
        await store.close()
    info: dict[str, Any] = {
        "node": config.node_id,
        "name": config.name,
        "kind": config.kind,
        "unit_code": config.unit_code,
        "head": {"epoch": head[0], "seq": head[1], "hash": head[2]} if head else None,
        "dossiers": dossiers,
        "unsent": summary.unsent,
        "last_ack": summary.last_ack_ms,
    }
    if args.json:
        out.write(json.dumps(info, ensure_ascii=False) + "\n")
    else:
        out.write(f"Máy trạm {config.node_id} · {config.name} ({config.kind}), đơn vị {config.unit_code}\n")
        if head:
            out.write(f"Nhật ký: epoch {head[0]}, seq {head[1]}, head {head[2]}\n")
        out.write(f"Hồ sơ: {dossiers}\nChưa gửi lên trung tâm: {summary.unsent} bản ghi\n")
    return EXIT_OK


async def _verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from node.verify import verify_node

    config = _load(args)
    store = await _open_store(config)
    try:
        with tqdm(desc="verify", unit=" entries", file=err, disable=None) as bar:
            try:
                report = await verify_node(store, config.node_id, progress=bar.update)
            except (ProtocolError, NodeError) as exc:
                where = getattr(exc, "position", "?")
                out.write(f"FAIL log {where}: {exc}\n")
                return EXIT_VERIFY
    finally:
        await store.close()
    for head in report.heads:
        out.write(f"ok log {head.log} epoch {head.epoch} seq {head.seq} head {head.hash}\n")
    if not report.ok:
        for line in report.differences:
            out.write(f"FAIL projection {line}\n")
        return EXIT_VERIFY
    out.write(f"ok projections: {report.dossiers} dossiers equal a refold of {report.entries} entries\n")
    return EXIT_OK


async def _export(args: argparse.Namespace, out: TextIO) -> int:
    config = _load(args)
    store = await _open_store(config)
    try:
        async with store.read() as db:
            epoch = args.epoch
            if epoch is None:
                async with db.execute("SELECT max(epoch) FROM epochs") as cursor:
                    epoch = (await cursor.fetchone() or (None,))[0]
            async with db.execute("SELECT 1 FROM epochs WHERE epoch = ?", (epoch,)) as cursor:
                if await cursor.fetchone() is None:
                    raise ConfigError(f"--epoch: nhật ký không có epoch {epoch}")
            target = args.output.open("wb") if args.output else out.buffer  # type: ignore[attr-defined]
            try:
                async with db.execute(
                    "SELECT raw FROM entries WHERE log = ? AND epoch = ? ORDER BY seq",
                    (config.node_id, epoch),
                ) as cursor:
                    async for (raw,) in cursor:
                        target.write(bytes(raw) + b"\n")
                target.flush()
            finally:
                if args.output:
                    target.close()
    finally:
        await store.close()
    return EXIT_OK


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("Mật khẩu: ")
    if getpass.getpass("Nhập lại mật khẩu: ") != first:
        raise InvalidInput({"password": "Hai lần nhập mật khẩu không khớp."})
    return first


async def _user_add(args: argparse.Namespace, err: TextIO) -> int:
    config = _load(args)
    password = _read_password(args)
    store = await _open_store(config)
    try:
        await add_user(store, args.username, password, args.role, args.display_name)
    finally:
        await store.close()
    err.write(f"Đã tạo tài khoản {args.username} ({args.role}).\n")
    return EXIT_OK


async def _token(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node.auth import Auth

    config = _load(args)
    store = await _open_store(config)
    try:
        if args.token_command == "create":
            token = await create_token(store, args.name, args.role)
            out.write(token + "\n")
            err.write("Lưu token này ngay: nó chỉ được hiển thị một lần.\n")
        else:
            await Auth(store, 0, 0, 0, 0).revoke_token(args.name)
            err.write(f"Đã thu hồi token {args.name}.\n")
    finally:
        await store.close()
    return EXIT_OK


def _devices(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node import device_admin

    if args.command == "scanner" and args.scanner_command == "add":
        config, created = device_admin.add_scanner(
            args.data, name=args.name, folder=args.folder, desk=args.desk, polling=args.polling
        )
        made = " (đã tạo thư mục, quyền 0770)" if created else ""
        folder = config.scanners[-1].folder
        err.write(f"Đã thêm máy quét {args.name}: thư mục {folder}{made}, quầy {args.desk}.\n")
        err.write("Khởi động lại dịch vụ motcua-node để áp dụng.\n")
        return EXIT_OK
    if args.command == "printer" and args.printer_command == "add":
        config, created = device_admin.add_printer(
            args.data, name=args.name, cups_queue=args.cups_queue, folder=args.folder,
            cups_server=args.cups_server, desk=args.desk,
        )  # fmt: skip
        made = " (đã tạo thư mục, quyền 0770)" if created else ""
        err.write(f"Đã thêm máy in {args.name}{made}. Khởi động lại dịch vụ motcua-node để áp dụng.\n")
        return EXIT_OK
    config = config_module.load(args.data, {})
    if args.command == "scanner":
        rows = [device_admin.describe_scanner(s) for s in config.scanners]
    else:
        desks = dict(config.receipt_printers)
        rows = [
            device_admin.describe_printer(p, sorted(d for d, name in desks.items() if name == p.name))
            for p in config.printers
        ]
    if args.json:
        out.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return EXIT_OK
    if not rows:
        err.write(f"Chưa có {'máy quét' if args.command == 'scanner' else 'máy in'} nào.\n")
    for row in rows:
        out.write("\t".join(f"{k}={v}" for k, v in row.items()) + "\n")
    return EXIT_OK


def _unlock_for(args: argparse.Namespace) -> None:
    """Commands on an existing node unlock its data key first (a prompt only for 'passphrase')."""
    data = getattr(args, "data", None)
    if data is not None and (Path(data) / "datakey.json").exists() and (Path(data) / "node.toml").exists():
        keycli.ensure_unlocked(_load(args))


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    command = args.command
    if command == "keys":
        return keycli.run(args, _load(args), out, err)
    if command not in ("init", "serve", "scanner", "printer"):  # those never read the data
        _unlock_for(args)
    if command in opscli.COMMANDS:
        return opscli.run(args, out, err)
    if command in ("scanner", "printer"):
        return _devices(args, out, err)
    if command == "serve":
        return _serve(args, err)
    if command == "init":
        return asyncio.run(_init(args, out, err))
    if command == "status":
        return asyncio.run(_status(args, out))
    if command == "verify":
        return asyncio.run(_verify(args, out, err))
    if command == "log":
        return asyncio.run(_export(args, out))
    if command in ("enroll", "sync", "restore"):
        return asyncio.run(sync_cli.run(args, out, err))
    if command == "user":
        return asyncio.run(_user_add(args, err))
    return asyncio.run(_token(args, out, err))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        return _run(args, out, err)
    except InvalidInput as exc:
        for field, message in exc.fields.items():
            err.write(f"lỗi: {field}: {message}\n")
        return EXIT_USAGE
    except ConfigError as exc:
        err.write(f"lỗi cấu hình: {exc.message}\n")
        return EXIT_USAGE
    except StorageFailed as exc:  # e.g. at startup, before serve's own fail-stop path is armed
        err.write(f"lỗi: {exc.message}\n")
        return EXIT_STORAGE_FAILED
    except NodeError as exc:
        err.write(f"lỗi: {exc.message}\n")
        return EXIT_USAGE if exc.status in (409, 422) else EXIT_RUNTIME
    except ProtocolError as exc:
        err.write(f"lỗi: {exc}\n")
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
