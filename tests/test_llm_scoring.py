"""LLM and Whisper scoring: pure, literal data in, decisions out (no event loop, no peers)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from herd_mesh.core.model_scoring import (
    ANY_MODEL,
    LLM_COSTS,
    STT_COSTS,
    Costs,
    ModelFacts,
    load_seconds,
    normalize_model,
    rank_peers,
    sent_for,
)
from herd_mesh.core.units import GIB as GB
from herd_mesh.core.views import facts_from_state
from herd_mesh.core.work import Work

M = "qwen3:8b"


def facts(
    node: str,
    *,
    loaded: bool = False,
    active: int = 0,
    free_gb: float = 64.0,
    size_gb: float = 5.0,
    status: str = "up",
    is_self: bool = False,
    accepting: bool = True,
    installed: bool = True,
) -> ModelFacts:
    return ModelFacts(
        node_id=node,
        status=status,
        is_self=is_self,
        accepting=accepting,
        installed=frozenset({M} if installed else set()),
        loaded=frozenset({M} if loaded else set()),
        sizes={M: int(size_gb * GB)},
        active=frozenset(f"{node}-job{i}" for i in range(active)),
        memory_available_gb=free_gb,
    )


def order(peers: list[ModelFacts], model: str = M, costs: Costs = LLM_COSTS, **kwargs: object) -> list[str]:
    return [c.node_id for c in rank_peers(peers, Work.request("llm", model), costs, rng=random.Random(1), **kwargs)]  # type: ignore[arg-type]


def test_a_peer_with_the_model_loaded_is_strongly_preferred() -> None:
    assert order([facts("cold"), facts("warm", loaded=True)]) == ["warm", "cold"]
    # busier, but still first: a cold 5 GB load is worth several requests in flight
    assert order([facts("cold"), facts("warm", loaded=True, active=4)])[0] == "warm"
    # until it is swamped: then the idle peer takes the model on
    assert order([facts("cold"), facts("warm", loaded=True, active=8)])[0] == "cold"


def test_then_requests_in_flight_then_memory_headroom() -> None:
    assert order([facts("busy", loaded=True, active=2), facts("idle", loaded=True)]) == ["idle", "busy"]
    assert order([facts("tight", free_gb=8), facts("roomy", free_gb=96)]) == ["roomy", "tight"]
    assert order([facts("no-room", free_gb=4), facts("room", free_gb=16, active=3)]) == ["room", "no-room"]


def test_never_a_peer_that_is_down_switched_off_or_without_the_model() -> None:
    peers = [facts("down", loaded=True, status="down"), facts("off", loaded=True, accepting=False),
             facts("none", installed=False), facts("ok")]  # fmt: skip
    assert order(peers) == ["ok"]
    assert order([facts("suspect", loaded=True, status="suspect"), facts("up")]) == ["up", "suspect"]


def test_equal_peers_prefer_no_hop_and_otherwise_share() -> None:
    me, other = facts("me", loaded=True, is_self=True), facts("other", loaded=True)
    assert order([other, me]) == ["me", "other"]
    a, b = facts("a", loaded=True), facts("b", loaded=True)
    firsts = Counter(
        c[0].node_id
        for c in (rank_peers([a, b], Work.request("llm", M), LLM_COSTS, rng=random.Random(i)) for i in range(40))
    )
    assert set(firsts) == {"a", "b"}


def test_requests_sent_but_not_yet_advertised_count() -> None:
    a, b = facts("a", loaded=True), facts("b", loaded=True)
    sent = []
    for i in range(4):  # a burst from one entry peer, before any advertisement moved: spread, not piled
        first = rank_peers([a, b], Work.request("llm", M), LLM_COSTS, sent=sent, rng=random.Random(i))[0].node_id
        sent.append(
            sent_for(a if first == "a" else b, Work.request("llm", M, f"job{i}"), LLM_COSTS, sent=sent, now=0.0)
        )
    assert Counter(s.node_id for s in sent) == {"a": 2, "b": 2}


def test_load_seconds_grow_with_size_and_memory_pressure() -> None:
    small, big = facts("x", size_gb=2), facts("x", size_gb=40, free_gb=64)
    assert load_seconds(facts("x", loaded=True), M, LLM_COSTS) == 0
    assert LLM_COSTS.cold_base_s < load_seconds(small, M, LLM_COSTS) < load_seconds(big, M, LLM_COSTS)
    assert load_seconds(facts("x", size_gb=40, free_gb=32), M, LLM_COSTS) > load_seconds(big, M, LLM_COSTS) + 30
    unknown = ModelFacts("x", installed=frozenset({M}), memory_available_gb=64)
    assert load_seconds(unknown, M, LLM_COSTS) > LLM_COSTS.cold_base_s  # the prior size
    with pytest.raises(ValueError, match="load_gb_per_s"):
        Costs(**{**vars(LLM_COSTS), "load_gb_per_s": 0})


def test_any_model_for_transcription_prefers_a_loaded_one() -> None:
    def stt(node: str, loaded: bool) -> ModelFacts:
        return ModelFacts(node, installed=frozenset({"tiny.en"}), loaded=frozenset({"tiny.en"} if loaded else ()),
                          sizes={"tiny.en": 75_000_000}, memory_available_gb=16)  # fmt: skip

    assert order([stt("cold", False), stt("warm", True)], ANY_MODEL, STT_COSTS) == ["warm", "cold"]
    assert order([stt("cold", False), ModelFacts("nothing")], ANY_MODEL, STT_COSTS) == ["cold"]


def test_names_follow_ollamas_rule() -> None:
    assert normalize_model("nomic-embed-text") == "nomic-embed-text:latest"
    assert normalize_model(" Llama3.2:3B ") == "llama3.2:3b"
    assert normalize_model("hf.co/org/model") == "hf.co/org/model:latest"
    assert normalize_model("localhost:5000/model") == "localhost:5000/model:latest"


def test_facts_from_a_state_section() -> None:
    section = {
        "enabled": {"llm": True, "embeddings": False},
        "models": ["llama3.2:3b", "nomic-embed-text:latest"],
        "loaded": ["llama3.2:3b"],
        "sizes": {"llama3.2:3b": 2 * GB},
        "active": [{"job_id": "j1", "kind": "llm", "model": "llama3.2:3b", "started_at": 1.0}],
    }
    llm = facts_from_state("b", "up", section, kind="llm", memory_available_gb=12.5, is_self=False)
    assert llm.accepting and llm.installed == {"llama3.2:3b", "nomic-embed-text:latest"}
    assert llm.loaded == {"llama3.2:3b"} and llm.active == {"j1"} and llm.memory_available_gb == 12.5
    assert not facts_from_state("b", "up", section, kind="embeddings", memory_available_gb=1, is_self=False).accepting
    assert facts_from_state("b", "up", section, kind="meta", memory_available_gb=1, is_self=False).accepting
    stt = facts_from_state("b", "up", {"enabled": True, "models": ["tiny.en"]}, kind="transcription",
                           memory_available_gb=1, is_self=False)  # fmt: skip
    assert stt.accepting and stt.installed == {"tiny.en"}  # Whisper names are not given a :latest tag
    assert facts_from_state("b", "up", {}, kind="llm", memory_available_gb=0, is_self=False).installed == set()
