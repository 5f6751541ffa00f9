"""One background thread for disk writes, so SQLite inserts and file saves never block the event loop.

Writes are coalesced: the thread wakes at most once per `BATCH_DELAY_S` and runs everything submitted since, in
order. Waking a thread for every record of a relayed request cost 9 % of a relaying peer's time
(docs/benchmarks-profile.md); a submit is now an append under a lock.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

BATCH_DELAY_S = 0.2  # how long a write may wait for others to join it


class Writer:
    """Runs submitted writes in order on one daemon thread; `flush` waits until all have run."""

    def __init__(self, name: str = "herd-writer", delay_s: float = BATCH_DELAY_S) -> None:
        self._pending: deque[Callable[[], object]] = deque()
        self._lock = threading.Condition()
        self._delay_s = delay_s
        self._busy = False  # a batch is running
        self._urgent = False  # flush() or close() is waiting: no delay
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], object]) -> None:
        if self._closed:
            write()  # after close (shutdown paths): write in the caller's thread rather than lose it
            return
        with self._lock:
            self._pending.append(write)
            if len(self._pending) == 1:
                self._lock.notify()

    def flush(self) -> None:
        """Wait until every write submitted so far has run."""
        if self._closed:
            return
        with self._lock:
            self._urgent = True
            self._lock.notify_all()
            while self._pending or self._busy:
                self._lock.wait()
            self._urgent = False

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            self._stopping = self._urgent = True
            self._lock.notify_all()
        self._thread.join()
        self._closed = True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()
                if not self._pending and self._stopping:
                    return
                if not self._urgent:  # let more writes join this batch
                    self._lock.wait(self._delay_s)
                batch = list(self._pending)
                self._pending.clear()
                self._busy = True
            for write in batch:
                try:
                    write()
                except Exception:  # a failed write is logged; the next one still runs
                    logger.exception("a background disk write failed")
            with self._lock:
                self._busy = False
                self._lock.notify_all()
