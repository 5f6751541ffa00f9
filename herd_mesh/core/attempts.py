"""The decisions of the one attempt loop, for every kind of work: which peer to try next, what a failed try
means, and what the client hears when every peer failed.

`dispatch.dispatcher` runs the loop (rank, pick, forward or run here, classify, update, give up); this module
holds its state and rules, with no I/O, so the simulator in `benchmarks/` replays the very same decisions.

What differs between kinds of work is a parameter, not a copy: a job that may be `movable` (images) can be
answered "busy, try X" on arrival or stolen while it waits, and then it goes to X once; a stream may only
fail over before its first byte, which holds because the loop ends as soon as a peer starts answering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import Reason, RequestError
from .work import Choice

CAPACITY = frozenset(
    {Reason.BUSY, Reason.MOVED, Reason.DISABLED, Reason.NOT_INSTALLED, Reason.NO_ENGINE, Reason.OVERLOADED,
     Reason.NO_ROOM}
)  # fmt: skip  # refusals another peer may not share
RETRY_AFTER_S = 5  # what a client is told to wait when every peer is busy (seconds)
MAX_TRIES = 4  # peers tried for one request before giving up (moves to a better peer do not count)
MAX_MOVES = 3  # redirects and steals of one job: it may move more than once, never back, and not forever
SETTINGS_CURL = (
    "curl -X POST http://localhost:11435/dashboard/api/settings -H 'Content-Type: application/json' "
    "-d '{{\"{setting}\": true}}'"
)


# -- what a try can end with -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unreachable:
    """No answer: connection refused or timed out, reset, or the peer went down while we waited."""

    node: str
    message: str


@dataclass(frozen=True)
class Refused:
    """The peer answered with an error status; `reason` is its machine-readable code, if it sent one."""

    node: str
    status: int
    message: str
    reason: Reason | None = None
    redirect_to: str | None = None

    @property
    def passes_on(self) -> bool:
        """A client mistake (400, 413, 422, bad audio...) that no other peer would answer differently: the client
        gets it as the peer wrote it. Capacity answers (busy, off, not installed, 404, 429) and 5xx are retried."""
        return self.status < 500 and self.status not in (404, 429) and self.reason not in CAPACITY


@dataclass(frozen=True)
class EngineFailed:
    """This peer's own engine failed the job."""

    node: str
    message: str


@dataclass(frozen=True)
class Moved:
    """The job goes from `node` to a better peer `to`: answered "busy, try `to`" on arrival, or (`stolen`) taken
    out of `node`'s queue by idle `to`."""

    node: str
    to: str
    stolen: bool = False


Outcome = Unreachable | Refused | EngineFailed | Moved


class Verdict(Enum):
    RETRY = "retry"  # try the next peer
    PASS_ON = "pass-on"  # stop: the client gets this refusal as it was written


@dataclass(frozen=True)
class Failure:
    node: str
    message: str
    status: int | None = None
    reason: Reason | None = None

    def to_json(self) -> dict[str, str]:
        out = {"node": self.node, "reason": self.message}
        if self.status is not None:
            out["status"] = str(self.status)
        return out


# -- the loop's state ------------------------------------------------------------------------------------------
@dataclass
class Attempts:
    """One request's way through the mesh: the peers tried, why each failed, and where to go next."""

    movable: bool = True  # may be redirected on arrival or stolen while queued (image jobs)
    max_tries: int = MAX_TRIES
    tries: int = 0  # peers asked to do the job, moves excluded
    moves: int = 0  # redirects and steals
    failures: list[Failure] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)  # not to be tried again in this loop
    left: set[str] = field(default_factory=set)  # peers whose queue it left: it never goes back to one
    prefer: str | None = None  # the peer a move named

    def pick(self, ranked: Sequence[Choice]) -> Choice | None:
        """The next peer to try, best first, never one tried before; None when the loop must give up."""
        if self.tries >= self.max_tries:
            return None
        candidates = [c for c in ranked if c.node_id not in self.excluded]
        if not candidates:
            return None
        choice = next((c for c in candidates if c.node_id == self.prefer), candidates[0])
        self.prefer = None
        self.tries += 1
        return choice

    def record(self, outcome: Outcome) -> Verdict:
        """Learn from a try that did not produce the answer."""
        self.excluded.add(outcome.node)
        if isinstance(outcome, Refused) and outcome.reason in (Reason.BUSY, Reason.MOVED) and outcome.redirect_to:
            outcome = Moved(outcome.node, outcome.redirect_to, stolen=outcome.reason is Reason.MOVED)
        if isinstance(outcome, Moved):
            self.tries -= 1  # going where the job finishes sooner is not a failure
            self.moves += 1
            if outcome.stolen:
                self.left.add(outcome.node)
            if outcome.to not in self.avoid:  # a move never sends it back to a peer that failed it
                self.excluded.discard(outcome.to)  # a peer that was busy when asked may take it now it is idle
                self.prefer = outcome.to
            self.movable = self.moves < MAX_MOVES  # more than once, never back to a queue it left, not forever
            return Verdict.RETRY
        if isinstance(outcome, Refused):
            if outcome.passes_on:
                return Verdict.PASS_ON
            self.failures.append(Failure(outcome.node, outcome.message, outcome.status, outcome.reason))
        elif isinstance(outcome, Unreachable):
            self.failures.append(Failure(outcome.node, f"unreachable: {outcome.message}"))
        else:
            self.failures.append(Failure(outcome.node, outcome.message))
        # The peers whose queue the job left gave it away; they did not fail it. Now that the peer it went to has
        # failed (cut off by a partition, say), going back to one is failover, not ping-pong: without this, an
        # entry peer whose job an idle peer took would give up while it could still run the job itself.
        self.excluded -= self.left - {f.node for f in self.failures}
        self.left.clear()
        return Verdict.RETRY

    @property
    def avoid(self) -> frozenset[str]:
        """Peers a move must not name: the queues the job left, and the peers that failed it (not only busy)."""
        return frozenset(self.left | {f.node for f in self.failures if f.reason is not Reason.BUSY})

    @property
    def attempts(self) -> int:
        """Tries so far (1 when the first peer asked served it)."""
        return max(self.tries, 1)

    def report(self) -> list[dict[str, str]]:
        return [f.to_json() for f in self.failures]

    def give_up(self, *, what: str, model: str, setting: str | None, available: Sequence[str] = ()) -> RequestError:
        """What the client hears when no peer could do the job, with every peer's reason."""
        report = self.report()
        if not self.failures:
            return RequestError(f"no peer that is up can serve {what} for {model or 'this request'} right now",
                                503, attempts=[])  # fmt: skip
        if setting is not None and all(f.reason is Reason.DISABLED for f in self.failures):
            return switched_off(what, setting, attempts=report)
        summary = "; ".join(f"{f.node}: {f.message}" for f in self.failures)
        statuses = {f.status for f in self.failures}
        if statuses <= {404}:
            return RequestError(
                f"model {model!r} was not found on the peers that advertised it ({summary}); "
                f"models: {', '.join(available) or 'none'}", 404, available=list(available), attempts=report,
            )  # fmt: skip
        if statuses <= {404, 429, 503}:
            return RequestError(f"every peer that can serve {model or what} is busy or off ({summary}); "
                                "retry in a moment", 503, retry_after=RETRY_AFTER_S, attempts=report)  # fmt: skip
        return RequestError(f"{what} failed on every peer tried ({summary})", 502, attempts=report)


def switched_off(what: str, setting: str, **fields: Any) -> RequestError:
    """The one "switched off" answer, with the command that turns it back on."""
    return RequestError(
        f"{what} is switched off; turn it on with `herd settings set {setting} true`, or: "
        f"{SETTINGS_CURL.format(setting=setting)} (a mesh with a key also needs -H 'Authorization: Bearer <key>')",
        503,
        reason=Reason.DISABLED,
        **fields,
    )
