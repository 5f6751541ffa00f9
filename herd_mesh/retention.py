"""Keep request records only as long as the `stats_retention_days` setting says, on every peer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import Node

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0  # records are pruned this often, at start, and whenever a setting changes
DAY_S = 86400.0


def cutoff(now: float, retention_days: int) -> float:
    """Records older than this go."""
    return now - retention_days * DAY_S


async def keep_pruned(node: Node) -> None:
    """Prune now, then every PRUNE_INTERVAL_S, and again soon after the settings change."""
    wake = asyncio.Event()
    node.settings_sync.listeners.append(wake.set)
    while True:
        records = node.records
        if records is not None:
            days = int(node.settings.get("stats_retention_days"))
            try:
                removed = await asyncio.to_thread(records.prune, cutoff(time.time(), days))
            except Exception:
                logger.exception("pruning request records failed")
            else:
                if removed:
                    logger.info("pruned %d request records older than %d days", removed, days)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), PRUNE_INTERVAL_S)
