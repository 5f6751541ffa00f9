#!/usr/bin/env python3
"""Join, leave, crash, cut-off and rejoin times of real peer processes on loopback, over repeated trials.

    python benchmarks/discovery.py [--peers 3-5] [--trials T] [--interval S] [--write docs/benchmarks-discovery.md]

A mesh of `--peers - 1` observers is started once with tests/harness.py, on 127.N.x.y addresses (127.0.x.y is
left to test runs sharing the machine); every trial then puts one fresh subject peer through its life while a
thread per observer polls that observer's `GET /mesh/peers` every `--interval` seconds. A time "on every other
peer" is taken when the answer in which the *last* observer agreed arrives, so each figure is an upper bound,
late by at most one poll interval plus one round trip:

1. join: subject process started -> listed `up` by every observer (also: from "answers /mesh/ping");
2. graceful leave: SIGTERM (odd trials) or SIGINT (even trials) -> absent from every list, and still absent
   3 s later on every one (a late call from the leaving peer must not list it again); restart it;
3. crash: SIGKILL -> not `up` anywhere, and -> `down` everywhere;
4. rejoin: the same node id restarted on the same address -> `up` everywhere, one entry per node id;
5. cut off: every packet to or from the subject's address dropped on lo (tc: htb root, a class whose qdisc is
   `blackhole`, u32 filters on source and destination); the process runs on with its socket open, as on an
   unplugged Mac -> not `up` anywhere, -> `down`; then the cut is healed -> `up` everywhere again;
6. frozen: SIGSTOP (socket open, process silent) -> not `up` anywhere, -> `down`; then SIGCONT and SIGKILL.

Each event waits a random 0.2-0.7 s after the mesh is settled so it lands anywhere in the 0.5 s probe cycle.
Every answer is checked for duplicate entries (a node id listed twice) and ghosts (an unknown node id, or a
known one at an address it no longer has); there must be none.

Scenario 5 needs root and tc with the htb and blackhole qdiscs and the u32 classifier, and a lo without a root
qdisc of its own; otherwise it is skipped (say so with --no-netcut). It is removed again on exit.
Every process this script starts is stopped on exit, Ctrl-C and errors included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from tests.harness import PORT, Mesh, Peer  # noqa: E402

PROBE_INTERVAL_S = 0.5  # herd_mesh.liveness: events are spread over one probe cycle
SETTLE_S = (0.2, 0.7)  # random wait before each event (seconds)
WAIT_S = 10.0  # give up on one measurement after this long (seconds); counts as a miss
START_TIMEOUT_S = 20.0  # a peer process must answer HTTP within this long (seconds)
HTTP_POLL_S = 0.01  # how often a starting subject's /mesh/ping is tried (seconds)
STAY_GONE_S = 3.0  # after a graceful leave, watch this long that it is not listed again (> SUSPECT_TO_DOWN_S)
STALL_S = 5.0  # an observer that has not answered a poll for this long is broken: the run stops (seconds)

Entries = list[dict[str, Any]]
Pred = Callable[[Entries], bool]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _addresses() -> Iterator[str]:
    """127.N.x.y addresses with port 11435 free. The harness's own range (127.0.x.y) is left to test runs that
    may share this machine; N depends on our pid so two benchmarks apart rarely meet."""
    second = 100 + os.getpid() % 100
    for n in range(10, 250 * 250):
        host = f"127.{second}.{n // 250}.{n % 250 + 2}"
        with socket.socket() as sock:
            try:
                sock.bind((host, PORT))
            except OSError:
                continue
        yield host


ADDRESSES = _addresses()


# ------------------------------------------------------------------------------------------------ observing


def entries_for(entries: Entries, node_id: str) -> Entries:
    return [e for e in entries if e.get("node_id") == node_id]


def is_up(node_id: str) -> Pred:
    return lambda es: [e["status"] for e in entries_for(es, node_id)] == ["up"]


def is_absent(node_id: str) -> Pred:
    return lambda es: not entries_for(es, node_id)


def is_not_up(node_id: str) -> Pred:
    return lambda es: all(e["status"] != "up" for e in entries_for(es, node_id))


def is_down(node_id: str) -> Pred:
    """Listed, and down: a peer that vanished without a goodbye must not vanish from the list either."""
    return lambda es: [e["status"] for e in entries_for(es, node_id)] == ["down"]


class Watch:
    """When each observer first answered with `pred` true, counting only polls sent after `t0`."""

    def __init__(self, pred: Pred, observers: list[str], t0: float) -> None:
        self.pred = pred
        self.t0 = t0
        self.need = set(observers)
        self.first: dict[str, float] = {}
        self.done = threading.Event()

    def offer(self, observer: str, sent: float, received: float, entries: Entries) -> None:
        if sent < self.t0 or observer in self.first or observer not in self.need:
            return
        if self.pred(entries):
            self.first[observer] = received
            if self.need <= self.first.keys():
                self.done.set()

    def result(self) -> float | None:
        """Seconds from t0 until the last observer agreed, or None if one never did."""
        if not self.need <= self.first.keys():
            return None
        return max(self.first.values()) - self.t0


@dataclass
class Anomaly:
    kind: str  # "duplicate" or "ghost"
    observer: str
    detail: str


@dataclass
class Poller:
    """A thread per observer polling its /mesh/peers; feeds the active watches and checks every answer."""

    observers: dict[str, str]  # node id -> base URL
    interval: float
    known: dict[str, str] = field(default_factory=dict)  # node id -> URL of every peer this run started
    watches: list[Watch] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    polls: int = 0
    errors: int = 0
    rtt_total: float = 0.0
    rtt_max: float = 0.0
    last: dict[str, tuple[float, Entries]] = field(default_factory=dict)  # observer -> its latest good answer
    errors_by: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(node_id, url), name=f"poll-{node_id}", daemon=True)
            for node_id, url in self.observers.items()
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, observer: str, url: str) -> None:
        with httpx.Client(base_url=url, timeout=2.0, trust_env=False) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    doc = client.get("/mesh/peers").json()
                    entries = [e for e in doc["peers"] if not e.get("self")]
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    with self._lock:
                        self.errors += 1
                        self.errors_by[observer] += 1
                    entries = None
                received = time.monotonic()
                if entries is not None:
                    self._check(observer, entries)
                    with self._lock:
                        self.polls += 1
                        self.rtt_total += received - sent
                        self.rtt_max = max(self.rtt_max, received - sent)
                        self.last[observer] = (received, entries)
                        for watch in self.watches:
                            watch.offer(observer, sent, received, entries)
                self._stop.wait(max(0.0, sent + self.interval - time.monotonic()))

    def _check(self, observer: str, entries: Entries) -> None:
        found: list[Anomaly] = []
        for node_id, n in Counter(e.get("node_id") for e in entries).items():
            if n > 1:
                found.append(Anomaly("duplicate", observer, f"{node_id} listed {n} times"))
        for e in entries:
            node_id, url = e.get("node_id"), e.get("url")
            if node_id not in self.known:
                found.append(Anomaly("ghost", observer, f"unknown entry {node_id!r} at {url} ({e.get('status')})"))
            elif url != self.known[node_id]:
                found.append(Anomaly("ghost", observer, f"{node_id} at stale address {url}"))
        if found:
            with self._lock:
                self.anomalies.extend(found)

    @contextmanager
    def watching(self, *watches: Watch) -> Iterator[None]:
        with self._lock:
            self.watches.extend(watches)
        try:
            yield
        finally:
            with self._lock:
                for watch in watches:
                    self.watches.remove(watch)

    def measure(self, t0: float, *preds: Pred, timeout: float = WAIT_S) -> list[float | None]:
        """Wait until every pred held on every observer (from t0 on); seconds from t0 for each pred."""
        watches = [Watch(pred, list(self.observers), t0) for pred in preds]
        with self.watching(*watches):
            for watch in watches:
                watch.done.wait(max(0.0, t0 + timeout - time.monotonic()))
        return [w.result() for w in watches]

    def latest(self, observer: str) -> tuple[float, Entries] | None:
        with self._lock:
            return self.last.get(observer)

    def anomaly_count(self) -> int:
        with self._lock:
            return len(self.anomalies)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------- network cut


def _tc(*args: str, batch: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["tc", "-batch", "-"] if batch is not None else ["tc", *args]
    return subprocess.run(cmd, input=batch, capture_output=True, text=True, timeout=10)


class NetCut:
    """Drop every packet to or from one address on lo: the process keeps running with its socket open."""

    def __init__(self) -> None:
        self.installed = False

    @staticmethod
    def unavailable() -> str | None:
        """Why a cut cannot be made here, or None. Leaves lo as it found it."""
        if os.geteuid() != 0:
            return "needs root (tc on lo)"
        if shutil.which("tc") is None:
            return "tc (iproute2) is not installed"
        shown = _tc("qdisc", "show", "dev", "lo")
        if shown.returncode != 0 or not shown.stdout.startswith("qdisc noqueue"):
            return f"lo already has a root qdisc: {shown.stdout.strip() or shown.stderr.strip()}"
        cut = NetCut()
        try:
            cut.install()
            probe = _tc(batch=_filters("127.0.0.1", handle_only=True))
            if probe.returncode != 0:
                return f"tc u32 filters unavailable: {probe.stderr.strip()}"
        except RuntimeError as exc:
            return str(exc)
        finally:
            cut.uninstall()
        return None

    def install(self) -> None:
        steps = [
            ("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"),  # unclassified traffic: direct, unshaped
            ("class", "add", "dev", "lo", "parent", "1:", "classid", "1:2", "htb", "rate", "1mbit"),
            ("qdisc", "add", "dev", "lo", "parent", "1:2", "handle", "2:", "blackhole"),
        ]
        for step in steps:
            done = _tc(*step)
            if step[0] == "qdisc" and step[-1] == "htb" and done.returncode == 0:
                self.installed = True
            if done.returncode != 0:
                raise RuntimeError(f"tc {' '.join(step)}: {done.stderr.strip()}")

    def cut(self, address: str) -> None:
        done = _tc(batch=_filters(address))
        if done.returncode != 0:
            raise RuntimeError(f"tc filter: {done.stderr.strip()}")

    def uninstall(self) -> None:
        if self.installed:
            _tc("qdisc", "del", "dev", "lo", "root")
            self.installed = False


def _filters(address: str, handle_only: bool = False) -> str:
    lines = [f"filter add dev lo parent 1: protocol ip prio 1 u32 match ip dst {address}/32 flowid 1:2"]
    if not handle_only:
        lines.append(f"filter add dev lo parent 1: protocol ip prio 2 u32 match ip src {address}/32 flowid 1:2")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Row:
    key: str
    scenario: str
    goal: float | None  # seconds; None: reported for information


ROWS = [
    Row("join", "join: process started -> listed `up` by every other peer", 2.0),
    Row("join_http", "join: answers `/mesh/ping` -> listed `up` everywhere", None),
    Row("leave_term", "graceful leave, SIGTERM: signal -> absent from every other list", 1.0),
    Row("leave_int", "graceful leave, SIGINT: signal -> absent from every other list", 1.0),
    Row("relisted", "graceful leave: observers listing it again within 3 s of leaving (count)", 0.0),
    Row("crash", "crash, SIGKILL: kill -> not `up` anywhere", 3.0),
    Row("crash_down", "crash, SIGKILL: kill -> `down` everywhere", None),
    Row("rejoin", "rejoin after SIGKILL, same node id: process started -> `up` everywhere", 2.0),
    Row("rejoin_http", "rejoin: answers `/mesh/ping` -> `up` everywhere", None),
    Row("cut", "cut off (packets to/from it dropped): cut -> not `up` anywhere", 3.0),
    Row("cut_down", "cut off: cut -> `down` everywhere", None),
    Row("heal", "cut healed: -> `up` everywhere again", None),
    Row("freeze", "frozen (SIGSTOP): signal -> not `up` anywhere", 3.0),
    Row("freeze_down", "frozen (SIGSTOP): signal -> `down` everywhere", None),
]


class Bench:
    def __init__(self, args: argparse.Namespace, base_dir: Path) -> None:
        self.args = args
        self.mesh = Mesh(base_dir, name=f"bench-{os.getpid()}")
        self.results: dict[str, list[float | None]] = {row.key: [] for row in ROWS}
        self.poller: Poller | None = None
        self.netcut = NetCut()
        self.netcut_skipped: str | None = None
        self.rng = random.Random(args.seed)
        self.load_before = os.getloadavg()
        self.misses = 0

    # -- plumbing ---------------------------------------------------------------------------------------------
    def record(self, key: str, value: float | None) -> None:
        self.results[key].append(value)

    def settle(self) -> None:
        time.sleep(self.rng.uniform(*SETTLE_S))

    @property
    def observers(self) -> list[Peer]:
        return [p for p in self.mesh.peers.values() if p.node_id.startswith("obs")]

    def start(self, peer: Peer) -> tuple[float, float]:
        """Start the process; return (t0 before the spawn, time it first answered /mesh/ping)."""
        t0 = time.monotonic()
        peer.start(wait=False)
        deadline = t0 + START_TIMEOUT_S
        with httpx.Client(timeout=0.5, trust_env=False) as client:
            while True:
                if not peer.alive:
                    raise RuntimeError(f"{peer.node_id} exited with {peer.proc.returncode}:\n{peer.log_tail()}")
                try:
                    response = client.get(peer.url + "/mesh/ping")
                    if response.status_code == 200 and response.json().get("node_id") == peer.node_id:
                        return t0, time.monotonic()
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{peer.node_id} did not answer within {START_TIMEOUT_S}s:\n{peer.log_tail()}")
                time.sleep(HTTP_POLL_S)

    def converge(self, subject: Peer) -> None:
        """Every observer lists the subject up and the subject lists every observer up (not timed)."""
        assert self.poller is not None
        [t] = self.poller.measure(time.monotonic(), is_up(subject.node_id), timeout=WAIT_S)
        ids = {p.node_id for p in self.observers}
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                if {k for k, v in subject.statuses().items() if v == "up"} >= ids:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        else:
            log(f"  warning: {subject.node_id} does not list every observer up")
        if t is None:
            log(f"  warning: not every observer lists {subject.node_id} up")

    def check(self, what: str, subject: Peer, values: list[float | None]) -> None:
        """After a measurement: say which observer disagreed, and stop if an observer is no longer answering."""
        assert self.poller is not None
        if all(v is not None for v in values):
            return
        self.misses += 1
        now = time.monotonic()
        for peer in self.observers:
            latest = self.poller.latest(peer.node_id)
            if latest is None:
                log(f"  {what}: {peer.node_id} never answered a poll")
                continue
            at, entries = latest
            mine = [(e["status"], e.get("last_error")) for e in entries_for(entries, subject.node_id)]
            errors = self.poller.errors_by[peer.node_id]
            log(
                f"  {what}: {peer.node_id} (answered {now - at:.1f} s ago, {errors} failed polls so far)"
                f" lists {subject.node_id} as {mine}"
            )
        for cmd in (["tc", "qdisc", "show", "dev", "lo"], ["ip", "maddr", "show", "dev", "lo"]):
            shown = subprocess.run(cmd, capture_output=True, text=True, check=False)
            log(f"  {' '.join(cmd)}: " + " | ".join((shown.stdout + shown.stderr).split("\n")).strip(" |"))
        for peer in self.observers:
            latest = self.poller.latest(peer.node_id)
            if not peer.alive or latest is None or now - latest[0] > STALL_S:
                raise RuntimeError(f"observer {peer.node_id} stopped answering /mesh/peers:\n{peer.log_tail()}")

    # -- the run ----------------------------------------------------------------------------------------------
    def setup(self) -> None:
        if self.args.no_netcut:
            self.netcut_skipped = "--no-netcut"
        else:
            self.netcut_skipped = NetCut.unavailable()
        if self.netcut_skipped:
            log(f"cut-off scenario skipped: {self.netcut_skipped}")
        n_obs = self.args.peers - 1
        log(f"starting {n_obs} observer peers (mesh {self.mesh.name})")
        observers = [self.mesh.add(f"obs{i}", host=next(ADDRESSES), wait=False) for i in range(1, n_obs + 1)]
        for peer in observers:
            peer.wait_ready(timeout=START_TIMEOUT_S)
            if peer.get("/mesh/ping").json().get("node_id") != peer.node_id:
                raise RuntimeError(f"another process answers at {peer.url}")
        self.mesh.wait_all_see_each_other(timeout=20)
        self.poller = Poller({p.node_id: p.url for p in observers}, self.args.interval)
        self.poller.known.update({p.node_id: p.url for p in observers})

    def trial(self, k: int) -> dict[str, float | None]:
        assert self.poller is not None
        poller = self.poller
        got: dict[str, float | None] = {}

        def rec(key: str, value: float | None) -> None:
            got[key] = value
            self.record(key, value)

        subject = self.mesh.add(f"subj{k}", host=next(ADDRESSES), start=False)
        sid = subject.node_id
        poller.known[sid] = subject.url

        # 1. join
        time.sleep(self.rng.uniform(*SETTLE_S))
        t0, t_http = self.start(subject)
        [t] = poller.measure(t0, is_up(sid))
        self.check("join", subject, [t])
        rec("join", t)
        rec("join_http", None if t is None else t - (t_http - t0))
        self.converge(subject)

        # 2. graceful leave, then back in
        sig, key = (signal.SIGTERM, "leave_term") if k % 2 else (signal.SIGINT, "leave_int")
        self.settle()
        t0 = time.monotonic()
        assert subject.proc is not None
        subject.proc.send_signal(sig)
        [t] = poller.measure(t0, is_absent(sid))
        self.check("leave", subject, [t])
        rec(key, t)
        # it must stay gone: a late call from the leaving peer must not list it again (it would show `down`)
        back = Watch(lambda es: bool(entries_for(es, sid)), list(poller.observers), time.monotonic())
        with poller.watching(back):
            time.sleep(STAY_GONE_S)
        if back.first:
            log(f"  {sid} listed again after leaving, on {', '.join(sorted(back.first))}")
        rec("relisted", float(len(back.first)))
        try:
            subject.proc.wait(20)
        except subprocess.TimeoutExpired:
            log(f"  warning: {sid} still running 20 s after {sig.name}; killing it")
            subject.kill()
        self.start(subject)
        self.converge(subject)

        # 3. crash
        self.settle()
        t0 = time.monotonic()
        subject.proc.kill()
        t_not_up, t_down = poller.measure(t0, is_not_up(sid), is_down(sid))
        self.check("crash", subject, [t_not_up, t_down])
        subject.proc.wait(10)
        rec("crash", t_not_up)
        rec("crash_down", t_down)

        # 4. rejoin with the same node id on the same address
        self.settle()
        t0, t_http = self.start(subject)
        [t] = poller.measure(t0, is_up(sid))
        self.check("rejoin", subject, [t])
        rec("rejoin", t)
        rec("rejoin_http", None if t is None else t - (t_http - t0))
        self.converge(subject)

        # 5. cut off the network, then heal
        if not self.netcut_skipped:
            self.netcut.install()
            try:
                self.settle()
                t0 = time.monotonic()
                self.netcut.cut(subject.host)
                t_not_up, t_down = poller.measure(t0, is_not_up(sid), is_down(sid))
                self.check("cut", subject, [t_not_up, t_down])
                rec("cut", t_not_up)
                rec("cut_down", t_down)
            finally:
                t0 = time.monotonic()
                self.netcut.uninstall()
            [t] = poller.measure(t0, is_up(sid))
            self.check("heal", subject, [t])
            rec("heal", t)
            self.converge(subject)

        # 6. frozen: socket open, process silent
        self.settle()
        t0 = time.monotonic()
        subject.proc.send_signal(signal.SIGSTOP)
        try:
            t_not_up, t_down = poller.measure(t0, is_not_up(sid), is_down(sid))
            self.check("freeze", subject, [t_not_up, t_down])
        finally:
            subject.proc.send_signal(signal.SIGCONT)
            subject.kill()
        rec("freeze", t_not_up)
        rec("freeze_down", t_down)
        return got

    def run(self) -> None:
        self.setup()
        for k in range(1, self.args.trials + 1):
            started = time.monotonic()
            got = self.trial(k)
            parts = " ".join(f"{key}={_fmt(v, key)}" for key, v in got.items())
            log(f"trial {k}/{self.args.trials} ({time.monotonic() - started:.0f} s): {parts}")
            if self.poller is not None and self.poller.anomaly_count():
                log(f"  duplicate/ghost entries so far: {self.poller.anomaly_count()}")

    def close(self) -> None:
        """Stop every process, whatever happened; never raises."""
        if self.poller is not None:
            self.poller.close()
        try:
            self.netcut.uninstall()
        except Exception as exc:  # noqa: BLE001 - cleanup goes on
            log(f"could not remove the tc rules from lo: {exc} (run: tc qdisc del dev lo root)")
        live = [p for p in self.mesh.peers.values() if p.alive]
        for peer in live:
            assert peer.proc is not None
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    peer.proc.send_signal(sig)
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        for peer in live:
            assert peer.proc is not None
            try:
                peer.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                peer.proc.kill()
                peer.proc.wait(10)
        self.mesh.close()  # the harness's own backstop


# ------------------------------------------------------------------------------------------------ reporting


def _fmt(value: float | None, key: str = "") -> str:
    if key == "relisted" and value is not None:
        return str(int(value))  # a count of observers, not seconds
    return "miss" if value is None else f"{value:.2f}"


def summarize(bench: Bench) -> list[dict[str, str]]:
    rows = []
    for row in ROWS:
        values = bench.results[row.key]
        if not values:
            continue
        done = [v for v in values if v is not None]
        misses = len(values) - len(done)
        if row.key == "relisted":
            bad = sum(1 for v in done if v)
            rows.append(
                {
                    "scenario": row.scenario,
                    "goal": "0",
                    "median": "—",
                    "max": f"{bad} of {len(values)} leaves ({int(sum(done))} lists)",
                    "trials": str(len(values)),
                    "result": "pass" if not bad else "**FAIL**",
                }  # fmt: skip
            )
            continue
        median = f"{statistics.median(done):.2f} s" if done else "—"
        worst = f"> {WAIT_S:.0f} s" if misses else f"{max(done):.2f} s"
        if row.goal is None:
            goal, verdict = "—", "info"
        else:
            goal = f"≤ {row.goal:g} s"
            verdict = "pass" if not misses and max(done) <= row.goal else "**FAIL**"
        rows.append(
            {
                "scenario": row.scenario,
                "goal": goal,
                "median": median,
                "max": worst,
                "trials": str(len(values)),
                "result": verdict,
            }
        )
    poller = bench.poller
    if poller is not None:
        kinds = Counter(a.kind for a in poller.anomalies)
        rows.append(
            {
                "scenario": "duplicate or ghost entries seen while polling (whole run)",
                "goal": "0",
                "median": "—",
                "max": f"{len(poller.anomalies)} ({kinds['duplicate']} dup, {kinds['ghost']} ghost)",
                "trials": str(bench.args.trials),
                "result": "pass" if not poller.anomalies else "**FAIL**",
            }
        )
    return rows


def table(rows: list[dict[str, str]]) -> str:
    head = ["scenario", "goal", "median", "max", "trials", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["--:"] * 4 + [":-:"]) + "|"]
    lines += ["| " + " | ".join(r[h] for h in head) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")]
        info["CPU"] = models[0] if models else platform.processor() or platform.machine()
    except OSError:
        info["CPU"] = platform.processor() or platform.machine()
    info["cores"] = f"{os.cpu_count()} logical (usable by this process: {len(os.sched_getaffinity(0))})"
    try:
        mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal:"))  # fmt: skip
        info["RAM"] = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        info["RAM"] = "unknown"
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
        pretty = next(ln.split("=", 1)[1].strip().strip('"') for ln in lines if ln.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        pretty = platform.system()
    info["OS"] = f"{pretty}, kernel {platform.release()} ({platform.machine()})"
    info["Python"] = platform.python_version()
    for dist in ("zeroconf", "httpx", "uvicorn", "herd-mesh"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = "not installed"
    info["herd-mesh source"] = _source()
    info["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return info


def _source() -> str:
    """The commit the peers ran, and whether the tree had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "herd_mesh"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"commit {head}" + (" with uncommitted changes to herd_mesh/" if dirty else "")


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def markdown(bench: Bench, rows: list[dict[str, str]], wall_s: float) -> str:
    args = bench.args
    poller = bench.poller
    info = machine()
    out = [
        "## Discovery and liveness",
        "",
        f"`python benchmarks/discovery.py --peers {args.peers} --trials {args.trials} --interval {args.interval}`"
        f" — {args.peers} peer processes on loopback addresses ({args.peers - 1} observers and one subject per"
        f" trial), real multicast mDNS on `lo`, {wall_s:.0f} s in all.",
        "",
        table(rows),
        "",
        "Times run from the event (process spawned, signal sent, packets cut) to the arrival of the answer in"
        " which the *last* other peer agreed; each observer's `GET /mesh/peers` is polled concurrently every"
        f" {args.interval * 1000:.0f} ms, so a figure is late by at most one interval plus one round trip"
        + (
            f" (mean {poller.rtt_total / max(poller.polls, 1) * 1000:.1f} ms, max {poller.rtt_max * 1000:.0f} ms;"
            f" {poller.polls} polls, {poller.errors} failed)."
            if poller is not None
            else "."
        ),
        "Each event waits a random 0.2-0.7 s after the mesh settled, so it falls anywhere in the 0.5 s probe cycle."
        " Graceful leave alternates SIGINT and SIGTERM between trials; once the peer is gone everywhere the lists are"
        " watched 3 s more, and every observer that lists it again is counted (goal: none). Rejoin restarts the same"
        " node id on the same address after the crash was detected (`down`).",
        "",
        "A peer cut off the network is simulated two ways:",
        "",
        "- **cut off**: every packet to or from its address is dropped on `lo` (`tc`: an `htb` root whose class"
        " `1:2` has a `blackhole` qdisc, and `u32` filters on source and destination address). The process keeps"
        " running with its socket open, as on an unplugged Mac; it still receives other peers' multicast, which"
        " cannot be filtered per receiver on `lo`. Healing removes the filters."
        + (f" *Skipped in this run: {bench.netcut_skipped}.*" if bench.netcut_skipped else ""),
        "- **frozen**: `SIGSTOP`: the kernel still accepts connections, nothing answers (a frozen Mac)."
        " `SIGCONT` and `SIGKILL` afterwards.",
        "",
        "Every answer is also checked for duplicates (a node id listed twice) and ghosts (a node id this run never"
        " started, or a known one at an address it no longer has). Peers that were killed stay listed `down`"
        " (forgotten after 10 minutes); that is by design, not a ghost.",
        "",
        "Per-trial values (seconds; `relisted`: observers that listed the peer again after it left):",
        "",
    ]
    for row in ROWS:
        values = bench.results[row.key]
        if values:
            out.append(f"- {row.key}: " + ", ".join(_fmt(v, row.key) for v in values))
    if poller is not None and poller.anomalies:
        out += ["", "Duplicates and ghosts seen (first 10):", ""]
        out += [f"- on {a.observer}: {a.kind}: {a.detail}" for a in poller.anomalies[:10]]
    out += ["", "Machine:", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    before, after = _load(bench.load_before), _load(os.getloadavg())
    out.append(f"- load average (1/5/15 min) before the run: {before}; after: {after}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", type=int, default=4, choices=range(3, 6), metavar="N",
                   help="peer processes in the mesh, subject included: 3-5 (default 4)")  # fmt: skip
    p.add_argument("--trials", type=int, default=5, help="trials of every scenario (default 5)")
    p.add_argument(
        "--interval", type=float, default=0.025, help="poll interval per observer in seconds (default 0.025)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for the random wait before each event")
    p.add_argument("--no-netcut", action="store_true", help="skip the cut-off scenario (it needs root and tc)")
    p.add_argument("--keep", action="store_true", help="keep the peers' data directories and logs")
    p.add_argument("--write", metavar="FILE", help="write the results as a Markdown section to FILE")
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error("--trials must be at least 1")
    if not 0.005 <= args.interval <= 1.0:
        p.error("--interval must be between 0.005 and 1 second")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: a shell starts background jobs with it ignored
        signal.signal(sig, _raise_interrupt)  # either way every peer is stopped
    base_dir = Path(tempfile.mkdtemp(prefix="herd-discovery-"))
    bench = Bench(args, base_dir)
    started = time.monotonic()
    ok = False
    try:
        bench.run()
        ok = True
    except KeyboardInterrupt:
        log("interrupted: stopping every peer")
        return 130
    except Exception:
        log("benchmark failed; last lines of every peer's log:\n" + bench.mesh.logs())
        raise
    finally:
        bench.close()
        if args.keep or not ok or bench.misses:
            log(f"peer logs kept in {base_dir}")
        else:
            shutil.rmtree(base_dir, ignore_errors=True)
    wall = time.monotonic() - started
    rows = summarize(bench)
    print(table(rows))
    log(f"done in {wall:.0f} s")
    if args.write:
        path = Path(args.write)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown(bench, rows, wall))
        log(f"wrote {path}")
    return 0 if all(r["result"] != "**FAIL**" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
