"""Requests in flight on this peer (LLM, embeddings, speech-to-text), advertised in its state document.

Other peers' schedulers count them as queue, and every dashboard shows them with their badge.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any


class ActiveRequests:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._items: dict[str, dict[str, Any]] = {}  # job id -> {"job_id", "kind", "model", "started_at"}
        self._on_change = on_change

    @contextlib.contextmanager
    def track(self, job_id: str, kind: str, model: str) -> Iterator[None]:
        """Listed while the block runs; the peer re-advertises on the way in and on the way out."""
        self._items[job_id] = {"job_id": job_id, "kind": kind, "model": model, "started_at": time.time()}
        self._on_change()
        try:
            yield
        finally:
            self._items.pop(job_id, None)
            self._on_change()

    def add_tokens(self, job_id: str, count: int) -> None:
        """A stream passed `count` more tokens (lines or events): shown as "tokens so far". Not a change worth
        announcing on its own: the next rebuild (within a second) carries it."""
        item = self._items.get(job_id)
        if item is not None:
            item["tokens"] = item.get("tokens", 0) + count

    def listing(self) -> list[dict[str, Any]]:
        """Oldest first, as the state document carries them."""
        return [dict(a) for a in sorted(self._items.values(), key=lambda a: (a["started_at"], a["job_id"]))]
