"""Fixtures for node tests: a freshly initialised node in a tmp dir, open parts, a served app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from aiohttp.test_utils import TestClient

from node.app import make_app
from node.auth import add_user, create_token
from node.blobs import BLOBS_SQL, BlobStore
from node.config import NodeConfig
from node.dbcipher import aconnect
from node.printing import PRINT_SQL
from node.provision import Node, init_node
from node.scan_inbox import SCANS_SQL
from node.store import Store
from tests.tools import keyring

# The domain's minimum PBKDF2 work for lookup codes; keeps tests fast (production uses the default).
FAST_LOOKUP = 1_000
PASSWORD = "mat-khau-rat-dai-12"
UNIT = "000.00.01.H26"

APPLICANT = {
    "name": "Nguyễn Văn An",
    "id_type": "cccd",
    "id_number": "001090012345",
    "phone": "0912 345 678",
}
BIRTH_DOCS = [
    {"name": "Tờ khai đăng ký khai sinh (theo mẫu)"},
    {"name": "Giấy chứng sinh hoặc giấy tờ thay thế Giấy chứng sinh"},
    {"name": "Giấy tờ tùy thân của người đi đăng ký (thẻ căn cước, hộ chiếu)"},
]


def reception(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "procedure": "1.001193",
        "applicant": dict(APPLICANT),
        "documents": list(BIRTH_DOCS),
    }
    data.update(overrides)
    return data


@pytest.fixture
async def config(tmp_path: Path) -> NodeConfig:
    return await init_node(
        tmp_path / "node", node_id="CN01", unit_code=UNIT, name="Chi nhánh Tây Hồ", code_block=1
    )


@pytest.fixture
async def node(config: NodeConfig) -> AsyncIterator[Node]:
    opened = await Node.open(config, lookup_iterations=FAST_LOOKUP)
    try:
        yield opened
    finally:
        await opened.close()


async def _seed(config: NodeConfig) -> str:
    store = await Store.open(config.db_path)
    try:
        await add_user(store, "an.nv", PASSWORD, "staff", "Nguyễn Văn An")
        await add_user(store, "truong.bp", PASSWORD, "supervisor", "Lê Thị Trưởng")
        return await create_token(store, "kiosk1")
    finally:
        await store.close()


@pytest.fixture
async def token(config: NodeConfig) -> str:
    return await _seed(config)


@pytest.fixture
async def client(
    config: NodeConfig, token: str, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
) -> TestClient[Any, Any]:
    return await aiohttp_client(make_app(config, lookup_iterations=FAST_LOOKUP))


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no csrf field in the page"
    return match.group(1)


async def login(client: TestClient[Any, Any], username: str = "an.nv", password: str = PASSWORD) -> Any:
    page = await client.get("/dang-nhap")
    csrf = csrf_of(await page.text())
    return await client.post(
        "/dang-nhap",
        data={"csrf": csrf, "username": username, "password": password, "next": "/hom-nay"},
        allow_redirects=False,
    )


async def page_csrf(client: TestClient[Any, Any], path: str = "/hom-nay") -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return csrf_of(await response.text())


# --- devices fixtures: a bare SQLite file with the blob/scan/print tables, and a blob store ---

Writer = Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]


async def open_db(path: Path) -> aiosqlite.Connection:
    """A real SQLite file the way the node store opens it: SQLCipher with the folder's data key, WAL,
    synchronous=FULL, explicit transactions."""
    path = Path(path)
    db = await aconnect(path, keyring(path.parent).db_key)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.executescript(BLOBS_SQL + SCANS_SQL + PRINT_SQL)
    return db


def make_writer(db: aiosqlite.Connection) -> Writer:
    lock = asyncio.Lock()

    @asynccontextmanager
    async def write() -> AsyncIterator[aiosqlite.Connection]:
        async with lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    return write


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_db(tmp_path / "node.sqlite3")
    yield conn
    await conn.close()


@pytest.fixture
def writer(db: aiosqlite.Connection) -> Writer:
    return make_writer(db)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "state", low_disk_bytes=0, keyring=keyring(tmp_path / "state"))
