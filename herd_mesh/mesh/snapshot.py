"""The one snapshot of the mesh a routing decision reads: built once per decision, with one `now`."""

from __future__ import annotations

from ..core.peer_table import PeerTable
from ..core.views import MeshSnapshot, PeerState, ViewCache
from .state_document import StateDocument


class MeshView:
    def __init__(self, *, table: PeerTable, state: StateDocument) -> None:
        self._table = table
        self._state = state
        self._cache = ViewCache()  # what was read from each document, while it is current
        self._taken = 0

    @property
    def me(self) -> str:
        return self._state.identity.node_id

    def snapshot(self, now: float) -> MeshSnapshot:
        """This peer (its document read fresh) and every peer whose capabilities we have fetched."""
        me = self._state.identity
        own = PeerState(me.node_id, "up", self._state.fresh(), is_self=True, url=me.url)
        others = tuple(
            PeerState(p.node_id, p.status, p.capabilities, url=p.url) for p in self._table.all() if p.capabilities
        )
        self._taken += 1
        if self._taken % 256 == 0:
            self._cache.forget({me.node_id, *(p.node_id for p in others)})
        return MeshSnapshot(now, me.node_id, (own, *others), self._cache)
