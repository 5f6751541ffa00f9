"""Carrying an answer back from wherever it runs: held back until it can no longer be retried, then relayed
chunk by chunk, cut only at NDJSON line or SSE event boundaries, and ended with an error event in the stream's own
format if it breaks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..core.api_errors import ends_with_error, stream_error_event
from ..errors import HerdError

logger = logging.getLogger(__name__)
T = TypeVar("T")

LIVENESS_CHECK_S = 0.25  # while waiting for a chunk, how often to look whether that peer went down
MAX_HELD_BYTES = 32 * 1024 * 1024  # an answer that is not streamed is held back (for failover) up to this size


# -- reading an answer, frame by frame -----------------------------------------------------------------------------
RELAYABLE = ("application/json", "application/x-ndjson", "text/event-stream", "text/plain")


def relayable(content_type: str) -> bool:
    """Only data is passed on: a peer answering HTML (or anything else) must not get it run on our origin."""
    return content_type.split(";", 1)[0].strip().lower() in RELAYABLE


def framing(content_type: str) -> bytes | None:
    """The boundary a stream may be cut at: a line for NDJSON, a blank line for SSE, none for whole JSON."""
    content_type = content_type.lower()
    if content_type.startswith("text/event-stream"):
        return b"\n\n"
    if content_type.startswith(("application/x-ndjson", "application/jsonl")):
        return b"\n"
    return None


async def while_alive(work: Awaitable[T], *, alive: Callable[[], bool], fail: Callable[[str], Exception]) -> T:
    """Await `work`, giving up (`fail`) as soon as the peer it waits on is marked down: a Mac that lost power
    sends no reset, and a connection or read timeout long enough for a cold model load would keep the client
    waiting for minutes."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=LIVENESS_CHECK_S)
            if done:
                return task.result()
            if not alive():
                raise fail("the peer went down while answering")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # let it unwind before the caller closes what it was reading


class Reader:
    """Reads an answer's chunks; `head` holds back up to the commit point, `frames` relays the rest."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        delimiter: bytes | None,
        *,
        fail: Callable[[str], Exception],
        alive: Callable[[], bool] | None = None,
        on_frames: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._on_frames = on_frames  # told how many lines/events went by: a stream's tokens, near enough
        self.delimiter = delimiter
        self._fail = fail
        self._alive = alive
        self._carry = b""
        self.done = False

    async def _next(self) -> bytes | None:
        """The next chunk, None at the end; a transport error or a peer gone down raises `fail(reason)`."""
        try:
            if self._alive is None:
                return await anext(self._chunks, None)
            return await while_alive(anext(self._chunks, None), alive=self._alive, fail=self._fail)
        except httpx.HTTPError as exc:
            raise self._fail(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def head(self) -> bytes:
        """Bytes up to the first complete line/event (a stream) or the whole answer (up to MAX_HELD_BYTES)."""
        buf = b""
        while True:
            chunk = await self._next()
            if chunk is None:
                self.done = True
                return buf
            buf += chunk
            if self.delimiter is not None:
                cut = buf.rfind(self.delimiter)
                if cut >= 0:
                    end = cut + len(self.delimiter)
                    self._carry = buf[end:]
                    return buf[:end]
            elif len(buf) > MAX_HELD_BYTES:
                return buf

    async def frames(self) -> AsyncIterator[bytes]:
        """The rest, as it arrives, cut only at a line/event boundary; a partial one at a failure is dropped."""
        while not self.done:
            chunk = await self._next()
            if chunk is None:
                self.done = True
                if self._carry:
                    yield self._carry
                    self._carry = b""
                return
            if self.delimiter is None:
                yield chunk
                continue
            buf = self._carry + chunk
            cut = buf.rfind(self.delimiter)
            if cut < 0:
                self._carry = buf
                continue
            end = cut + len(self.delimiter)
            self._carry = buf[end:]
            if self._on_frames is not None:
                self._on_frames(buf.count(self.delimiter, 0, end))
            yield buf[:end]


@dataclass
class Opened:
    """An answer that started well (HTTP 200): its held-back head, and a reader for the rest."""

    node: str
    model: str
    content_type: str
    head: bytes
    reader: Reader | None  # None: the head is the whole answer
    close: Callable[[], Awaitable[None]]
    attempts: int = 1

    @property
    def complete(self) -> bool:
        return self.reader is None or self.reader.done


async def nothing() -> None:
    return None


class RelayResponse(StreamingResponse):
    """A streaming response whose relay is always closed (upstream released, request recorded), even when the
    client goes away between two chunks."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


def relay_response(
    opened: Opened, *, headers: dict[str, str], on_end: Callable[[str, str | None], None], api: str = "openai"
) -> StreamingResponse:
    """Stream the rest of `opened` to the client. `on_end(status, error)` runs once whatever happens: status is
    "ok", "failed" (the stream broke, or the peer that ran it ended it with an error) or "cancelled". `api`: the
    shape of the error event a broken stream ends with."""
    reader = opened.reader
    assert reader is not None
    delimiter = reader.delimiter
    named = opened.head.startswith(b"event:")  # Anthropic's and the Responses API's SSE name their events

    async def relay() -> AsyncIterator[bytes]:
        status = "cancelled"
        error: str | None = "client disconnected"
        try:
            yield opened.head
            last = opened.head
            async for frame in reader.frames():
                last = frame
                yield frame
            status, error = "ok", None
            if delimiter is not None and ends_with_error(last, delimiter):
                event = last.rstrip(b"\n").rsplit(delimiter, 1)[-1]
                status, error = "failed", event.decode("utf-8", "replace").strip()[:300]  # ended by its runner
        except HerdError as exc:
            status = "failed"
            error = (
                f"the answer from {opened.node} broke off: {exc}; it was not retried elsewhere because part of it "
                "had already been sent"
            )
            logger.warning("%s", error)
            yield stream_error_event(delimiter, error, api=api, named=named)
        finally:
            await opened.close()
            on_end(status, error)

    return RelayResponse(relay(), media_type=opened.content_type, headers=headers)
