"""Scoring and placement, with literal peers and exact arithmetic: no event loop, no network, no clock."""

from __future__ import annotations

import random
from collections import Counter

import pytest

import herd_mesh.core
from herd_mesh.core import ranking as scheduling
from herd_mesh.core.ledger import Ledger
from herd_mesh.core.ranking import (
    expected_completion_s,
    load_seconds,
    rank,
    redirect_target,
    run_seconds,
    sent_record,
)
from herd_mesh.core.stealing import backlog_seconds, queue_finish_s, steal_pick, steal_target
from herd_mesh.core.work import Choice, PeerView, Sent, Work

ImageWork = Work.image


MODEL = "z-image-turbo"
WORK = ImageWork(MODEL, 1000, 1000, 4, "new")  # 4 megapixel-steps
MODELS = frozenset({MODEL})


def peer(node_id: str, ms: float, **kw: object) -> PeerView:
    """A peer with MODEL installed, cached and loaded, measured at `ms` per megapixel-step."""
    fields: dict[str, object] = {
        "installed": MODELS,
        "cached": MODELS,
        "loaded": MODELS,
        "ms_per_unit": {MODEL: ms},
    }
    fields.update(kw)
    return PeerView(node_id, **fields)  # type: ignore[arg-type]


def best(peers: list[PeerView], work: Work = WORK, seed: int = 0, **kw: object) -> str:
    return rank(peers, work, rng=random.Random(seed), **kw)[0].node_id  # type: ignore[arg-type]


@pytest.fixture
def exact_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only equal completion times tie, so the arithmetic alone decides."""
    monkeypatch.setattr(scheduling, "TIE_FRACTION", 0.0)
    monkeypatch.setattr(scheduling, "TIE_S", 0.0)


def test_megapixel_steps_and_run_seconds() -> None:
    assert ImageWork(MODEL, 1024, 1024, 4).units == pytest.approx(4.194304)
    assert run_seconds(peer("a", 1500.0), WORK) == 6.0


def test_expected_completion_adds_queue_run_load_and_transfer() -> None:
    view = peer("a", 1000.0, loaded=frozenset(), load_s={MODEL: 9.0}, backlog_s=12.0, transfer_s=0.5)
    # queue 12 + run 4 + load 9 + transfer 0.5
    assert expected_completion_s(view, WORK) == 25.5
    assert expected_completion_s(view, WORK, unseen_backlog_s=3.0) == 28.5
    choice = rank([view], WORK, rng=random.Random(0))[0]
    assert choice == Choice("a", 25.5, "queue 12.0s + run 4.0s + load 9.0s + transfer 0.5s")


@pytest.mark.parametrize(
    ("fast_backlog_s", "winner"),
    [(0.0, "fast"), (11.0, "fast"), (11.9, "fast"), (12.1, "slow"), (13.0, "slow"), (40.0, "slow")],
)
def test_fast_busy_beats_slow_idle_exactly_when_the_arithmetic_says_so(
    exact_ties: None, fast_backlog_s: float, winner: str
) -> None:
    # fast: queue + 4 x 1000 ms = backlog + 4 s; slow and idle: 4 x 4000 ms = 16 s. Break-even at 12 s.
    fast = peer("fast", 1000.0, backlog_s=fast_backlog_s)
    slow = peer("slow", 4000.0)
    assert expected_completion_s(fast, WORK) == fast_backlog_s + 4.0
    assert expected_completion_s(slow, WORK) == 16.0
    for seed in range(20):  # no randomness once the times differ
        assert best([fast, slow], seed=seed) == winner
        assert best([slow, fast], seed=seed) == winner


def test_measured_speed_beats_prior_and_prior_beats_the_unknown_default() -> None:
    measured = PeerView(
        "a", installed=MODELS, loaded=MODELS, ms_per_unit={MODEL: 500.0}, prior_ms_per_unit={MODEL: 9000.0}
    )
    prior_only = PeerView("b", installed=MODELS, loaded=MODELS, prior_ms_per_unit={MODEL: 2000.0})
    nothing = PeerView("c", installed=MODELS, loaded=MODELS)
    assert run_seconds(measured, WORK) == 2.0
    assert run_seconds(prior_only, WORK) == 8.0
    # z-image-turbo is 4300 ms on an M3 Ultra; an unknown peer is assumed 4x slower than that
    assert run_seconds(nothing, WORK) == pytest.approx(4 * 4300.0 / scheduling.UNKNOWN_PEER_FACTOR / 1000)


def test_work_sent_but_not_yet_advertised_is_counted(exact_ties: None) -> None:
    a = peer("a", 1000.0)  # idle: 4 s
    b = peer("b", 1500.0)  # idle: 6 s
    sent = [Sent("j1", "a", 3.0, 100.0), Sent("j2", "a", 4.0, 100.5), Sent("j3", "b", 1.0, 100.5)]
    assert best([a, b]) == "a"
    ranked = rank([a, b], WORK, sent=sent, rng=random.Random(0))
    assert [(c.node_id, c.completion_s) for c in ranked] == [("b", 7.0), ("a", 11.0)]
    assert "7.0s sent, not yet advertised" in ranked[1].reason


def test_sent_work_the_advertisement_already_shows_is_not_counted_twice(exact_ties: None) -> None:
    a = peer("a", 1000.0, backlog_s=3.0, job_ids=frozenset({"j1"}))
    sent = [Sent("j1", "a", 3.0, 100.0), Sent("j2", "a", 2.0, 100.5)]
    assert rank([a], WORK, sent=sent, rng=random.Random(0))[0].completion_s == 3.0 + 2.0 + 4.0


def test_sent_work_moved_elsewhere_counts_where_it_is_advertised(exact_ties: None) -> None:
    # j1 was sent to a but b stole it: b's advertisement lists it, so a is no longer charged for it.
    a = peer("a", 1000.0)
    b = peer("b", 1000.0, backlog_s=5.0, job_ids=frozenset({"j1"}))
    ranked = rank([a, b], WORK, sent=[Sent("j1", "a", 5.0, 0.0)], rng=random.Random(0))
    assert [(c.node_id, c.completion_s) for c in ranked] == [("a", 4.0), ("b", 9.0)]


def test_a_cold_model_costs_its_load_time_and_a_download_when_not_cached() -> None:
    warm = peer("warm", 1000.0)
    cold = peer("cold", 1000.0, loaded=frozenset(), load_s={MODEL: 9.0})
    cold_prior = peer("cold-prior", 1000.0, loaded=frozenset(), prior_load_s=15.0)
    missing = peer("missing", 1000.0, loaded=frozenset(), cached=frozenset(), missing=MODELS, load_s={MODEL: 9.0},
                   download_s=600.0)  # fmt: skip
    unknown = peer("unknown", 1000.0, loaded=frozenset(), cached=frozenset(), load_s={MODEL: 9.0}, download_s=600.0)
    queued = peer("queued", 1000.0, loaded=frozenset(), cached=frozenset(), missing=MODELS, queued_models=MODELS,
                  download_s=600.0)  # fmt: skip
    assert load_seconds(warm, MODEL) == 0.0
    assert load_seconds(cold, MODEL) == 9.0
    assert load_seconds(cold_prior, MODEL) == 15.0
    assert load_seconds(missing, MODEL) == 609.0  # known missing: the first job downloads
    assert load_seconds(unknown, MODEL) == 9.0  # no cache folder to look at: no download guessed
    assert load_seconds(queued, MODEL) == 0.0  # a job of that model is already there: it pays load and download
    assert expected_completion_s(cold, WORK) == 13.0
    assert best([cold, warm, missing]) == "warm"
    # a warm peer busy for 8.9 s still wins over a cold idle one (12.9 < 13); busy for 9.1 s it loses
    assert best([cold, peer("warm", 1000.0, backlog_s=8.9)]) == "warm"
    assert best([cold, peer("warm", 1000.0, backlog_s=9.6)]) == "cold"


def test_a_cold_load_already_on_its_way_is_paid_only_once(exact_ties: None) -> None:
    cold = peer("cold", 1000.0, loaded=frozenset(), load_s={MODEL: 9.0})
    first = sent_record(cold, WORK, now=0.0)
    assert first == Sent("new", "cold", 13.0, 0.0, MODEL)
    second = sent_record(cold, ImageWork(MODEL, 1000, 1000, 4, "next"), sent=[first], now=0.1)
    assert second.seconds == 4.0
    # the next job queues behind the first (13 s) and loads nothing itself
    assert rank([cold], WORK, sent=[first], rng=random.Random(0))[0].completion_s == 13.0 + 4.0


def test_down_is_never_picked_and_suspect_only_when_no_up_peer_can_serve() -> None:
    down_fast = peer("down", 10.0, status="down")
    suspect_fast = peer("suspect", 10.0, status="suspect")
    up_slow = peer("up", 5000.0, backlog_s=100.0)
    for seed in range(20):
        ranked = rank([down_fast, suspect_fast, up_slow], WORK, rng=random.Random(seed))
        assert [c.node_id for c in ranked] == ["up", "suspect"]
    assert best([down_fast, suspect_fast]) == "suspect"
    assert rank([down_fast], WORK, rng=random.Random(0)) == []


def test_peers_that_cannot_serve_are_left_out() -> None:
    off = peer("off", 10.0, accepting=False)
    other_model = peer("other", 10.0, installed=frozenset({"flux-dev"}))
    able = peer("able", 5000.0)
    assert [c.node_id for c in rank([off, other_model, able], WORK, rng=random.Random(0))] == ["able"]


def test_ties_do_not_always_fall_to_the_same_peer() -> None:
    peers = [peer(name, 1000.0) for name in ("a", "b", "c")]
    rng = random.Random(7)
    firsts = Counter(rank(peers, WORK, rng=rng)[0].node_id for _ in range(300))
    assert set(firsts) == {"a", "b", "c"}
    assert min(firsts.values()) > 60
    # a near-tie (within TIE_FRACTION) is shuffled too; a clear difference is not
    near = [peer("a", 1000.0), peer("b", 1010.0)]
    assert {best(near, seed=s) for s in range(40)} == {"a", "b"}
    far = [peer("a", 1000.0), peer("b", 1200.0)]
    assert {best(far, seed=s) for s in range(40)} == {"a"}


def test_rank_is_reproducible_with_the_same_seed() -> None:
    peers = [peer(name, 1000.0) for name in "abcdef"]
    assert rank(peers, WORK, rng=random.Random(3)) == rank(list(reversed(peers)), WORK, rng=random.Random(3))


# ------------------------------------------------------------------------------ re-check on arrival


def test_redirect_only_to_a_clearly_better_peer(exact_ties: None) -> None:
    # here: real queue 30 s + run 4 s = 34 s; margin max(1 s, 50% of 34 s) = 17 s -> must be under 17 s
    here = peer("here", 1000.0, is_self=True, backlog_s=30.0)
    clearly = peer("x", 1000.0, backlog_s=12.0, transfer_s=0.5)  # 16.5 s
    barely = peer("x", 1000.0, backlog_s=13.5, transfer_s=0.5)  # 18.0 s
    choice = redirect_target(here, [clearly], WORK, rng=random.Random(0))
    assert choice is not None and choice.node_id == "x" and choice.completion_s == 16.5
    assert redirect_target(here, [barely], WORK, rng=random.Random(0)) is None


def test_redirect_is_bounded_so_a_job_cannot_ping_pong() -> None:
    here = peer("here", 1000.0, is_self=True, backlog_s=300.0)
    idle = peer("x", 1000.0)
    assert redirect_target(here, [idle], WORK, rng=random.Random(0), hops=0) is not None
    assert redirect_target(here, [idle], WORK, rng=random.Random(0), hops=scheduling.MAX_REDIRECTS) is None


def test_redirect_never_names_itself_a_suspect_or_a_down_peer() -> None:
    here = peer("here", 1000.0, is_self=True, backlog_s=300.0)
    others = [peer("here", 1.0), peer("s", 1.0, status="suspect"), peer("d", 1.0, status="down")]
    assert redirect_target(here, others, WORK, rng=random.Random(0)) is None


def test_redirect_counts_what_the_receiver_itself_already_redirected(exact_ties: None) -> None:
    here = peer("here", 1000.0, is_self=True, backlog_s=30.0)
    x = peer("x", 1000.0)
    hints = [Sent("earlier", "x", 25.0, 0.0)]  # it just told another entry to try x with 25 s of work
    assert redirect_target(here, [x], WORK, rng=random.Random(0)) is not None
    assert redirect_target(here, [x], WORK, rng=random.Random(0), sent=hints) is None


def test_a_receiver_that_cannot_serve_points_to_one_that_can() -> None:
    here = peer("here", 1000.0, is_self=True, accepting=False)
    slow = peer("slow", 9000.0, backlog_s=50.0)
    choice = redirect_target(here, [slow], WORK, rng=random.Random(0))
    assert choice is not None and choice.node_id == "slow"


# ------------------------------------------------------------------------------------- work stealing


def test_queue_finish_times_load_each_model_once() -> None:
    both = frozenset({MODEL, "flux-dev"})
    here = PeerView(
        "v",
        installed=both,
        cached=both,
        loaded=MODELS,
        ms_per_unit={MODEL: 1000.0, "flux-dev": 2000.0},
        load_s={"flux-dev": 10.0},
    )
    queue = [WORK, ImageWork("flux-dev", 1000, 1000, 1, "d1"), ImageWork("flux-dev", 1000, 1000, 1, "d2")]
    # 3 s running + 4 s; then load 10 s + 2 s; then 2 s
    assert queue_finish_s(here, queue, running_left_s=3.0) == [7.0, 19.0, 21.0]
    assert backlog_seconds(here, queue, running_left_s=3.0) == 21.0
    assert backlog_seconds(here, [], running_left_s=3.0) == 3.0


def test_steal_target_asks_the_most_loaded_peer_with_queued_work() -> None:
    thief = peer("thief", 1000.0, is_self=True)
    running_only = peer("r", 1000.0, backlog_s=50.0, job_ids=frozenset({"a"}))  # one job, nothing queued
    queued = peer("q", 1000.0, backlog_s=20.0, job_ids=frozenset({"b", "c"}))
    more = peer("m", 1000.0, backlog_s=30.0, job_ids=frozenset({"d", "e", "f"}))
    suspect = peer("s", 1000.0, status="suspect", backlog_s=90.0, job_ids=frozenset({"g", "h"}))
    others = [running_only, queued, more, suspect]
    assert steal_target(thief, others, rng=random.Random(0)) == "m"
    busy = peer("thief", 1000.0, is_self=True, backlog_s=5.0)
    assert steal_target(busy, others, rng=random.Random(0)) is None
    assert steal_target(thief, [running_only], rng=random.Random(0)) is None


def test_steal_pick_hands_over_the_job_that_gains_most_and_never_a_pinned_one() -> None:
    victim = peer("v", 4000.0, is_self=True)  # 16 s per job
    thief = peer("t", 1000.0, transfer_s=0.1)  # 4.1 s per job
    queue = [ImageWork(MODEL, 1000, 1000, 4, f"q{i}") for i in range(3)]
    # finishing here at 26, 42, 58 s (10 s running left); there at 4.1 s: the last gains most
    handover = steal_pick(victim, queue, thief, running_left_s=10.0)
    assert handover is not None
    assert (handover.job_id, handover.index, handover.here_s, handover.there_s) == ("q2", 2, 58.0, 4.1)
    pinned = steal_pick(victim, queue, thief, running_left_s=10.0, pinned=frozenset({"q2"}))
    assert pinned is not None and pinned.job_id == "q1"


def test_steal_pick_refuses_when_moving_does_not_clearly_help() -> None:
    victim = peer("v", 1000.0, is_self=True)
    slow_thief = peer("t", 4000.0)  # 16 s there, 4..8 s here
    queue = [ImageWork(MODEL, 1000, 1000, 4, "q0"), ImageWork(MODEL, 1000, 1000, 4, "q1")]
    assert steal_pick(victim, queue, slow_thief) is None
    unable = peer("t", 10.0, installed=frozenset({"flux-dev"}))
    assert steal_pick(victim, queue, unable, running_left_s=100.0) is None
    assert steal_pick(victim, [], peer("t", 10.0)) is None


# ------------------------------------------------------------------------------------- bookkeeping


def test_the_ledger_keeps_open_sends_until_closed_and_hints_for_their_memory() -> None:
    ledger = Ledger(hint_memory_s=3.0)
    ledger.open(Sent("open", "a", 1.0, 0.0))
    ledger.hint(Sent("fresh", "a", 1.0, 9.0))
    ledger.hint(Sent("old", "a", 1.0, 0.0))
    assert sorted(s.job_id for s in ledger.pending(10.0)) == ["fresh", "open"]
    ledger.close("open")
    assert [s.job_id for s in ledger.pending(10.0)] == ["fresh"]
    assert ledger.pending(12.5) == []


def test_the_core_stays_pure() -> None:
    """The peer and the simulator share it; nothing there may touch the network, the clock or a process."""
    import importlib
    import pkgutil

    forbidden = {"asyncio", "httpx", "zeroconf", "psutil", "sqlite3", "time", "socket", "subprocess", "random"}
    for info in pkgutil.iter_modules(herd_mesh.core.__path__):
        module = importlib.import_module(f"herd_mesh.core.{info.name}")
        names = {getattr(v, "__name__", "").split(".")[0] for v in vars(module).values()}
        assert not names & forbidden, info.name


def test_priors_that_prove_pessimistic_do_not_starve_the_unmeasured_peers() -> None:
    """The first peer measured runs 18x faster than the catalogue said: the others, not yet measured, are
    judged by the same correction, so an idle one gets the next job instead of a queue at the measured one."""
    prior = {"z-image-turbo": 18_000.0}
    measured = PeerView("measured", installed=frozenset({"z-image-turbo"}), ms_per_unit={"z-image-turbo": 1_000.0},
                        prior_ms_per_unit=prior, loaded=frozenset({"z-image-turbo"}), backlog_s=3.0)  # fmt: skip
    fresh = PeerView("fresh", installed=frozenset({"z-image-turbo"}), prior_ms_per_unit=prior, prior_load_s=0.5)
    work = Work.image("z-image-turbo", 1024, 1024, 4, "j")
    assert rank([measured, fresh], work, rng=random.Random(0))[0].node_id == "fresh"
    assert scheduling.prior_calibration([measured, fresh], "z-image-turbo") == pytest.approx(1 / 18)
    slower = PeerView("slow", installed=frozenset({"z-image-turbo"}), ms_per_unit={"z-image-turbo": 30_000.0},
                      prior_ms_per_unit=prior)  # fmt: skip
    assert scheduling.prior_calibration([slower, fresh], "z-image-turbo") == 1.0  # never pessimism on top


def test_an_idle_peer_without_room_never_steals_a_job() -> None:
    prior = {"z-image-turbo": 18_000.0}
    busy = PeerView("busy", installed=frozenset({"z-image-turbo"}), ms_per_unit={"z-image-turbo": 1_000.0},
                    prior_ms_per_unit=prior, loaded=frozenset({"z-image-turbo"}))  # fmt: skip
    queue = [Work.image("z-image-turbo", 1024, 1024, 4, f"j{i}") for i in range(6)]
    roomy = PeerView("roomy", installed=frozenset({"z-image-turbo"}), prior_ms_per_unit=prior, transfer_s=0.05)
    assert steal_pick(busy, queue, roomy, running_left_s=4.0) is not None
    capped = PeerView("capped", installed=frozenset({"z-image-turbo"}), prior_ms_per_unit=prior, transfer_s=0.05,
                      memory_cap_gb=4.0)  # fmt: skip
    assert steal_pick(busy, queue, capped, running_left_s=4.0) is None
