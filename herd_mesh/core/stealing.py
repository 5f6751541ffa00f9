"""Late binding: a peer that runs dry takes queued work from a busier one. Pure, like `ranking`.

The thief names a victim (`steal_target`); the victim, which alone knows its queue, decides what to give
(`steal_pick`). A job given away is answered "moved" where it waited, and its entry peer sends it on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .ranking import (
    calibrated,
    eligible,
    expected_completion_s,
    explain,
    load_seconds,
    run_seconds,
    tie_band,
)
from .rng import Rng
from .work import Handover, PeerView, Work

STEAL_IDLE_S = 0.25  # a peer asks for work once its own backlog is below this (seconds)
STEAL_MIN_BACKLOG_S = 0.5  # only ask peers advertising at least this much work (seconds)
STEAL_MIN_GAIN_S = 0.25  # hand a job over only if it finishes at least this much sooner there (seconds)
STEAL_GAIN_FRACTION = 0.1  # ... and at least this share of its finish time here (dimensionless)


def queue_finish_s(here: PeerView, queue: Sequence[Work], running_left_s: float = 0.0) -> list[float]:
    """Seconds from now until each queued job (FIFO) finishes here; a model is loaded once, by its first job.

    The peer advertises the last value (or `running_left_s` when the queue is empty) as its `backlog_s`.
    """
    finish = max(running_left_s, 0.0)
    loaded = set(here.loaded)
    out: list[float] = []
    for work in queue:
        if work.model not in loaded:
            finish += load_seconds(here, work.model)
            loaded.add(work.model)
        finish += run_seconds(here, work)
        out.append(finish)
    return out


def backlog_seconds(here: PeerView, queue: Sequence[Work], running_left_s: float = 0.0) -> float:
    finishes = queue_finish_s(here, queue, running_left_s)
    return finishes[-1] if finishes else max(running_left_s, 0.0)


def steal_target(thief: PeerView, others: Iterable[PeerView], *, rng: Rng) -> str | None:
    """Thief side: the peer to ask for queued work, or None. `thief` is this peer's own fresh view.

    Call it when this peer runs dry and again whenever an advertisement arrives while it is dry. It only
    names the most loaded peer that advertises queued work (more jobs than slots); the victim decides what,
    if anything, to give (`steal_pick`), because only it knows its queue.
    """
    if not thief.accepting or thief.status != "up" or thief.backlog_s > STEAL_IDLE_S:
        return None
    victims = [
        p
        for p in others
        if p.node_id != thief.node_id
        and p.status == "up"
        and len(p.job_ids) > p.slots
        and p.backlog_s >= STEAL_MIN_BACKLOG_S
        and (not thief.installed or p.installed & thief.installed)
    ]
    if not victims:
        return None
    most = max(p.backlog_s for p in victims)
    near = sorted(p.node_id for p in victims if most - p.backlog_s <= tie_band(most))
    return rng.choice(near)


def steal_pick(
    here: PeerView,
    queue: Sequence[Work],
    thief: PeerView,
    *,
    running_left_s: float = 0.0,
    pinned: frozenset[str] = frozenset(),
) -> Handover | None:
    """Victim side: the queued job that gains most by moving to `thief`, if it clearly gains.

    `here` is this peer's own view, `queue` its FIFO queue (running job excluded), `thief` the view the
    thief sent with its request (its real backlog, speeds and resident models) with `transfer_s` set to what
    moving the job costs. `pinned` ids never move (already stolen once), so a job cannot bounce.
    """
    finishes = queue_finish_s(here, queue, running_left_s)
    best: Handover | None = None
    for index, (work, here_s) in enumerate(zip(queue, finishes, strict=True)):
        if work.job_id in pinned or not eligible(thief, work):  # installed, switched on, and room in memory
            continue
        _, calibrated_thief = calibrated([here, thief], work.model)  # an unmeasured thief, judged fairly
        there_s = expected_completion_s(calibrated_thief, work)
        gain = here_s - there_s
        if gain < max(STEAL_MIN_GAIN_S, STEAL_GAIN_FRACTION * here_s):
            continue
        if best is None or gain > best.here_s - best.there_s:
            reason = f"here in {here_s:.1f}s, on {thief.node_id} in {there_s:.1f}s ({explain(thief, work)})"
            best = Handover(work.job_id, index, here_s, there_s, reason)
    return best
