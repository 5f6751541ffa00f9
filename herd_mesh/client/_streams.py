"""Streamed chat answers: iterate for the text as it is written; the stream closes itself at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import httpx

from ..errors import PeerUnreachable
from ._common import chat_chunk


class ChatStream:
    """The text of a chat answer, chunk by chunk (`for text in client.chat(..., stream=True)`).

    `node` is the Mac answering; after the last chunk `done_reason` says why it stopped. Leaving the loop
    early? Call `close()` or use the stream in a `with` block."""

    def __init__(self, response: httpx.Response, model: str) -> None:
        self._response = response
        self._lines: Iterator[str] = response.iter_lines()
        self.model = model
        self.node: str | None = response.headers.get("X-Fleet-Node")
        self.done_reason: str | None = None
        self.content = ""  # everything received so far

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        try:
            for line in self._lines:
                text, done, reason = chat_chunk(line)
                if done:
                    self.done_reason = reason
                if text:
                    self.content += text
                    return text
                if done:
                    break
        except httpx.TransportError as exc:
            self.close()
            raise PeerUnreachable(self.node or "peer", f"the chat stream broke ({type(exc).__name__})") from exc
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopIteration

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncChatStream:
    """`async for text in await client.chat(..., stream=True)`; see `ChatStream`."""

    def __init__(self, response: httpx.Response, model: str) -> None:
        self._response = response
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self.model = model
        self.node: str | None = response.headers.get("X-Fleet-Node")
        self.done_reason: str | None = None
        self.content = ""

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> str:
        try:
            async for line in self._lines:
                text, done, reason = chat_chunk(line)
                if done:
                    self.done_reason = reason
                if text:
                    self.content += text
                    return text
                if done:
                    break
        except httpx.TransportError as exc:
            await self.aclose()
            raise PeerUnreachable(self.node or "peer", f"the chat stream broke ({type(exc).__name__})") from exc
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        await self._response.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
