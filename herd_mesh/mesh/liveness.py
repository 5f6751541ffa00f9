"""Peers probe each other over HTTP: cheap, fast, and independent of mDNS caches.

Every PROBE_INTERVAL_S each known peer (and each static URL not reached yet) gets `GET /mesh/ping`. A success
marks it up and, when its state version moved, fetches `/mesh/state`. A failure marks it suspect at once; the
peer table turns it down after SUSPECT_TO_DOWN_S of failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..core.peer_table import PeerTable
from ..errors import PeerError
from .clients import PeerClients
from .membership import Membership

logger = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.5  # how often every peer is pinged


class Liveness:
    def __init__(
        self,
        *,
        table: PeerTable,
        clients: PeerClients,
        membership: Membership,
        probe_now: asyncio.Event,
        leaving: Callable[[], bool],
    ) -> None:
        self._table = table
        self._clients = clients
        self._membership = membership
        self._probe_now = probe_now
        self._leaving = leaving

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.probe_all()
            except Exception:  # a bug in one round must not end liveness for good
                logger.exception("probe round failed")
            self._table.tick(now=time.time())
            self._probe_now.clear()
            delay = PROBE_INTERVAL_S - (time.monotonic() - started)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._probe_now.wait(), delay)

    async def probe_all(self) -> None:
        if self._leaving():
            return
        jobs: list[Coroutine[Any, Any, object]] = [self.probe_peer(p.node_id) for p in self._table.all()]
        jobs += [self._membership.contact(url, static=True) for url in self._table.pending_static_urls()]
        if jobs:
            await asyncio.gather(*jobs)

    async def probe_peer(self, node_id: str) -> None:
        client = self._clients.for_node(node_id)
        if client is None:
            return
        sent_at = time.time()  # a timeout is known late; the peer was already silent when we asked
        try:
            ping = await client.ping()
        except PeerError as exc:
            self._membership.on_probe_failed(node_id, at=sent_at, reason=exc.message)
            return
        if ping.get("node_id") != node_id:
            self._membership.on_probe_failed(node_id, at=sent_at, reason=f"answered as {ping.get('node_id')!r}")
            return
        await self._membership.on_ping(node_id, ping)
