"""One background thread for disk writes, so SQLite inserts and file saves never block the event loop."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Writer:
    """Runs submitted writes in order on one daemon thread; `flush` waits until all have run."""

    def __init__(self, name: str = "herd-writer") -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def submit(self, write: Callable[[], None]) -> None:
        if self._closed:
            write()  # after close (shutdown paths): write in the caller's thread rather than lose it
            return
        self._queue.put(write)

    def flush(self) -> None:
        if not self._closed:
            self._queue.join()

    def close(self) -> None:
        if self._closed:
            return
        self._queue.put(None)
        self._thread.join()
        self._closed = True

    def _run(self) -> None:
        while True:
            write = self._queue.get()
            try:
                if write is None:
                    return
                write()
            except Exception:  # a failed write is logged; the next one still runs
                logger.exception("a background disk write failed")
            finally:
                self._queue.task_done()
