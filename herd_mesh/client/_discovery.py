"""Finding peers for a client: a short mDNS browse for `<node>@<mesh>._herd-mesh._tcp.local.` records.

Peers on this machine come first (a local peer routes to the others anyway, with nothing to cross the LAN),
then the least loaded by what the TXT record says (`q`: image jobs queued, `cpu`).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core import txt
from ..core.zeroconf_log import quiet_network_errors
from ..errors import TxtError

RESOLVE_TIMEOUT_MS = 800
LOCAL_SETTLE_S = 0.3  # after the first local peer, wait this long for others on this machine, then stop


@dataclass(frozen=True)
class Found:
    """A peer seen over mDNS (or probed directly), with the load its record advertised."""

    node_id: str
    url: str
    local: bool  # an address of this machine
    queue: int = 0
    cpu: int = 0
    key: str = ""  # the fingerprint of its mesh key ("" in an open mesh)


def local_addresses() -> set[str]:
    """This machine's IPv4/IPv6 addresses (loopback included)."""
    import psutil

    found = {"127.0.0.1", "::1"}
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                found.add(addr.address.split("%", 1)[0])
    return found


def is_local_url(url: str, addresses: set[str] | None = None) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        return False
    return host in (addresses if addresses is not None else local_addresses())


def rank(found: list[Found]) -> list[Found]:
    """This machine's peers first, then the least loaded."""
    return sorted(found, key=lambda f: (not f.local, f.queue, f.cpu, f.node_id))


def browse(
    mesh: str, timeout: float = 2.0, *, exclude: frozenset[str] = frozenset(), key: str | None = None
) -> list[Found]:
    """Peers of `mesh` seen within `timeout` seconds, best first; stops early once this machine's peer is seen.
    With `key` (this Mac's mesh key fingerprint), only the peers with that key: a Mac without it, even one
    calling itself part of the mesh, is never used.

    Runs in a worker thread: zeroconf's blocking API refuses to run in a thread that has an event loop."""
    with ThreadPoolExecutor(1, thread_name_prefix="herd-browse") as pool:
        found = pool.submit(_browse, mesh, timeout, exclude).result()
    return found if key is None else [f for f in found if f.key == key]


def _browse(mesh: str, timeout: float, exclude: frozenset[str]) -> list[Found]:
    from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

    quiet_network_errors()  # no Wi-Fi: one line from zeroconf, not a traceback in the user's script

    names: list[str] = []
    lock = threading.Lock()
    arrived = threading.Event()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            with lock:
                names.append(name)
            arrived.set()

    mine = local_addresses()
    found: dict[str, Found] = {}
    deadline = time.monotonic() + timeout
    first_local: float | None = None
    zc = Zeroconf(ip_version=IPVersion.V4Only)
    try:
        browser = ServiceBrowser(zc, txt.SERVICE_TYPE, handlers=[on_change])
        try:
            seen: set[str] = set()
            while True:
                now = time.monotonic()
                stop = deadline if first_local is None else min(deadline, first_local + LOCAL_SETTLE_S)
                if now >= stop:
                    break
                arrived.wait(min(0.1, stop - now))
                arrived.clear()
                with lock:
                    fresh = [n for n in names if n not in seen]
                for name in fresh:
                    seen.add(name)
                    peer = _resolve(zc, name, mesh, mine)
                    if peer is None or peer.url in exclude:
                        continue
                    found[peer.node_id] = peer
                    if peer.local and first_local is None:
                        first_local = time.monotonic()
        finally:
            browser.cancel()
    finally:
        zc.close()
    return rank(list(found.values()))


def _resolve(zc: object, name: str, mesh: str, mine: set[str]) -> Found | None:
    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    assert isinstance(zc, Zeroconf)
    info = ServiceInfo(txt.SERVICE_TYPE, name)
    if not info.request(zc, RESOLVE_TIMEOUT_MS):
        return None
    try:
        summary = txt.decode(info.properties)
    except TxtError:
        return None
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if summary.mesh != mesh or not addresses or not info.port:
        return None
    local = [a for a in addresses if a in mine or a.startswith("127.")]
    address = (local or addresses)[0]
    return Found(summary.node_id, f"http://{address}:{info.port}", bool(local), summary.queue, summary.cpu_percent,
                 summary.key)  # fmt: skip
