"""Encryption at rest (RELIABILITY P1, P2): keys, wrong keys, flipped bytes, nonce discipline.

The stolen-disk test with real processes is ``test_stolen_disk.py``; this file covers the parts.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from node import atrest
from node.blobcipher import ENC_CHUNK, HEADER_SIZE, TAG, DecryptingReader, encrypt_chunks
from node.blobs import BlobStore
from node.dbcipher import connect, integrity_errors, is_plaintext
from node.errors import BlobAuthFailed, BlobCorrupt, DataLocked, WrongDataKey
from node.provision import init_node, unlock_data_key
from node.store import Store
from tests.node.conftest import UNIT

PASSPHRASE = "mật khẩu ca sáng 2026"


async def _passphrase_node(folder: Path) -> object:
    return await init_node(
        folder,
        node_id="VAN03",
        unit_code=UNIT,
        name="Xe lưu động 3",
        kind="van",
        extra={"key_source": "passphrase"},
        passphrase=PASSPHRASE,
    )


async def test_passphrase_node_is_locked_until_unlocked_and_wrong_keys_fail_by_name(tmp_path: Path) -> None:
    config = await _passphrase_node(tmp_path / "van")
    data = tmp_path / "van"
    assert not is_plaintext(data / "node.sqlite3")
    assert b"SQLite format 3" not in (data / "node.sqlite3").read_bytes()[:16]
    assert not (data / atrest.KEK_FILE).exists()  # nothing on disk unwraps a passphrase keyring
    atrest.forget(data)
    with pytest.raises(DataLocked):
        await Store.open(data / "node.sqlite3")
    with pytest.raises(WrongDataKey):
        unlock_data_key(config, "sai mật khẩu rồi")  # type: ignore[arg-type]
    with pytest.raises(WrongDataKey):  # a random key: SQLCipher's HMAC of page 1 fails, named error
        await Store.open(data / "node.sqlite3", key=os.urandom(32))
    ring = unlock_data_key(config, PASSPHRASE)  # type: ignore[arg-type]
    store = await Store.open(data / "node.sqlite3")
    try:
        rows = await store.fetchall("SELECT count(*) FROM entries")
        assert rows[0][0] == 1  # genesis
    finally:
        await store.close()
    # rewrap under a new passphrase: the same keys, the old passphrase no longer opens them
    atrest.change_passphrase(data, old_passphrase=PASSPHRASE, passphrase="mật khẩu mới của ca chiều")
    atrest.forget(data)
    with pytest.raises(WrongDataKey):
        atrest.unlock(data, PASSPHRASE)
    again = atrest.unlock(data, "mật khẩu mới của ca chiều")
    assert again.db_key == ring.db_key and again.blob_keys == ring.blob_keys


async def test_a_flipped_database_byte_fails_cipher_integrity_check(tmp_path: Path) -> None:
    config = await init_node(tmp_path / "n", node_id="CN01", unit_code=UNIT, name="Chi nhánh")
    key = atrest.keyring_for(config.data_dir).db_key
    db = connect(config.db_path, key)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert integrity_errors(config.db_path, key) == []
    raw = bytearray(config.db_path.read_bytes())
    raw[4096 + 100] ^= 0x01  # one bit inside page 2
    config.db_path.write_bytes(raw)
    problems = integrity_errors(config.db_path, key)
    assert problems and any("HMAC" in p or "hmac" in p.lower() or "page 2" in p for p in problems), problems


def test_blob_flips_truncation_and_moves_fail_authentication(tmp_path: Path) -> None:
    ring = atrest.create_keyring(tmp_path, "CN01")
    store = BlobStore(tmp_path, low_disk_bytes=0, keyring=ring)
    data = os.urandom(3 * ENC_CHUNK + 100)
    staged = store.stage_bytes(data)
    path = staged.path
    assert store.read_bytes(staged.sha256) == data
    assert path.stat().st_size == HEADER_SIZE + len(data) + 4 * TAG
    good = path.read_bytes()
    for offset in (0, 5, HEADER_SIZE - 1, HEADER_SIZE + 10, HEADER_SIZE + ENC_CHUNK + TAG + 3, len(good) - 1):
        bad = bytearray(good)
        bad[offset] ^= 0x80
        path.write_bytes(bad)
        with pytest.raises(BlobCorrupt):  # BlobAuthFailed is a BlobCorrupt: every caller treats it so
            store.read_bytes(staged.sha256)
        assert not store.verify(staged.sha256)
    for cut in (HEADER_SIZE + ENC_CHUNK + TAG, HEADER_SIZE + 2 * (ENC_CHUNK + TAG), len(good) - 1):
        path.write_bytes(good[:cut])  # cut at a chunk boundary: the new last chunk was not sealed final
        with pytest.raises(BlobAuthFailed):
            store.read_bytes(staged.sha256)
    other = store.stage_bytes(b"another scan")
    other_bytes = other.path.read_bytes()
    path.write_bytes(other_bytes)  # a valid file at the wrong address: the AAD names the hash
    with pytest.raises(BlobAuthFailed):
        store.read_bytes(staged.sha256)
    path.write_bytes(good)
    assert store.read_range(staged.sha256, ENC_CHUNK - 5, 10) == data[ENC_CHUNK - 5 : ENC_CHUNK + 5]
    foreign = atrest.create_keyring(tmp_path / "other", "CN02")  # another node's keys: refused
    with pytest.raises(BlobAuthFailed), open(path, "rb") as raw:
        DecryptingReader(raw, foreign, staged.sha256).read()


def _nonces(ring: atrest.Keyring, sealed: bytes, chunks: int) -> tuple[bytes, list[bytes]]:
    """(derived blob key, nonces) of one encrypted file, recomputed from its header."""
    _magic, _v, generation, _chunk, salt, prefix = struct.unpack(">4sBII16s7s", sealed[:HEADER_SIZE])
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"motcua blob v1").derive(
        ring.blob_keys[generation]
    )
    return key, [prefix + struct.pack(">IB", i, i == chunks - 1) for i in range(chunks)]


def _nonce_discipline(tmp_path: Path, messages: int, bound: int) -> None:
    ring = atrest.create_keyring(tmp_path, "CN01", max_messages=bound)
    seen: set[tuple[bytes, bytes]] = set()
    per_generation: dict[int, int] = {}
    samples: list[tuple[str, bytes, bytes]] = []
    for i in range(messages):
        plain = i.to_bytes(8, "big") * (1 + (i % 3) * 8192)  # 8 B .. 128 KiB: 1..3 chunks
        sha = f"{i:064x}"
        sealed = b"".join(encrypt_chunks(ring, sha, [plain]))
        chunks = max(1, -(-len(plain) // ENC_CHUNK))
        generation = struct.unpack(">I", sealed[5:9])[0]
        per_generation[generation] = per_generation.get(generation, 0) + 1
        key, nonces = _nonces(ring, sealed, chunks)
        for nonce in nonces:
            pair = (key, nonce)
            assert pair not in seen, f"(key, nonce) repeated at message {i}"
            seen.add(pair)
        if i % max(1, messages // 20) == 0:
            samples.append((sha, sealed, plain))
    assert max(per_generation.values()) <= bound  # rotated before the bound, every time
    assert len(per_generation) == -(-messages // bound)
    atrest.forget(tmp_path)
    reopened = atrest.unlock(tmp_path)  # old generations stay readable after a restart
    assert sorted(reopened.blob_keys) == sorted(per_generation)
    for sha, sealed, plain in samples:
        (tmp_path / "x").write_bytes(sealed)
        with open(tmp_path / "x", "rb") as raw:
            assert DecryptingReader(raw, reopened, sha).read() == plain
    print(f"P2 nonce discipline: {messages} encryptions, {len(seen)} (key, nonce) pairs, 0 repeated, "
          f"{len(per_generation)} key generations at bound {bound}")  # fmt: skip


def test_nonce_discipline_quick(tmp_path: Path) -> None:
    _nonce_discipline(tmp_path, 20_000, 1_000)


@pytest.mark.slow
def test_nonce_discipline_one_million(tmp_path: Path) -> None:
    _nonce_discipline(tmp_path, 1_000_000, 1 << 17)


def test_usage_is_reserved_before_use_so_a_crash_never_reuses_a_count(tmp_path: Path) -> None:
    ring = atrest.create_keyring(tmp_path, "CN01", max_messages=5000)
    for _ in range(10):
        ring.next_blob_key()
    atrest.forget(tmp_path)  # a crash: the in-memory count is gone
    again = atrest.unlock(tmp_path, max_messages=5000)
    assert again.used >= 10  # resumes at the durable reservation (1024), never below what was used
    for _ in range(5000):
        again.next_blob_key()
    assert again.current == 2 and again.rotations == 1


def test_key_file_source_and_a_missing_key_file(tmp_path: Path) -> None:
    outside = tmp_path / "usb" / "kek"
    ring = atrest.create_keyring(tmp_path / "n", "CN01", key_file=outside)
    assert outside.stat().st_size == 32 and oct(outside.stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "n" / atrest.KEK_FILE).exists()
    atrest.forget(tmp_path / "n")
    assert atrest.unlock(tmp_path / "n").db_key == ring.db_key
    atrest.forget(tmp_path / "n")
    outside.unlink()
    with pytest.raises(WrongDataKey):
        atrest.unlock(tmp_path / "n")


def test_systemd_credentials_directory_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LoadCredentialEncrypted=`` hands the service the decrypted KEK in $CREDENTIALS_DIRECTORY.

    ``systemd-creds encrypt`` itself needs a host key or TPM (not in CI): the sealing step is replaced
    by what systemd does at service start, putting the plain credential in the credentials folder.
    """
    data, creds = tmp_path / "n", tmp_path / "creds"
    data.mkdir()
    creds.mkdir(mode=0o700)

    def seal(_data: Path, name: str, kek: bytes) -> Path:
        (creds / name).write_bytes(kek)
        return creds / name

    monkeypatch.setattr(atrest, "_seal_credential", seal)
    ring = atrest.create_keyring(data, "CN01", "systemd-creds")
    assert ring.info["credential"] == atrest.DEFAULT_CREDENTIAL
    atrest.forget(data)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert atrest.unlock(data).db_key == ring.db_key
    atrest.forget(data)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(DataLocked):  # outside the unit, no sealed .cred file: locked, by name
        atrest.unlock(data)
    (creds / atrest.DEFAULT_CREDENTIAL).write_bytes(os.urandom(32))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(WrongDataKey):  # another host's credential
        atrest.unlock(data)


def test_stage_file_refuses_bytes_that_change_between_the_passes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, low_disk_bytes=0, keyring=atrest.create_keyring(tmp_path, "CN01"))

    class Shifty(io.BytesIO):
        reads = 0

        def seek(self, pos: int, whence: int = 0) -> int:
            Shifty.reads += 1
            if Shifty.reads == 1:
                self.getbuffer()[0] ^= 1  # the scanner rewrote the file between hash and encrypt
            return super().seek(pos, whence)

    with pytest.raises(Exception, match="thay đổi"):
        store.stage_file(Shifty(b"x" * 1000), 1000)
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


async def test_keys_encrypt_upgrades_a_plaintext_node(tmp_path: Path) -> None:
    """A node from before encryption at rest: plaintext database and blob files, no datakey.json."""
    import sqlite3

    from node.cli import main
    from tests.node.samples import make_pdf

    config = await init_node(tmp_path / "old", node_id="CN01", unit_code=UNIT, name="Chi nhánh")
    ring = atrest.keyring_for(config.data_dir)
    store = BlobStore(config.data_dir, low_disk_bytes=0, keyring=ring)
    pdf = make_pdf(2, "old scan")
    sha = store.stage_bytes(pdf).sha256
    # turn it back into what an old node had on disk
    plain = tmp_path / "plain.sqlite3"
    con = connect(config.db_path, ring.db_key)
    con.execute(f"ATTACH DATABASE '{plain}' AS p KEY ''")
    con.execute("SELECT sqlcipher_export('p')")
    con.execute("DETACH DATABASE p")
    con.close()
    os.replace(plain, config.db_path)
    for suffix in ("-wal", "-shm"):
        Path(str(config.db_path) + suffix).unlink(missing_ok=True)
    store.path_for(sha).write_bytes(pdf)
    for name in (atrest.DATAKEY_FILE, atrest.KEK_FILE, atrest.USAGE_FILE):
        (config.data_dir / name).unlink(missing_ok=True)
    atrest.forget(config.data_dir)
    assert sqlite3.connect(config.db_path).execute("SELECT count(*) FROM entries").fetchone() == (1,)

    assert main(["keys", "encrypt", "--data", str(config.data_dir)]) == 0
    assert not is_plaintext(config.db_path) and b"%PDF" not in store.path_for(sha).read_bytes()
    ring = atrest.keyring_for(config.data_dir)
    assert BlobStore(config.data_dir, low_disk_bytes=0, keyring=ring).read_bytes(sha) == pdf
    assert integrity_errors(config.db_path, ring.db_key) == []
    assert main(["keys", "encrypt", "--data", str(config.data_dir)]) == 0  # again: nothing left to do
    assert main(["keys", "check", "--data", str(config.data_dir)]) == 0


async def test_unlock_page_checks_token_origin_and_passphrase(tmp_path: Path, aiohttp_client: object) -> None:
    import asyncio
    import re

    from node.config import build
    from node.web.unlock import unlock_app

    config = build({"node_id": "VAN03", "unit_code": UNIT, "name": "Xe 3"}, tmp_path)
    done = asyncio.Event()
    tried: list[str] = []

    def unlock(passphrase: str) -> None:
        tried.append(passphrase)
        if passphrase != PASSPHRASE:
            raise WrongDataKey()

    client = await aiohttp_client(unlock_app(config, done, unlock))  # type: ignore[operator]
    page = await client.get("/ho-so/000.00.01.H26-261122-0001")
    assert page.status == 423 and "Mở khóa dữ liệu" in await page.text()
    assert (await client.get("/healthz")).status == 503
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())[1]  # type: ignore[index]
    assert (await client.post("/mo-khoa", data={"csrf": "x", "passphrase": PASSPHRASE})).status == 403
    cross = await client.post(
        "/mo-khoa", data={"csrf": csrf, "passphrase": PASSPHRASE}, headers={"Origin": "http://evil.example"}
    )
    assert cross.status == 403 and tried == []  # neither reached the key
    wrong = await client.post("/mo-khoa", data={"csrf": csrf, "passphrase": "sai"})
    assert wrong.status == 403 and "Sai mật khẩu dữ liệu" in await wrong.text() and not done.is_set()
    right = await client.post("/mo-khoa", data={"csrf": csrf, "passphrase": PASSPHRASE})
    assert right.status == 200 and done.is_set() and tried == ["sai", PASSPHRASE]
