"""The assembled hub: every long-lived part, built and closed by ``central.app``'s cleanup context."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from central.blobs import HubBlobs
from central.config import CentralConfig
from central.heartbeat import Heartbeats
from central.mailbox import Mailbox
from central.metrics import HubMetrics
from central.receive import Receiver, TokenBucket
from central.registry import Registry
from central.store import SqliteStore
from protocol import PublicKey, ReplayCache, load_private_key, parse_public_key, public_key_text
from protocol.keys import Ed25519PrivateKey

__all__ = ["HUB", "Hub"]


@dataclass
class Hub:
    config: CentralConfig
    clock: Callable[[], int]
    hub_key: Ed25519PrivateKey
    store: SqliteStore
    registry: Registry
    receiver: Receiver
    mailbox: Mailbox
    blobs: HubBlobs
    heartbeats: Heartbeats
    metrics: HubMetrics
    replay: ReplayCache
    pools: list[ThreadPoolExecutor] = field(default_factory=list)

    @property
    def public_key(self) -> PublicKey:
        return parse_public_key(public_key_text(self.hub_key))

    def use_key(self, key: Ed25519PrivateKey) -> None:
        """Sign from now on with ``key`` (after a hub.key_rotation, central.rotation)."""
        self.hub_key = self.mailbox.hub_key = self.receiver.hub_key = key

    @classmethod
    async def open(cls, config: CentralConfig, clock: Callable[[], int]) -> Hub:
        from central.rotation import finish_swap

        if config.db_path.exists():
            finish_swap(config.key_path, config.db_path)
        hub_key = load_private_key(config.key_path)
        store = await SqliteStore(config.db_path).open()
        metrics = HubMetrics()
        registry = Registry(store)
        signatures = ThreadPoolExecutor(config.verify_threads, thread_name_prefix="verify-sig")
        driver = ThreadPoolExecutor(1, thread_name_prefix="verify-chain")
        blobs = HubBlobs(store, config.blob_dir)
        receiver = Receiver(
            store=store,
            registry=registry,
            hub_key=hub_key,
            signature_pool=signatures,
            driver_pool=driver,
            metrics=metrics,
            clock=clock,
            max_entries=config.max_push_entries,
            rate=TokenBucket(float(config.push_rate_per_s)),
        )
        mailbox = Mailbox(store, hub_key, clock)
        receiver.hooks.append(blobs.hook)
        mailbox.hooks.append(blobs.hook)
        return cls(
            config=config,
            clock=clock,
            hub_key=hub_key,
            store=store,
            registry=registry,
            receiver=receiver,
            mailbox=mailbox,
            blobs=blobs,
            heartbeats=Heartbeats(store, config.heartbeat_keep),
            metrics=metrics,
            replay=ReplayCache(config.auth_window_s * 1000, floor_ms=clock()),  # refuses pre-start requests
            pools=[signatures, driver],
        )

    async def close(self) -> None:
        await self.blobs.flush()  # chunks already answered (``?ack=later``) are made durable first
        for pool in self.pools:
            pool.shutdown(wait=True, cancel_futures=True)
        await self.store.close()


HUB = web.AppKey("hub", Hub)
