"""One HTTP client per peer: probes, state fetches, leave notices, settings, records and forwarded jobs all go
through it. httpx errors are translated here, at the edge, into PeerUnreachable / PeerRefused.

Every call keeps a short connect timeout, however long it may wait for the answer: a peer that cannot accept
a connection within `CONNECT_TIMEOUT_S` is unreachable, and the caller tries another.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from ..core import signing
from ..core.image_request import loads_finite
from ..core.peer_table import PeerTable
from ..core.protocol import Identity
from ..errors import PeerRefused, PeerUnreachable

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 0.8  # a probe slower than this counts as a failure (goal: a cut-off peer not up within 3 s)
CONNECT_TIMEOUT_S = 1.0  # any call: a peer that cannot accept a connection in 1 s is treated as unreachable
STATE_TIMEOUT_S = 3.0
LEAVE_TIMEOUT_S = 0.5
MAX_JSON_BYTES = 1024 * 1024  # a capability document or ping answer larger than this is refused
MAX_ERROR_BYTES = 64 * 1024  # the most of an error answer that is read and passed on
# An idle connection to a peer is kept this long. In a large mesh liveness comes back to a peer only every
# n / MAX_PROBES_PER_ROUND rounds (6 s at 50 peers); httpx's default 5 s would make each of those probes a new
# TCP connection on both sides. Peers keep inbound connections longer (`web/connections.py`), so that the caller,
# not the callee, closes an idle one and never sends on a connection being closed under it.
KEEP_ALIVE_S = 15.0


def timeout(read_s: float) -> httpx.Timeout:
    """A timeout that waits `read_s` for the answer but never long for the connection."""
    return httpx.Timeout(read_s, connect=min(CONNECT_TIMEOUT_S, read_s))


def _unreachable(node_id: str, exc: httpx.HTTPError) -> PeerUnreachable:
    return PeerUnreachable(node_id, f"{type(exc).__name__}: {exc}".rstrip(": "))


Transports = Callable[[], httpx.AsyncBaseTransport]  # makes the transport of each new client
NOT_A_MEMBER = b'{"error": "answered without this mesh\'s key: not a member of this mesh"}'


class MeshAuth(httpx.Auth):
    """Signs every peer call with the mesh key (`core/signing.py`); a streamed body is signed as unsigned."""

    def __init__(self, key: str) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        body = signing.body_hash(request.content) if isinstance(request.stream, httpx.ByteStream) else None
        target = request.url.raw_path.decode("ascii", "replace")
        request.headers[signing.AUTH_HEADER] = signing.auth_value(
            self._key, request.method, target, int(time.time()), secrets.token_hex(16), body or signing.UNSIGNED_BODY
        )
        yield request


def answered_by_member(key: str | None, response: httpx.Response, body: bytes) -> bool:
    """With a mesh key, only an answer signed with it (over our request's nonce) counts as a member's."""
    if key is None:
        return True
    claim = signing.parse(response.request.headers.get(signing.AUTH_HEADER))
    return claim is not None and signing.check_response(
        key, claim.nonce, response.status_code, body, response.headers.get(signing.AUTH_HEADER)
    )


def network_transports(local_address: str | None) -> Transports:
    """Real connections; from `local_address` when the peer listens on one address, so that other peers see
    calls come from the address it advertises (they believe claims only from a caller's own address)."""

    def make() -> httpx.AsyncBaseTransport:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=8, keepalive_expiry=KEEP_ALIVE_S)
        return httpx.AsyncHTTPTransport(local_address=local_address, limits=limits)

    return make


class PeerClient:
    def __init__(
        self,
        node_id: str,
        url: str,
        identity: Identity,
        transport: httpx.AsyncBaseTransport,
        key: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.url = url
        self._key = key
        self._client = httpx.AsyncClient(
            base_url=url,
            headers=identity.headers(),
            timeout=timeout(30.0),
            trust_env=False,  # a corporate proxy must never sit between two Macs on a LAN
            transport=transport,
            auth=MeshAuth(key) if key else None,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(
        self,
        path: str,
        timeout_s: float = 5.0,
        max_bytes: int = MAX_JSON_BYTES,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A JSON object answer, read as a stream and refused beyond `max_bytes` (a peer cannot flood us)."""
        return await self._json_call("GET", path, None, timeout_s, max_bytes, headers or {})

    async def _json_call(
        self,
        method: str,
        path: str,
        body: Any,
        timeout_s: float,
        max_bytes: int = MAX_JSON_BYTES,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        content = None if body is None else json.dumps(body).encode()
        headers = {**(headers or {}), **({} if body is None else {"Content-Type": "application/json"})}
        try:
            async with self._client.stream(
                method, path, content=content, headers=headers, timeout=timeout(timeout_s)
            ) as response:
                raw = await read_capped(response, max_bytes, self.node_id)
        except httpx.HTTPError as exc:
            raise _unreachable(self.node_id, exc) from exc
        if response.status_code == 200 and not answered_by_member(self._key, response, raw):
            raise PeerRefused(self.node_id, 401, NOT_A_MEMBER)
        if response.status_code != 200:
            raise PeerRefused(self.node_id, response.status_code, raw, response.headers.get("content-type", ""))
        try:
            data = loads_finite(raw)
        except (ValueError, RecursionError) as exc:
            raise PeerRefused(self.node_id, 502, b'{"error": "answered with something that is not JSON"}') from exc
        if not isinstance(data, dict):
            raise PeerRefused(self.node_id, 502, b'{"error": "answered with JSON that is not an object"}')
        return data

    async def ping(self) -> dict[str, Any]:
        return await self.get_json("/mesh/ping", PROBE_TIMEOUT_S)

    async def state(self) -> dict[str, Any]:
        return await self.get_json("/mesh/state", STATE_TIMEOUT_S)

    async def leave(self) -> None:
        try:
            await self._client.post("/mesh/leave", timeout=timeout(LEAVE_TIMEOUT_S))
        except httpx.HTTPError as exc:
            logger.debug("leave notice to %s failed: %s", self.node_id, exc)

    async def post_json(self, path: str, body: Any, timeout_s: float) -> dict[str, Any]:
        """POST a JSON body and read a JSON object answer (settings exchange, steal requests)."""
        return await self._json_call("POST", path, body, timeout_s)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        content: bytes | AsyncIterator[bytes],
        headers: dict[str, str],
        timeout_s: float,
    ) -> AsyncIterator[httpx.Response]:
        """A response whose body the caller reads as it comes (jobs, streams). Failures before the headers
        arrive are PeerUnreachable; a non-200 answer is PeerRefused with (up to 64 KB of) its body."""
        request = self._client.build_request(
            method, path, content=content, headers=headers, timeout=timeout(timeout_s)
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _unreachable(self.node_id, exc) from exc
        try:
            if response.status_code != 200:
                body = await read_capped(response, MAX_ERROR_BYTES, self.node_id, truncate=True)
                raise PeerRefused(self.node_id, response.status_code, body, response.headers.get("content-type", ""))
            yield response
        finally:
            await response.aclose()


async def read_capped(response: httpx.Response, max_bytes: int, node_id: str, *, truncate: bool = False) -> bytes:
    """The body, up to `max_bytes`: beyond it, PeerRefused (or, with `truncate`, the first `max_bytes`)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            if truncate:
                return bytes(body[:max_bytes])
            raise PeerRefused(node_id, 502, json.dumps({"error": f"answer larger than {max_bytes} bytes"}).encode())
    return bytes(body)


class PeerClients:
    """The pool: one client per known peer (rebuilt when its address changes), and one per address being
    contacted before its node id is known (static peers, callers' claims)."""

    def __init__(self, identity: Identity, table: PeerTable, transports: Transports, key: str | None = None) -> None:
        self._identity = identity
        self._key = key  # the mesh key: every call is signed with it, and JSON answers must be
        self._table = table
        self._transports = transports  # tests route peers to in-process apps through this seam
        self._by_node: dict[str, PeerClient] = {}
        self._by_url: dict[str, PeerClient] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def for_node(self, node_id: str) -> PeerClient | None:
        """The one client for this peer, or None when it is not (or no longer) in the table."""
        peer = self._table.get(node_id)
        if peer is None:
            return None
        client = self._by_node.get(node_id)
        if client is None or client.url != peer.url:
            if client is not None:
                self._close_later(client)
            client = self._by_url.pop(peer.url, None) or PeerClient(
                node_id, peer.url, self._identity, self._transports(), self._key
            )
            client.node_id = node_id
            self._by_node[node_id] = client
        return client

    def for_url(self, url: str) -> PeerClient:
        client = self._by_url.get(url)
        if client is None:
            client = self._by_url[url] = PeerClient(url, url, self._identity, self._transports(), self._key)
        return client

    async def discard_url(self, url: str) -> None:
        """Forget the client of an address that turned out not to be a peer of ours."""
        client = self._by_url.pop(url, None)
        if client is not None:
            await client.aclose()

    def known(self) -> list[PeerClient]:
        return list(self._by_node.values())

    def _close_later(self, client: PeerClient) -> None:
        task = asyncio.ensure_future(client.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        clients = [*self._by_node.values(), *self._by_url.values()]
        self._by_node.clear()
        self._by_url.clear()
        await asyncio.gather(*(c.aclose() for c in clients), *self._closing, return_exceptions=True)
