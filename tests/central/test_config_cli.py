"""Config (every field documented, unknown keys refused), request authentication over HTTP, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from central.cli import main
from central.config import ConfigError, help_text, load
from protocol import generate_private_key
from tests.central.helpers import SimNode, hub_clock, hub_of

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "sync.md").read_text("utf-8")
    for name, text in help_text().items():
        assert f"`{name}`" in doc and text in doc, name


def test_unknown_and_bad_settings_are_refused(tmp_path: Path) -> None:
    (tmp_path / "central.toml").write_text('listen = "0.0.0.0:9000"\nmax_push_entreis = 5\n')
    with pytest.raises(ConfigError, match="max_push_entreis"):
        load(tmp_path, environ={})
    (tmp_path / "central.toml").write_text('listen = "0.0.0.0:9000"\n')
    assert load(tmp_path, environ={}).port == 9000
    assert load(tmp_path, environ={"MOTCUA_CENTRAL_LISTEN": "127.0.0.1:1"}).port == 1
    with pytest.raises(ConfigError):
        load(tmp_path, environ={"MOTCUA_CENTRAL_MAX_PUSH_ENTRIES": "many"})


async def test_request_auth_failures(client: TestClient, hub_dir: Path) -> None:
    sim = SimNode(client, "CN01")
    await sim.enroll(hub_of(client))
    status, body = await sim.call("GET", "/v1/sync/state", time_ms=hub_clock.now - 301_000)
    assert (status, body["error"], body["hub_time"]) == (401, "stale", hub_clock.now)
    status, body = await sim.call("GET", "/v1/sync/state", key=generate_private_key())
    assert (status, body["error"]) == (401, "bad_request_signature")
    headers = sim.headers("GET", "/v1/sync/state", b"")
    first = await client.get("/v1/sync/state", headers=headers)
    again = await client.get("/v1/sync/state", headers=headers)
    assert first.status == 200 and again.status == 401 and (await again.json())["error"] == "replayed"
    stranger = SimNode(client, "CN09")
    status, body = await stranger.call("GET", "/v1/sync/state")
    assert (status, body["error"]) == (401, "unknown_node")
    headers = sim.headers("POST", "/v1/sync/heartbeat", b"{}")
    resp = await client.post("/v1/sync/heartbeat", data=b"{ }", headers=headers)
    assert resp.status == 400 and (await resp.json())["error"] == "body_hash_mismatch"
    resp = await client.get("/v1/sync/state")
    assert resp.status == 401 and (await resp.json())["error"] == "auth_missing"


async def test_reprovisioning_seals_the_old_epoch(client: TestClient) -> None:
    old = SimNode(client, "CN01")
    hub = hub_of(client)
    await old.enroll(hub)
    old.notes(3)
    assert (await old.push())[0] == 200
    new = SimNode(client, "CN01", epoch=2)
    answer = await new.enroll(hub)
    assert answer["epoch"] == 2 and answer["previous"] == {"epoch": 1, "seq": 4, "head": old.entries[-1].hash}
    old.notes(1)
    status, body = await old.push(old.entries[-1:])
    assert (status, body["error"]) == (403, "epoch_sealed")
    wrong = SimNode(client, "CN01", key=new.key, epoch=2)  # genesis not naming the sealed head
    wrong.notes(1)
    status, body = await wrong.push()
    assert (status, body["error"]) == (422, "bad_genesis")
    from protocol import Head

    new.previous = Head("CN01", 1, 4, answer["previous"]["head"])
    new.notes(2)
    status, body = await new.push()
    assert status == 200, body["reason"]
    assert body["receipt"]["epoch"] == 2
    status, exported = await new.call("GET", "/v1/sync/logs/CN01/1?after=0")
    assert status == 200 and exported == b"".join(e.raw + b"\n" for e in old.entries[:4])


def test_cli_init_invite_list_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "hub")
    assert main(["--data", data, "init"]) == 0
    assert main(["--data", data, "init"]) == 1
    capsys.readouterr()
    assert main(["--data", data, "node", "invite", "CN01", "--kind", "branch", "--name", "Chi nhánh 1"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("motcua1.")
    assert main(["--data", data, "node", "list"]) == 0
    assert "CN01" in capsys.readouterr().out
    assert main(["--data", data, "verify", "--quiet"]) == 0
    assert main(["--data", data, "node", "revoke", "CN01"]) == 1  # not enrolled yet
    assert main(["--data", data, "log", "export", "--log", "CN01"]) == 1
