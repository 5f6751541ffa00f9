"""429 when one client address has too many requests in flight: a single misbehaving client (or a script run
twice) cannot take every slot of a peer. Other peers of the mesh are exempt: they forward work on behalf of
many clients."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from .responses import send_json_error

MAX_IN_FLIGHT_PER_CLIENT = 64  # requests one address may have open at once
RETRY_AFTER_S = 2


class ClientLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, is_peer: Callable[[str], bool], limit: int = MAX_IN_FLIGHT_PER_CLIENT
    ) -> None:
        self.app = app
        self._is_peer = is_peer
        self.limit = limit
        self._in_flight: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        host = client[0] if scope["type"] == "http" and client else None
        if host is None or self._is_peer(host):
            await self.app(scope, receive, send)
            return
        if self._in_flight[host] >= self.limit:
            message = f"{host} already has {self.limit} requests in flight here; wait for some to finish"
            await send_json_error(send, 429, message, {"Retry-After": str(RETRY_AFTER_S)})
            return
        self._in_flight[host] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._in_flight[host] -= 1
            if not self._in_flight[host]:
                del self._in_flight[host]
