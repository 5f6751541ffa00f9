"""`view_from_state`: the adapter from a peer's advertised JSON to the scheduler's PeerView. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from herd_mesh.core.views import TRANSFER_BASE_S
from herd_mesh.core.views import image_view as view_from_state
from herd_mesh.core.work import PeerView

NOW = 1_000_000.0


def view(image: Any) -> PeerView:
    return view_from_state("bravo", "up", {"image": image}, is_self=False, now=NOW)


def test_a_well_formed_document() -> None:
    peer = view(
        {
            "enabled": True,
            "models": {
                "z-image-turbo": {"installed": True, "cached": True, "loaded": False},
                "flux-dev": {"installed": True, "cached": False, "loaded": False},
            },
            "queue": {
                "slots": 2,
                "running": [{"job_id": "r1", "estimate_s": 10.0, "started_at": NOW - 4}],
                "waiting": [{"job_id": "w1", "estimate_s": 5.5}],
            },
            "speed": {"ms_per_mp_step": {"z-image-turbo": 400.0}, "prior_ms_per_mp_step": {"flux-dev": 900}},
        }
    )
    assert peer.accepting and peer.installed == {"z-image-turbo", "flux-dev"} and peer.cached == {"z-image-turbo"}
    assert (peer.backlog_s, peer.job_ids, peer.slots) == (11.5, {"r1", "w1"}, 2)
    assert peer.ms_per_unit == {"z-image-turbo": 400.0} and peer.prior_ms_per_unit == {"flux-dev": 900.0}
    assert peer.transfer_s == TRANSFER_BASE_S


EMPTY = PeerView(node_id="bravo", accepting=False, transfer_s=TRANSFER_BASE_S)
GARBAGE: list[Any] = [
    None,
    "image",
    [1, 2],
    {"enabled": "false", "models": ["z-image-turbo"], "queue": "busy", "speed": "fast"},
    {"models": {"z-image-turbo": "installed", "fibo": None, "qwen-image": {"installed": "yes"}}},
    {"queue": {"slots": "two", "running": "r1", "waiting": {"job_id": "w1"}}},
    {"queue": {"slots": float("nan"), "running": [None, 3, "r1"], "waiting": [[], "w1"]}},
    {"queue": {"slots": float("inf")}},
    {"queue": {"slots": 0}},
    {"queue": {"slots": -3}},
    {"queue": {"slots": True}},
    {"speed": {"ms_per_mp_step": "fast", "prior_ms_per_mp_step": [400], "load_s": 5}},
    {"speed": {"ms_per_mp_step": {"a": float("nan"), "b": float("inf"), "c": -1, "d": "400", "e": None, "f": True}}},
    {"speed": {"load_s": {"a": 10**400, "b": float("-inf"), "c": {"s": 1}}}},
]


@pytest.mark.parametrize("image", GARBAGE)
def test_malformed_parts_count_as_empty(image: Any) -> None:
    assert view(image) == EMPTY


@pytest.mark.parametrize(
    "job",
    [
        {"job_id": "j", "estimate_s": "soon"},
        {"job_id": "j", "estimate_s": float("nan")},
        {"job_id": "j", "estimate_s": -5},
        {"job_id": "j", "estimate_s": float("inf")},
        {"job_id": "j", "estimate_s": None},
        {"job_id": "j", "estimate_s": [1]},
        {"job_id": "j", "estimate_s": 10**400},
        {"job_id": "j", "estimate_s": 3.0, "started_at": "yesterday"},  # a bad start: counted as just started
        {"job_id": "j", "estimate_s": 3.0, "started_at": float("nan")},
    ],
)
def test_malformed_jobs_count_as_zero_seconds_but_still_count(job: dict[str, Any]) -> None:
    for where in ("running", "waiting"):
        peer = view({"queue": {where: [job]}})
        assert peer.backlog_s == (3.0 if job["estimate_s"] == 3.0 else 0.0)
        assert peer.job_ids == {"j"}


def test_a_document_that_is_not_an_object() -> None:
    for state in (None, "up", [], 5):
        assert view_from_state("bravo", "up", state, is_self=True, now=NOW).installed == frozenset()  # type: ignore[arg-type]


def test_the_view_cache_gives_what_reading_every_document_gives() -> None:
    """Decisions reuse what they read from a document until it is replaced; the running jobs' remaining time
    still follows the clock."""
    from herd_mesh.core.views import MeshSnapshot, PeerState, ViewCache

    def doc(waiting: int, started: float | None) -> dict[str, Any]:
        job = {"job_id": "r1", "estimate_s": 10.0, **({"started_at": started} if started is not None else {})}
        return {"image": {"enabled": True, "models": {"z-image-turbo": {"installed": True}},
                          "queue": {"running": [job], "waiting": [{"job_id": f"w{i}", "estimate_s": 5.0}
                                                                  for i in range(waiting)]}},
                "llm": {"enabled": {"llm": True}, "models": ["qwen3:8b"], "loaded": [], "active": [{}] * waiting},
                "system": {"memory_available_gb": 30}}  # fmt: skip

    cache = ViewCache()
    peers = (PeerState("a", "up", doc(1, NOW - 4), is_self=True), PeerState("b", "up", doc(2, None)))
    for now in (NOW, NOW + 3, NOW + 30):
        cached, plain = MeshSnapshot(now, "a", peers, cache), MeshSnapshot(now, "a", peers)
        assert cached.image_views == plain.image_views
        assert cached.model_facts("llm") == plain.model_facts("llm")
    assert [v.backlog_s for v in MeshSnapshot(NOW + 3, "a", peers, cache).image_views] == [5.0 + 3.0, 10.0 + 10.0]
    changed = (peers[0], PeerState("b", "suspect", doc(0, None)))  # a new document, and a new status
    assert MeshSnapshot(NOW, "a", changed, cache).image_views == MeshSnapshot(NOW, "a", changed).image_views
    assert MeshSnapshot(NOW, "a", changed, cache).image_views[1].status == "suspect"
