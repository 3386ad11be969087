"""``motcua-central user ...``: the hub's web users (admin, officer, viewer).

    motcua-central user add --data DIR --username U --role R [--agency A] --password-stdin
    motcua-central user list --data DIR
    motcua-central user disable --data DIR --username U     (also ends the user's sessions)
    motcua-central user mfa-reset --data DIR --username U   (lockout: removes the TOTP factor and
                                                            recovery codes; the user enrols again)

The password is read from standard input (one line), never from the command line, where other users of
the machine could read it in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from central.config import load
from central.errors import now_ms
from central.hub import Hub
from central.mfa import MfaStore, load_wrap_key
from central.webauth import MIN_PASSWORD, ROLES, UserError, Users

__all__ = ["register"]


async def _run(args: argparse.Namespace) -> int:
    hub = await Hub.open(load(Path(args.data).resolve()), now_ms)
    try:
        users = Users(hub.store)
        if args.user_command == "add":
            if not args.password_stdin:
                print("error: give the password on standard input with --password-stdin", file=sys.stderr)
                return 2
            password = sys.stdin.readline().rstrip("\r\n")
            try:
                user = await users.add(args.username, args.role, password, agency=args.agency, now=now_ms())
            except UserError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            scope = f", agency {user.agency}" if user.agency else ""
            print(f"user {user.username} added with role {user.role}{scope}")
        elif args.user_command == "list":
            for name, role, agency, _created, disabled in await users.list():
                state = "disabled" if disabled else "active"
                print(f"{name:<24} {role:<8} {state:<9} {agency or ''}".rstrip())
        elif args.user_command == "mfa-reset":
            removed = await MfaStore(hub.store, load_wrap_key(hub.config.data_dir)).reset(args.username)
            print(f"user {args.username}: second factor {'removed' if removed else 'was not set'}")
        else:
            await users.disable(args.username, now=now_ms())
            print(f"user {args.username} disabled; sessions ended")
        return 0
    finally:
        await hub.close()


def cmd_user(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``user add|list|disable`` to the ``motcua-central`` parser."""
    users = sub.add_parser("user", help="web users of the hub (admin, officer, viewer)")
    commands = users.add_subparsers(dest="user_command", required=True)
    add = commands.add_parser("add", help="create a web user; the password is read from stdin")
    add.add_argument("--username", required=True)
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--agency", default=None, help="officers: the agency whose dossiers they handle")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password (>= {MIN_PASSWORD} chars) from stdin",
    )
    commands.add_parser("list", help="web users and their roles")
    disable = commands.add_parser("disable", help="disable a user and end their sessions")
    disable.add_argument("--username", required=True)
    reset = commands.add_parser("mfa-reset", help="remove a user's TOTP factor (lockout); they enrol again")
    reset.add_argument("--username", required=True)
    for parser in commands.choices.values():
        parser.add_argument("--data", default=argparse.SUPPRESS, help="hub state directory")
        parser.set_defaults(func=cmd_user)
