"""One ledger of work this peer sent on and whose target may not advertise it yet, for every kind of work.

Views of other peers are up to a second old, and several peers decide at once; a decider that ignores what it
sent itself piles a burst onto one peer. So each decider counts its own sends (`ranking.rank(sent=...)`):
- a forwarded job counts from the moment it is sent until its answer ends (`open` / `close`);
- a "busy, try X" answer this peer gave as a receiver counts as work on its way to X for `hint_memory_s`,
  long enough for X's next advertisement to show it.

Pure: the clock comes in as `now`.
"""

from __future__ import annotations

from .work import Sent

HINT_MEMORY_S = 3.0  # seconds a "try X" answer counts as work on its way to X (> one advertisement's age)


class Ledger:
    def __init__(self, hint_memory_s: float = HINT_MEMORY_S) -> None:
        self.hint_memory_s = hint_memory_s
        self._open: dict[str, Sent] = {}  # job id -> forwarded, no answer yet
        self._hints: dict[str, Sent] = {}  # job id -> redirected elsewhere by us, at `sent_at`

    def open(self, sent: Sent) -> None:
        self._open[sent.job_id] = sent

    def close(self, job_id: str) -> None:
        self._open.pop(job_id, None)

    def hint(self, sent: Sent) -> None:
        self._hints[sent.job_id] = sent

    def pending(self, now: float) -> list[Sent]:
        """Everything still worth counting at `now`; forgets hints older than `hint_memory_s`."""
        cutoff = now - self.hint_memory_s
        for job_id in [j for j, s in self._hints.items() if s.sent_at < cutoff]:
            del self._hints[job_id]
        return [*self._open.values(), *self._hints.values()]

    def __len__(self) -> int:
        return len(self._open)
