"""Broadcast catalog and holiday calendar (central.publish → node.hubdata), a hub and a real node on loopback.

The hub validates and publishes; the node puts the newest valid ones in force for new dossiers (its
reception page offers the new procedure), keeps them across a restart with the hub down, never moves a
due date fixed at reception, and warns when the calendar does not cover the next 12 months.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from central.cli import main as central_main
from central.publish import PublishError, publish
from node.web.keys import NODE
from protocol.calendar import local_date
from tests.e2e.realnode import HubRunner, NodeRunner, eventually

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[2] / "protocol" / "data"
NEW_NAME = "Đăng ký thử nghiệm thủ tục mới"


def _catalog() -> dict[str, Any]:
    data = json.loads((DATA / "catalog.json").read_text(encoding="utf-8"))
    data["version"] = "2027.1"
    extra = copy.deepcopy(data["procedures"][0])
    extra.update(code="LOCAL.THUNGHIEM", version="QD-1", effective="2020-01-01", name=NEW_NAME)
    data["procedures"].append(extra)
    return data


def _calendar(version: str, last_year: int | None = None) -> dict[str, Any]:
    data = json.loads((DATA / "calendar-vn.json").read_text(encoding="utf-8"))
    data["version"] = version
    if last_year is not None:
        data["years"] = {y: v for y, v in data["years"].items() if int(y) <= last_year}
    return data


async def test_published_catalog_and_calendar_reach_the_node_and_stay(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    node = await NodeRunner.create(tmp_path / "cn01", await hub.invite("CN01"), node_id="CN01", block=0)
    await node.start()
    try:
        before = await node.receive()
        due_before = (await node.dossier(before["code"]))["dossier"]["due_at"]
        assert NEW_NAME not in await node.page("/ho-so/moi")

        # Refused with the field named, nothing written.
        bad = _catalog()
        del bad["procedures"][1]["agency"]
        with pytest.raises(PublishError) as refused:
            await publish(hub.hub, "catalog", bad)
        assert refused.value.field == "procedures[1].agency" and "agency" in refused.value.reason
        assert await hub.hub.store.head("hub", 1) is None

        today = local_date(node_now())
        await publish(hub.hub, "catalog", _catalog())
        await publish(hub.hub, "calendar", _calendar("2026.8", last_year=today.year))  # too short

        async def offered() -> bool:
            status, body = await node.call("GET", "/api/v1/procedures")
            return status == 200 and body["catalog"] == "2027.1"

        await eventually(offered, what="the new catalog in force")
        page = await node.page("/ho-so/moi")
        assert NEW_NAME in page and "LOCAL.THUNGHIEM" in page
        assert "chưa đủ 12 tháng tới" in page  # the short calendar is in force: warned
        fresh = await node.receive(procedure="LOCAL.THUNGHIEM")
        assert (await node.dossier(fresh["code"]))["dossier"]["procedure"]["code"] == "LOCAL.THUNGHIEM"
        assert (await node.dossier(before["code"]))["dossier"]["due_at"] == due_before  # fixed at reception

        await publish(hub.hub, "calendar", _calendar("2026.9"))  # covers ahead again

        async def calendar_ok() -> bool:
            return "chưa đủ 12 tháng tới" not in await node.page("/hom-nay")

        await eventually(calendar_ok, what="the newer calendar in force")
    finally:
        await node.stop()
        await hub.stop()

    # The hub is down; the node restarts with what it pulled.
    await node.start()
    try:
        status, body = await node.call("GET", "/api/v1/procedures")
        assert body["catalog"] == "2027.1" and "LOCAL.THUNGHIEM" in {p["code"] for p in body["procedures"]}
        assert node.app is not None
        assert node.app[NODE].desk.calendar.version == "2026.9"
        # An old dossier's procedure version is still found (receipts, supplements) behind the new catalog.
        ref = (await node.dossier(before["code"]))["dossier"]["procedure"]
        assert node.app[NODE].desk.catalog.version_of(ref["code"], ref["version"]).code == ref["code"]
    finally:
        await node.stop()


def node_now() -> int:
    return time.time_ns() // 1_000_000


def test_publish_cli_names_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = HubRunner(tmp_path / "hub")
    bad = _calendar("2026.8")
    bad["years"]["2026"]["days_off"][0]["date"] = "2026-13-01"
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    assert central_main(["--data", str(hub.config.data_dir), "publish", "calendar", str(path)]) == 1
    err = capsys.readouterr().err
    assert "years.2026.days_off[0].date" in err or "days_off[0]" in err
    good = tmp_path / "catalog.json"
    good.write_text(json.dumps(_catalog()), encoding="utf-8")
    assert central_main(["--data", str(hub.config.data_dir), "publish", "catalog", str(good)]) == 0
    assert "catalog 2027.1 published as hub/1:2" in capsys.readouterr().out
