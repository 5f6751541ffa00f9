"""A flag any part of the peer raises when something other peers should know changed (a job queued, a model
loaded): the node rebuilds and re-announces its state soon after, and the dashboard's event streams wake."""

from __future__ import annotations

import asyncio
import contextlib


class Changes:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.generation = 0  # counts notifies: what was read since the last one is still current
        self._listeners: set[asyncio.Event] = set()

    def notify(self) -> None:
        self.generation += 1
        self._event.set()
        for listener in self._listeners:
            listener.set()

    def listen(self) -> asyncio.Event:
        """An event of the caller's own, set by every later notify (the node's flag is not shared)."""
        event = asyncio.Event()
        self._listeners.add(event)
        return event

    def unlisten(self, event: asyncio.Event) -> None:
        self._listeners.discard(event)

    async def wait(self, timeout_s: float) -> bool:
        """True when a change came within `timeout_s`; the flag is lowered either way."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)
        changed = self._event.is_set()
        self._event.clear()
        return changed
