"""Where an image job should run: the peer with the smallest expected completion time, corrected for stale views.

Pure: frozen snapshots in, decisions out; the clock and the randomness are parameters. The peer and
`benchmarks/scheduler.py` both call this module, so what the simulator measured is what runs.

Three corrections for stale, simultaneous decisions (chosen with the simulator, see docs/benchmarks.md):
- the decider adds the work it sent itself that a peer's advertisement does not show yet (`unseen_backlog_s`);
- the receiver re-checks with its real queue and may answer "busy, try X" once (`redirect_target`);
- a peer that runs dry takes queued work from a busier one (`steal_target` on the thief, `steal_pick` on the
  victim), which repairs whatever imbalance the first two leave.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from herd_mesh import speed

UNKNOWN_PEER_FACTOR = 0.25  # speed assumed for a peer that advertises no figure for a model (x M3 Ultra)
TIE_FRACTION = 0.02  # completion times within 2% of each other count as a tie (dimensionless)
TIE_S = 0.01  # ... or within 10 ms (seconds), for near-zero times
MAX_REDIRECTS = 1  # a job is redirected at most this often on arrival, so it can never ping-pong
REDIRECT_FRACTION = 0.5  # redirect only if elsewhere finishes at least this share sooner (dimensionless)
REDIRECT_MIN_S = 1.0  # ... and at least this many seconds sooner (seconds)
SENT_TTL_S = 3.0  # a Sent older than this is forgotten: every advertisement since shows it (seconds, > ad age)
STEAL_IDLE_S = 0.25  # a peer asks for work once its own backlog is below this (seconds)
STEAL_MIN_BACKLOG_S = 0.5  # only ask peers advertising at least this much work (seconds)
STEAL_MIN_GAIN_S = 0.25  # hand a job over only if it finishes at least this much sooner there (seconds)
STEAL_GAIN_FRACTION = 0.1  # ... and at least this share of its finish time here (dimensionless)

_STATUS_ORDER = {"up": 0, "suspect": 1}  # "down" (or anything else) is never picked


@dataclass(frozen=True)
class ImageWork:
    model: str
    width: int
    height: int
    steps: int
    job_id: str = ""

    def megapixel_steps(self) -> float:
        return self.width * self.height / 1e6 * self.steps


@dataclass(frozen=True)
class PeerView:
    """One peer as the decider sees it: its own advertisement, possibly a second old."""

    node_id: str
    status: str = "up"  # "up" | "suspect" | "down"
    is_self: bool = False
    accepting: bool = True  # image generation switched on there
    installed: frozenset[str] = frozenset()  # models it can run
    cached: frozenset[str] = frozenset()  # weights already on disk (else a download, minutes)
    loaded: frozenset[str] = frozenset()  # resident in memory now (no load time)
    ms_per_mp_step: Mapping[str, float] = field(default_factory=dict)  # measured, per model
    prior_ms_per_mp_step: Mapping[str, float] = field(default_factory=dict)  # hardware prior, per model
    load_s: Mapping[str, float] = field(default_factory=dict)  # measured load seconds per model
    prior_load_s: float = 15.0  # seconds, when no load was measured
    download_s: float = 900.0  # seconds to fetch weights that are not cached
    backlog_s: float = 0.0  # advertised seconds of image work there, all slots together (running rest + queued)
    job_ids: frozenset[str] = frozenset()  # ids of jobs it advertised as running/queued
    slots: int = 1
    transfer_s: float = 0.0  # request + PNG over the network (0 for self)


@dataclass(frozen=True)
class Sent:
    """A job this decider dispatched and has no answer for yet; `model` lets a queued cold load count once."""

    job_id: str
    node_id: str
    seconds: float  # its expected run (+ load) seconds at that peer, as estimated when sent
    sent_at: float
    model: str = ""


@dataclass(frozen=True)
class Choice:
    node_id: str
    completion_s: float
    reason: str  # human-readable breakdown, e.g. "queue 12.0s + run 4.1s + load 9.0s"


@dataclass(frozen=True)
class Handover:
    """The victim's answer to a steal request: which queued job to give away, and why it pays."""

    job_id: str
    index: int  # position in the victim's FIFO queue (0 = next to run)
    here_s: float  # when it would finish on the victim (seconds from now)
    there_s: float  # when it should finish on the thief (seconds from now)
    reason: str


def can_serve(peer: PeerView, model: str) -> bool:
    return peer.status in _STATUS_ORDER and peer.accepting and model in peer.installed


def ms_per_mp_step(peer: PeerView, model: str) -> float:
    """Measured beats prior; a peer that says nothing is assumed slowish rather than fast."""
    measured = peer.ms_per_mp_step.get(model)
    if measured is not None and measured > 0:
        return measured
    prior = peer.prior_ms_per_mp_step.get(model)
    if prior is not None and prior > 0:
        return prior
    return speed.prior_ms_per_mp_step(model, UNKNOWN_PEER_FACTOR)


def run_seconds(peer: PeerView, work: ImageWork) -> float:
    return work.megapixel_steps() * ms_per_mp_step(peer, work.model) / 1000.0


def load_seconds(peer: PeerView, model: str) -> float:
    """Zero when resident; a download on top when the weights are not on disk either."""
    if model in peer.loaded:
        return 0.0
    seconds = peer.load_s.get(model, peer.prior_load_s)
    if model not in peer.cached:
        seconds += peer.download_s
    return seconds


def _parts(peer: PeerView, work: ImageWork, unseen_backlog_s: float) -> tuple[float, float, float, float]:
    queue = (max(peer.backlog_s, 0.0) + max(unseen_backlog_s, 0.0)) / max(peer.slots, 1)
    return queue, run_seconds(peer, work), load_seconds(peer, work.model), peer.transfer_s


def expected_completion_s(peer: PeerView, work: ImageWork, unseen_backlog_s: float = 0.0) -> float:
    """Seconds from now until the result is back: queue ahead + own run + cold load + network."""
    return sum(_parts(peer, work, unseen_backlog_s))


def _reason(peer: PeerView, work: ImageWork, unseen: float) -> str:
    queue, run, load, transfer = _parts(peer, work, unseen)
    text = f"queue {queue:.1f}s"
    if unseen > 0:
        text += f" (incl. {unseen:.1f}s sent, not yet advertised)"
    text += f" + run {run:.1f}s"
    if load > 0:
        text += f" + load {load:.1f}s"
    if transfer > 0:
        text += f" + transfer {transfer:.1f}s"
    return text


def unseen_backlog_s(peer: PeerView, sent: Iterable[Sent], advertised: frozenset[str] | None = None) -> float:
    """Seconds of work this decider sent to `peer` that its advertisement does not list yet.

    `advertised` (the union of every peer's job ids) makes a job that was redirected or stolen elsewhere count
    as seen; without it only `peer.job_ids` is checked.
    """
    seen = peer.job_ids if advertised is None else advertised
    return sum(s.seconds for s in sent if s.node_id == peer.node_id and s.job_id not in seen)


def sent_record(peer: PeerView, work: ImageWork, *, sent: Iterable[Sent] = (), now: float) -> Sent:
    """What the decider remembers after sending `work` to `peer`: its run, plus the load unless a job of the
    same model is already on its way there (that one pays it)."""
    seconds = run_seconds(peer, work)
    if not any(s.node_id == peer.node_id and s.model == work.model for s in sent):
        seconds += load_seconds(peer, work.model)
    return Sent(work.job_id, peer.node_id, seconds, now, work.model)


def prune_sent(
    sent: Iterable[Sent], peers: Iterable[PeerView], *, now: float, ttl_s: float | None = None
) -> list[Sent]:
    """Drop what needs no more counting: jobs some advertisement lists (its backlog has them now) and records
    older than `ttl_s` (default `SENT_TTL_S`), which also clears "try X" hints whose answer never comes here."""
    ttl = SENT_TTL_S if ttl_s is None else ttl_s
    advertised = frozenset().union(*(p.job_ids for p in peers))
    return [s for s in sent if s.job_id not in advertised and now - s.sent_at <= ttl]


def _tie_band(seconds: float) -> float:
    return max(TIE_S, TIE_FRACTION * abs(seconds))


def rank(
    peers: Iterable[PeerView], work: ImageWork, *, sent: Iterable[Sent] = (), rng: random.Random
) -> list[Choice]:
    """Best first. Up before suspect, never down or unable; near-ties shuffled so equals share the load."""
    peers = list(peers)
    sent = list(sent)
    advertised = frozenset().union(*(p.job_ids for p in peers))
    scored: list[tuple[int, float, str, str]] = []
    for peer in peers:
        if not can_serve(peer, work.model):
            continue
        pending = [s for s in sent if s.node_id == peer.node_id and s.job_id not in advertised]
        unseen = sum(s.seconds for s in pending)
        if work.model not in peer.loaded and any(s.model == work.model for s in pending):
            peer = replace(peer, loaded=peer.loaded | {work.model})  # a job already on its way pays the load
        ect = expected_completion_s(peer, work, unseen)
        scored.append((_STATUS_ORDER[peer.status], ect, peer.node_id, _reason(peer, work, unseen)))
    scored.sort()
    ranked: list[Choice] = []
    i = 0
    while i < len(scored):
        status, head, _, _ = scored[i]
        j = i + 1
        while j < len(scored) and scored[j][0] == status and scored[j][1] - head <= _tie_band(head):
            j += 1
        group = scored[i:j]
        rng.shuffle(group)
        ranked.extend(Choice(node_id, ect, reason) for _, ect, node_id, reason in group)
        i = j
    return ranked


def redirect_target(
    here: PeerView,
    others: Iterable[PeerView],
    work: ImageWork,
    *,
    rng: random.Random,
    sent: Iterable[Sent] = (),
    hops: int = 0,
) -> Choice | None:
    """The receiver's re-check on arrival, with its real queue: a clearly better peer to answer "try X" with.

    Called only by a peer that was sent the job by another; `hops` is how often the job was redirected
    already, and at `MAX_REDIRECTS` the answer is always None, so a job moves at most once this way. Only up
    peers are suggested. A receiver that cannot serve the job at all suggests the best one that can.
    """
    if hops >= MAX_REDIRECTS:
        return None
    here = replace(here, transfer_s=0.0)
    candidates = [p for p in others if p.node_id != here.node_id and p.status == "up"]
    ranked = rank(candidates, work, sent=sent, rng=rng)
    if not ranked:
        return None
    best = ranked[0]
    if not can_serve(here, work.model):
        return best
    mine = expected_completion_s(here, work)
    margin = max(REDIRECT_MIN_S, REDIRECT_FRACTION * mine)
    if best.completion_s < mine - margin:
        return Choice(best.node_id, best.completion_s, f"{best.reason}; here {mine:.1f}s")
    return None


def queue_finish_s(here: PeerView, queue: Sequence[ImageWork], running_left_s: float = 0.0) -> list[float]:
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


def backlog_seconds(here: PeerView, queue: Sequence[ImageWork], running_left_s: float = 0.0) -> float:
    finishes = queue_finish_s(here, queue, running_left_s)
    return finishes[-1] if finishes else max(running_left_s, 0.0)


def steal_target(thief: PeerView, others: Iterable[PeerView], *, rng: random.Random) -> str | None:
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
    near = sorted(p.node_id for p in victims if most - p.backlog_s <= _tie_band(most))
    return rng.choice(near)


def steal_pick(
    here: PeerView,
    queue: Sequence[ImageWork],
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
        if work.job_id in pinned or not can_serve(thief, work.model):
            continue
        there_s = expected_completion_s(thief, work)
        gain = here_s - there_s
        if gain < max(STEAL_MIN_GAIN_S, STEAL_GAIN_FRACTION * here_s):
            continue
        if best is None or gain > best.here_s - best.there_s:
            reason = f"here in {here_s:.1f}s, on {thief.node_id} in {there_s:.1f}s ({_reason(thief, work, 0.0)})"
            best = Handover(work.job_id, index, here_s, there_s, reason)
    return best
