"""The thief's side of work stealing: when this peer runs dry, ask the most loaded peer for a queued job.

The victim decides (`ImageService.give_away`) and answers its waiting request "moved to <us>", so the entry
peer, which still owns the client's connection, sends the job here (late binding).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection

from ..core.peer_table import PeerTable
from ..core.rng import Rng
from ..core.stealing import steal_target
from ..errors import PeerError, PeerUnreachable
from ..mesh.clients import PeerClients
from ..mesh.snapshot import MeshView
from ..services.image_service import ImageService

logger = logging.getLogger(__name__)

STEAL_INTERVAL_S = 0.25  # how often an idle peer looks for queued work elsewhere
STEAL_TIMEOUT_S = 2.0
AFTER_STEAL_S = 1.0  # after taking a job, let it arrive before asking again
REFUSED_QUIET_S = 2.0  # a victim that gave nothing is not asked again for this long while its queue looks the same


class Thief:
    def __init__(
        self,
        *,
        service: ImageService,
        view: MeshView,
        table: PeerTable,
        clients: PeerClients,
        rng: Rng,
        leaving: Callable[[], bool],
    ) -> None:
        self._service = service
        self._view = view
        self._table = table
        self._clients = clients
        self._rng = rng
        self._leaving = leaving
        # victim -> (the queued jobs it advertised when it last gave nothing, when): a peer whose queue is
        # stuck (its jobs fit nowhere else, or its advertisement is stale) is not asked four times a second
        self._refused: dict[str, tuple[frozenset[str], float]] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STEAL_INTERVAL_S)
            if self._leaving() or not self._service.enabled or self._service.queue.depth:
                continue
            if await self.try_once():
                await asyncio.sleep(AFTER_STEAL_S)

    async def try_once(self) -> bool:
        """Ask one victim for one job; True when it handed one over."""
        now = time.time()
        views = self._view.snapshot(now).image_views
        me = next(v for v in views if v.is_self)
        others = [v for v in views if not v.is_self and not self._quiet(v.node_id, v.job_ids, now)]
        victim = steal_target(me, others, rng=self._rng)
        client = self._clients.for_node(victim) if victim else None
        if victim is None or client is None:
            return False
        advertised = next(frozenset(v.job_ids) for v in others if v.node_id == victim)
        try:
            answer = await client.post_json("/mesh/steal-image", {"image": self._service.state()}, STEAL_TIMEOUT_S)
        except PeerUnreachable as exc:
            self._table.contact_failed(exc.node_id, now=time.time(), reason=exc.message)
            return False
        except PeerError as exc:
            logger.debug("steal request to %s refused: %s", victim, exc.message)
            self._refused[victim] = (advertised, time.time())
            return False
        if isinstance(answer.get("job_id"), str) and answer["job_id"]:
            logger.info("took job %s from %s", answer["job_id"], victim)
            self._refused.pop(victim, None)
            return True
        self._refused[victim] = (advertised, time.time())
        return False

    def _quiet(self, victim: str, job_ids: Collection[str], now: float) -> bool:
        """True while `victim` gave nothing last time and still advertises the same queue."""
        refused = self._refused.get(victim)
        return refused is not None and refused[0] == frozenset(job_ids) and now - refused[1] < REFUSED_QUIET_S
