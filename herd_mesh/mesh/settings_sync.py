"""Mesh-wide settings: a change on any peer reaches every peer, and a peer that was away catches up.

Two paths, both built on the per-key last-writer-wins merge in `settings.py`:

- push: a change made here is sent at once to every peer that is up or suspect (`POST /mesh/settings`), which
  merges it and answers with its own entries, merged here in turn. That takes one round trip (milliseconds).
- catch-up: every probe answer carries the peer's settings digest (`Node.ping`). When it differs from ours,
  the same exchange runs with that peer. A new peer, a restarted one, or one that missed a push converges on
  its first probes, within one probe interval (0.5 s) of being reachable.

After anything changed here, every `on_applied` callback runs: the state document is rebuilt (so
`image.enabled` reaches the schedulers of other peers), the image engine's keep-alive follows
`image_keep_alive_s`, and retention prunes by the new `stats_retention_days`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.peer_table import PeerTable
from ..errors import PeerError
from ..storage.settings_store import SettingsStore
from .clients import PeerClients
from .tasks import Tasks

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 1.0  # a peer that cannot take a change this fast gets it from the digest on its next probe
RETRY_AFTER_FAILURE_S = 5.0  # a peer whose exchange failed is not asked again sooner (an older version, say)


class SettingsSync:
    def __init__(
        self,
        *,
        node_id: str,
        settings: SettingsStore,
        table: PeerTable,
        clients: PeerClients,
        tasks: Tasks,
        on_applied: Sequence[Callable[[], None]],
    ) -> None:
        self._node_id = node_id
        self._settings = settings
        self._table = table
        self._clients = clients
        self._tasks = tasks
        self._on_applied = tuple(on_applied)  # called after any change, local or absorbed
        self.differ_since: dict[str, float] = {}  # node id -> when its digest started to differ from ours
        self._in_flight: set[str] = set()
        self._settled: dict[str, tuple[str, str]] = {}  # node id -> (their digest, ours) after an exchange
        self._failed_at: dict[str, float] = {}

    # -- what the routes call ---------------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """`GET /mesh/settings`, and the answer to a push: everything another peer needs to merge ours."""
        settings = self._settings
        return {"node_id": self._node_id, "digest": settings.digest(), "entries": settings.entries}

    def absorb(self, entries: Any) -> bool:
        """Merge entries another peer sent; apply them if anything changed here."""
        if not isinstance(entries, Mapping):
            return False
        changed = self._settings.absorb(entries)
        if changed:
            logger.info("settings now %s", json.dumps(self._settings.values(), sort_keys=True))
            self.apply()
        return changed

    async def change(self, changes: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
        """A validated change made on this peer: store it, apply it, push it to every reachable peer.

        Returns the peers that confirmed and, for the others, why not (they catch up through the digest).
        """
        self._settings.update(changes)
        logger.info("settings changed here: %s", json.dumps(dict(changes), sort_keys=True))
        self.apply()
        return await self.push()

    async def push(self) -> tuple[list[str], dict[str, str]]:
        targets = [p for p in self._table.all() if p.status != "down"]
        pending = {p.node_id: f"down: {p.last_error or 'not reachable'}" for p in self._table.all()
                   if p.status == "down"}  # fmt: skip
        results = await asyncio.gather(*(self.exchange(p.node_id) for p in targets))
        applied = [self._node_id]
        for peer, error in zip(targets, results, strict=True):
            if error is None:
                applied.append(peer.node_id)
            else:
                pending[peer.node_id] = error
        return applied, pending

    # -- what the probes call ---------------------------------------------------------------------------------
    def on_ping(self, node_id: str, ping: Mapping[str, Any]) -> None:
        """A probe answered: start an exchange when its settings digest differs from ours (never blocks)."""
        theirs = ping.get("settings")
        if not isinstance(theirs, str):
            return  # a peer of a version without mesh-wide settings
        ours = self._settings.digest()
        now = time.time()
        if theirs == ours:
            self.differ_since.pop(node_id, None)
            return
        self.differ_since.setdefault(node_id, now)
        if (
            node_id in self._in_flight
            or self._settled.get(node_id) == (theirs, ours)
            or now - self._failed_at.get(node_id, 0.0) < RETRY_AFTER_FAILURE_S
        ):
            return
        self._tasks.spawn(self.exchange(node_id))

    async def exchange(self, node_id: str) -> str | None:
        """Send our entries to one peer and merge its answer. Returns None on success, else the reason."""
        client = self._clients.for_node(node_id)
        if client is None:
            return "left the mesh"
        self._in_flight.add(node_id)
        try:
            answer = await client.post_json("/mesh/settings", self.document(), PUSH_TIMEOUT_S)
        except PeerError as exc:
            self._failed_at[node_id] = time.time()
            logger.debug("settings exchange with %s failed: %s", node_id, exc.message)
            return exc.message
        finally:
            self._in_flight.discard(node_id)
        self._failed_at.pop(node_id, None)
        self.absorb(answer.get("entries"))
        theirs = answer.get("digest")
        ours = self._settings.digest()
        if isinstance(theirs, str):
            self._settled[node_id] = (theirs, ours)
            if theirs == ours:
                self.differ_since.pop(node_id, None)
        return None

    # -- effects ----------------------------------------------------------------------------------------------
    def apply(self) -> None:
        """Make everything that depends on the settings see the ones now in force."""
        for callback in self._on_applied:
            try:
                callback()
            except Exception:
                logger.exception("applying the settings failed")
