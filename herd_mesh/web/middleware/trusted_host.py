"""421 for any Host this peer does not answer to: a web page on a name that an attacker re-points at this Mac
(DNS rebinding) would otherwise read and steer it as if it were its own origin."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from .responses import header, send_json_error


def host_name(value: str) -> str:
    """`Host` without its port, lower case; an IPv6 literal without its brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class TrustedHostMiddleware:
    """`names`: every name and address the peer answers to. An IP literal of this machine is always fine (an
    address cannot be rebound); `local_addresses` is asked again for one not seen yet (DHCP, a new interface)."""

    def __init__(self, app: ASGIApp, *, names: Iterable[str], local_addresses: Callable[[], Iterable[str]]) -> None:
        self.app = app
        self.names = {host_name(n) for n in names}
        self._local_addresses = local_addresses
        self._addresses = {host_name(a) for a in local_addresses()}

    def allowed(self, name: str) -> bool:
        if name in self.names or name in self._addresses:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        self._addresses = {host_name(a) for a in self._local_addresses()}
        return name in self._addresses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            value = header(scope["headers"], b"host")
            if value is not None and not self.allowed(host_name(value)):
                message = (f"this peer does not answer to the name {host_name(value)!r}; use its address or host "
                           "name, or allow the name with --allow-host")  # fmt: skip
                await send_json_error(send, 421, message)
                return
        await self.app(scope, receive, send)
