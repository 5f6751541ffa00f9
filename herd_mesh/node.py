"""The peer runtime: wires configuration, discovery, liveness, metrics and the services into one process.

Decisions live elsewhere (peer table, scheduling); this module senses, calls them, and acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from . import __version__, metrics, txt
from .config import Config
from .discovery import Discovery
from .errors import PeerError
from .liveness import Liveness
from .peer_client import H_BOOT, H_MESH, H_NODE, H_URL, Identity, PeerClient
from .peers import PeerTable, valid_node_id, valid_peer_url
from .records import Records
from .settings import SettingsStore
from .settings_sync import SettingsSync

logger = logging.getLogger(__name__)

MAX_PENDING_CLAIMS = 32  # unverified "I am peer X at URL" claims checked at once; more are dropped
METRICS_INTERVAL_S = 1.0  # how often CPU and memory are sampled and the state document rebuilt


class Service(Protocol):
    """A capability a peer offers (images, LLMs, speech-to-text): it adds a section to the state document."""

    name: str

    def state(self) -> dict[str, Any]: ...

    def summary(self) -> dict[str, Any]: ...  # Summary fields for the TXT record

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.node_id = config.node_id
        self.boot_id = uuid.uuid4().hex[:12]
        self.started_at = time.time()
        self.url = config.url
        self.identity = Identity(config.node_id, config.mesh, self.url, self.boot_id)
        self.table = PeerTable(config.node_id, config.peers)
        self.static_errors: dict[str, str] = {}
        self.services: dict[str, Service] = {}
        self.background: list[Callable[[], Awaitable[None]]] = []  # loops services run while the peer is up
        self.metrics = metrics.sample()
        self.state_version = 0
        self._structural_key = ""
        self._state: dict[str, Any] = {}
        self._announced: txt.Summary | None = None
        self._clients: dict[str, PeerClient] = {}
        self._url_clients: dict[str, PeerClient] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._changed = asyncio.Event()
        self.liveness = Liveness(self)
        self._liveness_task: asyncio.Task[Any] | None = None
        self.discovery: Discovery | None = None
        self.leaving = False
        self._verifying: set[tuple[str, str]] = set()  # (node id, url) claims being checked
        self.settings: SettingsStore = SettingsStore(config.data_dir / "settings.json", config.node_id)
        self.settings_sync = SettingsSync(self)
        self.records: Records | None = None
        self.rebuild_state()

    # -- services ---------------------------------------------------------------------------------------------
    def add_service(self, service: Service) -> None:
        self.services[service.name] = service

    def notify(self) -> None:
        """Something a peer should know changed (a job queued, a model loaded): rebuild the state soon."""
        self._changed.set()

    # -- state ------------------------------------------------------------------------------------------------
    def rebuild_state(self) -> bool:
        """Rebuild the capability document; bump the version when anything but live metrics changed."""
        sections = {name: service.state() for name, service in self.services.items()}
        key = json.dumps(sections, sort_keys=True, default=str)
        changed = key != self._structural_key
        if changed:
            self._structural_key = key
            self.state_version += 1
        self._state = {
            "proto": txt.PROTOCOL_VERSION,
            "version": __version__,
            "node_id": self.node_id,
            "mesh": self.config.mesh,
            "url": self.url,
            "boot_id": self.boot_id,
            "started_at": self.started_at,
            "state_version": self.state_version,
            "generated_at": time.time(),
            "system": self.metrics.to_dict(),
            **sections,
        }
        return changed

    def state(self) -> dict[str, Any]:
        return self._state

    def summary(self) -> txt.Summary:
        fields: dict[str, Any] = {}
        for service in self.services.values():
            fields.update(service.summary())
        return txt.Summary(
            node_id=self.node_id,
            mesh=self.config.mesh,
            boot_id=self.boot_id,
            state_version=self.state_version,
            memory_available_gb=int(self.metrics.memory_available_gb),
            cpu_percent=int(self.metrics.cpu_percent),
            **fields,
        )

    def ping(self) -> dict[str, Any]:
        """What a probe returns: identity, state version and the live metrics that do not bump the version."""
        return {
            "proto": txt.PROTOCOL_VERSION,
            "node_id": self.node_id,
            "mesh": self.config.mesh,
            "boot_id": self.boot_id,
            "url": self.url,
            "state_version": self.state_version,
            "system": {
                "cpu_percent": self.metrics.cpu_percent,
                "memory_available_gb": self.metrics.memory_available_gb,
                "memory_pressure": self.metrics.memory_pressure,
            },
            "leaving": self.leaving,
            "settings": self.settings.digest(),  # a peer whose digest differs exchanges settings with us
        }

    async def _maintain_state(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), METRICS_INTERVAL_S)
            if not self._changed.is_set():
                self.metrics = await asyncio.to_thread(metrics.sample)
            self._changed.clear()
            try:
                self.rebuild_state()
                await self._announce_if_meaningful()
            except Exception:
                logger.exception("state rebuild failed")

    async def _announce_if_meaningful(self) -> None:
        if self.discovery is None or self.leaving:
            return
        summary = self.summary()
        if self._announced is None or txt.meaningful(summary, self._announced):
            self._announced = summary
            await self.discovery.update(summary)

    # -- peers ------------------------------------------------------------------------------------------------
    def client_for(self, node_id: str) -> PeerClient | None:
        """The one HTTP client for this peer, rebuilt when its address changed."""
        peer = self.table.get(node_id)
        if peer is None:
            return None
        client = self._clients.get(node_id)
        if client is None or client.url != peer.url:
            if client is not None:
                self.spawn(client.aclose())
            client = self._url_clients.pop(peer.url, None) or PeerClient(node_id, peer.url, self.identity)
            client.node_id = node_id
            self._clients[node_id] = client
        return client

    def client_for_url(self, url: str) -> PeerClient:
        client = self._url_clients.get(url)
        if client is None:
            client = self._url_clients[url] = PeerClient(url, url, self.identity)
        return client

    async def on_ping(self, node_id: str, url: str, ping: Mapping[str, Any]) -> None:
        if ping.get("leaving"):
            self.table.goodbye(node_id, now=time.time(), boot_id=str(ping.get("boot_id", "")))
            return
        before = self.table.get(node_id)
        was_up = before is not None and before.status == "up"
        need_state = self.table.contact_ok(
            node_id,
            now=time.time(),
            boot_id=str(ping.get("boot_id", "")),
            state_version=int(ping.get("state_version", -1)),
        )
        if not was_up:
            logger.info("peer %s is up at %s", node_id, url)
        self.settings_sync.on_ping(node_id, ping)
        if need_state:
            client = self.client_for(node_id)
            if client is None:
                return
            try:
                state = await client.state()
            except Exception as exc:  # noqa: BLE001 - any failure here is the peer's, and a probe will retry
                logger.debug("state fetch from %s failed: %s", node_id, exc)
                return
            self.table.set_capabilities(node_id, version=int(state.get("state_version", 0)), capabilities=state)
        peer = self.table.get(node_id)
        if peer is not None and peer.capabilities and isinstance(ping.get("system"), dict):
            peer.capabilities.setdefault("system", {}).update(ping["system"])

    def heard_from(self, headers: Mapping[str, str]) -> None:
        """Another peer called us: learn about it even if mDNS is blocked and it is not in our static list.

        Headers are only a claim (anyone can send them), so a new peer, a new address or a new boot id is
        believed only once that address answers a ping as that peer (`_verify_claim`).
        """
        node_id = headers.get(H_NODE, "")
        url = headers.get(H_URL, "")
        if not node_id or not url or node_id == self.node_id or headers.get(H_MESH) != self.config.mesh:
            return
        known = self.table.get(node_id)
        boot = headers.get(H_BOOT, "")
        if known is not None and known.url == url and (not boot or known.boot_id == boot):
            return
        if not valid_node_id(node_id) or not valid_peer_url(url) or (node_id, url) in self._verifying:
            return
        if len(self._verifying) >= MAX_PENDING_CLAIMS or self.leaving:
            return
        self._verifying.add((node_id, url))
        self.spawn(self._verify_claim(node_id, url))

    async def _verify_claim(self, node_id: str, url: str) -> None:
        try:
            if not await self.liveness.contact(url, expect=node_id) and url not in self.table.static_urls:
                client = self._url_clients.pop(url, None)
                if client is not None:
                    await client.aclose()
        finally:
            self._verifying.discard((node_id, url))

    async def verify_leave(self, node_id: str) -> None:
        """A leave notice is a claim too: drop the peer only if it really is going (or already gone)."""
        peer = self.table.get(node_id)
        client = self.client_for(node_id)
        if peer is None or client is None:
            return
        try:
            ping = await client.ping()
        except PeerError:
            ping = {"leaving": True, "boot_id": peer.boot_id}
        if ping.get("leaving") or ping.get("boot_id") != peer.boot_id:
            self.table.goodbye(node_id, now=time.time(), boot_id=peer.boot_id)
            logger.info("peer %s left the mesh", node_id)
        else:
            logger.warning("ignoring a leave notice for %s: it answers and is not leaving", node_id)

    def on_mdns_found(self, summary: txt.Summary, url: str) -> None:
        if self.leaving:
            return
        peer = self.table.get(summary.node_id)
        is_new = peer is None or peer.url != url or peer.boot_id != summary.boot_id
        self.table.discovered(summary.node_id, url, now=time.time(), boot_id=summary.boot_id, summary=summary)
        if is_new or peer is None or summary.state_version != peer.state_version:
            self.liveness.poke()

    def on_mdns_gone(self, node_id: str) -> None:
        self.table.goodbye(node_id, now=time.time())

    def peers_document(self) -> dict[str, Any]:
        me = {
            "node_id": self.node_id,
            "url": self.url,
            "status": "up",
            "last_seen": time.time(),
            "self": True,
            "static": False,
            "capabilities": self.state(),
        }
        peers = [me] + [{**p.to_dict(), "self": False} for p in self.table.all()]
        for url in self.table.pending_static_urls():
            peers.append(
                {
                    "node_id": None,
                    "url": url,
                    "status": "down",
                    "last_seen": None,
                    "self": False,
                    "static": True,
                    "last_error": self.static_errors.get(url, "not reached yet"),
                    "capabilities": {},
                }
            )
        return {"self": self.node_id, "mesh": self.config.mesh, "peers": peers}

    # -- lifecycle --------------------------------------------------------------------------------------------
    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run `coro` in the background; it is cancelled when the peer stops."""
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)
        return task

    async def start(self) -> None:
        for service in self.services.values():
            await service.start()
        self.metrics = metrics.sample()
        self.rebuild_state()
        self.spawn(self._maintain_state())
        self._liveness_task = self.spawn(self.liveness.run())
        for loop in self.background:
            self.spawn(loop())
        if self.config.mdns:
            self.discovery = Discovery(
                mesh=self.config.mesh,
                node_id=self.node_id,
                host=self.config.host,
                port=self.config.port,
                addresses=self.config.advertised_addresses(),
                on_found=self.on_mdns_found,
                on_gone=self.on_mdns_gone,
            )
            self._announced = self.summary()
            self.spawn(self._start_discovery(self._announced))
        logger.info(
            "peer %s (mesh %r) serving at %s%s",
            self.node_id,
            self.config.mesh,
            self.url,
            "" if self.config.mdns else " (mDNS off: static peers only)",
        )

    async def _start_discovery(self, summary: txt.Summary) -> None:
        assert self.discovery is not None
        try:
            await self.discovery.start(summary)
        except Exception:
            logger.exception("mDNS failed to start; static peers (--peer) still work")

    async def leave(self) -> None:
        """Tell everyone we are going, so we leave their lists within a second. Safe to call twice."""
        if self.leaving:
            return
        self.leaving = True
        logger.info("leaving the mesh")
        # no probe may reach a peer after our leave notice: it would list us again
        if self._liveness_task is not None:
            self._liveness_task.cancel()
            await asyncio.gather(self._liveness_task, return_exceptions=True)
        notices = [c.leave() for c in list(self._clients.values())]
        if self.discovery is not None:
            notices.append(self.discovery.stop())
        await asyncio.gather(*notices, return_exceptions=True)

    async def stop(self) -> None:
        await self.leave()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for service in self.services.values():
            try:
                await service.aclose()
            except Exception:
                logger.exception("closing %s failed", service.name)
        for client in [*self._clients.values(), *self._url_clients.values()]:
            await client.aclose()
