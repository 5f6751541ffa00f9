"""The one function that picks a peer: `rank`, by the smallest expected completion time, corrected for stale
views. It prices images and every other kind of request alike (see `model_scoring` for how an LLM request
becomes a `PeerView`).

Pure: frozen snapshots in, decisions out; the randomness is a parameter. Production (`dispatch`) and
`benchmarks/scheduler.py` both call it, so what the simulator measured is what runs.

Three corrections for stale, simultaneous decisions (chosen with the simulator, see docs/benchmarks.md):
- the decider adds the work it sent itself that a peer's advertisement does not show yet (`Ledger`);
- the receiver re-checks with its real queue and may answer "busy, try X" once (`redirect_target`);
- a peer that runs dry takes queued work from a busier one (`stealing`), which repairs whatever imbalance the
  first two leave.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from . import speed
from .memory import fits, shortfall
from .rng import Rng
from .work import Choice, PeerView, Sent, Work

UNKNOWN_PEER_FACTOR = 0.25  # speed assumed for a peer that advertises no figure for a model (x M3 Ultra)
MIN_CALIBRATION = 1e-4  # a floor only against zero: a wrong optimism costs one job, then it is measured
TIE_FRACTION = 0.02  # completion times within 2% of each other count as a tie (dimensionless)
TIE_S = 0.01  # ... or within 10 ms (seconds), for near-zero times
MAX_REDIRECTS = 1  # a job is redirected at most this often on arrival, so it can never ping-pong
REDIRECT_FRACTION = 0.5  # redirect only if elsewhere finishes at least this share sooner (dimensionless)
REDIRECT_MIN_S = 1.0  # ... and at least this many seconds sooner (seconds)

STATUS_ORDER = {"up": 0, "suspect": 1}  # "down" (or anything else) is never picked
PRESSURE_ORDER = {"warn": 1, "critical": 2}  # normal and unknown: 0
CPU_BAND = 25.0  # near-ties go to the peer in the lower band of CPU load (percentage points)


def can_serve(peer: PeerView, model: str) -> bool:
    return peer.status in STATUS_ORDER and peer.accepting and model in peer.installed


def eligible(peer: PeerView, work: Work) -> bool:
    """Able to run it at all: up (or suspect), switched on, the model installed, and room in memory for it."""
    return can_serve(peer, work.model) and fits(peer, work)


def why_not(peer: PeerView, work: Work) -> str | None:
    """Why a peer cannot run this job, in a few words; None when it can."""
    if peer.status not in STATUS_ORDER:
        return peer.status
    if not peer.accepting:
        return "switched off"
    if work.model not in peer.installed:
        return f"no {work.model}"
    return shortfall(peer, work)


def ms_per_unit(peer: PeerView, model: str) -> float:
    """Measured beats prior; a peer that says nothing is assumed slowish rather than fast."""
    measured = peer.ms_per_unit.get(model)
    if measured is not None and measured > 0:
        return measured
    prior = peer.prior_ms_per_unit.get(model)
    if prior is not None and prior > 0:
        return prior
    return speed.prior_ms_per_mp_step(model, UNKNOWN_PEER_FACTOR)


def prior_calibration(peers: Iterable[PeerView], model: str) -> float:
    """How far the hardware priors are off for `model`, from the peers that measured it: the median of measured
    over prior. Only ever below 1: priors that prove pessimistic make the unmeasured peers look faster, so they
    get a job and a measurement (optimism for the unmeasured), instead of every job queueing at the one peer
    that happened to be measured first."""
    ratios = sorted(
        measured / prior
        for peer in peers
        if (measured := peer.ms_per_unit.get(model)) and (prior := peer.prior_ms_per_unit.get(model))
        and measured > 0 and prior > 0
    )  # fmt: skip
    if not ratios:
        return 1.0
    return max(MIN_CALIBRATION, min(1.0, ratios[len(ratios) // 2]))


def calibrated(peers: Iterable[PeerView], model: str) -> list[PeerView]:
    """The peers with `prior_calibration` applied to the speed of those that have not measured `model`."""
    peers = list(peers)
    ratio = prior_calibration(peers, model)
    if ratio >= 1.0:
        return peers
    out = []
    for peer in peers:
        prior = peer.prior_ms_per_unit.get(model)
        if model not in peer.ms_per_unit and prior:
            peer = replace(peer, ms_per_unit={**peer.ms_per_unit, model: prior * ratio})
        out.append(peer)
    return out


def run_seconds(peer: PeerView, work: Work) -> float:
    """The job's run there, slowed by the other work that machine is doing now."""
    return work.units * ms_per_unit(peer, work.model) / 1000.0 * max(peer.contention, 1.0)


def load_seconds(peer: PeerView, model: str) -> float:
    """Zero when resident, or when a job of that model is already running or waiting there (it pays the load);
    a download on top only when the weights are known to be missing: an unknown cache costs nothing extra."""
    if model in peer.loaded or model in peer.queued_models:
        return 0.0
    seconds = peer.load_s.get(model, peer.prior_load_s)
    if model in peer.missing and model not in peer.cached:
        seconds += peer.download_s
    return seconds


def _parts(peer: PeerView, work: Work, unseen_backlog_s: float) -> tuple[float, float, float, float]:
    backlog = max(peer.backlog_s, 0.0) * max(peer.contention, 1.0) + max(unseen_backlog_s, 0.0)
    return backlog / max(peer.slots, 1), run_seconds(peer, work), load_seconds(peer, work.model), peer.transfer_s


def expected_completion_s(peer: PeerView, work: Work, unseen_backlog_s: float = 0.0) -> float:
    """Seconds from now until the result is back: queue ahead + own run + cold load + network."""
    return sum(_parts(peer, work, unseen_backlog_s))


def explain(peer: PeerView, work: Work, unseen: float = 0.0) -> str:
    """The completion time's parts in one line, for logs, headers and the dashboard."""
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


def sent_record(peer: PeerView, work: Work, *, sent: Iterable[Sent] = (), now: float) -> Sent:
    """What the decider remembers after sending `work` to `peer`: its run, plus the load unless a job of the
    same model is already on its way there (that one pays it)."""
    seconds = run_seconds(peer, work)
    if not any(s.node_id == peer.node_id and s.model == work.model for s in sent):
        seconds += load_seconds(peer, work.model)
    return Sent(work.job_id, peer.node_id, seconds, now, work.model)


def tie_band(seconds: float) -> float:
    return max(TIE_S, TIE_FRACTION * abs(seconds))


def rank(peers: Iterable[PeerView], work: Work, *, sent: Iterable[Sent] = (), rng: Rng) -> list[Choice]:
    """Best first. Up before suspect, never down or unable; near-ties shuffled so equals share the load.

    `sent` is the decider's own ledger: work it sent that an advertisement may not show yet. A job any peer
    advertises is already in that peer's backlog, so it is not counted twice.
    """
    peers = calibrated(peers, work.model)
    advertised = frozenset().union(*(p.job_ids for p in peers))
    pending = [s for s in sent if s.job_id not in advertised]
    scored: list[tuple[int, float, str, str]] = []
    calm: dict[str, tuple[int, int]] = {}  # node -> (memory pressure, CPU band): what breaks near-ties
    for peer in peers:
        if not eligible(peer, work):
            continue
        calm[peer.node_id] = (PRESSURE_ORDER.get(peer.memory_pressure, 0), int(peer.cpu_percent // CPU_BAND))
        mine = [s for s in pending if s.node_id == peer.node_id]
        unseen = sum(s.seconds for s in mine)
        if work.model not in peer.loaded and any(s.model == work.model for s in mine):
            peer = replace(peer, loaded=peer.loaded | {work.model})  # a job already on its way pays the load
        ect = expected_completion_s(peer, work, unseen)
        scored.append((STATUS_ORDER[peer.status], ect, peer.node_id, explain(peer, work, unseen)))
    scored.sort()
    ranked: list[Choice] = []
    i = 0
    while i < len(scored):
        status, head, _, _ = scored[i]
        j = i + 1
        while j < len(scored) and scored[j][0] == status and scored[j][1] - head <= tie_band(head):
            j += 1
        group = scored[i:j]
        rng.shuffle(group)
        group.sort(key=lambda entry: calm[entry[2]])  # stable: equals stay shuffled
        ranked.extend(Choice(node_id, ect, reason) for _, ect, node_id, reason in group)
        i = j
    return ranked


def redirect_target(
    here: PeerView,
    others: Iterable[PeerView],
    work: Work,
    *,
    rng: Rng,
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
    here, *candidates = calibrated(
        [replace(here, transfer_s=0.0), *(p for p in others if p.node_id != here.node_id and p.status == "up")],
        work.model,
    )
    ranked = rank(candidates, work, sent=sent, rng=rng)
    if not ranked:
        return None
    best = ranked[0]
    if not eligible(here, work):
        return best
    mine = expected_completion_s(here, work)
    margin = max(REDIRECT_MIN_S, REDIRECT_FRACTION * mine)
    if best.completion_s < mine - margin:
        return Choice(best.node_id, best.completion_s, f"{best.reason}; here {mine:.1f}s")
    return None
