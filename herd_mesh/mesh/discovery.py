"""mDNS: announce this peer and watch for others, with python-zeroconf's async API.

Only this module touches zeroconf. It turns records into `(Summary, url)` for the node and reports goodbyes;
liveness is not its job (see `liveness`): cached records outlive crashed peers by an hour.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ..core import txt
from ..core.txt import Summary
from ..core.zeroconf_log import quiet_network_errors
from ..errors import TxtError

logger = logging.getLogger(__name__)

ANNOUNCE_MIN_INTERVAL_S = 1.0  # RFC 6762: the same record at most once per second
RESOLVE_TIMEOUT_MS = 1500

FoundCallback = Callable[[Summary, str], None]
GoneCallback = Callable[[str], None]


# A socket error that says the network is gone (cable out, Wi-Fi off, address removed), not that something broke.
class Discovery:
    def __init__(
        self,
        *,
        mesh: str,
        node_id: str,
        host: str,
        port: int,
        addresses: list[str],
        on_found: FoundCallback,
        on_gone: GoneCallback,
    ) -> None:
        self.mesh = mesh
        self.node_id = node_id
        self.port = port
        self.addresses = addresses
        self._interfaces: InterfaceChoice | list[str] = (
            InterfaceChoice.All if host in ("0.0.0.0", "::", "") else [host]
        )
        self._on_found = on_found
        self._on_gone = on_gone
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._names: dict[str, str] = {}  # service name -> node id, for goodbyes
        self.heard: set[str] = set()  # every peer ever resolved over mDNS (empty: multicast may not work here)
        self._complained: set[str] = set()
        self._last_announce = 0.0
        self._pending: Summary | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._instance = txt.instance_name(node_id, mesh)

    @property
    def service_name(self) -> str:
        return f"{self._instance}.{txt.SERVICE_TYPE}"

    def _service_info(self, summary: Summary) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            txt.SERVICE_TYPE,
            self.service_name,
            addresses=[socket.inet_aton(a) for a in self.addresses if _is_ipv4(a)],
            port=self.port,
            properties=txt.encode(summary),
            server=f"{self._instance.replace('@', '-')}.local.",
        )

    async def start(self, summary: Summary) -> None:
        quiet_network_errors()
        self._azc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        self._browser = AsyncServiceBrowser(self._azc.zeroconf, [txt.SERVICE_TYPE], handlers=[self._on_change])
        self._info = self._service_info(summary)
        # allow_name_change=False: the instance name is the node id, and a duplicate id is a configuration error
        await self._azc.async_register_service(self._info, cooperating_responders=True)
        self._last_announce = time.monotonic()
        logger.info("announced %s over mDNS on %s", self.service_name, ", ".join(self.addresses))

    async def update(self, summary: Summary) -> None:
        """Re-announce, but never the same record more often than once per second."""
        self._pending = summary
        if self._announcer is None or self._announcer.done():
            self._announcer = asyncio.create_task(self._announce_soon())

    async def _announce_soon(self) -> None:
        wait = self._last_announce + ANNOUNCE_MIN_INTERVAL_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        summary, self._pending = self._pending, None
        if summary is None or self._azc is None:
            return
        self._info = self._service_info(summary)
        self._last_announce = time.monotonic()
        try:
            await self._azc.async_update_service(self._info)
        except Exception:  # an interface that vanished must not kill the peer
            logger.exception("mDNS re-announce failed")

    async def stop(self) -> None:
        """Send the goodbye (TTL 0) so other peers drop us at once, then close."""
        if self._azc is None:
            return
        if self._announcer is not None:
            self._announcer.cancel()
        for task in list(self._tasks):
            task.cancel()
        try:
            if self._browser is not None:
                await self._browser.async_cancel()
            await self._azc.async_unregister_all_services()
        except Exception:
            logger.exception("mDNS goodbye failed")
        finally:
            await self._azc.async_close()
            self._azc = None

    # -- browsing ---------------------------------------------------------------------------------------------
    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        """Runs in the event loop and must not block: resolution happens in a task."""
        if state_change is ServiceStateChange.Removed:
            node_id = self._names.pop(name, None)
            if node_id is not None:
                logger.info("mDNS goodbye from %s", node_id)
                self._on_gone(node_id)
            return
        task = asyncio.ensure_future(self._resolve(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        if self._azc is None:
            return
        info = AsyncServiceInfo(txt.SERVICE_TYPE, name)
        if not await info.async_request(self._azc.zeroconf, RESOLVE_TIMEOUT_MS):
            logger.debug("could not resolve %s", name)
            return
        try:
            summary = txt.decode(info.properties)
        except TxtError as exc:
            if name not in self._complained:
                self._complained.add(name)
                logger.warning("ignoring mDNS record %s: %s", name, exc)
            return
        if summary.mesh != self.mesh:
            if name not in self._complained:
                self._complained.add(name)
                logger.info("ignoring %s: it belongs to mesh %r, not %r", summary.node_id, summary.mesh, self.mesh)
            return
        if summary.node_id == self.node_id:
            return
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not addresses or not info.port:
            logger.debug("record %s has no IPv4 address yet", name)
            return
        self._names[name] = summary.node_id
        self.heard.add(summary.node_id)
        self._on_found(summary, f"http://{addresses[0]}:{info.port}")


def _is_ipv4(text: str) -> bool:
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return text.count(".") == 3
