"""Mesh-wide settings: a change on any peer reaches every peer, and a peer that was away catches up.

Two paths, both built on the per-key last-writer-wins merge in `settings.py`:

- push: a change made here is sent at once to every peer that is up or suspect (`POST /mesh/settings`), which
  merges it and answers with its own entries, merged here in turn. That takes one round trip (milliseconds).
- catch-up: every probe answer carries the peer's settings digest (`Node.ping`). When it differs from ours,
  the same exchange runs with that peer. A new peer, a restarted one, or one that missed a push converges on
  its first probes, within one probe interval (0.5 s) of being reachable.

After anything changed here, `apply` tells the services: the state document is rebuilt (so `image.enabled`
reaches the schedulers of other peers) and the image engine's keep-alive follows `image_keep_alive_s`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .errors import PeerError, PeerRefused
from .peer_client import refusal

if TYPE_CHECKING:
    from .node import Node

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 1.0  # a peer that cannot take a change this fast gets it from the digest on its next probe
RETRY_AFTER_FAILURE_S = 5.0  # a peer whose exchange failed is not asked again sooner (an older version, say)


class SettingsSync:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.listeners: list[Callable[[], None]] = []  # called after any change, local or absorbed
        self.differ_since: dict[str, float] = {}  # node id -> when its digest started to differ from ours
        self._in_flight: set[str] = set()
        self._settled: dict[str, tuple[str, str]] = {}  # node id -> (their digest, ours) after an exchange
        self._failed_at: dict[str, float] = {}

    # -- what the routes call ---------------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """`GET /mesh/settings`, and the answer to a push: everything another peer needs to merge ours."""
        settings = self.node.settings
        return {"node_id": self.node.node_id, "digest": settings.digest(), "entries": settings.entries}

    def absorb(self, entries: Any) -> bool:
        """Merge entries another peer sent; apply them if anything changed here."""
        if not isinstance(entries, Mapping):
            return False
        changed = self.node.settings.absorb(entries)
        if changed:
            logger.info("settings now %s", json.dumps(self.node.settings.values(), sort_keys=True))
            self.apply()
        return changed

    async def change(self, changes: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
        """A validated change made on this peer: store it, apply it, push it to every reachable peer.

        Returns the peers that confirmed and, for the others, why not (they catch up through the digest).
        """
        self.node.settings.update(changes)
        logger.info("settings changed here: %s", json.dumps(dict(changes), sort_keys=True))
        self.apply()
        return await self.push()

    async def push(self) -> tuple[list[str], dict[str, str]]:
        targets = [p for p in self.node.table.all() if p.status != "down"]
        pending = {p.node_id: f"down: {p.last_error or 'not reachable'}" for p in self.node.table.all()
                   if p.status == "down"}  # fmt: skip
        results = await asyncio.gather(*(self.exchange(p.node_id) for p in targets))
        applied = [self.node.node_id]
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
        ours = self.node.settings.digest()
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
        self.node.spawn(self.exchange(node_id))

    async def exchange(self, node_id: str) -> str | None:
        """Send our entries to one peer and merge its answer. Returns None on success, else the reason."""
        client = self.node.client_for(node_id)
        if client is None:
            return "left the mesh"
        self._in_flight.add(node_id)
        try:
            response = await client.post(
                "/mesh/settings",
                content=json.dumps(self.document()).encode(),
                headers={"Content-Type": "application/json"},
                timeout=PUSH_TIMEOUT_S,
            )
            answer = _json_object(node_id, response)
        except PeerError as exc:
            self._failed_at[node_id] = time.time()
            logger.debug("settings exchange with %s failed: %s", node_id, exc.reason)
            return exc.reason
        finally:
            self._in_flight.discard(node_id)
        self._failed_at.pop(node_id, None)
        self.absorb(answer.get("entries"))
        theirs = answer.get("digest")
        ours = self.node.settings.digest()
        if isinstance(theirs, str):
            self._settled[node_id] = (theirs, ours)
            if theirs == ours:
                self.differ_since.pop(node_id, None)
        return None

    # -- effects ----------------------------------------------------------------------------------------------
    def apply(self) -> None:
        """Make the services see the settings now in force."""
        keep_alive = float(self.node.settings.get("image_keep_alive_s"))
        for service in self.node.services.values():
            engine = getattr(service, "engine", None)
            if engine is not None and hasattr(engine, "keep_alive_s"):
                engine.keep_alive_s = keep_alive
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:
                logger.exception("settings listener failed")
        self.node.notify()


def _json_object(node_id: str, response: httpx.Response) -> dict[str, Any]:
    """A peer's 200 JSON object answer, else PeerRefused."""
    if response.status_code != 200:
        raise refusal(node_id, response)
    try:
        body = response.json()
    except ValueError as exc:
        raise PeerRefused(node_id, "answered with something that is not JSON", 502) from exc
    if not isinstance(body, dict):
        raise PeerRefused(node_id, "answered with JSON that is not an object", 502)
    return body
