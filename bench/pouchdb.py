"""Reference peer for the sync benchmarks: PouchDB replicating to a PouchDB server over HTTP.

    python -m bench.pouchdb [--docs N] [--size S] [--attachments M] [--attachment-size B]
                            [--only docs|attachments] [--fsync] [--timeout SECONDS]

Each run starts ``bench/pouchdb/server.js`` (express-pouchdb over PouchDB's on-disk LevelDB adapter) in a
fresh temporary directory on a free loopback port, runs ``bench/pouchdb/replicate.js`` against it (a local
on-disk PouchDB replicating one way to the server; only the replication is timed; the remote is verified
afterwards), stops the server and removes the directory. Everything is bounded by timeouts.

``run_docs()`` and ``run_attachments()`` return replicate.js's JSON object (``docs_per_s``, ``mib_per_s``,
``seconds``, ``bytes``, ...) with the server's versions added under ``server``. See bench/pouchdb/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

PEER_DIR = Path(__file__).resolve().parent / "pouchdb"
NPM_CI_TIMEOUT = 900.0
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0


class PouchDBBenchError(RuntimeError):
    """The reference peer could not be installed or run."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PouchDBBenchError(
            f"{name!r} is not on PATH: the PouchDB reference peer needs Node.js >= 18 and npm "
            f"(Debian: apt-get install nodejs npm)"
        )
    return path


def _installed() -> bool:
    modules = PEER_DIR / "node_modules"
    marker = modules / ".package-lock.json"  # written by npm after every install
    if not marker.is_file():
        return False
    # Reinstall when the committed lockfile changed after the last install.
    return marker.stat().st_mtime >= (PEER_DIR / "package-lock.json").stat().st_mtime and all(
        (modules / name / "package.json").is_file() for name in ("pouchdb-node", "express-pouchdb", "express")
    )


def ensure_installed() -> None:
    """Install bench/pouchdb/node_modules from the committed lockfile (``npm ci``) unless it is there."""
    node = _tool("node")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    major = out.stdout.strip().lstrip("v").split(".")[0]
    if out.returncode != 0 or not major.isdigit() or int(major) < 18:
        raise PouchDBBenchError(
            f"Node.js >= 18 is needed, found {out.stdout.strip() or out.stderr.strip()!r}"
        )
    if _installed():
        return
    npm = _tool("npm")
    cmd = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        res = subprocess.run(
            cmd, cwd=PEER_DIR, capture_output=True, text=True, timeout=NPM_CI_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PouchDBBenchError(f"`npm ci` in {PEER_DIR} took longer than {NPM_CI_TIMEOUT:.0f} s") from exc
    if res.returncode != 0 or not _installed():
        raise PouchDBBenchError(
            f"`npm ci` in {PEER_DIR} failed (exit {res.returncode}):\n"
            f"{res.stdout[-2000:]}{res.stderr[-4000:]}"
        )


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first line the process writes on stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line on stdout within {timeout:.0f} s")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise EOFError("stdout closed before a line was written")
            buf += chunk
    return buf.split(b"\n", 1)[0]


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


class _Server:
    """server.js in ``work/server``, on a free port of 127.0.0.1; stderr goes to ``work/server.log``."""

    def __init__(self, work: Path, *, fsync: bool) -> None:
        self.log_path = work / "server.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [_tool("node"), "server.js", "--dir", str(work / "server"), "--port", "0", "--host", "127.0.0.1"]
            + (["--fsync"] if fsync else []),
            cwd=PEER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            line = _read_line(self.proc, SERVER_START_TIMEOUT)
            info = json.loads(line)
            if info.get("event") != "listening":
                raise ValueError(f"unexpected first line {line!r}")
        except (TimeoutError, EOFError, ValueError) as exc:
            self.stop()
            raise PouchDBBenchError(f"server.js did not start: {exc}\n{_tail(self.log_path)}") from exc
        self.info: dict[str, Any] = info
        self.port: int = int(info["port"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(SERVER_STOP_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _run(mode: str, count: int, size: int, timeout: float, fsync: bool, extra: list[str]) -> dict[str, Any]:
    ensure_installed()
    with tempfile.TemporaryDirectory(prefix=f"motcua-pouchdb-{mode}-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        server = _Server(work, fsync=fsync)
        try:
            cmd = [
                _tool("node"),
                "replicate.js",
                "--mode",
                mode,
                "--remote",
                f"http://127.0.0.1:{server.port}/bench-{mode}",
                "--dir",
                str(work / "client"),
                "--count",
                str(count),
                "--size",
                str(size),
                "--timeout",
                str(max(1, int(timeout))),
                *extra,
            ]
            try:
                res = subprocess.run(
                    cmd,
                    cwd=PEER_DIR,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=timeout + 30,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise PouchDBBenchError(
                    f"replicate.js ({mode}) took longer than {timeout + 30:.0f} s"
                ) from exc
            if res.returncode != 0:
                raise PouchDBBenchError(
                    f"replicate.js ({mode}) failed (exit {res.returncode}):\n{res.stderr[-4000:]}\n"
                    f"server log:\n{_tail(server.log_path)}"
                )
            lines = [line for line in res.stdout.splitlines() if line.strip()]
            try:
                result: dict[str, Any] = json.loads(lines[-1])
            except (IndexError, ValueError) as exc:
                raise PouchDBBenchError(
                    f"replicate.js ({mode}) printed no JSON: {res.stdout[-2000:]!r}"
                ) from exc
        finally:
            server.stop()
        result["server"] = {key: server.info.get(key) for key in ("adapter", "fsync", "versions")}
        return result


def run_docs(
    n: int = 25000,
    size: int = 500,
    *,
    fsync: bool = False,
    timeout: float = 1200.0,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Replicate ``n`` dossier documents of ~``size`` bytes; the result has ``docs_per_s``.

    ``fsync=True``: the server's LevelDB writes are synchronous (stock PouchDB does not fsync).
    ``batch_size``: PouchDB's replication batch size (default: PouchDB's own, 100)."""
    extra = [] if batch_size is None else ["--batch-size", str(batch_size)]
    return _run("docs", n, size, timeout, fsync, extra)


def run_attachments(
    count: int = 200,
    size: int = 1 << 20,
    *,
    fsync: bool = False,
    timeout: float = 1200.0,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Replicate ``count`` documents, each with one attachment of ``size`` random bytes.

    The result has ``mib_per_s`` (attachment bytes only). ``fsync`` and ``batch_size`` as for run_docs."""
    extra = [] if batch_size is None else ["--batch-size", str(batch_size)]
    return _run("attachments", count, size, timeout, fsync, extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pouchdb", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=25000, help="documents in the docs run (default 25000)")
    parser.add_argument("--size", type=int, default=500, help="bytes per document (default 500)")
    parser.add_argument("--attachments", type=int, default=200, help="attachments in that run (default 200)")
    parser.add_argument("--attachment-size", type=int, default=1 << 20, help="bytes per attachment (1 MiB)")
    parser.add_argument("--only", choices=("docs", "attachments"), help="run only one of the two")
    parser.add_argument("--fsync", action="store_true", help="server LevelDB writes synchronous (not stock)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per run (default 1200)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    if args.only in (None, "docs"):
        results["docs"] = run_docs(args.docs, args.size, fsync=args.fsync, timeout=args.timeout)
    if args.only in (None, "attachments"):
        results["attachments"] = run_attachments(
            args.attachments, args.attachment_size, fsync=args.fsync, timeout=args.timeout
        )
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
