"""Peers probe each other over HTTP: cheap, fast, and independent of mDNS caches.

Every PROBE_INTERVAL_S each known peer (and each static URL not reached yet) gets `GET /mesh/ping`. A success
marks it up and, when its state version moved, fetches `/mesh/state`. A failure marks it suspect at once; the
peer table turns it down after SUSPECT_TO_DOWN_S of failures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from .errors import PeerError

if TYPE_CHECKING:
    from .node import Node

logger = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.5  # how often every peer is pinged


class Liveness:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Probe now (a peer was just discovered) instead of at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.probe_all()
            except Exception:  # a bug in one round must not end liveness for good
                logger.exception("probe round failed")
            self.node.table.tick(now=time.time())
            self._wake.clear()
            delay = PROBE_INTERVAL_S - (time.monotonic() - started)
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    pass

    async def probe_all(self) -> None:
        if self.node.leaving:
            return
        table = self.node.table
        jobs = [self.probe_peer(p.node_id) for p in table.all()]
        jobs += [self.probe_static(url) for url in table.pending_static_urls()]
        if jobs:
            await asyncio.gather(*jobs)

    async def probe_peer(self, node_id: str) -> None:
        client = self.node.client_for(node_id)
        if client is None:
            return
        sent_at = time.time()  # a timeout is known late; the peer was already silent when we asked
        try:
            ping = await client.ping()
        except PeerError as exc:
            was = self.node.table.get(node_id)
            before = was.status if was else None
            self.node.table.contact_failed(node_id, now=sent_at, reason=exc.reason)
            after = self.node.table.get(node_id)
            if after is not None and before != after.status:
                logger.info("peer %s is %s: %s", node_id, after.status, exc.reason)
            return
        await self.node.on_ping(node_id, client.url, ping)

    async def probe_static(self, url: str) -> None:
        """A static URL we have never reached: learn its node id from the ping."""
        await self.contact(url, static=True)

    async def contact(self, url: str, *, expect: str | None = None, static: bool = False) -> bool:
        """Ping `url` and list whoever answers there, if it is a peer of this mesh (and is `expect`, if given).

        The one way a peer is learned from an address: a static URL, or a caller's claim about itself.
        """
        client = self.node.client_for_url(url)
        try:
            ping = await client.ping()
        except PeerError as exc:
            logger.debug("%s not reachable: %s", url, exc.reason)
            if static:
                self.node.static_errors[url] = exc.reason
            return False
        node_id = str(ping.get("node_id", ""))
        if not node_id or self.node.leaving:
            return False
        if node_id == self.node.config.node_id:
            if static:
                self.node.table.static_urls.discard(url)  # users list every Mac, this one included
            return False
        if expect is not None and node_id != expect:
            logger.warning("ignoring a call that claimed to be %s at %s: that address is %s", expect, url, node_id)
            return False
        if ping.get("mesh") != self.node.config.mesh:
            if static:
                self.node.static_errors[url] = f"belongs to mesh {ping.get('mesh')!r}, not {self.node.config.mesh!r}"
            return False
        self.node.table.discovered(node_id, url, now=time.time(), boot_id=str(ping.get("boot_id", "")), static=static)
        await self.node.on_ping(node_id, url, ping)
        return True
