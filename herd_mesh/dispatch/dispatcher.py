"""The one loop that tries peers, for every kind of work: images, LLM chat (streams included), embeddings and
speech-to-text.

    rank -> pick -> run here or forward -> classify the outcome -> update exclusions and the mesh's view
         -> again, or give up with every peer's reason

The decisions (which peer next, what a failure means, what the client hears) are pure, in
`core.attempts.Attempts`; `core.ranking.rank` picks. A `Job` says how its kind of work is ranked and tried, so
the differences between kinds are parameters of this loop, not copies of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from ..core.attempts import Attempts, EngineFailed, Moved, Outcome, Refused, Unreachable, Verdict
from ..core.ledger import Ledger
from ..core.peer_table import PeerTable
from ..core.rng import Rng
from ..core.views import MeshSnapshot
from ..core.work import Choice, Sent, Work
from ..errors import EngineError, JobMoved, PeerRefused, PeerUnreachable, RequestError
from ..mesh.snapshot import MeshView

logger = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Job(Protocol[T_co]):
    """One request of one kind, as the loop drives it."""

    work: Work
    movable: bool  # may be redirected on arrival or stolen while queued

    def rank(self, snapshot: MeshSnapshot, pending: list[Sent], rng: Rng) -> list[Choice]: ...

    def sent(self, snapshot: MeshSnapshot, node_id: str, pending: list[Sent], now: float) -> Sent: ...

    async def here(self, attempts: Attempts, snapshot: MeshSnapshot) -> T_co: ...

    async def there(self, node_id: str, attempts: Attempts, release: Callable[[], None]) -> T_co:
        """Forward to `node_id`; call `release` once the answer has ended (at once, unless it streams on)."""
        ...

    def give_up(self, attempts: Attempts, snapshot: MeshSnapshot) -> RequestError: ...


class Tried(Generic[T]):
    """What the loop returns: the answer, and how it was got."""

    def __init__(self, result: T, attempts: Attempts, choice: Choice, ranked: list[Choice]) -> None:
        self.result = result
        self.attempts = attempts
        self.node = choice.node_id
        self.choice = choice
        self.ranked = ranked  # the ranking the final choice came from: the why of "why there"


def classify(exc: BaseException, node: str) -> Outcome | None:
    """A failed try, translated into what the loop decides on; None for errors that are not a peer's."""
    if isinstance(exc, PeerUnreachable):
        return Unreachable(exc.node_id, exc.message)
    if isinstance(exc, PeerRefused):
        return Refused(node, exc.status, exc.message, exc.reason, exc.redirect_to)
    if isinstance(exc, JobMoved):
        return Moved(node, exc.to, stolen=True)
    if isinstance(exc, EngineError):
        return EngineFailed(node, str(exc))
    return None


class Dispatcher:
    def __init__(
        self,
        *,
        view: MeshView,
        table: PeerTable,
        ledger: Ledger,
        rng: Rng,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._view = view
        self._table = table
        self.ledger = ledger
        self._rng = rng
        self._clock = clock

    @property
    def me(self) -> str:
        return self._view.me

    def snapshot(self) -> MeshSnapshot:
        return self._view.snapshot(self._clock())

    def alive(self, node_id: str) -> bool:
        """False once liveness has marked the peer down: whoever waits on it gives up at once."""
        peer = self._table.get(node_id)
        return peer is not None and peer.status != "down"

    async def run(self, job: Job[T]) -> Tried[T]:
        """Try the best peers in turn until one has answered; the error of `give_up` when none could."""
        attempts = Attempts(movable=job.movable)
        while True:
            now = self._clock()
            snapshot = self._view.snapshot(now)
            pending = self.ledger.pending(now)
            ranked = job.rank(snapshot, pending, self._rng)
            choice = attempts.pick(ranked)
            if choice is None:
                raise job.give_up(attempts, snapshot)
            node = choice.node_id
            logger.debug("%s %s -> %s: %s", job.work.kind, job.work.job_id, node, choice.reason)
            try:
                if node == snapshot.me:
                    result = await job.here(attempts, snapshot)
                else:
                    result = await self._forward(job, snapshot, node, pending, now, attempts)
            except Exception as exc:
                outcome = classify(exc, node)
                if outcome is None:
                    raise
                if attempts.record(outcome) is Verdict.PASS_ON:
                    raise
                if isinstance(outcome, Unreachable):
                    self._table.contact_failed(outcome.node, now=self._clock(), reason=outcome.message)
                continue
            if attempts.failures:
                logger.info("%s %s served by %s after %s", job.work.kind, job.work.job_id, node,
                            "; ".join(f"{f.node}: {f.message}" for f in attempts.failures))  # fmt: skip
            return Tried(result, attempts, choice, ranked)

    async def _forward(
        self, job: Job[T], snapshot: MeshSnapshot, node: str, pending: list[Sent], now: float, attempts: Attempts
    ) -> T:
        job_id = job.work.job_id
        self.ledger.open(job.sent(snapshot, node, pending, now))
        try:
            return await job.there(node, attempts, lambda: self.ledger.close(job_id))
        except BaseException:
            self.ledger.close(job_id)
            raise
