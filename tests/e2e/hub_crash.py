"""Run ``motcua-central`` in a child process that dies (``os._exit``) at one step of the hub key swap.

``python -m tests.e2e.hub_crash DATA STEP ARGV...`` patches one function so that the process exits with
``KILLED`` right after the named step, then runs ``central.cli.main(ARGV)``. Steps of ``rotate``:
``after_next_key`` (hub.key.next written, nothing committed), ``after_commit`` (rotation entries committed,
files untouched), ``after_link`` (old key linked as retired), ``after_replace`` (hub.key replaced, directory
not yet synced). The same patches hit ``finish_swap`` when the child only opens the hub (e.g. ``verify``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

KILLED = 86
STEPS = ("after_next_key", "after_commit", "after_link", "after_replace")


def _die_after(module: Any, name: str, when: Any = None) -> None:
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if when is None or when(*args):
            os._exit(KILLED)
        return result

    setattr(module, name, wrapper)


def arm(step: str) -> None:
    import central.rotation
    from central.mailbox import Mailbox
    from protocol import KEY_ROTATION

    if step == "after_next_key":
        _die_after(central.rotation, "save_private_key")
    elif step == "after_commit":
        real = Mailbox.post

        async def post(self: Mailbox, posts: Any, **kwargs: Any) -> Any:
            written = await real(self, posts, **kwargs)
            if any(p.kind == KEY_ROTATION for p in posts):
                os._exit(KILLED)
            return written

        Mailbox.post = post  # type: ignore[method-assign]
    elif step == "after_link":
        _die_after(os, "link", lambda src, dst: os.path.basename(src) == "hub.key")  # hub.key -> retired
    elif step == "after_replace":
        _die_after(os, "replace", lambda src, dst: os.path.basename(dst) == "hub.key")  # next -> hub.key
    else:
        raise SystemExit(f"unknown step {step}")


if __name__ == "__main__":
    from central.cli import main

    arm(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
