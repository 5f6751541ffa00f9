"""A flag any part of the peer raises when something other peers should know changed (a job queued, a model
loaded): the node rebuilds and re-announces its state soon after."""

from __future__ import annotations

import asyncio
import contextlib


class Changes:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """True when a change came within `timeout_s`; the flag is lowered either way."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)
        changed = self._event.is_set()
        self._event.clear()
        return changed
