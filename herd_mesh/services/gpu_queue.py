"""The GPU queue: by default one image job at a time per machine, the rest wait in FIFO order.

Its contents (running and waiting jobs with their estimates) are part of the advertised state, so other peers
can compute how long a new job would wait here.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from ..core.work import Work
from ..errors import JobMoved


@dataclass
class QueuedJob:
    """A job in the queue: what it is (`work`), where it came from, and how it is getting on."""

    work: Work
    entry_node: str
    estimate_s: float  # expected run time here (load included), for other peers' arithmetic
    enqueued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    progress: tuple[int, int] | None = None  # (step done, steps), as the engine reports it
    movable: bool = True  # an idle peer may take it while it waits
    visited: frozenset[str] = frozenset()  # peers it left: it never goes back to one
    key: str = ""  # the queue's own key: the job id, made unique if a client sends the same id twice

    def __post_init__(self) -> None:
        self.key = self.key or self.work.job_id

    @property
    def job_id(self) -> str:
        return self.work.job_id

    def to_dict(self, now: float) -> dict[str, Any]:
        elapsed = now - self.started_at if self.started_at else 0.0
        return {
            "job_id": self.job_id,
            "kind": self.work.kind,
            "model": self.work.model,
            "width": self.work.width,
            "height": self.work.height,
            "steps": self.work.steps,
            "entry_node": self.entry_node,
            "estimate_s": round(self.estimate_s, 2),
            "enqueued_at": self.enqueued_at,
            "started_at": self.started_at,
            "progress": list(self.progress) if self.progress else None,
            "remaining_s": round(max(0.0, self.estimate_s - elapsed), 2),
        }


class GpuQueue:
    def __init__(self, slots: int = 1, on_change: Callable[[], None] | None = None) -> None:
        self.slots = slots
        self.running: dict[str, QueuedJob] = {}
        self._waiting: collections.OrderedDict[str, tuple[QueuedJob, asyncio.Future[None]]] = (
            collections.OrderedDict()
        )
        self._on_change = on_change or (lambda: None)

    @property
    def waiting(self) -> list[QueuedJob]:
        return [job for job, _ in self._waiting.values()]

    @property
    def depth(self) -> int:
        return len(self.running) + len(self._waiting)

    def backlog_s(self, now: float | None = None) -> float:
        """Seconds of work ahead of a newly queued job, divided over the slots."""
        now = time.time() if now is None else now
        total = sum(job.to_dict(now)["remaining_s"] for job in self.running.values())
        total += sum(job.estimate_s for job in self.waiting)
        return float(total) / max(1, self.slots)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "slots": self.slots,
            "depth": self.depth,
            "running": [job.to_dict(now) for job in self.running.values()],
            "waiting": [job.to_dict(now) for job in self.waiting],
        }

    @asynccontextmanager
    async def slot(self, job: QueuedJob) -> AsyncIterator[float]:
        """Wait for a free slot in FIFO order; yields the seconds spent waiting. Cancelling leaves the queue."""
        while job.key in self.running or job.key in self._waiting:
            job.key += "+"  # the same job id twice (a client retrying by hand) must not clobber the first
        if len(self.running) < self.slots and not self._waiting:
            self._start(job)
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting[job.key] = (job, future)
            self._on_change()
            try:
                await future
            except asyncio.CancelledError:
                if self._waiting.pop(job.key, None) is None and job.key in self.running:
                    self._finish(job)  # the slot was handed over as we were cancelled: pass it on
                self._on_change()
                raise
        try:
            yield (job.started_at or time.time()) - job.enqueued_at
        finally:
            self._finish(job)

    def _start(self, job: QueuedJob) -> None:
        job.started_at = time.time()
        self.running[job.key] = job
        self._on_change()

    def _finish(self, job: QueuedJob) -> None:
        self.running.pop(job.key, None)
        while self._waiting and len(self.running) < self.slots:
            _, (next_job, future) = self._waiting.popitem(last=False)
            if future.done():
                continue
            self._start(next_job)
            future.set_result(None)
        self._on_change()

    def withdraw(self, job_id: str, to: str = "") -> bool:
        """Take a waiting job out (it is being stolen by idle peer `to`). False when it already started."""
        entry = self._waiting.get(job_id)
        if entry is None:
            return False
        del self._waiting[job_id]
        entry[1].set_exception(JobMoved(job_id, to))
        self._on_change()
        return True

    def progressed(self, job: QueuedJob, step: int, steps: int) -> None:
        """The engine reported a step: advertise it (the dashboard and the jobs API show it)."""
        job.progress = (step, steps)
        self._on_change()
