"""The `storage` section of this peer's state document: its records file (id and change sequence, so other
peers pull the rows they lack) and how full the disk of its data dir is (for the health advice)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ..storage.records import Records

logger = logging.getLogger(__name__)

DISK_SAMPLE_S = 60.0  # the disk is measured this often: free space moving must not bump the state every second
GB = 1024**3


class StorageState:
    name = "storage"

    def __init__(self, records: Records, data_dir: Path) -> None:
        self._records = records
        self._data_dir = data_dir
        self._disk: dict[str, float] | None = None
        self._disk_at = -DISK_SAMPLE_S

    def _disk_usage(self) -> dict[str, float] | None:
        now = time.monotonic()
        if now - self._disk_at >= DISK_SAMPLE_S:
            self._disk_at = now
            try:
                usage = shutil.disk_usage(self._data_dir)
            except OSError as exc:
                logger.debug("cannot measure the disk of %s: %s", self._data_dir, exc)
                self._disk = None
            else:
                self._disk = {"free_gb": round(usage.free / GB, 1), "total_gb": round(usage.total / GB, 1)}
        return self._disk

    def state(self) -> dict[str, Any]:
        return {
            "records": {"db": self._records.db_id, "seq": self._records.seq},
            "data_dir": self._disk_usage(),
        }

    def summary(self) -> dict[str, Any]:
        return {}

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
