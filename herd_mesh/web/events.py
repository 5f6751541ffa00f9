"""`GET /dashboard/api/events`: a server-sent events stream of what the dashboard shows, sent as it changes.

Each named source (peers with their queues and job progress, settings, the records' change sequence) is read
on every wake-up and sent when it differs from what this stream sent last. A stream wakes when this peer's
state changes (`Changes.notify`: a job queued, a step done, a setting applied) and every `TICK_S` in any case,
which is how changes on other peers, learned by the probes, get out within a fraction of a second. A slow
reader only ever gets the newest version of each source: nothing queues up behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from ..errors import RequestError
from ..services.changes import Changes

TICK_S = 0.25  # every stream re-reads its sources at least this often
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies and the browser from closing an idle stream
RETRY_MS = 2000  # what the browser waits before reconnecting a broken stream
MAX_STREAMS = 32  # streams one peer serves at once; more get 503 (the page then polls)

Source = Callable[[], tuple[Any, Any]]  # -> (what is compared with the last one sent, what is sent)


def frame(event: str, data: Any) -> bytes:
    """One SSE event: a name and one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n".encode()


class LiveEvents:
    def __init__(self, *, sources: Mapping[str, Source], changes: Changes, stopping: Callable[[], bool]) -> None:
        self._sources = dict(sources)
        self._changes = changes
        self._stopping = stopping  # true once the peer leaves: streams end so that it can shut down
        self.open = 0

    def check_room(self) -> None:
        if self.open >= MAX_STREAMS:
            raise RequestError(f"this peer already serves {MAX_STREAMS} event streams; poll the JSON API instead",
                               503)  # fmt: skip

    async def stream(self) -> AsyncIterator[bytes]:
        """Every source at once, then each one again whenever it changed, until the client or the peer goes."""
        wake = self._changes.listen()
        self.open += 1
        sent: dict[str, str] = {}
        last_write = time.monotonic()
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            while not self._stopping():
                for name, source in self._sources.items():
                    key, data = source()
                    digest = json.dumps(key, default=str, sort_keys=True)
                    if sent.get(name) != digest:
                        sent[name] = digest
                        last_write = time.monotonic()
                        yield frame(name, data)
                if time.monotonic() - last_write >= HEARTBEAT_S:
                    last_write = time.monotonic()
                    yield b": still here\n\n"
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), TICK_S)
                if wake.is_set():
                    await asyncio.sleep(0.02)  # let the node rebuild its state document first
        finally:
            self.open -= 1
            self._changes.unlisten(wake)
