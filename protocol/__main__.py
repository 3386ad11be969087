"""Command-line face of the protocol, for operators and auditors.

python -m protocol canonical < value.json
python -m protocol verify --key KEY [--after SEQ:HASH] [FILE]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import BinaryIO

from protocol.chain import ChainState, verify_next
from protocol.encoding import canonical
from protocol.entry import HASH_RE, Entry
from protocol.errors import KeyError_, ProtocolError
from protocol.keys import parse_public_key


def _canonical(stdin: BinaryIO, stdout: BinaryIO, stderr: BinaryIO) -> int:
    import json

    data = stdin.read()
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text,
            parse_float=lambda s: float(s),
            object_pairs_hook=_no_dupes,
        )
        out = canonical(value)
    except UnicodeDecodeError as exc:
        stderr.write(f"error: invalid_json: input is not UTF-8 at byte {exc.start}\n".encode())
        return 1
    except json.JSONDecodeError as exc:
        stderr.write(f"error: invalid_json: {exc.msg} at offset {exc.pos}\n".encode())
        return 1
    except ProtocolError as exc:
        stderr.write(f"error: {exc}\n".encode())
        return 1
    stdout.write(out)
    return 0


def _no_dupes(pairs: list[tuple[str, object]]) -> dict[str, object]:
    from protocol.encoding import _pairs

    return _pairs(pairs)


def _parse_after(text: str) -> tuple[int, str]:
    seq_text, _, head = text.partition(":")
    if not seq_text.isdigit() or int(seq_text) < 1 or not HASH_RE.fullmatch(head):
        raise argparse.ArgumentTypeError("--after must be SEQ:HASH (seq >= 1, 64 hex digits)")
    return int(seq_text), head


def _verify(args: argparse.Namespace, stdout: BinaryIO) -> int:
    try:
        key = parse_public_key(args.key)
    except KeyError_ as exc:
        stdout.write(f"error: {exc}\n".encode())
        return 2
    stream: BinaryIO = open(args.file, "rb") if args.file != "-" else sys.stdin.buffer  # noqa: SIM115
    state: ChainState | None = None
    line_no = 0
    try:
        for line_no, line in enumerate(stream, start=1):
            raw = line[:-1] if line.endswith(b"\n") else line
            if not raw:
                stdout.write(f"error at line {line_no}: invalid_json: empty line\n".encode())
                return 1
            try:
                entry = Entry.parse(raw)
                if state is None:
                    if args.after is None:
                        state = ChainState.start(entry.log, entry.epoch, key)
                    else:
                        seq, head = args.after
                        state = ChainState(entry.log, entry.epoch, key, seq=seq, head=head)
                state = verify_next(state, entry)
            except ProtocolError as exc:
                stdout.write(f"error at line {line_no}: {exc.code}: {exc.reason}\n".encode())
                return 1
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if state is None:
        stdout.write(b"error at line 1: invalid_json: no entries\n")
        return 1
    stdout.write(f"ok {state.log} {state.epoch} {state.seq} {state.head}\n".encode())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protocol", description="motcua protocol v1 tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("canonical", help="read one JSON value on stdin, write its canonical bytes")
    verify = sub.add_parser("verify", help="verify NDJSON entries of one log epoch")
    verify.add_argument("--key", required=True, help="the log epoch's public key (base64url)")
    verify.add_argument("--after", type=_parse_after, help="SEQ:HASH of the entry before the first line")
    verify.add_argument("file", nargs="?", default="-", help="NDJSON file (default: stdin)")
    args = parser.parse_args(argv)
    if args.command == "canonical":
        return _canonical(sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer)
    return _verify(args, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
