#!/usr/bin/env python3
"""Discrete-event simulator for image routing in a mesh: stale advertisements, several deciders at once.

It drives the real decision code of a peer (`herd_mesh.core`: `ranking.rank`, `redirect_target`, the stealing
rules, the sent-work `Ledger` and the attempt loop's `Attempts`) on simulated Macs of different speeds, and
compares it with random, round-robin, least-queue and the anchor's formula.

    python benchmarks/scheduler.py [--seed N] [--trials N] [--write docs/benchmarks-scheduler.md]

Model of the world (every figure is a constant below):
- each peer runs one image job at a time from a FIFO queue; run time = megapixel-steps x its true speed,
  with lognormal noise; a model that is not resident costs its load time (LRU by memory, keep-alive);
- each peer advertises (backlog seconds, job ids, resident models, free memory, CPU) every 0.5-1.0 s, and
  each observer receives it 5-250 ms later (fixed per pair), so every entry peer routes on its own stale copy;
  advertised speeds are off by up to +-10% (a moving average is never exact);
- requests arrive at every peer: a burst of K at the same instant, or Poisson at 50/80/95% of capacity;
- the oracle is one central dispatcher with perfect, instant knowledge of every queue that picks the least
  expected completion time with the same `ranking.rank`; it binds each job on arrival, like the rest.
Results are ratios to the oracle on the same arrivals and the same run-time noise (common random numbers).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
import time
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from herd_mesh.core import catalogue, ranking, speed, stealing  # noqa: E402
from herd_mesh.core.attempts import Attempts, Moved, Refused  # noqa: E402
from herd_mesh.core.ledger import Ledger  # noqa: E402
from herd_mesh.core.work import PeerView, Sent, Work  # noqa: E402
from herd_mesh.errors import Reason  # noqa: E402

ImageWork = Work

LATENCY_S = 0.005  # one-way LAN message (seconds)
REQUEST_S = 0.005  # forwarding the request body (seconds)
RESULT_S = 0.04  # a 1024x1024 PNG back to the entry peer (seconds)
TRANSFER_VIEW_S = LATENCY_S + REQUEST_S + RESULT_S  # what a decider assumes a remote peer adds (seconds)
AD_PERIOD_S = (0.5, 1.0)  # advertisement refresh interval, uniform per peer (seconds)
AD_DELAY_S = (0.005, 0.25)  # propagation delay to each observer, uniform per pair (seconds)
SPEED_ERROR = 0.10  # advertised speeds off by up to this share (dimensionless)
RUN_NOISE = 0.08  # sigma of the lognormal run-time noise (dimensionless)
STEAL_POLL_S = 0.25  # an idle peer looks for work this often, i.e. on each advertisement it receives (seconds)
OS_GB = 8.0  # memory the OS and apps keep (GB)
KEEPALIVE_S = 600.0  # an idle model is unloaded after this long (seconds)
CPU_RUNNING = 12.0  # CPU % of a Mac running mflux (the anchor's formula reads it)
CPU_IDLE = 3.0  # CPU % of an idle Mac


# ----------------------------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Machine:
    node_id: str
    ms: dict[str, float]  # true ms per megapixel-step per model
    load_s: dict[str, float]  # true load seconds per model
    memory_gb: float
    installed: frozenset[str]


@dataclass(frozen=True)
class Fleet:
    name: str
    machines: tuple[Machine, ...]
    mix: tuple[tuple[float, ImageWork], ...]  # (probability, work) of the requests
    preloaded: frozenset[str]  # resident on every machine at t=0 where it fits ("" = cold start)
    burst_k: int
    poisson_jobs: int
    ad_scale: float = 1.0  # multiplies AD_PERIOD_S and AD_DELAY_S: how stale the views are


def _weights(model: str) -> float:
    entry = catalogue.get(model)
    return entry.need_gb(8, 1024, 1024) if entry is not None else 16.0


def goal_fleet(copies: int = 1, ad_scale: float = 1.0) -> Fleet:
    """The issue's goal: speeds 4x/2x/1x, 0.5/1/2 s per image, one warm model (`copies` of each Mac)."""
    model = "z-image-turbo"
    work = Work.image(model, 1000, 1000, 1)  # exactly 1 megapixel-step
    machines = tuple(
        Machine(f"{name}-{c}" if copies > 1 else name, {model: ms}, {model: 8.0}, memory, frozenset({model}))
        for c in range(copies)
        for name, ms, memory in (("fast-4x", 500.0, 128.0), ("mid-2x", 1000.0, 64.0), ("slow-1x", 2000.0, 32.0))
    )
    n = len(machines)
    stale = f", views {ad_scale:g}x staler (ads every {AD_PERIOD_S[0] * ad_scale:g}-{AD_PERIOD_S[1] * ad_scale:g} s)"
    name = f"{n} Macs at 4x/2x/1x (0.5/1/2 s per image), warm{stale if ad_scale != 1 else ''}"
    return Fleet(
        name,
        machines,
        ((1.0, work),),
        frozenset({model}),
        burst_k=10 * n,
        poisson_jobs=1500 if copies == 1 else 1800,
        ad_scale=ad_scale,
    )


def studio_fleet() -> Fleet:
    """A mixed office: six real chips, four models, long jobs, everything cold at the start."""
    small = frozenset({"z-image-turbo", "flux-schnell"})
    every = small | {"flux-dev", "qwen-image"}
    specs = (
        ("m3-ultra", "Apple M3 Ultra", 80, 256.0, every),
        ("m2-ultra", "Apple M2 Ultra", 76, 192.0, every),
        ("m4-max", "Apple M4 Max", 40, 128.0, every),
        ("m1-max", "Apple M1 Max", 32, 64.0, every),
        ("m4-pro", "Apple M4 Pro", 20, 64.0, every),
        ("m4-mini", "Apple M4", 10, 32.0, small),
    )
    machines = []
    for node_id, chip, cores, memory, installed in specs:
        factor = speed.hardware_prior(chip, cores)
        ms = {m: speed.prior_ms_per_mp_step(m, factor) for m in installed}
        load = {m: (2.0 + _weights(m) / 3.0) * (1.0 if factor > 0.5 else 1.3) for m in installed}
        machines.append(Machine(node_id, ms, load, memory, installed))
    mix = (
        (0.45, Work.image("z-image-turbo", 1024, 1024, 4)),
        (0.30, Work.image("flux-schnell", 1024, 1024, 4)),
        (0.15, Work.image("flux-dev", 1024, 1024, 20)),
        (0.10, Work.image("qwen-image", 1024, 1024, 20)),
    )
    return Fleet(
        "M3 Ultra, M2 Ultra, M4 Max, M1 Max, M4 Pro, M4 mini; 4 models, cold start",
        tuple(machines),
        mix,
        frozenset(),
        burst_k=24,
        poisson_jobs=300,
    )


def capacity_jobs_per_s(fleet: Fleet) -> float:
    """Warm throughput of the whole fleet for its request mix, as a fluid (any peer helps any model)."""
    total = 0.0
    for machine in fleet.machines:
        share = sum(p for p, w in fleet.mix if w.model in machine.installed)
        mean = (
            sum(p * w.units * machine.ms[w.model] / 1000 for p, w in fleet.mix if w.model in machine.installed)
            / share
        )
        total += 1.0 / mean
    return total


@dataclass(frozen=True)
class Policy:
    name: str
    kind: str  # random | round-robin | least-queue | anchor | ect | p2c | oracle
    count_sent: bool = False
    recheck: bool = False
    steal: bool = False
    aged: bool = False  # subtract an advertisement's age from its backlog (it has drained since)


POLICIES: tuple[Policy, ...] = (
    Policy("random", "random"),
    Policy("round-robin", "round-robin"),
    Policy("least-queue", "least-queue"),
    Policy("anchor formula", "anchor"),
    Policy("ECT (plain)", "ect"),
    Policy("two random choices, ECT + sent", "p2c", count_sent=True),
    Policy("ECT + sent", "ect", count_sent=True),
    Policy("ECT + sent + re-check", "ect", count_sent=True, recheck=True),
    Policy("ECT + steal", "ect", steal=True),
    Policy("ECT + sent + steal", "ect", count_sent=True, steal=True),
    Policy("**ours**: ECT + sent + re-check + steal", "ect", count_sent=True, recheck=True, steal=True),
    Policy("ours + aged views", "ect", count_sent=True, recheck=True, steal=True, aged=True),
    Policy("oracle", "oracle"),
)
OURS = POLICIES[-3].name
ORACLE = POLICIES[-1].name


# ------------------------------------------------------------------------------------------- simulation


@dataclass
class Job:
    work: ImageWork
    entry: int
    arrival: float
    noise: float
    attempts: Attempts = field(default_factory=Attempts)  # the entry peer's attempt loop for this job


@dataclass
class Peer:
    index: int
    machine: Machine
    est_ms: dict[str, float]
    est_load: dict[str, float]
    period: float
    phase: float
    delays: list[float]  # delays[o]: how long this peer's advertisement takes to reach observer o
    queue: deque[Job] = field(default_factory=deque)
    running: Job | None = None
    run_end_est: float = 0.0  # when the running job should end, by the peer's own estimates
    run_end_est_true: float = 0.0  # the same with true mean speeds (what the oracle knows)
    resident: OrderedDict[str, float] = field(default_factory=OrderedDict)
    log_t: list[float] = field(default_factory=list)
    log_v: list[tuple[Any, ...]] = field(default_factory=list)
    ads: dict[int, tuple[PeerView, float, float]] = field(default_factory=dict)
    overrides: dict[int, tuple[float, PeerView]] = field(default_factory=dict)  # from "busy, try X" replies
    ledger: Ledger = field(default_factory=Ledger)  # sent as the entry until answered; "try X" hints
    steal_pending: bool = False
    poll_token: int = 0
    rr: int = 0


class Sim:
    def __init__(
        self,
        fleet: Fleet,
        policy: Policy,
        arrivals: Sequence[tuple[float, int, ImageWork, float]],
        world_seed: int,
        policy_seed: int,
    ) -> None:
        self.fleet = fleet
        self.policy = policy
        self.rng = random.Random(policy_seed)
        world = random.Random(world_seed)
        n = len(fleet.machines)
        self.peers: list[Peer] = []
        for i, machine in enumerate(fleet.machines):
            err = {m: 1.0 + world.uniform(-SPEED_ERROR, SPEED_ERROR) for m in sorted(machine.installed)}
            period = world.uniform(*AD_PERIOD_S) * fleet.ad_scale
            peer = Peer(
                i,
                machine,
                est_ms={m: machine.ms[m] * err[m] for m in machine.installed},
                est_load={m: machine.load_s[m] * err[m] for m in machine.installed},
                period=period,
                phase=world.uniform(0.0, period),
                delays=[world.uniform(*AD_DELAY_S) * fleet.ad_scale for _ in range(n)],
            )
            budget = machine.memory_gb - OS_GB
            for model in sorted(fleet.preloaded & machine.installed):
                if _weights(model) <= budget:
                    peer.resident[model] = 0.0
                    budget -= _weights(model)
            self.peers.append(peer)
        self.now = 0.0
        self.events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self.seq = 0
        for peer in self.peers:
            self._log(peer)
        for t, entry, work, noise in arrivals:
            self.at(t, self.arrive, Job(work, entry, t, noise))
        self.done: list[float] = []
        self.last_done = 0.0
        self.total = len(arrivals)
        self.inflight: list[dict[str, Job]] = [{} for _ in self.peers]  # on the wire to each peer

    # -- event plumbing
    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, fn, args))

    def run(self) -> None:
        while self.events and len(self.done) < self.total:
            t, _, fn, args = heapq.heappop(self.events)
            self.now = t
            fn(*args)

    # -- what peers know
    def _log(self, peer: Peer) -> None:
        """Record the peer's state after every change, so a past advertisement can be rebuilt lazily."""
        version = (tuple(peer.queue), peer.running, peer.run_end_est, frozenset(peer.resident))
        if peer.log_t and peer.log_t[-1] == self.now:
            peer.log_v[-1] = version
        else:
            peer.log_t.append(self.now)
            peer.log_v.append(version)

    def _state_view(
        self,
        peer: Peer,
        version: tuple[Any, ...],
        t: float,
        *,
        truth: bool = False,
        is_self: bool = False,
        transfer_s: float = TRANSFER_VIEW_S,
    ) -> PeerView:
        """The view a peer would advertise (or the oracle would see, with `truth`) for a logged state."""
        queue, running, run_end, resident = version
        machine = peer.machine
        ms = machine.ms if truth else peer.est_ms
        load = machine.load_s if truth else peer.est_load
        ids = frozenset(j.work.job_id for j in queue)
        if running is not None:
            ids |= {running.work.job_id}
        left = max(run_end - t, 0.0) if running is not None else 0.0
        backlog = left
        if queue:
            here = PeerView(
                machine.node_id,
                installed=machine.installed,
                cached=machine.installed,
                loaded=resident,
                ms_per_unit=ms,
                load_s=load,
            )
            backlog = stealing.backlog_seconds(here, [j.work for j in queue], left)
        return PeerView(
            machine.node_id,
            is_self=is_self,
            installed=machine.installed,
            cached=machine.installed,
            loaded=resident,
            ms_per_unit=ms,
            load_s=load,
            backlog_s=backlog,
            job_ids=ids,
            transfer_s=transfer_s,
        )

    def _ad(self, peer: Peer, k: int) -> tuple[PeerView, float, float]:
        """The k-th advertisement of `peer`: its view, free GB and CPU % (what the anchor reads)."""
        cached = peer.ads.get(k)
        if cached is not None:
            return cached
        t = max(peer.phase + k * peer.period, 0.0)
        i = max(bisect_right(peer.log_t, t) - 1, 0)
        version = peer.log_v[i]
        view = self._state_view(peer, version, t)
        free = peer.machine.memory_gb - OS_GB - sum(_weights(m) for m in sorted(version[3]))
        ad = (view, free, CPU_RUNNING if version[1] is not None else CPU_IDLE)
        peer.ads[k] = ad
        return ad

    def view_of(self, observer: int, target: int) -> tuple[PeerView, float, float]:
        peer = self.peers[target]
        if observer == target:
            version = (tuple(peer.queue), peer.running, peer.run_end_est, frozenset(peer.resident))
            view = self._state_view(peer, version, self.now, is_self=True, transfer_s=0.0)
            free = peer.machine.memory_gb - OS_GB - sum(_weights(m) for m in peer.resident)
            return view, free, CPU_RUNNING if peer.running is not None else CPU_IDLE
        seen_at = self.now - peer.delays[observer]
        k = math.floor((seen_at - peer.phase) / peer.period)
        ad = self._ad(peer, k) if k >= 0 else self._ad(peer, -1)
        published = max(peer.phase + k * peer.period, 0.0)
        override = self.peers[observer].overrides.get(target)
        if override is not None and override[0] > published:
            return override[1], ad[1], ad[2]
        if self.policy.aged:  # the age the observer can know: since it received the advertisement
            received = published + peer.delays[observer] if k >= 0 else 0.0
            drained = max(ad[0].backlog_s - max(self.now - received, 0.0), 0.0)
            return replace(ad[0], backlog_s=drained), ad[1], ad[2]
        return ad

    def views(self, observer: int) -> list[PeerView]:
        return [self.view_of(observer, t)[0] for t in range(len(self.peers))]

    def oracle_views(self, entry: int) -> list[PeerView]:
        out = []
        for i, peer in enumerate(self.peers):
            queue = tuple(peer.queue) + tuple(self.inflight[i].values())
            version = (queue, peer.running, peer.run_end_est_true, frozenset(peer.resident))
            transfer = 0.0 if i == entry else TRANSFER_VIEW_S
            out.append(self._state_view(peer, version, self.now, truth=True, transfer_s=transfer))
        return out

    # -- deciding
    def decide(self, entry: int, job: Job) -> int:
        kind = self.policy.kind
        work = job.work
        ids = [i for i, p in enumerate(self.peers) if work.model in p.machine.installed]
        if kind == "random":
            return self.rng.choice(ids)
        if kind == "round-robin":
            me = self.peers[entry]
            me.rr += 1
            return ids[(me.rr + entry) % len(ids)]
        if kind == "least-queue":
            counts = {i: len(self.view_of(entry, i)[0].job_ids) for i in ids}
            low = min(counts.values())
            return self.rng.choice([i for i in ids if counts[i] == low])
        if kind == "anchor":

            def score(i: int) -> float:
                view, free, cpu = self.view_of(entry, i)
                return (-50.0 if view.job_ids else 0.0) + 0.5 * free - 0.2 * cpu

            return max(ids, key=score)  # the first of equals, as a sorted list would give
        if kind == "oracle":
            views = self.oracle_views(entry)
            return self._index(ranking.rank(views, work, rng=self.rng)[0].node_id)
        views = self.views(entry)
        if kind == "p2c":
            pool = [views[i] for i in ids]
            views = self.rng.sample(pool, 2) if len(pool) > 2 else pool
        choice = job.attempts.pick(ranking.rank(views, work, sent=self.own_sent(entry), rng=self.rng))
        assert choice is not None, "nothing fails in the simulation, so a peer is always left to try"
        return self._index(choice.node_id)

    def own_sent(self, node: int) -> list[Sent]:
        """What this peer sent itself: as the entry, plus the "try X" answers it gave as a receiver."""
        if not self.policy.count_sent:
            return []
        return self.peers[node].ledger.pending(self.now)

    def _id(self, index: int) -> str:
        return self.peers[index].machine.node_id

    def _index(self, node_id: str) -> int:
        return next(i for i, p in enumerate(self.peers) if p.machine.node_id == node_id)

    def _remember(self, entry: int, job: Job, target: int) -> None:
        me = self.peers[entry]
        view = self.view_of(entry, target)[0]
        me.ledger.open(ranking.sent_record(view, job.work, sent=me.ledger.pending(self.now), now=self.now))

    # -- events
    def arrive(self, job: Job) -> None:
        target = self.decide(job.entry, job)
        self.send(job.entry, job, target)

    def send(self, entry: int, job: Job, target: int) -> None:
        if target == entry:
            self.peers[entry].ledger.close(job.work.job_id)
            self.enqueue(target, job)
        else:
            self._remember(entry, job, target)
            self.inflight[target][job.work.job_id] = job
            self.at(self.now + LATENCY_S + REQUEST_S, self.receive, target, job)

    def receive(self, node: int, job: Job) -> None:
        self.inflight[node].pop(job.work.job_id, None)
        if self.policy.recheck and job.attempts.movable:  # the entry sent it as redirectable
            views = self.views(node)
            here = views[node]
            left = job.attempts.left  # never back to a queue the job left
            others = [v for i, v in enumerate(views) if i != node and v.node_id not in left]
            sent = self.own_sent(node)
            choice = ranking.redirect_target(here, others, job.work, rng=self.rng, sent=sent)
            if choice is not None:
                if self.policy.count_sent:
                    target = views[self._index(choice.node_id)]
                    self.peers[node].ledger.hint(ranking.sent_record(target, job.work, now=self.now))
                real = replace(here, is_self=False, transfer_s=TRANSFER_VIEW_S)
                self.at(self.now + LATENCY_S, self.redirected, job, node, self._index(choice.node_id), real)
                return
        self.enqueue(node, job)

    def redirected(self, job: Job, refused_by: int, target: int, real: PeerView) -> None:
        """The entry got "busy, try X" with the refuser's real queue: its attempt loop records the refusal and
        picks again, which goes to X."""
        entry = self.peers[job.entry]
        entry.overrides[refused_by] = (self.now, real)
        entry.ledger.close(job.work.job_id)
        busy = Refused(self._id(refused_by), 503, "busy", Reason.BUSY, redirect_to=self._id(target))
        job.attempts.record(busy)
        self.send(job.entry, job, self.decide(job.entry, job))

    def enqueue(self, node: int, job: Job) -> None:
        peer = self.peers[node]
        peer.queue.append(job)
        if peer.running is None:
            self.start_next(peer)
        else:
            self._log(peer)

    def start_next(self, peer: Peer) -> None:
        if not peer.queue:
            peer.running = None
            self._log(peer)
            if self.policy.steal:
                peer.poll_token += 1
                self.check(peer, peer.poll_token)
            return
        job = peer.queue.popleft()
        model = job.work.model
        for old, used in list(peer.resident.items()):
            if old != model and self.now - used > KEEPALIVE_S:
                del peer.resident[old]
        load_true = load_est = 0.0
        if model not in peer.resident:
            budget = peer.machine.memory_gb - OS_GB - _weights(model)
            while peer.resident and sum(_weights(m) for m in peer.resident) > budget:
                peer.resident.popitem(last=False)
            load_true = peer.machine.load_s[model]
            load_est = peer.est_load[model]
        peer.resident[model] = self.now
        peer.resident.move_to_end(model)
        mp = job.work.units
        run_true = mp * peer.machine.ms[model] / 1000.0 * job.noise
        peer.running = job
        peer.run_end_est = self.now + load_est + mp * peer.est_ms[model] / 1000.0
        peer.run_end_est_true = self.now + load_true + mp * peer.machine.ms[model] / 1000.0
        self._log(peer)
        if self.policy.steal and not peer.queue:  # its last job: it may ask for more shortly before the end
            peer.poll_token += 1
            self.check(peer, peer.poll_token)
        self.at(self.now + load_true + run_true, self.finish, peer)

    def finish(self, peer: Peer) -> None:
        job = peer.running
        assert job is not None
        peer.resident[job.work.model] = self.now
        if peer.index == job.entry:
            self.complete(job)
        else:
            self.at(self.now + LATENCY_S + RESULT_S, self.complete, job)
        self.start_next(peer)

    def complete(self, job: Job) -> None:
        self.peers[job.entry].ledger.close(job.work.job_id)
        self.done.append(self.now - job.arrival)
        self.last_done = max(self.last_done, self.now)

    # -- work stealing
    def check(self, peer: Peer, token: int) -> None:
        """The thief's loop: while its own backlog is under STEAL_IDLE_S, look for work on each poll."""
        if token != peer.poll_token or peer.queue:
            return
        left = max(peer.run_end_est - self.now, 0.0) if peer.running is not None else 0.0
        if left > stealing.STEAL_IDLE_S:  # running its last job: look again just before it ends
            self.at(peer.run_end_est - stealing.STEAL_IDLE_S, self.check, peer, token)
            return
        if not peer.steal_pending and any(self._worth_asking(peer.index, i) for i in range(len(self.peers))):
            views = self.views(peer.index)
            me = views[peer.index]
            others = [v for i, v in enumerate(views) if i != peer.index]
            victim = stealing.steal_target(me, others, rng=self.rng)
            if victim is not None:
                peer.steal_pending = True
                thief = replace(me, is_self=False, transfer_s=2 * LATENCY_S + REQUEST_S)
                self.at(self.now + LATENCY_S, self.steal_request, self._index(victim), peer.index, thief)
        self.at(self.now + STEAL_POLL_S, self.check, peer, token)

    def _worth_asking(self, observer: int, target: int) -> bool:
        """A cheap pre-filter with steal_target's own thresholds, so idle polls cost little."""
        if observer == target:
            return False
        view = self.view_of(observer, target)[0]
        return len(view.job_ids) > view.slots and view.backlog_s >= stealing.STEAL_MIN_BACKLOG_S

    def steal_request(self, victim: int, thief: int, thief_view: PeerView) -> None:
        peer = self.peers[victim]
        here = self.view_of(victim, victim)[0]
        left = max(peer.run_end_est - self.now, 0.0) if peer.running else 0.0
        thief_id = self._id(thief)
        pinned = frozenset(
            j.work.job_id for j in peer.queue if not j.attempts.movable or thief_id in j.attempts.excluded
        )
        handover = stealing.steal_pick(
            here, [j.work for j in peer.queue], thief_view, running_left_s=left, pinned=pinned
        )
        if handover is None:
            self.at(self.now + LATENCY_S, self.steal_refused, thief)
            return
        job = peer.queue[handover.index]
        del peer.queue[handover.index]
        self._log(peer)
        # the job's wait ends with "moved to thief": at once where the entry is the victim, else one hop later
        self.at(self.now + (0.0 if job.entry == victim else LATENCY_S), self.moved, job, victim, thief)

    def moved(self, job: Job, victim: int, thief: int) -> None:
        """The entry's attempt loop records the move and picks again, which goes to the thief."""
        entry = self.peers[job.entry]
        entry.ledger.close(job.work.job_id)
        job.attempts.record(Moved(self._id(victim), self._id(thief), stolen=True))
        target = self.decide(job.entry, job)
        assert target == thief
        self.peers[thief].steal_pending = False
        if target == job.entry:
            self.enqueue(target, job)
        else:
            self._remember(job.entry, job, target)
            self.at(self.now + LATENCY_S + REQUEST_S, self.stolen_arrives, thief, job)

    def stolen_arrives(self, thief: int, job: Job) -> None:
        self.peers[thief].steal_pending = False
        self.enqueue(thief, job)

    def steal_refused(self, thief: int) -> None:
        self.peers[thief].steal_pending = False


# ------------------------------------------------------------------------------------------------ trials

SCENARIOS: tuple[tuple[str, float], ...] = (("burst", 0.0), ("poisson", 0.5), ("poisson", 0.8), ("poisson", 0.95))
FLEETS: dict[str, Callable[[], Fleet]] = {
    "goal": goal_fleet,
    "goal9": lambda: goal_fleet(copies=3),
    "stale": lambda: goal_fleet(ad_scale=3.0),
    "studio": studio_fleet,
}


def make_arrivals(fleet: Fleet, pattern: str, load: float, seed: int) -> list[tuple[float, int, ImageWork, float]]:
    """Requests at every peer: K at t=0 spread over all entries, or Poisson at `load` x capacity."""
    rng = random.Random(seed)
    n = len(fleet.machines)
    probabilities = [p for p, _ in fleet.mix]
    count = fleet.burst_k if pattern == "burst" else fleet.poisson_jobs
    rate = load * capacity_jobs_per_s(fleet)
    t = 0.0
    out = []
    for i in range(count):
        if pattern == "burst":
            entry = i % n
        else:
            t += rng.expovariate(rate)
            entry = rng.randrange(n)
        work = rng.choices([w for _, w in fleet.mix], probabilities)[0]
        out.append((t, entry, replace(work, job_id=f"j{i}"), rng.lognormvariate(0.0, RUN_NOISE)))
    return out


def p95(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def run_unit(
    args: tuple[str, str, float, int, int, dict[str, float], tuple[str, ...]],
) -> dict[str, tuple[float, ...]]:
    """One fleet x scenario x trial, every policy on the same arrivals and the same world."""
    fleet_name, pattern, load, trial, seed, tunables, names = args
    for key, value in tunables.items():
        module = ranking if hasattr(ranking, key) else stealing
        assert hasattr(module, key), key
        setattr(module, key, value)
    fleet = FLEETS[fleet_name]()
    base = seed * 1_000_003 + trial * 7919 + int(load * 100) + (0 if pattern == "burst" else 1)
    arrivals = make_arrivals(fleet, pattern, load, base)
    out = {}
    for policy in POLICIES:
        if names and policy.name not in names and policy.name != ORACLE:
            continue
        sim = Sim(fleet, policy, arrivals, world_seed=base + 1, policy_seed=base + 2)
        sim.run()
        assert len(sim.done) == len(arrivals), (policy.name, len(sim.done), len(arrivals))
        out[policy.name] = (statistics.fmean(sim.done), p95(sim.done), sim.last_done)
    return out


Results = dict[tuple[str, str, float], dict[str, list[tuple[float, ...]]]]


BURST_TRIALS = 5  # bursts are cheap and noisy: this many burst trials per Poisson trial


def run_all(
    fleets: Iterable[str],
    trials: int,
    seed: int,
    workers: int,
    tunables: dict[str, float] | None = None,
    names: tuple[str, ...] = (),
) -> Results:
    units = [
        (f, pattern, load, trial, seed, tunables or {}, names)
        for f in fleets
        for pattern, load in SCENARIOS
        for trial in range(trials * (BURST_TRIALS if pattern == "burst" else 1))
    ]

    def cost(unit: tuple[Any, ...]) -> int:
        fleet = FLEETS[unit[0]]()
        return len(fleet.machines) * (fleet.burst_k if unit[1] == "burst" else fleet.poisson_jobs)

    units.sort(key=cost, reverse=True)  # longest first, so both workers finish together
    results: Results = {}
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outs = list(pool.map(run_unit, units))
    else:
        outs = [run_unit(u) for u in units]
    for unit, out in zip(units, outs, strict=True):
        bucket = results.setdefault(unit[:3], {})
        for name, metrics in out.items():
            bucket.setdefault(name, []).append(metrics)
    return results


def ratio(results: Results, key: tuple[str, str, float], name: str, metric: int) -> float:
    """Mean over trials of (policy / oracle) on the same trial."""
    mine, best = results[key][name], results[key][ORACLE]
    return statistics.fmean(m[metric] / o[metric] for m, o in zip(mine, best, strict=True))


def absolute(results: Results, key: tuple[str, str, float], name: str, metric: int) -> float:
    return statistics.fmean(m[metric] for m in results[key][name])


COLUMNS: tuple[tuple[str, str, float, int], ...] = (
    ("burst makespan", "burst", 0.0, 2),
    ("burst mean", "burst", 0.0, 0),
    ("50% mean", "poisson", 0.5, 0),
    ("50% p95", "poisson", 0.5, 1),
    ("80% mean", "poisson", 0.8, 0),
    ("80% p95", "poisson", 0.8, 1),
    ("95% mean", "poisson", 0.95, 0),
    ("95% p95", "poisson", 0.95, 1),
)


def table(results: Results, fleet: str, names: Sequence[str]) -> str:
    head = "| policy | " + " | ".join(c[0] for c in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    rows = [head, rule]
    for name in names:
        if name == ORACLE:
            cells = [f"{absolute(results, (fleet, p, ld), name, m):.1f} s" for _, p, ld, m in COLUMNS]
            rows.append("| oracle (absolute) | " + " | ".join(cells) + " |")
        else:
            cells = [f"{ratio(results, (fleet, p, ld), name, m):.2f}" for _, p, ld, m in COLUMNS]
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def goals(results: Results) -> str:
    makespan = ratio(results, ("goal", "burst", 0.0), OURS, 2)
    tail = ratio(results, ("goal", "poisson", 0.8), OURS, 1)

    def ok(good: bool) -> str:
        return "met" if good else "**MISSED**"

    return (
        f"- burst makespan {makespan:.2f}x oracle (goal <= 1.15): {ok(makespan <= 1.15)}\n"
        f"- p95 completion at 80% load {tail:.2f}x oracle (goal <= 1.25): {ok(tail <= 1.25)}"
    )


def report(results: Results, fleets: Sequence[str], trials: int, seed: int) -> str:
    names = [p.name for p in POLICIES]
    parts = [
        f"Seed {seed}; {trials} trials per Poisson cell, {trials * BURST_TRIALS} per burst cell. Cells are "
        "policy / oracle on the same arrivals (lower is better; 1.00 = as good as a central dispatcher with "
        "perfect information)."
    ]
    for fleet in fleets:
        f = FLEETS[fleet]()
        parts.append(
            f"\n### {fleet}: {f.name}\n\nBurst: {f.burst_k} jobs at t=0, spread over all {len(f.machines)} entry "
            f"peers. Poisson: {f.poisson_jobs} jobs at 50/80/95% of {capacity_jobs_per_s(f):.3f} jobs/s "
            "(warm capacity), each arriving at a random peer.\n"
        )
        parts.append(table(results, fleet, names))
    if "goal" in fleets:
        parts.append("\nGoals (ours, goal fleet):\n\n" + goals(results))
    return "\n".join(parts) + "\n"


SWEEP: tuple[dict[str, float], ...] = (
    {"REDIRECT_FRACTION": 0.1, "REDIRECT_MIN_S": 0.1},
    {"REDIRECT_FRACTION": 0.25, "REDIRECT_MIN_S": 0.25},
    {"REDIRECT_FRACTION": 0.25, "REDIRECT_MIN_S": 1.0},
    {"REDIRECT_FRACTION": 0.5, "REDIRECT_MIN_S": 0.25},
    {"REDIRECT_FRACTION": 0.5, "REDIRECT_MIN_S": 1.0},
    {"REDIRECT_FRACTION": 1.0},  # never redirect: nothing finishes in less than 0 s
    {"MAX_REDIRECTS": 2},
    {"STEAL_MIN_GAIN_S": 0.05, "STEAL_GAIN_FRACTION": 0.0},
    {"STEAL_MIN_GAIN_S": 0.25, "STEAL_GAIN_FRACTION": 0.25},
    {"STEAL_MIN_GAIN_S": 1.0, "STEAL_GAIN_FRACTION": 0.1},
    {"STEAL_IDLE_S": 0.0},
    {"STEAL_IDLE_S": 1.0},
    {"TIE_FRACTION": 0.0},
    {"TIE_FRACTION": 0.1},
)


def sweep(fleets: Sequence[str], trials: int, seed: int, workers: int) -> str:
    """Ours with one tunable group changed at a time; the shipped values are the baseline row."""
    cols = [c for c in COLUMNS if c[0] in ("burst makespan", "burst mean", "80% p95", "95% mean", "95% p95")]
    head = "| setting | " + " | ".join(f"{f} {c[0]}" for f in fleets for c in cols) + " |"
    rows = [head, "|---|" + "---:|" * (len(cols) * len(fleets))]
    for tunables in ({}, *SWEEP):
        results = run_all(fleets, trials, seed, workers, tunables, names=(OURS,))  # noqa
        label = ", ".join(f"{k}={v}" for k, v in tunables.items()) or "shipped"
        cells = [f"{ratio(results, (f, p, ld), OURS, m):.2f}" for f in fleets for _, p, ld, m in cols]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--fleets", default=",".join(FLEETS), help=f"comma-separated, of: {', '.join(FLEETS)}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", type=Path, help="also write the tables and the reasoning to this file")
    parser.add_argument("--sweep", action="store_true", help="tune the re-check and steal margins instead")
    args = parser.parse_args(argv)
    fleets = [f for f in args.fleets.split(",") if f]
    if args.sweep:
        print(sweep(fleets, args.trials, args.seed, args.workers))
        return 0
    started = time.perf_counter()
    results = run_all(fleets, args.trials, args.seed, args.workers)
    text = report(results, fleets, args.trials, args.seed)
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(DOC_HEAD + text + DOC_TAIL)
    return 0


DOC_HEAD = """# Image scheduling: simulator results and design

Written by `python benchmarks/scheduler.py --write docs/benchmarks-scheduler.md` (seed 1, 3 trials per
Poisson cell and 15 per burst cell, about 45 s on 2 cores; the output is deterministic for a given seed).
`--sweep` prints the tuning table quoted below. The simulator drives the real decision code of a peer
(`herd_mesh/core/`: `ranking`, `stealing`, the sent-work `Ledger` and the attempt loop's `Attempts`) for every
ECT row and for the oracle.

## What is simulated

- Every peer runs one image job at a time from a FIFO queue. Run time = megapixel-steps x the peer's true
  speed, with lognormal noise (sigma 0.08). A model that is not resident costs its load time; memory is LRU
  with a 10-minute keep-alive. Advertised speeds are off by up to +-10 % (a moving average is never exact).
- Every peer advertises its state (backlog seconds, job ids, resident models, free memory, CPU) every
  0.5-1.0 s, and each other peer receives it 5-250 ms later (a fixed delay per pair). So each entry peer
  routes on its own stale copy, and several of them decide at the same moment. Its view of itself is fresh.
- Requests arrive at every peer. A burst is K jobs at t=0, spread over all entry peers. Poisson arrivals
  run at 50/80/95 % of the fleet's warm capacity, each at a random peer.
- The network costs 5 ms per message, 5 ms per forwarded request and 40 ms per PNG returned.
- The **oracle** is one central dispatcher. It has perfect, instant knowledge of every queue, including
  jobs still on the wire, and uses true speeds. It picks the least expected completion time with the same
  `ranking.rank`, and binds each job on arrival. Every cell is policy / oracle on the same arrivals
  and the same noise (common random numbers). A value below 1.00 is possible: with work stealing the
  final binding is late, which the oracle does not allow itself.
- **Baselines.** *Random* and *round-robin* each keep their own counter per entry. *Least-queue* counts
  the advertised jobs and breaks ties at random. The *anchor formula* is ollama-herd's image score, fed
  our 0.5-1 s advertisements rather than its 5 s heartbeats: -50 if a job is running, +0.5 per free GB,
  -0.2 per CPU %, and the highest score wins.
- **Fleets.**
  - `goal`: the issue's target, 3 Macs at 4x/2x/1x taking 0.5/1/2 s per image.
  - `goal9`: three of each, so 9 deciders at once.
  - `stale`: `goal` with advertisements 3x staler.
  - `studio`: six real chips with speeds from `speed.hardware_prior`, four models of 10-300 s per image,
    and a cold start.

## Results

"""
DOC_TAIL = """
## The design chosen, and why

**Score = expected completion time (ECT).** That is the queue ahead (advertised seconds, not a job count),
plus this job's run at that peer's measured speed (the hardware prior until it has measured), plus the load
time if the model is not resident (plus a download if the weights are not cached), plus the transfer. The
lowest wins; near-ties (2 %) are shuffled with the caller's `rng`. Counting jobs instead of seconds ignores
speed: least-queue sends a third of a burst to the 1x Mac (burst makespan 2.3x the oracle on `goal`). The
anchor's formula looks only at "one job running" and free memory, so everything piles onto the Mac with
the most RAM: 2.2x makespan on `goal`, 4.3x on `goal9`, p95 5.4x at 95 % load. On `studio` it is 6-14x at
every load, because the M3 Ultra's 256 GB outweighs the -50 for being busy.

**+ count what you yourself sent** (`Sent`, the `Ledger`, `sent_record`). This is the largest single
fix. Plain ECT sends a whole burst from one entry peer to whichever peer looks idle. Adding the decider's
own dispatched jobs that an advertisement does not list yet cuts the burst makespan from 1.74x to 1.03x
(`goal`), from 3.77x to 1.42x (`goal9`) and from 2.00x to 1.42x (`studio`). A job counts as seen as soon
as *any* peer lists it, so a redirected or stolen job is not charged twice. A cold load already on its way
is paid only once.

**+ re-check on arrival** (`redirect_target`). Counting your own jobs cannot see what the *other* entry
peers sent. The receiver is the only one that knows its real queue. When another up peer would finish the
job clearly sooner, by max(`REDIRECT_MIN_S` = 1 s, `REDIRECT_FRACTION` = 50 %), it answers "busy, try X"
with its real queue. This happens at most once per job (`MAX_REDIRECTS` = 1), so a job cannot ping-pong.
With 9 deciders it cuts p95 at 80 % load from 1.77x to 1.43x (ECT + sent vs. + re-check). The receiver
also remembers each "try X" it gave as its own sent work (the `Ledger` forgets it after 3 s). Without
that, every receiver redirected a burst to the same idle fast peer: in development runs this variant's
`goal` burst makespan was 1.28x, and it is 1.08x with it.

**+ work stealing** (`steal_target` on the idle peer, `steal_pick` on the busy one). Whatever imbalance
is left is repaired at the end. A peer whose own backlog drops under `STEAL_IDLE_S` asks the most loaded
peer that advertises queued work. That peer hands over the queued job that gains most, and only if it
gains at least max(0.25 s, 10 %) of its finish time there. A job is stolen at most once. This is late
binding: the last jobs of a burst go to whoever is free. So the burst makespan reaches the oracle's or
beats it (`goal9` 1.29x -> 0.99x, `studio` 1.20x -> 1.04x), and the tails at high load shrink (`goal9` p95
at 95 % load 1.32x -> 1.15x).

**All three together ("ours")** is the best or within noise of the best row in every column. It stays
within 1.20x of the oracle everywhere but one cell: `goal9` at 50 % load (mean 1.20x, p95 1.34x). There
the jobs take 0.5 s and the views are up to 1.25 s old, so 9 simultaneous deciders cannot avoid some
herding. The cost is about 0.14 s in absolute terms, and on real Macs jobs take
10-300 s, where `studio` shows 0.99-1.04x across the board.

**Tuning (`--sweep --fleets goal9,studio`, 3 trials; one group changed at a time).**
- Re-check margins below 50 %/1 s trade a small gain in `goal9`'s tail (80 % p95 1.19x -> 1.12x at
  10 %/0.1 s) for a worse `studio` burst (1.04x -> 1.07x).
- Never redirecting costs 10-14 % of burst makespan on both fleets.
- A second redirect gains nothing.
- Steal thresholds of 1 s or 25 % leave `goal9`'s tail at up to 1.30x. A threshold of zero helps it a
  little (95 % p95 1.11x) but hurts `studio` (burst 1.06x, 80 % p95 1.02x). 0.25 s / 10 % sits between.
- The tie band (0 %, 2 % or 10 %) and `STEAL_IDLE_S` (0-1 s) are within noise.

**Rejected.**
- *Two random choices* (Mitzenmacher's cure for stale information) throws the fast peer away half the
  time when speeds differ 4x: 1.37x p95 at 50 % load on `goal`, 1.46x mean on `studio`.
- *Ageing the views* (subtracting an advertisement's age from its backlog) makes a stale fast peer look
  free sooner, which means more herding. It is neutral or slightly worse everywhere (`goal9` 80 % p95
  1.22x vs 1.19x).

## Caveats

- Random and round-robin are unstable at every load on the 4x/2x/1x fleets. The 1x Mac gets a third of
  the jobs, more than it can serve, so their ratios measure a queue that grows for the whole run.
- The anchor runs up to 8 mflux jobs at once on one Mac. Here every policy gets a FIFO queue, so the
  throughput is the same, and sharing the GPU would only lengthen each job. The anchor's real 5 s
  heartbeat would make its rows worse, not better.
- The `stale` bursts equal the `goal` bursts for most rows. All burst decisions happen at t=0 on the same
  initial view, so staleness shows only later (stealing, Poisson).
- Capacity is warm capacity. With model switches, `studio` at 95 % is close to saturation for everyone,
  the oracle included.

## How a peer uses it at runtime

- **Entry peer:** call `rank(views, work, sent=own_sent + hints, rng=rng)`. The views include its own
  fresh one. Forward to the first choice and record `sent_record(view, work, sent=..., now=now)` until the
  answer comes. On a failure, try the next choice.
- **Receiver** of a forwarded, still redirectable job: call `redirect_target(here, others, work,
  sent=own_sent + hints, hops=hops, rng=rng)`. If it returns X, answer 503
  `{"reason": "busy", "redirect_to": X, "backlog_s": ..., "job_ids": [...]}` and keep a hint `Sent` for X.
  The entry re-sends to X with redirects disallowed and corrects its view of the receiver from the body.
- **Idle peer:** whenever its backlog is at most `STEAL_IDLE_S`, and on every advertisement it receives
  while that holds, call `steal_target(me, others, rng=rng)`. If it names a peer, send that peer one steal
  request carrying its own fresh view. Keep only one request outstanding at a time.
- **Busy peer** receiving a steal request: call `steal_pick(here, waiting, thief_view, running_left_s=...,
  pinned=already_stolen)`. Here `thief_view.transfer_s` is the cost of moving the job. If it returns a
  job, withdraw it from the GPU queue and answer that job's entry peer "moved to thief". The entry
  re-sends it to the thief with redirects disallowed and marked stolen, so it is pinned there. If the busy
  peer is itself the entry, it forwards the job directly.
"""


if __name__ == "__main__":
    raise SystemExit(main())
