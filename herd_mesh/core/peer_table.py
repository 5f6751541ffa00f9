"""The peer table: one place that knows every other peer and whether it is up. Pure: time is an argument.

States, and what moves a peer between them:

    (new) --discovered--> suspect --contact ok--> up
    up --one failed call--> suspect --failing SUSPECT_TO_DOWN_S--> down --contact ok--> up
    any --goodbye--> removed (a static peer goes down instead)
    down for FORGET_AFTER_S --> removed (a static peer stays)

Liveness never rests on mDNS TTLs: a crashed Mac sends no goodbye and caches keep its records for 75 minutes.
A newly discovered peer is `suspect` until it answers over HTTP, so a cached ghost is never listed `up`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["up", "suspect", "down"]

SUSPECT_TO_DOWN_S = 2.0  # seconds of failed contact before a suspect peer is declared down
FORGET_AFTER_S = 600.0  # seconds a discovered (non-static) peer may stay down before it is dropped


@dataclass
class Peer:
    node_id: str
    url: str
    status: Status = "suspect"
    static: bool = False
    boot_id: str = ""
    last_seen: float | None = None  # wall-clock time of the last successful contact
    failures: int = 0
    failing_since: float | None = None
    last_error: str = ""
    state_version: int = -1  # version of `capabilities`; -1 means never fetched
    capabilities: dict[str, Any] = field(default_factory=dict)
    down_since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "url": self.url,
            "status": self.status,
            "last_seen": self.last_seen,
            "static": self.static,
            "failures": self.failures,
            "last_error": self.last_error or None,
            "capabilities": self.capabilities,
        }


class PeerTable:
    """Every peer but this one, keyed by node id: a restarted peer replaces its entry, never a second one."""

    def __init__(self, self_id: str, static_urls: tuple[str, ...] = ()) -> None:
        self.self_id = self_id
        self._peers: dict[str, Peer] = {}
        self.static_urls: set[str] = set(static_urls)
        self._departed: dict[str, str] = {}  # node id -> boot id of a process that said goodbye

    # -- reading ----------------------------------------------------------------------------------------------
    def get(self, node_id: str) -> Peer | None:
        return self._peers.get(node_id)

    def all(self) -> list[Peer]:
        return sorted(self._peers.values(), key=lambda p: p.node_id)

    def up(self) -> list[Peer]:
        return [p for p in self.all() if p.status == "up"]

    def forget_static(self, url: str) -> None:
        """A static URL turned out to be this peer itself (users list every Mac, this one included)."""
        self.static_urls.discard(url)

    def pending_static_urls(self) -> list[str]:
        """Static peers we have never reached, so we do not know their node id yet."""
        known = {p.url for p in self._peers.values()}
        return sorted(self.static_urls - known)

    # -- events -----------------------------------------------------------------------------------------------
    def discovered(
        self,
        node_id: str,
        url: str,
        *,
        now: float,
        boot_id: str = "",
        static: bool = False,
    ) -> Peer | None:
        """Seen over mDNS, named by a static URL, or it called us. Returns the entry (None for ourselves)."""
        if node_id == self.self_id:
            return None
        if boot_id and self._departed.get(node_id) == boot_id:
            return None  # a late message from a process that already left: never bring it back as a ghost
        self._departed.pop(node_id, None)
        peer = self._peers.get(node_id)
        if peer is None:
            peer = Peer(node_id=node_id, url=url, boot_id=boot_id)
            self._peers[node_id] = peer
        else:
            if boot_id and peer.boot_id and boot_id != peer.boot_id:
                self._restarted(peer, boot_id)
            elif boot_id:
                peer.boot_id = boot_id
            peer.url = url  # a DHCP renumbering updates in place
        peer.static = peer.static or static or url in self.static_urls
        return peer

    def contact_ok(self, node_id: str, *, now: float, boot_id: str = "", state_version: int = -1) -> bool:
        """A call to the peer succeeded. Returns True when its capability document should be (re)fetched."""
        peer = self._peers.get(node_id)
        if peer is None:
            return False
        if boot_id and peer.boot_id and boot_id != peer.boot_id:
            self._restarted(peer, boot_id)
        elif boot_id:
            peer.boot_id = boot_id
        peer.status = "up"
        peer.last_seen = now
        peer.failures = 0
        peer.failing_since = None
        peer.down_since = None
        peer.last_error = ""
        return state_version != peer.state_version or not peer.capabilities

    def contact_failed(self, node_id: str, *, now: float, reason: str) -> None:
        """Any failed call, probe or forwarded job, makes the peer suspect at once."""
        peer = self._peers.get(node_id)
        if peer is None:
            return
        peer.failures += 1
        peer.last_error = reason
        if peer.failing_since is None:
            peer.failing_since = now
        if peer.status == "up":
            peer.status = "suspect"
        self._maybe_down(peer, now)

    def set_capabilities(self, node_id: str, *, version: int, capabilities: dict[str, Any]) -> None:
        peer = self._peers.get(node_id)
        if peer is not None and version >= peer.state_version:
            peer.state_version = version
            peer.capabilities = capabilities

    def set_live_metrics(self, node_id: str, system: dict[str, Any]) -> None:
        """CPU and memory from a probe answer: they change every second but do not bump the state version."""
        peer = self._peers.get(node_id)
        if peer is not None and peer.capabilities:
            current = peer.capabilities.get("system")
            peer.capabilities["system"] = {**(current if isinstance(current, dict) else {}), **system}

    def goodbye(self, node_id: str, *, now: float, boot_id: str = "") -> None:
        """The peer said it is leaving (mDNS goodbye or HTTP leave). That process is never re-added."""
        peer = self._peers.get(node_id)
        if boot_id or (peer is not None and peer.boot_id):
            self._departed[node_id] = boot_id or (peer.boot_id if peer else "")
        if peer is None:
            return
        if peer.static:
            peer.status = "down"
            peer.down_since = now
            peer.last_error = "left the mesh"
            peer.capabilities = {}
            peer.state_version = -1
        else:
            del self._peers[node_id]

    def tick(self, *, now: float) -> None:
        """Time-driven transitions: suspect -> down, and forgetting long-dead discovered peers."""
        for peer in list(self._peers.values()):
            self._maybe_down(peer, now)
            if (
                peer.status == "down"
                and not peer.static
                and peer.down_since is not None
                and now - peer.down_since >= FORGET_AFTER_S
            ):
                del self._peers[peer.node_id]

    # -- helpers ----------------------------------------------------------------------------------------------
    def _maybe_down(self, peer: Peer, now: float) -> None:
        if peer.status != "down" and peer.failing_since is not None and now - peer.failing_since >= SUSPECT_TO_DOWN_S:
            peer.status = "down"
            peer.down_since = now
            peer.capabilities = {}  # its queue and models are unknown now; refetched when it is back
            peer.state_version = -1

    @staticmethod
    def _restarted(peer: Peer, boot_id: str) -> None:
        """Same node id, new process: what we knew about the old one no longer holds."""
        peer.boot_id = boot_id
        peer.state_version = -1
        peer.capabilities = {}
        peer.failures = 0
        peer.failing_since = None
