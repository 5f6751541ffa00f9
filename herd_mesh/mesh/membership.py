"""Who is in the mesh: every event that adds, updates or removes a peer goes through here into the peer table.

Events: a probe answered (or failed), mDNS found or lost a peer, a caller's headers claimed to be a peer, a peer
sent a leave notice. Claims are only believed on evidence: a new peer, a new address or a new boot id counts
once that address answers a ping as that peer, and a leave notice once the peer is really going.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..core import txt
from ..core.names import valid_node_id, valid_peer_url
from ..core.peer_table import PeerTable
from ..core.protocol import H_BOOT, H_MESH, H_NODE, H_URL, Identity
from ..errors import PeerError
from .clients import PeerClients
from .settings_sync import SettingsSync
from .tasks import Tasks

logger = logging.getLogger(__name__)

MAX_PENDING_CLAIMS = 32  # unverified "I am peer X at URL" claims checked at once; more are dropped
MAX_SHARED_PEERS = 256  # peers listed in one `/mesh/known` answer
UNREACHABLE_RETRY_S = 30.0  # a shared address we could not reach is tried again after this long


class Membership:
    def __init__(
        self,
        *,
        identity: Identity,
        table: PeerTable,
        clients: PeerClients,
        settings_sync: SettingsSync,
        tasks: Tasks,
        probe_now: asyncio.Event,
        leaving: Callable[[], bool],
        due: set[str] | None = None,
    ) -> None:
        self._me = identity
        self._table = table
        self._clients = clients
        self._settings_sync = settings_sync
        self._tasks = tasks
        self._probe_now = probe_now  # liveness probes at once when set
        self._due = due if due is not None else set()  # ... these peers first
        self._leaving = leaving
        self._verifying: set[tuple[str, str]] = set()  # (node id, url) claims being checked
        self.static_errors: dict[str, str] = {}  # static URL never reached -> why
        self._known_seen: dict[str, str] = {}  # node id -> the `known` digest of theirs we have acted on
        self._failed_urls: dict[str, float] = {}  # shared address -> when contacting it failed
        self._foreign: set[str] = set()  # peers heard over mDNS with another mesh key (logged once)

    def knows(self, node_id: str) -> bool:
        return self._table.get(node_id) is not None

    def is_peer_address(self, host: str) -> bool:
        """True when `host` is the address of a peer we know (their calls are not limited like a client's)."""
        return any(url_host(p.url) == host for p in self._table.all())

    def caller(self, headers: Mapping[str, str], client_host: str | None) -> str | None:
        """The peer making this call, if the call really comes from a peer we know, at that peer's own address;
        else None (forwarded jobs and steals from anyone else are treated as a client's)."""
        node_id = headers.get(H_NODE, "")
        peer = self._table.get(node_id) if node_id else None
        if peer is None or headers.get(H_MESH) != self._me.mesh or client_host is None:
            return None
        return node_id if url_host(peer.url) == client_host else None

    # -- sharing who we know: one address is enough to join a mesh without multicast -----------------------------
    def known(self) -> list[dict[str, str]]:
        """The peers this one sees up, for `/mesh/known`."""
        return [{"node_id": p.node_id, "url": p.url} for p in self._table.up()[:MAX_SHARED_PEERS]]

    def known_digest(self) -> str:
        text = "\n".join(f"{p['node_id']} {p['url']}" for p in self.known())
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _learn_from(self, node_id: str, digest: Any) -> None:
        if isinstance(digest, str) and digest and self._known_seen.get(node_id) != digest and not self._leaving():
            self._known_seen[node_id] = digest
            self._tasks.spawn(self._fetch_known(node_id))

    async def _fetch_known(self, node_id: str) -> None:
        client = self._clients.for_node(node_id)
        if client is None:
            return
        try:
            answer = await client.get_json("/mesh/known")
        except PeerError as exc:
            self._known_seen.pop(node_id, None)  # ask again on its next probe answer
            logger.debug("could not ask %s whom it knows: %s", node_id, exc.message)
            return
        now = time.monotonic()
        peers = answer.get("peers")
        for entry in peers[:MAX_SHARED_PEERS] if isinstance(peers, list) else []:
            other, url = (entry.get("node_id"), entry.get("url")) if isinstance(entry, dict) else (None, None)
            if not isinstance(other, str) or not isinstance(url, str) or other == self._me.node_id:
                continue
            if self._table.get(other) is not None or not valid_node_id(other) or not valid_peer_url(url):
                continue
            if now - self._failed_urls.get(url, -UNREACHABLE_RETRY_S) < UNREACHABLE_RETRY_S:
                continue
            if (other, url) in self._verifying or len(self._verifying) >= MAX_PENDING_CLAIMS:
                continue
            self._verifying.add((other, url))
            self._tasks.spawn(self._verify_shared(other, url))

    async def _verify_shared(self, node_id: str, url: str) -> None:
        try:
            if await self.contact(url, expect=node_id):
                logger.info("learned of %s at %s from another peer", node_id, url)
                return
            self._failed_urls[url] = time.monotonic()
        finally:
            self._verifying.discard((node_id, url))
        if not any(u == url for _, u in self._verifying):
            await self._clients.discard_url(url)

    # -- probes ---------------------------------------------------------------------------------------------------
    async def on_ping(self, node_id: str, ping: Mapping[str, Any]) -> None:
        """A probe answered: the peer is up; fetch its capability document when its version moved."""
        if ping.get("leaving"):
            self._table.goodbye(node_id, now=time.time(), boot_id=str(ping.get("boot_id", "")))
            return
        before = self._table.get(node_id)
        was_up = before is not None and before.status == "up"
        need_state = self._table.contact_ok(
            node_id,
            now=time.time(),
            boot_id=str(ping.get("boot_id", "")),
            state_version=_int(ping.get("state_version")),
        )
        if not was_up and before is not None:
            logger.info("peer %s is up at %s", node_id, before.url)
        self._settings_sync.on_ping(node_id, ping)
        self._learn_from(node_id, ping.get("known"))
        if need_state:
            client = self._clients.for_node(node_id)
            if client is None:
                return
            try:
                state = await client.state()
            except PeerError as exc:  # the next probe retries
                logger.debug("state fetch from %s failed: %s", node_id, exc)
                return
            if state.get("node_id") != node_id:
                logger.warning("ignoring the state document of %s: it names %r", node_id, state.get("node_id"))
                return
            self._table.set_capabilities(node_id, version=_int(state.get("state_version")), capabilities=state)
        system = ping.get("system")
        if isinstance(system, dict):
            self._table.set_live_metrics(node_id, system)

    def on_probe_failed(self, node_id: str, *, at: float, reason: str) -> None:
        was = self._table.get(node_id)
        before = was.status if was else None
        self._table.contact_failed(node_id, now=at, reason=reason)
        after = self._table.get(node_id)
        if after is not None and before != after.status:
            logger.info("peer %s is %s: %s", node_id, after.status, reason)

    async def contact(self, url: str, *, expect: str | None = None, static: bool = False) -> bool:
        """Ping `url` and list whoever answers there, if it is a peer of this mesh (and is `expect`, if given).

        The one way a peer is learned from an address: a static URL, or a caller's claim about itself.
        """
        client = self._clients.for_url(url)
        try:
            ping = await client.ping()
        except PeerError as exc:
            logger.debug("%s not reachable: %s", url, exc.message)
            if static:
                self.static_errors[url] = exc.message
            return False
        node_id = str(ping.get("node_id", ""))
        if not valid_node_id(node_id) or self._leaving():
            return False
        if node_id == self._me.node_id:
            if static:
                self._table.forget_static(url)  # users list every Mac, this one included
            return False
        if expect is not None and node_id != expect:
            logger.warning("ignoring a call that claimed to be %s at %s: that address is %s", expect, url, node_id)
            return False
        known = self._table.get(node_id)
        if known is not None and known.url != url and await self._still_there(node_id, known.boot_id):
            logger.warning("ignoring a claim that %s moved to %s: it still answers at %s", node_id, url, known.url)
            return False
        if ping.get("mesh") != self._me.mesh:
            if static:
                self.static_errors[url] = f"belongs to mesh {ping.get('mesh')!r}, not {self._me.mesh!r}"
            return False
        if str(ping.get("key") or "") != self._me.key_fingerprint:
            if static:
                self.static_errors[url] = "has another mesh key" if ping.get("key") else "has no mesh key"
            return False
        self._table.discovered(node_id, url, now=time.time(), boot_id=str(ping.get("boot_id", "")), static=static)
        await self.on_ping(node_id, ping)
        return True

    # -- claims in callers' headers -------------------------------------------------------------------------------
    def heard_from(self, headers: Mapping[str, str], client_host: str | None) -> None:
        """Another peer called us: learn about it even if mDNS is blocked and it is not in our static list.

        Headers are only a claim (anyone can send them): a claimed address is considered only when the call
        comes from it, and a new peer, a new address or a new boot id is believed only once that address
        answers a ping as that peer (`_verify_claim`).
        """
        node_id = headers.get(H_NODE, "")
        url = headers.get(H_URL, "")
        if not node_id or not url or node_id == self._me.node_id or headers.get(H_MESH) != self._me.mesh:
            return
        if client_host is None or url_host(url) != client_host:
            return
        known = self._table.get(node_id)
        boot = headers.get(H_BOOT, "")
        if known is not None and known.url == url and (not boot or known.boot_id == boot):
            return
        if not valid_node_id(node_id) or not valid_peer_url(url) or (node_id, url) in self._verifying:
            return
        if len(self._verifying) >= MAX_PENDING_CLAIMS or self._leaving():
            return
        self._verifying.add((node_id, url))
        self._tasks.spawn(self._verify_claim(node_id, url))

    async def _still_there(self, node_id: str, boot_id: str) -> bool:
        """Does the known address still answer as the same process? Then the peer has not moved, whoever says so."""
        client = self._clients.for_node(node_id)
        try:
            ping = await client.ping() if client is not None else {}
        except PeerError:
            return False
        return ping.get("node_id") == node_id and ping.get("boot_id") == boot_id

    async def _verify_claim(self, node_id: str, url: str) -> None:
        try:
            believed = await self.contact(url, expect=node_id)
        finally:
            self._verifying.discard((node_id, url))
        still_checking = any(u == url for _, u in self._verifying)
        if not believed and url not in self._table.static_urls and not still_checking:
            await self._clients.discard_url(url)

    async def verify_leave(self, node_id: str) -> None:
        """A leave notice is a claim too: drop the peer only if it really is going (or already gone)."""
        peer = self._table.get(node_id)
        client = self._clients.for_node(node_id)
        if peer is None or client is None:
            return
        try:
            ping = await client.ping()
        except PeerError:
            ping = {"leaving": True, "boot_id": peer.boot_id}
        if ping.get("leaving") or ping.get("boot_id") != peer.boot_id:
            self._table.goodbye(node_id, now=time.time(), boot_id=peer.boot_id)
            logger.info("peer %s left the mesh", node_id)
        else:
            logger.warning("ignoring a leave notice for %s: it answers and is not leaving", node_id)

    # -- mDNS ---------------------------------------------------------------------------------------------------
    def on_mdns_found(self, summary: txt.Summary, url: str) -> None:
        if self._leaving() or not valid_peer_url(url):
            return
        if summary.key != self._me.key_fingerprint:  # another mesh key, or none: not one of us, never listed
            if summary.node_id not in self._foreign:
                self._foreign.add(summary.node_id)
                mine = f"ours is {self._me.key_fingerprint}" if self._me.key_fingerprint else "this peer has none"
                logger.info("ignoring %s at %s: it has mesh key %s (%s)", summary.node_id, url,
                            summary.key or "none", mine)  # fmt: skip
            return
        peer = self._table.get(summary.node_id)
        is_new = peer is None or peer.url != url or peer.boot_id != summary.boot_id
        self._table.discovered(summary.node_id, url, now=time.time(), boot_id=summary.boot_id)
        if is_new or peer is None or summary.state_version != peer.state_version:
            self._due.add(summary.node_id)
            self._probe_now.set()

    def on_mdns_gone(self, node_id: str) -> None:
        self._table.goodbye(node_id, now=time.time())


def url_host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
