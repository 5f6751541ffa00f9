"""Every job this peer took from a client, while it runs and for a while after: what `GET /api/jobs/{id}` and the
dashboard show. Live progress (queue position, step i of n) comes from the queues the peers advertise."""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..core.views import MeshSnapshot
from ..errors import RequestError

KEEP_FINISHED_S = 600.0  # a finished job stays visible this long (seconds)
MAX_JOBS = 2000  # jobs remembered at once, finished ones dropped first
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def request_id(header: str | None, new: str) -> str:
    """The client's `X-Request-Id` when it sent a usable one, else `new`."""
    if header is None or header == "":
        return new
    if not REQUEST_ID_RE.match(header):
        raise RequestError("X-Request-Id must be 1-64 letters, digits, '.', '_', ':' or '-', starting with a "
                           f"letter or digit, got {header[:80]!r}")  # fmt: skip
    return header


@dataclass
class JobRecord:
    id: str
    kind: str
    model: str
    arrived: float = field(default_factory=time.time)
    state: str = "queued"  # queued | running | done | failed
    node: str | None = None
    reason: str = ""  # why it runs where it runs
    error: str | None = None
    finished: float | None = None
    moves: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "model": self.model, "state": self.state, "node": self.node,
                "reason": self.reason or None, "error": self.error, "moves": self.moves,
                "elapsed_s": round((self.finished or time.time()) - self.arrived, 2)}  # fmt: skip


class Jobs:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()

    def start(self, job_id: str, kind: str, model: str) -> JobRecord:
        self._forget_old()
        record = self._jobs[job_id] = JobRecord(job_id, kind, model)
        return record

    def finish(self, job_id: str, *, ok: bool, error: str | None = None) -> None:
        record = self._jobs.get(job_id)
        if record is not None:
            record.state, record.error, record.finished = ("done" if ok else "failed"), error, time.time()

    def get(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    def active(self) -> list[JobRecord]:
        return [r for r in self._jobs.values() if r.finished is None]

    def _forget_old(self) -> None:
        cutoff = time.time() - KEEP_FINISHED_S
        for job_id in [j for j, r in self._jobs.items() if r.finished is not None and r.finished < cutoff]:
            del self._jobs[job_id]
        while len(self._jobs) >= MAX_JOBS:
            self._jobs.popitem(last=False)


def progress(snapshot: MeshSnapshot, job_id: str) -> dict[str, Any] | None:
    """Where the job is in the queues the peers advertise: node, state, position, step, ETA; None if in none."""
    for peer in snapshot.peers:
        image = peer.document.get("image")
        queue = image.get("queue") if isinstance(image, dict) else None
        if not isinstance(queue, dict):
            continue
        running = [j for j in queue.get("running") or [] if isinstance(j, dict)]
        waiting = [j for j in queue.get("waiting") or [] if isinstance(j, dict)]
        for job in running:
            if job.get("job_id") == job_id:
                return _running(peer.node_id, job, snapshot.now)
        ahead = sum(_estimate(j, snapshot.now) for j in running)
        for position, job in enumerate(waiting, start=1):
            if job.get("job_id") == job_id:
                eta = ahead + _number(job.get("estimate_s"))
                return {"state": "queued", "node": peer.node_id, "queue_position": position, "step": 0,
                        "steps": job.get("steps"), "eta_s": round(eta, 1)}  # fmt: skip
            ahead += _number(job.get("estimate_s"))
    return None


def _running(node: str, job: dict[str, Any], now: float) -> dict[str, Any]:
    progress = job.get("progress")
    step, steps = progress if isinstance(progress, list) and len(progress) == 2 else [0, job.get("steps")]
    started = _number(job.get("started_at")) or now
    elapsed = max(0.0, now - started)
    if isinstance(step, int) and isinstance(steps, int) and 0 < step <= steps:
        eta = elapsed / step * (steps - step)
    else:
        eta = _estimate(job, now)
    return {"state": "running", "node": node, "queue_position": 0, "step": step, "steps": steps,
            "eta_s": round(eta, 1)}  # fmt: skip


def _estimate(job: dict[str, Any], now: float) -> float:
    started = _number(job.get("started_at"))
    left = _number(job.get("estimate_s")) - (now - started if started else 0.0)
    return max(0.0, left)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
