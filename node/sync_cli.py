"""The hub-facing commands of ``motcua-node``: ``enroll``, ``sync --once``, ``restore``, ``init --token``.

    motcua-node init    ... --hub URL --token TOKEN     create and enroll (restores a known node id)
    motcua-node enroll  --data DIR --token TOKEN [--hub URL]
    motcua-node sync    --data DIR --once [--json]
    motcua-node restore --hub URL --token TOKEN --data DIR [--unit-code C] [--code-block N] ...

Progress bars go to stderr and only on a terminal; the summary goes to stdout. Exit codes as the rest of
the CLI: 0 success, 2 bad arguments/configuration or a refused token, 3 runtime error (hub unreachable,
sync refused: the message names the hub's reason).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, TextIO

from node import config as config_module
from node.config import KINDS
from protocol.dossier.codes import RESTORE_CODE_MARGIN

__all__ = ["add_parsers", "init_from_hub", "run"]

EXIT_OK, EXIT_USAGE, EXIT_RUNTIME = 0, 2, 3


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("enroll", help="enroll this node with the central hub (one-time invite token)")
    p.add_argument("--data", required=True, type=Path, help="state directory of the node")
    p.add_argument("--token", required=True, help="the motcua1.… invite token from the hub administrator")
    p.add_argument("--hub", help="hub URL, if it differs from the one in the token")

    p = sub.add_parser("sync", help="sync with the hub now (one round)")
    p.add_argument("--data", required=True, type=Path, help="state directory of the node")
    p.add_argument("--once", action="store_true", required=True, help="one round, then exit")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("restore", help="rebuild a node from the hub's copy of its logs, in a new epoch")
    p.add_argument("--data", required=True, type=Path, help="empty state directory for the node")
    p.add_argument("--token", required=True, help="a new invite token for the same node id")
    p.add_argument("--hub", help="hub URL (default: the one in the token)")
    p.add_argument("--unit-code", help="unit code (default: from the restored dossiers)")
    p.add_argument("--code-block", type=int, help="code block index (default: from the restored dossiers)")
    p.add_argument("--code-block-size", type=int, default=1000, help="numbers per block (default 1000)")
    p.add_argument(
        "--code-margin",
        type=int,
        default=RESTORE_CODE_MARGIN,
        help="numbers skipped today past those the hub holds: receipts the lost disk may have printed "
        f"(default {RESTORE_CODE_MARGIN})",
    )
    p.add_argument("--name", help="site name (default: the name registered at the hub)")
    p.add_argument("--kind", choices=KINDS, help="site type (default: the one registered at the hub)")


def _bar(err: TextIO) -> Any:
    """A progress callback ``(stage, done, total)`` drawing tqdm bars on stderr (only on a terminal)."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = tqdm(desc=stage, total=total, unit=" mục", file=err, disable=None, leave=False)
            bars[stage] = bar
        bar.total = max(total, done)
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    progress.close = close  # type: ignore[attr-defined]
    return progress


async def init_from_hub(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``init --token``: create the node from the hub (enrolled; a known id is restored)."""
    from node.errors import ConfigError
    from node.hublink import parse_token

    if parse_token(args.token).node != args.node_id:
        raise ConfigError(
            f"--node-id {args.node_id} khác mã máy trạm trong mã mời ({parse_token(args.token).node})"
        )
    return await _provision(args, out, err, verb="khởi tạo")


def _restored(report: Any, out: TextIO, err: TextIO, *, verb: str) -> None:
    from protocol import fingerprint, load_private_key, public_key_text

    config = report.config
    key_text = public_key_text(load_private_key(config.key_path))
    err.write(f"Đã {verb} máy trạm {config.node_id} tại {config.data_dir} (epoch {report.epoch}).\n")
    out.write(f"node {config.node_id}\nepoch {report.epoch}\nkey {key_text}\n")
    out.write(f"fingerprint {fingerprint(key_text)}\n")
    block = config.code_block
    out.write(f"code block {block.start:04d}-{block.last:04d}\n")
    if report.previous is not None:
        p = report.previous
        out.write(f"previous epoch {p.epoch} sealed at seq {p.seq} head {p.hash}\n")
    for epoch, count in sorted(report.imported.items()):
        out.write(f"restored epoch {epoch}: {count} entries\n")
    if report.code_floor is not None:
        floor = report.code_floor
        out.write(f"code floor {floor.unit} {floor.day.isoformat()} above {floor.seq:04d}\n")
    if report.imported or report.previous is not None:
        out.write(f"dossiers {report.dossiers}\nscans fetched {report.blobs_fetched}\n")
    for missing in report.blobs_missing:
        err.write(f"cảnh báo: trung tâm chưa có bản quét {missing}\n")
    if report.sync_error:
        err.write(
            f"cảnh báo: chưa đồng bộ được lần đầu ({report.sync_error}); máy trạm sẽ tự thử lại khi chạy.\n"
        )


async def _enroll(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node.hublink import enroll_existing

    config = config_module.load(args.data, os.environ)
    link = await enroll_existing(config, args.token, hub_url=args.hub)
    err.write(f"Đã đăng ký máy trạm {config.node_id} với trung tâm {link.hub_url}.\n")
    out.write(f"hub {link.hub_url}\nhub fingerprint {link.fingerprint}\nepoch {link.epoch}\n")
    return EXIT_OK


async def _sync(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from node.errors import ConfigError
    from node.provision import Node
    from node.sync_client import SyncError
    from node.sync_service import SyncService, sync_banner

    config = config_module.load(args.data, os.environ)
    node = await Node.open(config)
    try:
        service = await SyncService.open(node)
        if service is None:
            raise ConfigError(
                "máy trạm chưa đăng ký với trung tâm; chạy 'motcua-node enroll --token …' trước"
            )
        progress = _bar(err)
        service.client.progress = progress
        error: SyncError | None = None
        try:
            report = await service.client.sync_once()
        except SyncError as exc:
            error, report = exc, None
        finally:
            progress.close()
            await service.close()
        async with node.store.read() as db:
            banner = await sync_banner(db, config.node_id, config.hub_url)
    finally:
        await node.close()
    summary: dict[str, Any] = {
        "ok": error is None,
        "error": None if error is None else error.code,
        "reason": None if error is None else error.reason,
        **banner.to_json(),
    }
    if report is not None:
        summary |= {
            "pushed": report.pushed,
            "duplicates": report.duplicates,
            "quarantined": report.quarantined,
            "pulled": report.pulled,
            "chunks": report.chunks,
            "receipt": None if report.receipt is None else report.receipt.seq,
        }
    if args.json:
        out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    elif report is not None:
        out.write(
            f"Đã đồng bộ: gửi {report.pushed} bản ghi ({report.duplicates} trùng), nhận {report.pulled} bản "
            f"ghi từ trung tâm, gửi {report.chunks} phần bản quét; còn {banner.summary.unsent} bản ghi chưa "
            "được trung tâm xác nhận.\n"
        )
        if report.quarantined:
            out.write(f"Trung tâm giữ lại để xem xét các bản ghi: {report.quarantined}\n")
    if error is not None:
        err.write(f"lỗi đồng bộ: {error.code}: {error.reason}\n")
        if banner.block_message:
            err.write(banner.block_message + "\n")
        return EXIT_RUNTIME
    return EXIT_OK


async def _restore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return await _provision(args, out, err, verb="khôi phục")


async def _provision(args: argparse.Namespace, out: TextIO, err: TextIO, *, verb: str) -> int:
    """Build the node from the hub's copy of its logs (a new node id known to the hub, or a restore)."""
    from node.restore import provision_from_hub

    progress = _bar(err)
    try:
        report = await provision_from_hub(
            args.data,
            args.token,
            hub_url=args.hub,
            unit_code=args.unit_code,
            code_block=args.code_block,
            code_block_size=args.code_block_size,
            name=args.name,
            kind=args.kind,
            progress=progress,
            code_margin=getattr(args, "code_margin", RESTORE_CODE_MARGIN),
        )
    finally:
        progress.close()
    _restored(report, out, err, verb=verb)
    return EXIT_OK


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "enroll":
        return await _enroll(args, out, err)
    if args.command == "sync":
        return await _sync(args, out, err)
    return await _restore(args, out, err)
