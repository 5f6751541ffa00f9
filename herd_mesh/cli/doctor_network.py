"""`herd doctor`'s checks of how this peer meets the others: the mesh key, multicast, the port, the other peers
and how far their clocks are from this one's.

Each check takes what it looks at as an argument (with the real thing as the default), so tests stand it in.
"""

from __future__ import annotations

import email.utils
import errno
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from ..client._common import PROBE_PATH, identity
from ..client._discovery import browse
from ..config import Config
from .doctor_check import PROBE_TIMEOUT_S, Check, Level

MULTICAST_WAIT_S = 3.0
SKEW_WARN_S = 5.0  # the Date header has 1 s resolution: below this, skew is noise
DOCTOR_SERVICE_TYPE = "_herd-doctor._tcp.local."  # not the peers' type: their logs stay quiet


def local_url(cfg: Config) -> str:
    """Where this machine's peer would answer, for a ping: a wildcard host means loopback."""
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "", "::") else cfg.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.port}"


def check_mesh_key(cfg: Config) -> Check:
    """Is the mesh closed to Macs without its key?"""
    from ..core.signing import fingerprint

    if cfg.mesh_key:
        source = "in " + str(cfg.key_file) if cfg.key_file.is_file() else "from --mesh-key or HERD_MESH_KEY"
        return Check("ok", f"mesh key set ({source}; fingerprint {fingerprint(cfg.mesh_key)}): only Macs with it "
                           "are members")  # fmt: skip
    return Check(
        "warn",
        "the mesh is open: anyone on this network can join it, send it work and change its settings",
        "run `herd key generate` on one Mac, `herd key set <key>` on the others (`herd key show` prints it), "
        "then restart the peers",
    )


def multicast_works(host: str, wait_s: float = MULTICAST_WAIT_S) -> bool:
    """Announce a throwaway service on the interface the peer would use; does a browser here see it?"""
    from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

    interfaces: InterfaceChoice | list[str] = InterfaceChoice.All if host in ("0.0.0.0", "", "::") else [host]
    address = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    service_name = f"doctor-{uuid.uuid4().hex[:8]}.{DOCTOR_SERVICE_TYPE}"
    seen = threading.Event()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if name == service_name and state_change is not ServiceStateChange.Removed:
            seen.set()

    announcer = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    listener = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    try:
        browser = ServiceBrowser(listener, DOCTOR_SERVICE_TYPE, handlers=[on_change])
        info = ServiceInfo(
            DOCTOR_SERVICE_TYPE,
            service_name,
            addresses=[socket.inet_aton(address)],
            port=9,
            properties={"doctor": "1"},
        )
        announcer.register_service(info)
        try:
            return seen.wait(wait_s)
        finally:
            browser.cancel()
            announcer.unregister_service(info)
    finally:
        listener.close()
        announcer.close()


def check_multicast(cfg: Config, works: Callable[[str], bool] | None = None) -> Check:
    """Can peers find each other over mDNS here, or is there a `--peer` to fall back on?"""
    if not cfg.mdns:
        if cfg.peers:
            return Check("ok", f"mDNS is off: peers come from --peer ({len(cfg.peers)} given)")
        return Check(
            "warn",
            "mDNS is off and no --peer is given: this peer will find no other",
            "name at least one other peer with --peer http://<mac>:11435",
        )
    try:
        ok = (works or multicast_works)(cfg.host)
    except (OSError, RuntimeError) as exc:
        ok, detail = False, f" ({exc})"
    else:
        detail = ""
    where = "all interfaces" if cfg.host in ("0.0.0.0", "", "::") else cfg.host
    if ok:
        return Check("ok", f"multicast works: this machine saw its own mDNS announcement on {where}")
    level: Level = "warn" if cfg.peers else "fail"
    return Check(
        level,
        f"multicast does not work on {where}{detail}: peers cannot find each other over mDNS",
        "allow mDNS (UDP 5353) in the firewall, or name peers with --peer http://<mac>:11435 "
        "(a network that blocks multicast, a VPN)",
    )


def check_port(cfg: Config, ping: Callable[[str], httpx.Response] | None = None) -> tuple[Check, str | None]:
    """Is the port free? If a herd peer holds it, say so and return its URL."""
    try:
        port_free(cfg.host, cfg.port)
        return Check("ok", f"port {cfg.port} on {cfg.host} is free: `herd` can start a peer here"), None
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return Check(
                "fail",
                f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}",
                "check --host (an address of this machine) and --port",
            ), None
    ping = ping or (lambda u: httpx.get(u + PROBE_PATH, timeout=PROBE_TIMEOUT_S, trust_env=False))
    others: list[str] = []
    wildcard = cfg.host in ("0.0.0.0", "", "::")  # then a peer on any one address of this machine blocks it
    elsewhere = listeners(cfg.port) if wildcard else []
    for url in [local_url(cfg), *(f"http://{a}:{cfg.port}" for a in elsewhere)]:
        try:
            doc = identity(ping(url))
        except httpx.HTTPError:
            continue
        if not isinstance(doc, dict) or not doc.get("node_id"):
            continue
        if doc.get("mesh") == cfg.mesh:
            return Check(
                "ok",
                f"port {cfg.port} is in use by this machine's herd peer {doc['node_id']!r} (mesh {cfg.mesh!r}) "
                f"at {url}: it is running",
            ), url
        others.append(f"{doc['node_id']!r} of mesh {doc.get('mesh')!r}")
    if others:
        return Check(
            "warn",
            f"port {cfg.port} is used by herd peer {', '.join(others)}, not of mesh {cfg.mesh!r}",
            "use the same --mesh on every Mac, or another --port for a second mesh",
        ), None
    return Check(
        "fail",
        f"port {cfg.port} on {cfg.host} is taken by another program",
        "stop that program, or start herd on another port with --port / HERD_PORT",
    ), None


def port_free(host: str, port: int) -> None:
    """Bind and listen as the peer does (`serve.bind_socket`), then let go; OSError when it could not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1)


def listeners(port: int) -> list[str]:
    """Addresses of this machine listening on `port` (empty where the OS does not tell, as macOS without root)."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return []
    found = []
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            address = conn.laddr.ip
            if address in ("0.0.0.0", "::"):
                address = "127.0.0.1"
            found.append(f"[{address}]" if ":" in address else address)
    return sorted(set(found))


@dataclass(frozen=True)
class Seen:
    """Another peer of the mesh, as this machine's peer or mDNS sees it."""

    node_id: str
    url: str
    status: str


def peers_seen(cfg: Config, local: str | None, browse_s: float = 2.5) -> tuple[Check, list[Seen]]:
    """Which other peers are there: from this machine's running peer (`local`), else over mDNS."""
    if local is not None:
        try:
            doc = httpx.get(local + "/mesh/peers", timeout=PROBE_TIMEOUT_S * 2, trust_env=False).json()
            seen = [
                Seen(str(p.get("node_id")), str(p.get("url")), str(p.get("status")))
                for p in doc.get("peers", [])
                if not p.get("self")
            ]
            source = "this machine's peer knows"
        except (httpx.HTTPError, ValueError, AttributeError):
            seen, source = [], ""
    else:
        seen = [Seen(f.node_id, f.url, "up") for f in browse(cfg.mesh, browse_s)]
        source = f"mDNS shows (mesh {cfg.mesh!r})"
    if not seen:
        return Check(
            "warn",
            f"no other peer seen on mesh {cfg.mesh!r}",
            "start `herd` on the other Macs with the same --mesh; where multicast is blocked, name one with --peer",
        ), []
    away = [s for s in seen if s.status != "up"]
    names = ", ".join(f"{s.node_id} ({s.status})" for s in seen)
    if away:
        return Check(
            "warn",
            f"{source} {len(seen)} other peer(s): {names}",
            f"{', '.join(s.node_id for s in away)} cannot be reached: is it asleep, or off the network?",
        ), seen
    return Check("ok", f"{source} {len(seen)} other peer(s): {names}"), seen


def clock_offset(url: str, get: Callable[[str], httpx.Response] | None = None) -> float | None:
    """The peer's clock minus ours, in seconds (its ping's `now` when it sends one, else its Date header)."""
    get = get or (lambda u: httpx.get(u + PROBE_PATH, timeout=PROBE_TIMEOUT_S, trust_env=False))
    before = time.time()
    try:
        response = get(url)
    except httpx.HTTPError:
        return None
    after = time.time()
    theirs: float | None = None
    try:
        doc = identity(response) or response.json()
        if isinstance(doc, dict) and isinstance(doc.get("now"), int | float):
            theirs = float(doc["now"])
    except ValueError:
        pass
    if theirs is None:
        date = response.headers.get("Date")
        if not date:
            return None
        theirs = email.utils.parsedate_to_datetime(date).timestamp() + 0.5  # the header drops the fraction
    return theirs - (before + after) / 2


def check_clocks(seen: Sequence[Seen], offset: Callable[[str], float | None] = clock_offset) -> Check | None:
    """Do the reachable peers' clocks agree with this one? Settings and statistics use timestamps."""
    measured = {s.node_id: offset(s.url) for s in seen if s.status == "up"}
    known = {node: value for node, value in measured.items() if value is not None}
    if not known:
        return None
    off = {node: value for node, value in known.items() if abs(value) > SKEW_WARN_S}
    if off:
        words = ", ".join(f"{node} {value:+.0f} s" for node, value in sorted(off.items()))
        return Check(
            "warn",
            f"clocks differ: {words}",
            "turn on automatic date and time on every Mac (System Settings > General > Date & Time); "
            "settings changes and statistics use timestamps",
        )
    worst = max(abs(v) for v in known.values())
    return Check("ok", f"clocks agree with {len(known)} peer(s) (within {max(worst, 1.0):.0f} s)")
