"""Keep request records only as long as the `stats_retention_days` setting says."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..core.units import DAY_S
from ..storage.records import Records
from ..storage.settings_store import SettingsStore

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0  # records are pruned this often, at start, and whenever a setting changes


def cutoff(now: float, retention_days: int) -> float:
    """Records older than this go."""
    return now - retention_days * DAY_S


class Retention:
    def __init__(self, records: Records, settings: SettingsStore) -> None:
        self._records = records
        self._settings = settings
        self._wake = asyncio.Event()

    def settings_changed(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Prune now, then every PRUNE_INTERVAL_S, and again soon after the settings change."""
        while True:
            days = int(self._settings.get("stats_retention_days"))
            try:
                removed = await asyncio.to_thread(self._records.prune, cutoff(time.time(), days))
            except Exception:
                logger.exception("pruning request records failed")
            else:
                if removed:
                    logger.info("pruned %d request records older than %d days", removed, days)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PRUNE_INTERVAL_S)
