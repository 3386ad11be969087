"""``make demo`` (``python -m central.demo``): the whole system on loopback in one command.

It starts, each as its own process through the real command-line tools:

- a hub (``motcua-central serve``) on 127.0.0.1:8470, with an admin and an officer web account;
- a branch ``CN01`` (Chi nhánh Tây Hồ) on :8471 and a van ``VAN01`` (Xe lưu động số 1) on :8472
  (``motcua-node serve``), each enrolled at the hub with a one-time invite token, each with a staff and
  a supervisor account, an API token and a scanner hot folder under ``demo-data/scans/<NODE>``;
- a few sample dossiers received through each node's JSON API (procedures from the built-in catalog,
  Vietnamese names), then it waits until the hub acknowledged them.

Then it prints the URLs and logins and runs until Ctrl-C (SIGINT) or SIGTERM, when it stops the nodes,
then the hub, and exits 0. A port that is taken is replaced by a free one. State lives in ``demo-data/``
(git-ignored); a second run reuses it (same accounts, same dossiers); ``--fresh`` starts over.

This module never imports ``node``: it drives ``python -m node`` as a subprocess, like an operator would.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["main"]

HOST = "127.0.0.1"
DEFAULT_PORTS = {"hub": 8470, "CN01": 8471, "VAN01": 8472}
NODES = (
    {"id": "CN01", "kind": "branch", "name": "Chi nhánh Tây Hồ", "unit": "000.00.01.H26", "block": 1},
    {"id": "VAN01", "kind": "van", "name": "Xe lưu động số 1", "unit": "000.00.01.H26", "block": 2},
)
STAFF = (
    ("an.nv", "staff", "Nguyễn Văn An"),
    ("binh.tt", "supervisor", "Trần Thị Bình"),
)
SAMPLES = {
    "CN01": [
        ("Nguyễn Thị Hoa", "001190012345", "0912 345 678"),
        ("Lê Văn Dũng", "001085054321", "0983 111 222"),
    ],
    "VAN01": [("Phạm Thị Mai", "001095067890", "0904 555 666")],
}
BIRTH_DOCS = [
    {"name": "Tờ khai đăng ký khai sinh (theo mẫu)"},
    {"name": "Giấy chứng sinh hoặc giấy tờ thay thế Giấy chứng sinh"},
    {"name": "Giấy tờ tùy thân của người đi đăng ký (thẻ căn cước, hộ chiếu)"},
]
READY_TIMEOUT = 60.0


class DemoError(Exception):
    """A step of the demo failed; the message names the step and where its log is."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def _say(text: str) -> None:
    print(text, flush=True)


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _any_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pick_ports(wanted: dict[str, int], always_free: bool) -> dict[str, int]:
    ports: dict[str, int] = {}
    for name, port in wanted.items():
        if always_free or not _free(port) or port in ports.values():
            port = _any_port()
        ports[name] = port
    return ports


def _tool(package: str) -> list[str]:
    return [sys.executable, "-m", package]


def _run(args: Sequence[str], *, step: str, stdin: str | None = None, log: Path) -> str:
    """Run one CLI command to completion; its output is appended to ``log``; stdout is returned."""
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=120)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(args[2:])}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise DemoError(f"{step} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def _http(url: str, *, token: str | None = None, body: Any = None, timeout: float = 5) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def _wait_ready(url: str, child: Child, deadline: float) -> None:
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise DemoError(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
        try:
            status, _ = _http(url, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise DemoError(f"{child.name} did not become ready at {url}; see {child.log}")


class Demo:
    def __init__(self, data: Path, *, fresh: bool, free_ports: bool) -> None:
        self.data = data.absolute()
        if fresh and self.data.exists():
            shutil.rmtree(self.data)
        self.data.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.data / "logs").mkdir(exist_ok=True)
        self.state_path = self.data / "demo.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text("utf-8")) if self.state_path.exists() else {}
        )
        self.ports = _pick_ports(self.state.get("ports", DEFAULT_PORTS), free_ports)
        self.children: list[Child] = []

    # -- bookkeeping -------------------------------------------------------------------------------

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, ensure_ascii=False, indent=1), "utf-8")
        os.replace(tmp, self.state_path)

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    def log(self, name: str) -> Path:
        return self.data / "logs" / f"{name}.log"

    def password(self, key: str) -> str:
        passwords = self.state.setdefault("passwords", {})
        if key not in passwords:
            passwords[key] = "demo-" + secrets.token_urlsafe(9)
            self.save()
        return str(passwords[key])

    def start(self, name: str, args: list[str]) -> Child:
        out = self.log(name).open("ab")
        # a session of its own: Ctrl-C reaches the demo only, which stops the children in order
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        child = Child(name, proc, self.log(name))
        self.children.append(child)
        return child

    # -- the hub -----------------------------------------------------------------------------------

    def hub(self) -> None:
        hub_dir = self.data / "hub"
        central = [*_tool("central"), "--data", str(hub_dir)]
        if not (hub_dir / "hub.key").exists():
            _say("• Khởi tạo trung tâm (hub)…")
            _run([*central, "init"], step="motcua-central init", log=self.log("setup"))
        # listen and public URL follow the ports of this run (invite tokens carry the URL)
        (hub_dir / "central.toml").write_text(
            f'listen = "{HOST}:{self.ports["hub"]}"\npublic_url = "{self.url("hub")}"\n', "utf-8"
        )
        child = self.start("hub", [*central, "serve"])
        _wait_ready(self.url("hub") + "/healthz", child, time.monotonic() + READY_TIMEOUT)
        for username, role in (("admin", "admin"), ("officer", "officer")):
            if username in self.state.get("hub_users", []):
                continue
            _run(
                [*central, "user", "add", "--username", username, "--role", role, "--password-stdin"],
                step=f"hub user {username}",
                stdin=self.password(f"hub:{username}") + "\n",
                log=self.log("setup"),
            )
            self.state.setdefault("hub_users", []).append(username)
            self.save()

    # -- the nodes ---------------------------------------------------------------------------------

    def node(self, spec: dict[str, Any]) -> None:
        node_id = spec["id"]
        node_dir = self.data / node_id
        tool = [*_tool("node")]
        central = [*_tool("central"), "--data", str(self.data / "hub")]
        setup = self.log("setup")
        if not (node_dir / "node.toml").exists():
            _say(f"• Khởi tạo {node_id} ({spec['name']}) và đăng ký với trung tâm…")
            token = _run(
                [*central, "node", "invite", node_id, "--kind", spec["kind"], "--name", spec["name"]],
                step=f"invite {node_id}",
                log=setup,
            ).split()[0]
            _run(
                [*tool, "init", "--data", str(node_dir), "--node-id", node_id, "--unit-code", spec["unit"],
                 "--name", spec["name"], "--kind", spec["kind"], "--code-block", str(spec["block"]),
                 "--hub", self.url("hub"), "--token", token],
                step=f"motcua-node init {node_id}",
                log=setup,
            )  # fmt: skip
            for username, role, display in STAFF:
                _run(
                    [*tool, "user", "add", "--data", str(node_dir), "--username", username, "--role", role,
                     "--display-name", display, "--password-stdin"],
                    step=f"{node_id} user {username}",
                    stdin=self.password(f"{node_id}:{username}") + "\n",
                    log=setup,
                )  # fmt: skip
            api = _run(
                [*tool, "token", "create", "--data", str(node_dir), "--name", "demo"],
                step=f"{node_id} API token",
                log=setup,
            ).strip()
            self.state.setdefault("api_tokens", {})[node_id] = api
            folder = self.data / "scans" / node_id
            folder.mkdir(parents=True, exist_ok=True)
            _run(
                [*tool, "scanner", "add", "--data", str(node_dir), "--name", "may-quet-1",
                 "--folder", str(folder), "--desk", "quay-1"],
                step=f"{node_id} scanner",
                log=setup,
            )  # fmt: skip
            self.save()
        env_args = ["serve", "--data", str(node_dir), "--listen", f"{HOST}:{self.ports[node_id]}"]
        child = self.start(node_id, [*tool, *env_args])
        _wait_ready(self.url(node_id) + "/readyz", child, time.monotonic() + READY_TIMEOUT)

    def samples(self) -> None:
        done: dict[str, list[str]] = self.state.setdefault("dossiers", {})
        for node_id, people in SAMPLES.items():
            if done.get(node_id):
                continue
            codes: list[str] = []
            for name, id_number, phone in people:
                body = {
                    "procedure": "1.001193",
                    "applicant": {"name": name, "id_type": "cccd", "id_number": id_number, "phone": phone},
                    "documents": BIRTH_DOCS,
                }
                status, answer = _http(
                    self.url(node_id) + "/api/v1/dossiers", token=self.state["api_tokens"][node_id], body=body
                )
                if status not in (200, 201):
                    raise DemoError(f"{node_id}: receiving a sample dossier failed: {status} {answer}")
                codes.append(str(answer["code"]))
            done[node_id] = codes
            self.save()

    def wait_synced(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        pending = {spec["id"] for spec in NODES}
        while pending and time.monotonic() < deadline:
            for node_id in sorted(pending):
                status, answer = _http(
                    self.url(node_id) + "/api/v1/status", token=self.state["api_tokens"][node_id]
                )
                if status == 200 and answer.get("unsent") == 0:
                    pending.discard(node_id)
            time.sleep(0.3)
        return not pending

    # -- running -----------------------------------------------------------------------------------

    def banner(self, synced: bool) -> None:
        lines = ["", "motcua demo đang chạy / is running:"]
        admin, officer = self.password("hub:admin"), self.password("hub:officer")
        lines.append(f"  Trung tâm (hub)  {self.url('hub')}/admin   admin / {admin}   officer / {officer}")
        lines.append(f"  Tra cứu công khai {self.url('hub')}/tra-cuu")
        for spec in NODES:
            node_id = spec["id"]
            logins = "   ".join(f"{u} / {self.password(f'{node_id}:{u}')}" for u, _, _ in STAFF)
            lines.append(f"  {node_id:<5} {spec['name']:<18} {self.url(node_id)}/   {logins}")
            lines.append(f"        thư mục máy quét (scanner hot folder): {self.data / 'scans' / node_id}")
        codes = [c for codes in self.state.get("dossiers", {}).values() for c in codes]
        state = "đã lên trung tâm (at the hub)" if synced else "chưa lên trung tâm (not yet at the hub)"
        lines.append(f"  Hồ sơ mẫu (sample dossiers): {', '.join(codes)} — {state}")
        lines.append(f"  Nhật ký (logs): {self.data / 'logs'}")
        lines.append("Nhấn Ctrl-C để dừng (press Ctrl-C to stop).")
        lines.append(
            "URLS " + json.dumps({"hub": self.url("hub"), **{s["id"]: self.url(s["id"]) for s in NODES}})
        )
        _say("\n".join(lines))

    def stop(self) -> None:
        """Nodes first (they may be mid-sync with the hub), then the hub; SIGKILL after 15 s."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        self.children.clear()

    def watch(self, stopping: list[int]) -> int:
        while not stopping:
            for child in self.children:
                if child.proc.poll() is not None:
                    _say(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
                    return 1
            time.sleep(0.2)
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m central.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path("demo-data"), help="state folder (default ./demo-data)"
    )
    parser.add_argument("--fresh", action="store_true", help="delete the state folder and start over")
    parser.add_argument("--free-ports", action="store_true", help="use free ports instead of 8470-8472")
    args = parser.parse_args(argv)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    demo = Demo(args.data, fresh=args.fresh, free_ports=args.free_ports)
    code = 0
    try:
        demo.hub()
        for spec in NODES:
            if stopping:
                break
            demo.node(spec)
        if not stopping:
            demo.samples()
            synced = demo.wait_synced()
            demo.state["ports"] = demo.ports
            demo.save()
            demo.banner(synced)
            code = demo.watch(stopping)
    except DemoError as exc:
        _say(f"demo: {exc}")
        code = 1
    finally:
        _say("Đang dừng (stopping)…")
        demo.stop()
    _say("Đã dừng (stopped).")
    return code


if __name__ == "__main__":
    sys.exit(main())
