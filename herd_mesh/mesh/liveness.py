"""Peers probe each other over HTTP: cheap, fast, and independent of mDNS caches.

Every PROBE_INTERVAL_S a round probes the known peers (all of them up to `core.probing.MAX_PROBES_PER_ROUND`,
beyond that the urgent ones and the next few in turn: `core.probing.probe_round`) and each static URL not
reached yet, with `GET /mesh/ping`. A success marks the peer up and, when its state version moved, fetches
`/mesh/state`. A failure marks it suspect at once; the peer table turns it down after SUSPECT_TO_DOWN_S of
failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from ..core.peer_table import PeerTable
from ..core.probing import probe_round
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
        due: set[str] | None = None,
        busy: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._table = table
        self._clients = clients
        self._membership = membership
        self._probe_now = probe_now
        self._leaving = leaving
        self._due = due if due is not None else set()  # peers whose mDNS announcement changed: probe them next
        self._busy = busy  # peers holding jobs this peer sent: their liveness decides those jobs' fate
        self._cursor = 0

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.probe_all()
            except Exception:  # a bug in one round must not end liveness for good
                logger.exception("probe round failed")
            self._tick(now=time.time())
            self._probe_now.clear()
            delay = PROBE_INTERVAL_S - (time.monotonic() - started)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._probe_now.wait(), delay)

    def _tick(self, *, now: float) -> None:
        """The table's time-driven transitions. A silent peer (a cut cable: probes time out, nothing refuses)
        turns down here rather than on a failed probe, so this is where that is said, once."""
        before = {p.node_id: p.status for p in self._table.all()}
        self._table.tick(now=now)
        for peer in self._table.all():
            if peer.status == "down" and before.get(peer.node_id) not in (None, "down"):
                silent = now - peer.failing_since if peer.failing_since is not None else 0.0
                logger.info("peer %s is down: %s (no answer for %.1f s)", peer.node_id, peer.last_error, silent)

    async def probe_all(self) -> None:
        if self._leaving():
            return
        peers = [(p.node_id, p.status) for p in self._table.all()]
        chosen = probe_round(peers, due=self._due, busy=self._busy(), cursor=self._cursor)
        self._cursor = chosen.cursor
        self._due.difference_update(chosen.targets)
        jobs: list[Coroutine[Any, Any, object]] = [self.probe_peer(node) for node in chosen.targets]
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
