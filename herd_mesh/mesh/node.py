"""The peer's lifecycle: start the services, discovery and liveness; keep the state document current; say
goodbye to the mesh; stop everything.

Decisions live in the core; who is in the mesh in `membership`; how peers are probed in `liveness`. The node
only starts, supervises and stops them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..core import txt
from ..core.peer_table import PeerTable
from ..core.protocol import Identity
from ..services.changes import Changes
from ..storage.settings_store import SettingsStore
from . import metrics
from .clients import PeerClients
from .discovery import Discovery
from .liveness import Liveness
from .membership import Membership
from .state_document import StateDocument
from .tasks import Tasks

logger = logging.getLogger(__name__)

REBUILD_DEBOUNCE_S = 0.05  # changes this close together are advertised together
METRICS_INTERVAL_S = 1.0  # how often CPU and memory are sampled and the state document rebuilt


class Node:
    def __init__(
        self,
        *,
        identity: Identity,
        table: PeerTable,
        clients: PeerClients,
        state: StateDocument,
        membership: Membership,
        liveness: Liveness,
        settings: SettingsStore,
        changes: Changes,
        tasks: Tasks,
        discovery: Discovery | None,
        machine: metrics.Machine,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        on_leave: Callable[[], None] = lambda: None,
    ) -> None:
        self.identity = identity
        self.table = table
        self.state = state
        self.membership = membership
        self._clients = clients
        self._liveness = liveness
        self._settings = settings
        self._changes = changes
        self._tasks = tasks
        self._discovery = discovery
        self._machine = machine
        self._background = tuple(background)  # loops services run while the peer is up
        self._on_leave = on_leave  # tells everyone who acts on the mesh to stop
        self._announced: txt.Summary | None = None
        self._announced_at = 0.0  # time.monotonic() of the last announcement
        self._liveness_task: asyncio.Task[Any] | None = None
        self.leaving = False

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def mdns_heard(self) -> frozenset[str] | None:
        """Peers heard over mDNS so far; None when mDNS is off (static peers only, on purpose)."""
        return None if self._discovery is None else frozenset(self._discovery.heard)

    def ping(self) -> dict[str, Any]:
        return self.state.ping(leaving=self.leaving, settings_digest=self._settings.digest(),
                               known_digest=self.membership.known_digest())  # fmt: skip

    def peers_document(self) -> dict[str, Any]:
        """`GET /mesh/peers`: this peer, every peer it knows, and static URLs never reached."""
        me = self.identity
        own = {"node_id": me.node_id, "url": me.url, "status": "up", "last_seen": time.time(), "self": True,
               "static": False, "capabilities": self.state.current()}  # fmt: skip
        peers = [own] + [{**p.to_dict(), "self": False} for p in self.table.all()]
        for url in self.table.pending_static_urls():
            error = self.membership.static_errors.get(url, "not reached yet")
            peers.append({"node_id": None, "url": url, "status": "down", "last_seen": None, "self": False,
                          "static": True, "last_error": error, "capabilities": {}})  # fmt: skip
        return {"self": me.node_id, "mesh": me.mesh, "peers": peers}

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        for service in self.state.services:
            await service.start()
        self.state.set_metrics(self._machine.sample())
        self.state.rebuild()
        self._tasks.spawn(self._maintain_state())
        self._liveness_task = self._tasks.spawn(self._liveness.run())
        for loop in self._background:
            self._tasks.spawn(loop())
        if self._discovery is not None:
            self._announced, self._announced_at = self.state.summary(), time.monotonic()
            self._tasks.spawn(self._start_discovery(self._discovery, self._announced))
        logger.info(
            "peer %s (mesh %r) serving at %s%s",
            self.node_id,
            self.identity.mesh,
            self.identity.url,
            "" if self._discovery is not None else " (mDNS off: static peers only)",
        )

    async def _maintain_state(self) -> None:
        while True:
            if not await self._changes.wait(METRICS_INTERVAL_S):
                self.state.set_metrics(await asyncio.to_thread(self._machine.sample))
            else:  # a burst of changes (requests starting and ending) makes one rebuild, not one each
                await asyncio.sleep(REBUILD_DEBOUNCE_S)
            try:
                self.state.rebuild()
                await self._announce_if_meaningful()
            except Exception:
                logger.exception("state rebuild failed")

    async def _announce_if_meaningful(self) -> None:
        if self._discovery is None or self.leaving:
            return
        summary = self.state.summary()
        since = time.monotonic() - self._announced_at
        if self._announced is None or txt.meaningful(summary, self._announced, since_s=since):
            self._announced, self._announced_at = summary, time.monotonic()
            await self._discovery.update(summary)

    @staticmethod
    async def _start_discovery(discovery: Discovery, summary: txt.Summary) -> None:
        try:
            await discovery.start(summary)
        except Exception:
            logger.exception("mDNS failed to start; static peers (--peer) still work")

    async def leave(self) -> None:
        """Tell everyone we are going, so we leave their lists within a second. Safe to call twice."""
        if self.leaving:
            return
        self.leaving = True
        self._on_leave()
        logger.info("leaving the mesh")
        # no probe may reach a peer after our leave notice: it would list us again
        if self._liveness_task is not None:
            self._liveness_task.cancel()
            await asyncio.gather(self._liveness_task, return_exceptions=True)
        notices = [c.leave() for c in self._clients.known()]
        if self._discovery is not None:
            notices.append(self._discovery.stop())
        await asyncio.gather(*notices, return_exceptions=True)

    async def stop(self) -> None:
        await self.leave()
        await self._tasks.cancel_all()
        for service in self.state.services:
            try:
                await service.aclose()
            except Exception:
                logger.exception("closing %s failed", service.name)
        await self._clients.aclose()
