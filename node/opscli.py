"""The operations commands of ``motcua-node`` (registered by ``node.cli``):

    motcua-node backup         --data DIR --to FILE [--with-key]
    motcua-node restore-backup --from FILE --data DIR [--token TOKEN [--hub URL] | --standalone]
    motcua-node reprovision    --data DIR (--token TOKEN [--hub URL] | --standalone)
    motcua-node rotate-key     --data DIR [--wait SECONDS]
    motcua-node purge-scans    --data DIR [--older-than-days N] [--dry-run]

Progress goes to stderr (tqdm, off when not a terminal); results to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any, TextIO

from node import config as config_module
from protocol.dossier.codes import RESTORE_CODE_MARGIN

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("backup", "restore-backup", "reprovision", "rotate-key", "purge-scans")


def add_parsers(sub: Any) -> None:
    """Add the operations subcommands to ``motcua-node``'s subparsers."""

    def data(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, type=Path, help="state directory of the node")

    p = sub.add_parser("backup", help="consistent backup (database, blobs, config) into one tar file")
    data(p)
    p.add_argument("--to", required=True, type=Path, help="archive to write (replaced atomically)")
    p.add_argument("--with-key", action="store_true", help="include the private key (never signs again)")

    p = sub.add_parser("restore-backup", help="restore a backup into an empty folder, with a new key")
    p.add_argument("--from", dest="source", required=True, type=Path, help="archive made by backup")
    data(p)
    _epoch_args(p)

    p = sub.add_parser("reprovision", help="finish a restore: enroll the new key and start the new epoch")
    data(p)
    _epoch_args(p)

    p = sub.add_parser(
        "rotate-key",
        help="new key and new epoch: a request signed by the old and new keys, approved by hub admins",
        description="Stop the node and sync first. Sends a rotation request signed by the current key and "
        "a new one, prints the new key's fingerprint for the hub admins to approve (2 by default), waits "
        "for their decision, then starts the new epoch with the new key. Run again to keep waiting.",
    )
    data(p)
    p.add_argument("--wait", type=float, default=900.0, help="seconds to wait for approvals (default 900)")
    p.add_argument("--token", help=argparse.SUPPRESS)  # removed: a single admin's token no longer rotates

    p = sub.add_parser("purge-scans", help="delete local scans the hub holds, of dossiers closed long ago")
    data(p)
    p.add_argument("--older-than-days", type=int, help="closed more than N days ago (default: config)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")


def _epoch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", help="a fresh invite token for this node id ('motcua-central node invite')")
    p.add_argument("--hub", help="hub URL (default: the one in the token)")
    p.add_argument("--standalone", action="store_true", help="a node that never had a hub: no enrollment")
    p.add_argument(
        "--code-margin",
        type=int,
        default=RESTORE_CODE_MARGIN,
        help="numbers skipped today past those known used: receipts printed after the backup "
        f"(default {RESTORE_CODE_MARGIN})",
    )


def _progress(err: TextIO, desc: str, total: int | None = None) -> Any:
    from tqdm import tqdm

    return tqdm(desc=desc, total=total, unit="B", unit_scale=True, file=err, disable=None)


async def _backup(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node.backup import create_backup

    config = config_module.load(args.data, os.environ)
    with _progress(err, "backup") as bar:
        manifest = await asyncio.to_thread(
            create_backup,
            config.data_dir,
            args.to,
            node_id=config.node_id,
            with_key=args.with_key,
            progress=bar.update,
        )
    size = sum(f["size"] for f in manifest.files.values())
    blobs = sum(1 for name in manifest.files if name.startswith("blobs/"))
    heads = ", ".join(f"epoch {h['epoch']} seq {h['seq']}" for h in manifest.heads)
    out.write(f"backup {args.to}\nnode {config.node_id}\nheads {heads}\nblobs {blobs}\nbytes {size}\n")
    if args.with_key:
        err.write("Bản sao lưu chứa khóa riêng: cất giữ như khóa (mã hóa, ngoại tuyến).\n")
    err.write("Bản sao lưu chứa dữ liệu cá nhân: chỉ lưu trên phương tiện được mã hóa.\n")
    return 0


def _report_epoch(started: Any, out: TextIO, err: TextIO) -> None:
    prev = started.previous
    named = "none" if prev is None else f"{prev.epoch}:{prev.seq}"
    out.write(f"epoch {started.epoch}\nsealed {named}\nfetched {started.fetched}\n")
    if started.code_floor is not None:
        floor = started.code_floor
        out.write(f"code floor {floor.unit} {floor.day.isoformat()} above {floor.seq:04d}\n")
    if started.stranded:
        err.write(
            f"Chú ý: {started.stranded} bản ghi của epoch cũ chưa từng lên trung tâm; chúng được giữ tại máy "
            "trạm (mã hồ sơ không bị dùng lại) nhưng trung tâm sẽ không nhận chúng.\n"
        )


async def _restore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node.reprovision import finish_restore, restore_backup

    with _progress(err, "restore", args.source.stat().st_size) as bar:
        config, manifest = await restore_backup(
            args.source, args.data, progress=bar.update, passphrase=os.environ.get("MOTCUA_DATA_PASSPHRASE")
        )
    out.write(f"restored {config.node_id} from backup of {manifest.created_ms} into {config.data_dir}\n")
    if args.token is None and not args.standalone:
        err.write(
            "Đã khôi phục với khóa mới. Máy trạm chưa chạy được: lấy mã mời mới từ trung tâm rồi chạy\n"
            f"  motcua-node reprovision --data {config.data_dir} --token <mã mời>\n"
        )
        return 0
    started, _view = await finish_restore(
        config, token=args.token, hub_url=args.hub, standalone=args.standalone, margin=args.code_margin
    )
    _report_epoch(started, out, err)
    return 0


async def _reprovision(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node.reprovision import finish_restore

    config = config_module.load(args.data, os.environ)
    started, _view = await finish_restore(
        config, token=args.token, hub_url=args.hub, standalone=args.standalone, margin=args.code_margin
    )
    _report_epoch(started, out, err)
    return 0


async def _rotate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node.keyrotation import RotationPending, rotate_key, rotation_pending
    from node.reprovision import check_not_serving, pending

    if args.token is not None:
        err.write(
            "rotate-key không còn nhận --token: việc xoay khóa cần yêu cầu ký bằng khóa cũ và khóa mới, "
            "được các quản trị trung tâm duyệt. Chạy lại không có --token. (Khôi phục sau khi mất khóa: "
            "motcua-node reprovision --token.)\n"
        )
        return 2
    config = config_module.load(args.data, os.environ)
    if pending(config.data_dir) is not None:
        err.write("Máy trạm đang chờ khôi phục (restore-pending.json): chạy reprovision trước.\n")
        return 1
    if rotation_pending(config.data_dir) is None:
        check_not_serving(config)
    result = await rotate_key(config, wait_s=args.wait)
    if isinstance(result, RotationPending):
        out.write(f"pending {result.id}\nfingerprint {result.fingerprint}\n")
        out.write(f"approvals {result.approvals}/{result.threshold}\n")
        err.write(
            f"Đang chờ duyệt: {result.approvals}/{result.threshold} quản trị đã duyệt khóa mới "
            f"{result.fingerprint}. Máy trạm không chạy được cho đến khi xong; "
            "chạy lại lệnh này để chờ tiếp.\n"
        )
        return 3
    _report_epoch(result, out, err)
    err.write(f"Đã xoay khóa: {config.node_id} ký bằng khóa mới từ epoch {result.epoch}.\n")
    return 0


async def _purge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node.retention import purge_scans

    config = config_module.load(args.data, os.environ)
    report = await purge_scans(config, older_than_days=args.older_than_days, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for sha in report.deleted:
        out.write(f"{verb} {sha}\n")
    out.write(
        f"{verb} {len(report.deleted)} scans, {report.bytes} bytes; kept {report.kept_not_held} "
        f"not yet held by the hub, {report.kept_open} of open or recent dossiers\n"
    )
    return 0


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handler = {
        "backup": _backup,
        "restore-backup": _restore,
        "reprovision": _reprovision,
        "rotate-key": _rotate,
        "purge-scans": _purge,
    }[args.command]
    return int(asyncio.run(handler(args, out, err)))
