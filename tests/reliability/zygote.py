"""A warm parent that forks real ``motcua-node`` / ``motcua-central`` server processes on demand.

Crash soaks need hundreds of process starts; a cold ``motcua-node serve`` spends most of a second
importing aiohttp, cryptography and jinja2. This process imports them once, then for every
``spawn`` line on stdin forks a child that runs the CLI's own ``main([... "serve" ...])`` (the same
code path as the installed scripts), and answers the child's pid on stdout. Tests SIGKILL that pid:
the kill is a real SIGKILL of a real server process (SQLite's ``crashtest1.c`` forks its writer the
same way). Children are reaped automatically (SIGCHLD ignored here, restored in the child).

Protocol: one JSON object per line. ``{"argv": [...], "tool": "node"|"central", "log": PATH}`` ->
``{"pid": N}``. EOF on stdin ends the zygote.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _child(tool: str, argv: list[str], log: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if tool == "node":
        from node.cli import main
    else:
        from central.cli import main
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 3
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    import aiohttp  # noqa: F401 - warm the imports the children share
    import aiohttp.web  # noqa: F401

    import central.app  # noqa: F401
    import central.cli  # noqa: F401
    import node.app  # noqa: F401
    import node.cli  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        order = json.loads(line)
        pid = os.fork()
        if pid == 0:
            sys.stdin.close()
            _child(order["tool"], order["argv"], order["log"])
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
