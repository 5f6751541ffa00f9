"""This machine's Ollama, the LLM engine: the one HTTP client to it. httpx errors become BackendUnavailable
here, at the edge."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ..errors import BackendUnavailable

POLL_TIMEOUT_S = 3.0  # one poll request (seconds)
CONNECT_TIMEOUT_S = 2.0  # a local Ollama that does not accept a connection in 2 s is not running
READ_TIMEOUT_S = 600.0  # the longest silence inside a response: a cold load of a big model takes minutes


class OllamaClient:
    """The one HTTP client to the local Ollama; httpx errors become BackendUnavailable here."""

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self._client = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=8),
            trust_env=False,  # never send local traffic through a proxy
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(self, path: str, timeout: float = POLL_TIMEOUT_S) -> dict[str, Any]:
        try:
            response = await self._client.get(path, timeout=timeout)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"Ollama at {self.url} did not answer: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise BackendUnavailable(f"Ollama at {self.url} answered {path} with HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise BackendUnavailable(f"Ollama at {self.url} answered {path} with something that is not JSON") from exc
        if not isinstance(data, dict):
            raise BackendUnavailable(f"Ollama at {self.url} answered {path} with JSON that is not an object")
        return data

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, content: bytes | AsyncIterator[bytes], content_type: str, method: str = "POST"
    ) -> AsyncIterator[httpx.Response]:
        """POST (or `method`: Ollama deletes a model with DELETE) and yield the response as soon as its headers
        arrive; the body is read by the caller."""
        request = self._client.build_request(method, path, content=content, headers={"Content-Type": content_type})
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"Ollama at {self.url} is not reachable: {type(exc).__name__}: {exc}") from exc
        try:
            yield response
        finally:
            await response.aclose()
