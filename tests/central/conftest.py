from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from central.app import make_app
from tests.central.helpers import hub_clock, make_hub_dir


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    make_hub_dir(tmp_path / "hub")
    return tmp_path / "hub"


@pytest.fixture
async def client(hub_dir: Path, aiohttp_client) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    from central.config import load

    config = load(hub_dir, environ={}, max_push_bytes=512 * 1024, max_push_entries=500)
    yield await aiohttp_client(make_app(config, clock=hub_clock))
