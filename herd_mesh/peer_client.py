"""One HTTP client per peer: probes, state fetches, leave notices and forwarded jobs all go through it.

httpx errors are translated here, at the edge, into PeerUnreachable / PeerRefused.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import PeerRefused, PeerUnreachable

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 0.8  # a probe slower than this counts as a failure (goal: a cut-off peer not up within 3 s)
CONNECT_TIMEOUT_S = 1.0  # for jobs: a peer that cannot accept a connection in 1 s is treated as unreachable
LEAVE_TIMEOUT_S = 0.5

# Headers a peer puts on every call to another peer, so the callee learns about the caller (symmetric static
# meshes) and a forwarded job is never forwarded again.
H_NODE = "X-Herd-Node"
H_MESH = "X-Herd-Mesh"
H_URL = "X-Herd-Url"
H_BOOT = "X-Herd-Boot"
H_FORWARDED = "X-Herd-Forwarded"  # set on a job one peer hands to another: run it here, do not route
H_REDIRECTABLE = "X-Herd-Redirectable"  # the receiver may answer "busy, try X" once
H_JOB = "X-Herd-Job"


@dataclass(frozen=True)
class Identity:
    node_id: str
    mesh: str
    url: str
    boot_id: str

    def headers(self) -> dict[str, str]:
        return {H_NODE: self.node_id, H_MESH: self.mesh, H_URL: self.url, H_BOOT: self.boot_id}


def _error_text(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    try:
        body = response.json()
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return (response.text[:300] or f"HTTP {response.status_code}"), {}
    if isinstance(body, dict):
        return str(body.get("error") or f"HTTP {response.status_code}"), body
    return f"HTTP {response.status_code}", {}


class PeerClient:
    def __init__(self, node_id: str, url: str, identity: Identity) -> None:
        self.node_id = node_id
        self.url = url
        self._client = httpx.AsyncClient(
            base_url=url,
            headers=identity.headers(),
            timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=8),
            trust_env=False,  # a corporate proxy must never sit between two Macs on a LAN
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get_json(self, path: str, timeout: float) -> dict[str, Any]:
        try:
            response = await self._client.get(path, timeout=timeout)
        except httpx.HTTPError as exc:
            raise PeerUnreachable(self.node_id, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if response.status_code != 200:
            reason, body = _error_text(response)
            raise PeerRefused(self.node_id, reason, response.status_code, body)
        try:
            data = response.json()
        except ValueError as exc:
            raise PeerRefused(self.node_id, "answered with something that is not JSON", 502) from exc
        if not isinstance(data, dict):
            raise PeerRefused(self.node_id, "answered with JSON that is not an object", 502)
        return data

    async def ping(self) -> dict[str, Any]:
        return await self._get_json("/mesh/ping", PROBE_TIMEOUT_S)

    async def state(self) -> dict[str, Any]:
        return await self._get_json("/mesh/state", 3.0)

    async def get_json(self, path: str, timeout: float = 5.0) -> dict[str, Any]:
        return await self._get_json(path, timeout)

    async def leave(self) -> None:
        try:
            await self._client.post("/mesh/leave", timeout=LEAVE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            logger.debug("leave notice to %s failed: %s", self.node_id, exc)

    async def post(self, path: str, *, content: bytes, headers: dict[str, str], timeout: float) -> httpx.Response:
        """A whole request and response (image jobs). Any transport failure is PeerUnreachable."""
        try:
            return await self._client.post(path, content=content, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise PeerUnreachable(self.node_id, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, content: bytes, headers: dict[str, str], timeout: float
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response (LLM tokens). Failures before the headers arrive are PeerUnreachable."""
        request = self._client.build_request(method, path, content=content, headers=headers, timeout=timeout)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise PeerUnreachable(self.node_id, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        try:
            yield response
        finally:
            await response.aclose()


def refusal(node_id: str, response: httpx.Response) -> PeerRefused:
    reason, body = _error_text(response)
    return PeerRefused(node_id, reason, response.status_code, body)
