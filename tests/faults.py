"""Faults with nothing lost (issue 13, item 5): a burst of image requests over 4 peers, each in its own network
namespace on one bridge with real mDNS, while one peer is killed (-9), one loses its link for a few seconds and
the mesh is split in two and healed. Shared by `tests/test_faults.py` (one short and one 60 s partition run in
CI) and `benchmarks/faults.py` (repeated runs, figures into docs/benchmarks.md).

The cast, always the same so that runs compare:

    n0  entry and worker, never faulted
    n1  entry and worker; alone on the minority side of the partition
    n2  entry and worker; its link goes down, then up
    n3  entry and worker; killed with SIGKILL (the whole namespace: the peer and its mflux), restarted at the end

Clients (threads of this process, in the root namespace, which reaches both sides of a partition) send the
requests one after another, request i first to peer n(i % 4). Like `herd_mesh.Client`, a client sends a request
to the next peer only when the first could not be reached at all (connect refused or timed out: it never got
the request), and, as a user would, once more elsewhere when the peer holding it died (the connection broke; the
same seed makes the same image). Each request has a deadline; an answer is a PNG or a JSON error.

Faults start when the burst has reached a number of answers (not at fixed times), so they land in the burst on
a slow machine too. Every figure is measured, nothing is assumed: `Report` holds what each client saw, when each
fault happened, each peer's mflux stand-in runs (their own event logs) and n3's SQLite records before and after
the kill.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.harness import Mesh, wait_until
from tests.netns import Lab, LabPeer, add_peer

NAMES = ("n0", "n1", "n2", "n3")
KILLED, UNPLUGGED, MINORITY = "n3", "n2", ("n1",)
BODY = {"model": "z-image-turbo", "width": 512, "height": 512, "steps": 4}
MEGAPIXEL_STEPS = 512 * 512 / 1e6 * 4  # the stand-in's time is per megapixel and step
CONNECT_S = 1.0  # a client's connect timeout: a peer that cannot take a connection in 1 s is skipped
NOTICE_GRACE_S = 1.0  # after an entry lists a peer down, the most its job there may take to be given up


@dataclass(frozen=True)
class Plan:
    """One scenario. Durations in seconds; `*_after`: answers received before that fault starts."""

    requests: int = 60
    clients: int = 6
    job_s: float = 1.0  # the stand-in's GPU time for one 512x512 image
    deadline_s: float = 45.0  # each request's deadline, at the client
    few_s: float = 6.0  # "a few seconds": noticing a fault (about 3 s) plus retrying elsewhere, on a busy box
    link_down_s: float = 4.0
    partition_s: float = 5.0
    kill_after: int = 6
    unplug_after: int = 15
    split_after: int = 28
    reconverge_s: float = 10.0  # "within seconds": the most a reconvergence may take before it is a failure

    @property
    def answer_bound_s(self) -> float:
        """The latest a request whose entry peer stays reachable may be answered: its own job, every other
        client's job queued ahead of it on the same peer, and a few seconds (the issue's correctness bound).
        A request that a fault made run again gets its job's time and a few seconds more for each re-run
        (`Report.bound_s`): a run cut off by the kill and then by the partition is two faults, not a hang."""
        return self.clients * self.job_s + self.few_s

    @property
    def ms_per_mp_step(self) -> float:
        return self.job_s * 1000 / MEGAPIXEL_STEPS


SHORT = Plan()
# A laptop lid closed for a minute: longer jobs, so that the burst runs on through most of the partition.
LONG = Plan(job_s=2.5, partition_s=60.0, kill_after=6, unplug_after=12, split_after=18)


# -- what the clients saw ------------------------------------------------------------------------------------------
@dataclass
class Try:
    peer: str
    request_id: str
    sent: float  # time.time()
    ended: float = 0.0
    result: str = ""  # "answered", "unreachable" (never got it), "dropped" (held it, then the connection broke)
    detail: str = ""


@dataclass
class Outcome:
    index: int
    prompt: str
    tries: list[Try] = field(default_factory=list)
    status: int | None = None  # the HTTP status of the answer; None: no answer
    kind: str = "lost"  # "ok", "error <status> <reason>", "unclear <status>", "hung", "lost"
    error: str = ""
    node: str = ""  # X-Fleet-Node: where it ran

    @property
    def sent(self) -> float:
        return self.tries[0].sent if self.tries else 0.0

    @property
    def ended(self) -> float:
        return self.tries[-1].ended if self.tries else 0.0

    @property
    def entry(self) -> str:
        """The peer that answered (or last held) the request."""
        return self.tries[-1].peer if self.tries else ""

    @property
    def answer_s(self) -> float:
        """From the moment the answering peer got the request to the answer."""
        return self.tries[-1].ended - self.tries[-1].sent if self.tries else 0.0

    @property
    def clear(self) -> bool:
        return self.kind == "ok" or self.kind.startswith("error ")


class Burst:
    """`plan.clients` threads sending `plan.requests` image requests, each to its entry peer first."""

    def __init__(self, plan: Plan, peers: dict[str, LabPeer], tag: str) -> None:
        self.plan = plan
        self.peers = peers
        self.outcomes = [Outcome(i, f"fault run {tag} request {i}") for i in range(plan.requests)]
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, name=f"client-{c}", daemon=True)
                         for c in range(plan.clients)]  # fmt: skip

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def answered(self, entry: str | None = None) -> int:
        return sum(1 for o in self.outcomes if o.status is not None and (entry is None or o.entry == entry))

    def in_flight(self) -> int:
        return sum(1 for o in self.outcomes if o.tries and o.status is None and o.kind == "lost")

    def _client(self) -> None:
        with httpx.Client(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            while True:
                with self._lock:
                    i = next(self._next)
                if i >= self.plan.requests:
                    return
                self._send(http, self.outcomes[i])

    def _send(self, http: httpx.Client, out: Outcome) -> None:
        body = {**BODY, "prompt": out.prompt, "seed": out.index}
        deadline = time.monotonic() + self.plan.deadline_s
        order = [NAMES[(out.index + k) % len(NAMES)] for k in range(len(NAMES))]
        for name in order:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out.kind = "hung"
                return
            attempt = Try(name, f"f{uuid.uuid4().hex[:12]}", time.time())
            out.tries.append(attempt)
            try:
                response = http.post(
                    self.peers[name].url + "/api/generate-image", json=body,
                    headers={"X-Request-Id": attempt.request_id},
                    timeout=httpx.Timeout(remaining, connect=min(CONNECT_S, remaining)),
                )  # fmt: skip
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # it never got the request: send it on
                attempt.ended, attempt.result, attempt.detail = time.time(), "unreachable", _words(exc)
                continue
            except httpx.TimeoutException as exc:  # no answer before the deadline
                attempt.ended, attempt.result, attempt.detail = time.time(), "hung", _words(exc)
                out.kind = "hung"
                return
            except httpx.TransportError as exc:  # it held the request and went away: the user sends it again
                attempt.ended, attempt.result, attempt.detail = time.time(), "dropped", _words(exc)
                continue
            attempt.ended, attempt.result = time.time(), "answered"
            out.status = response.status_code
            out.node = response.headers.get("X-Fleet-Node", "")
            if response.status_code == 200 and response.content.startswith(b"\x89PNG\r\n\x1a\n"):
                out.kind = "ok"
                return
            out.kind, out.error = _error_kind(response)
            return
        out.kind = "lost" if out.status is None else out.kind  # every peer unreachable: nobody answered


def _words(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _error_kind(response: httpx.Response) -> tuple[str, str]:
    """`error <status> <reason>` for a JSON error with a message, `unclear <status>` for anything else."""
    try:
        doc = response.json()
    except ValueError:
        return f"unclear {response.status_code}", response.text[:300]
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str) or not doc["error"]:
        return f"unclear {response.status_code}", response.text[:300]
    return f"error {response.status_code} {doc.get('reason') or ''}".rstrip(), doc["error"]


# -- the stand-in's runs ----------------------------------------------------------------------------------------
@dataclass
class Run:
    """One mflux stand-in process: which peer ran which request, from when to when (None: it never ended)."""

    peer: str
    prompt: str
    start: float
    end: float | None
    status: str | None


def read_runs(peers: dict[str, LabPeer]) -> list[Run]:
    runs = []
    for name, peer in peers.items():
        path = standin_log(peer)
        if not path.exists():
            continue
        starts: dict[int, dict[str, Any]] = {}
        ends: dict[int, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                event = json.loads(line)
                (starts if event["event"] == "start" else ends)[event["pid"]] = event
        for pid, start in starts.items():
            prompt = next(a.removeprefix("--prompt=") for a in start["argv"] if a.startswith("--prompt="))
            end = ends.get(pid)
            runs.append(Run(name, prompt, start["time"], end["time"] if end else None, end and end["status"]))
    return runs


def standin_log(peer: LabPeer) -> Path:
    return peer.data_dir / "standin.jsonl"


def running(peer: LabPeer) -> bool:
    """The peer's mflux stand-in is generating (a start event without its end)."""
    return any(run.end is None for run in read_runs({peer.node_id: peer}))


# -- the faults --------------------------------------------------------------------------------------------------
@dataclass
class Faults:
    killed_at: float = 0.0
    unplugged_at: float = 0.0
    plugged_at: float = 0.0
    split_at: float = 0.0
    healed_at: float = 0.0
    in_flight: dict[str, int] = field(default_factory=dict)  # requests in flight when each fault began
    noticed: dict[str, float] = field(default_factory=dict)  # "a>b": when a first listed b down in the split
    reconverged_s: dict[str, float | None] = field(default_factory=dict)  # after link up, heal, restart
    records_before: set[str] = field(default_factory=set)  # job ids of n3's own records, just before the kill
    records_after: set[str] = field(default_factory=set)  # ... in its herd.db after the kill
    records_restarted: set[str] = field(default_factory=set)  # ... once n3 runs again on that file
    integrity: str = ""  # PRAGMA integrity_check of n3's herd.db after the kill


def records(peer: LabPeer) -> set[str]:
    """The job ids of the image requests the peer recorded as their entry peer, read straight from its
    data_dir/herd.db (read-only; copies of other peers' records, if it keeps any, are left out)."""
    path = peer.data_dir / "herd.db"
    query = "SELECT job_id FROM requests WHERE kind = 'image' AND entry_node = ?"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return {row[0] for row in db.execute(query, (peer.node_id,))}


def integrity(peer: LabPeer) -> str:
    path = peer.data_dir / "herd.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def watch_split(peers: list[LabPeer], faults: Faults, until: float) -> None:
    """While the mesh is split (until `until`, monotonic): when each peer first lists each one across the cut
    `down` (what makes it give up the jobs it sent there), into `faults.noticed`."""
    while (left := until - time.monotonic()) > 0:
        for a in peers:
            try:
                statuses = a.statuses()
            except httpx.HTTPError:
                continue
            for b in peers:
                key = f"{a.node_id}>{b.node_id}"
                across = (a.node_id in MINORITY) != (b.node_id in MINORITY)
                if across and key not in faults.noticed and statuses.get(b.node_id) == "down":
                    faults.noticed[key] = time.time()
        time.sleep(min(0.2, max(0.0, left)))  # the next look, not a wait for a condition


def all_up(peers: list[LabPeer]) -> bool:
    """Every peer lists every other one `up`."""
    for peer in peers:
        statuses = peer.statuses()
        if any(statuses.get(other.node_id) != "up" for other in peers if other is not peer):
            return False
    return True


def reconverge(peers: list[LabPeer], timeout: float) -> float | None:
    """Seconds until every peer lists the others up again; None when that took longer than `timeout`."""
    started = time.monotonic()
    try:
        wait_until(lambda: all_up(peers), timeout, interval=0.1, what="the peers to list each other up")
    except AssertionError:
        return None
    return time.monotonic() - started


# -- one run -----------------------------------------------------------------------------------------------------
@dataclass
class Report:
    plan: Plan
    outcomes: list[Outcome]
    faults: Faults
    runs: list[Run]
    wall_s: float

    # -- the questions ---------------------------------------------------------------------------------
    def lost(self) -> list[Outcome]:
        """Requests that got neither a PNG nor a JSON error (hung past the deadline, or nobody answered)."""
        return [o for o in self.outcomes if not o.clear]

    def errors(self) -> Counter[str]:
        return Counter(o.kind for o in self.outcomes if o.kind != "ok")

    def worst_answer_s(self) -> float:
        return max((o.answer_s for o in self.outcomes if o.status is not None), default=0.0)

    def entry_reachable(self, o: Outcome) -> bool:
        """The peer that answered was reachable from the client all along: not the killed one, and not the
        unplugged one while its link was down (its answer then waits for the cable)."""
        last = o.tries[-1]
        f = self.faults
        if last.peer == KILLED and f.killed_at and last.ended >= f.killed_at:
            return False
        return not (last.peer == UNPLUGGED and f.unplugged_at and last.sent <= f.plugged_at
                    and last.ended >= f.unplugged_at)  # fmt: skip

    def runs_of(self, o: Outcome) -> list[Run]:
        return sorted((r for r in self.runs if r.prompt == o.prompt), key=lambda r: r.start)

    def bound_s(self, o: Outcome) -> float:
        """`Plan.answer_bound_s`, plus the job's time and a few seconds for each time a fault made it run again."""
        reruns = max(0, len(self.runs_of(o)) - 1)
        return self.plan.answer_bound_s + reruns * (self.plan.job_s + self.plan.few_s)

    def reachable_answers(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is not None and self.entry_reachable(o)]

    def late(self) -> list[Outcome]:
        """Requests whose entry peer was reachable but answered later than the job's own time plus a few
        seconds (`bound_s`): what a job stuck in a cut until the heal looks like."""
        return [o for o in self.reachable_answers() if o.answer_s > self.bound_s(o)]

    def stuck_in_cut(self) -> list[Outcome]:
        """Requests answered from across the partition although their entry peer had already listed that peer
        down while the job ran there: a job forwarded into the cut that was not sent elsewhere at once."""
        out = []
        for o in self.reachable_answers():
            noticed = self.faults.noticed.get(f"{o.entry}>{o.node}")
            there = [r for r in self.runs_of(o) if r.peer == o.node]
            if noticed and there and there[-1].start < noticed and o.ended > noticed + NOTICE_GRACE_S:
                out.append(o)
        return out

    def noticed_s(self) -> float | None:
        """The longest any peer took to list a peer across the partition down (None: one never did)."""
        f = self.faults
        pairs = [
            f"{a}>{b}"
            for a in NAMES
            for b in NAMES
            if a != KILLED and b != KILLED and (a in MINORITY) != (b in MINORITY)
        ]
        if not f.split_at or any(p not in f.noticed for p in pairs):
            return None
        return max(f.noticed[p] - f.split_at for p in pairs)

    def _side(self, peer: str) -> int:
        return 1 if peer in MINORITY else 0

    def _excused(self, run: Run, until: float, o: Outcome) -> bool:
        """Whether `run`, one that did not give the client its answer, was lost to a fault: between its start and
        `until` (its end, or the start of the run after it, when the peer holding the request had given up on
        it: until the answer is back at the holder, a finished run can still be lost on the way), a fault cut
        its peer off from the peer holding the request (one of them killed, unplugged, or across the
        partition), or the holder died and the client sent the request again."""
        f = self.faults
        start = run.start
        if any(t.result == "dropped" for t in o.tries):
            return True
        holders = {t.peer for t in o.tries if t.sent <= until and (t.ended or float("inf")) >= start}
        involved = holders | {run.peer}
        if KILLED in involved and f.killed_at and until >= f.killed_at:
            return True
        if UNPLUGGED in involved and f.unplugged_at and start <= f.plugged_at and until >= f.unplugged_at:
            return True
        split = {self._side(p) for p in involved}
        return len(split) > 1 and bool(f.split_at) and start <= f.healed_at and until >= f.split_at

    def ran_twice(self) -> list[tuple[Outcome, list[Run]]]:
        """Requests run more than once without a fault that made it necessary: every run but the one whose
        answer the client got (the last on the peer that answered) must have been lost to a fault. (A run the
        entry gave up may even start after the one that answered: queued across the cut, it ran there later.)"""
        out = []
        for o in self.outcomes:
            runs = self.runs_of(o)
            answer = next((r for r in reversed(runs) if r.peer == o.node), runs[-1] if runs else None)
            lost = [r for r in runs if r is not answer]
            later = [
                max(r.end or float("inf"), next((n.start for n in runs if n.start > r.start), 0.0)) for r in lost
            ]
            if not all(self._excused(r, until, o) for r, until in zip(lost, later, strict=True)):
                out.append((o, runs))
        return out

    def repeated(self) -> int:
        """Requests run more than once, needed or not."""
        return sum(1 for n in Counter(r.prompt for r in self.runs).values() if n > 1)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.outcomes),
            "ok": sum(1 for o in self.outcomes if o.kind == "ok"),
            "lost": len(self.lost()),
            "errors": dict(self.errors()),
            "late": len(self.late()),
            "stuck_in_cut": len(self.stuck_in_cut()),
            "partition_noticed_s": None if (n := self.noticed_s()) is None else round(n, 2),
            "ran_twice_without_need": len(self.ran_twice()),
            "repeated_after_a_fault": self.repeated() - len(self.ran_twice()),
            "resent_after_entry_died": sum(1 for o in self.outcomes if any(t.result == "dropped" for t in o.tries)),
            "worst_answer_s": round(self.worst_answer_s(), 2),
            "worst_reachable_answer_s": round(max((o.answer_s for o in self.reachable_answers()), default=0.0), 2),
            "least_margin_s": round(min((self.bound_s(o) - o.answer_s for o in self.reachable_answers()),
                                        default=0.0), 2),  # fmt: skip
            "reconverged_s": {k: None if v is None else round(v, 2) for k, v in self.faults.reconverged_s.items()},
            "in_flight": self.faults.in_flight,
            "records": {"before_kill": len(self.faults.records_before), "after_kill": len(self.faults.records_after),
                        "survived": self.faults.records_before <= self.faults.records_after
                        and self.faults.records_before <= self.faults.records_restarted,
                        "after_restart": len(self.faults.records_restarted), "integrity": self.faults.integrity},
            "wall_s": round(self.wall_s, 1),
        }  # fmt: skip

    def describe(self, outcomes: list[Outcome]) -> str:
        """One line per request, for failure messages."""
        t0 = min((o.sent for o in self.outcomes if o.tries), default=0.0)
        lines = []
        for o in outcomes:
            tries = ", ".join(f"{t.peer}@{t.sent - t0:.1f}s {t.result or 'pending'} {t.detail}".rstrip()
                              for t in o.tries)  # fmt: skip
            lines.append(
                f"#{o.index} {o.kind} on {o.node or '-'} in {o.answer_s:.1f}s (bound {self.bound_s(o):g}s) "
                f"[{tries}] {o.error[:200]}"
            )
        f = self.faults
        marks = {"kill": f.killed_at, "unplug": f.unplugged_at, "plug": f.plugged_at, "split": f.split_at,
                 "heal": f.healed_at}  # fmt: skip
        lines.append("faults at " + ", ".join(f"{k} {v - t0:.1f}s" for k, v in marks.items() if v))
        return "\n".join(lines)


def start_peers(mesh: Mesh, lab: Lab, plan: Plan) -> dict[str, LabPeer]:
    """One peer per host with real mDNS (no --peer), each with its own stand-in event log; started together."""
    peers = {}
    for host, name in zip(lab.hosts, NAMES, strict=True):
        peer = add_peer(mesh, lab, host, name, start=False, ms_per_mp_step=plan.ms_per_mp_step)
        peer.env["HERD_STANDIN_LOG"] = str(standin_log(peer))
        peers[name] = peer.start(wait=False)
    for peer in peers.values():
        peer.wait_ready(timeout=30)
    mesh.wait_all_see_each_other(timeout=20)
    return peers


def run(mesh: Mesh, lab: Lab, plan: Plan, log: Callable[[str], None] = lambda _: None) -> Report:
    """Start the 4 peers in `lab` (4 hosts), run the burst with the three faults, restart the killed peer."""
    started = time.monotonic()
    peers = start_peers(mesh, lab, plan)
    hosts = dict(zip(NAMES, lab.hosts, strict=True))
    burst = Burst(plan, peers, lab.tag)
    faults = Faults()
    wait_s = plan.deadline_s  # the most any wait for the burst's progress may take
    burst.start()
    try:
        # 1. a power cut on n3 while it runs a job and after it has answered (and recorded) a request itself
        wait_until(lambda: burst.answered() >= plan.kill_after and running(peers[KILLED]) and records(peers[KILLED]),
                   wait_s, interval=0.05, what="n3 to be busy after recording a request of its own")  # fmt: skip
        faults.records_before = records(peers[KILLED])
        faults.in_flight["kill"] = burst.in_flight()
        faults.killed_at = time.time()
        lab.kill_host(hosts[KILLED])
        faults.records_after = records(peers[KILLED])
        faults.integrity = integrity(peers[KILLED])
        log(f"killed n3 with {faults.in_flight['kill']} requests in flight")
        live = [peers[n] for n in NAMES if n != KILLED]

        # 2. n2's cable out for a few seconds
        wait_until(lambda: burst.answered() >= plan.unplug_after, wait_s, what="answers before the unplug")
        faults.in_flight["unplug"] = burst.in_flight()
        faults.unplugged_at = time.time()
        lab.link_down(hosts[UNPLUGGED])
        time.sleep(plan.link_down_s)  # the fault's length
        lab.link_up(hosts[UNPLUGGED])
        faults.plugged_at = time.time()
        faults.reconverged_s["link up"] = reconverge(live, plan.reconverge_s)
        log(f"n2 unplugged for {plan.link_down_s:g} s; reconverged in {faults.reconverged_s['link up']}")

        # 3. the mesh split in two
        wait_until(lambda: burst.answered() >= plan.split_after, wait_s, what="answers before the split")
        faults.in_flight["split"] = burst.in_flight()
        faults.split_at = time.time()
        lab.partition([hosts[n] for n in MINORITY])
        watch_split(live, faults, until=time.monotonic() + plan.partition_s)  # the fault's length
        lab.heal()
        faults.healed_at = time.time()
        faults.reconverged_s["heal"] = reconverge(live, plan.reconverge_s)
        log(f"partition of {plan.partition_s:g} s healed; reconverged in {faults.reconverged_s['heal']}")
    finally:
        burst.join(wait_s + plan.deadline_s)

    # 4. n3 back on the same data dir: its records survived, and the mesh takes it back
    peers[KILLED].start(wait=True)
    faults.reconverged_s["restart"] = reconverge(list(peers.values()), plan.reconverge_s)
    faults.records_restarted = records(peers[KILLED])
    return Report(plan, burst.outcomes, faults, read_runs(peers), time.monotonic() - started)
