"""The scheduler sees the whole Mac: memory, the other work on the machine, weights on disk, moves that finish
well, honest waits, and progress. First each rule on literal snapshots, then real peers."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from herd_mesh.core.memory import fits, need_gb, no_room_error
from herd_mesh.core.model_scoring import LLM_COSTS, rank_peers
from herd_mesh.core.ranking import rank
from herd_mesh.core.speed import DEFAULT_SLOWDOWN, SpeedBook
from herd_mesh.core.views import MeshSnapshot, PeerState, image_view
from herd_mesh.core.work import PeerView, Work
from herd_mesh.dispatch.images import reason_line
from herd_mesh.dispatch.jobs import progress
from tests.harness import Mesh, OllamaStandin, wait_until

TURBO = "z-image-turbo"
MODELS = frozenset({TURBO})
BIG = Work.image(TURBO, 1024, 1024, 4, "j", quantize=8)


def peer(node_id: str, **kw: Any) -> PeerView:
    fields: dict[str, Any] = {"installed": MODELS, "cached": MODELS, "loaded": MODELS, "ms_per_unit": {TURBO: 1000.0}}
    return PeerView(node_id, **{**fields, **kw})


# -- memory -----------------------------------------------------------------------------------------------------
def test_a_job_needs_its_weights_at_the_quantization_plus_a_working_set_that_grows_with_the_image() -> None:
    q8, q4 = need_gb(BIG), need_gb(Work.image(TURBO, 1024, 1024, 4, quantize=4))
    assert 17 < q8 < 20 and 9 < q4 < 12  # Z-Image: ~31 GB in bf16
    assert need_gb(Work.image(TURBO, 2048, 2048, 4)) > q8 + 5
    measured = peer("a", peak_gb={f"{TURBO}@8": (30.0, 1.0)})  # a run really took more: that counts
    assert need_gb(BIG, measured) == pytest.approx(30.0 + 2.0 * (1.048576 - 1.0))


def test_a_job_never_goes_where_it_does_not_fit_and_the_error_says_what_would() -> None:
    capped = peer("laptop", memory_budget_gb=60.0, memory_cap_gb=4.0, backlog_s=0.0)
    roomy = peer("studio", memory_budget_gb=40.0, backlog_s=500.0)  # busy for minutes, but it fits
    assert not fits(capped, BIG) and fits(roomy, BIG)
    for seed in range(10):
        assert [c.node_id for c in rank([capped, roomy], BIG, rng=random.Random(seed))] == ["studio"]
    small = peer("mini", memory_budget_gb=12.0)
    error = no_room_error(BIG, [capped, small])
    assert error.status == 507 and error.reason is not None and error.fields["need_gb"] > 17
    assert "laptop 4 GB (its --max-memory-gb)" in error.message and "mini 12 GB free" in error.message
    assert '"quantize": 4' in error.message  # q4 fits on the mini
    line = reason_line(rank([capped, roomy], BIG, rng=random.Random(0)), [capped, roomy], BIG)
    assert line.startswith("queue 500.0s") and "laptop no room (needs 19 GB, 4 allowed)" in line


def test_what_the_engine_holds_is_memory_it_would_give_back() -> None:
    doc = {"system": {"memory_available_gb": 6.0}, "image": {"enabled": True, "memory": {"held_gb": 17.0},
           "models": {TURBO: {"installed": True}}}}  # fmt: skip
    view = image_view("a", "up", doc, is_self=False, now=0.0)
    assert view.memory_budget_gb == 23.0 and fits(view, BIG)


# -- the other work on the machine --------------------------------------------------------------------------------
def test_llm_work_on_a_mac_slows_its_image_work_and_image_work_slows_its_llm_work() -> None:
    busy_doc = {
        "image": {
            "enabled": True,
            "models": {TURBO: {"installed": True, "cached": True, "loaded": True}},
            "speed": {"ms_per_mp_step": {TURBO: 1000.0}},
        },
        "llm": {"enabled": {"llm": True}, "models": ["m:latest"], "active": [{"job_id": "x"}, {"job_id": "y"}]},
    }
    idle_doc = {**busy_doc, "llm": {**busy_doc["llm"], "active": []}}  # fmt: skip
    busy = image_view("busy", "up", busy_doc, is_self=False, now=0.0)
    idle = image_view("idle", "up", idle_doc, is_self=False, now=0.0)
    assert busy.contention == 1 + 2 * DEFAULT_SLOWDOWN and idle.contention == 1.0
    for seed in range(10):
        assert rank([busy, idle], BIG, rng=random.Random(seed))[0].node_id == "idle"
    drawing = {"llm": {"enabled": {"llm": True}, "models": ["m:latest"], "loaded": ["m:latest"], "active": []},
               "image": {"queue": {"running": [{"job_id": "img", "model": TURBO}]}}}  # fmt: skip
    quiet = {"llm": drawing["llm"]}
    snapshot = MeshSnapshot(0.0, "a", (PeerState("a", "up", drawing, is_self=True), PeerState("b", "up", quiet)))
    facts = snapshot.model_facts("llm")
    assert [f.other_jobs for f in facts] == [1, 0]
    for seed in range(10):
        chosen = rank_peers(facts, Work.request("llm", "m:latest"), LLM_COSTS, rng=random.Random(seed))
        assert chosen[0].node_id == "b"


def test_the_slowdown_is_learned_from_runs_that_shared_the_machine() -> None:
    book = SpeedBook()
    book.record_run(TURBO, 1.0, 1000.0)
    book.record_run(TURBO, 1.0, 3000.0, others=1)  # with one LLM stream beside it: 3x slower
    assert book.ms[TURBO] == 1000.0 and book.slowdown == pytest.approx(2.0)
    assert SpeedBook.from_dict(book.to_dict()).slowdown == pytest.approx(2.0)


def test_calmer_machines_win_near_ties() -> None:
    hot = peer("hot", cpu_percent=95.0)
    pressed = peer("pressed", memory_pressure="critical")
    calm = peer("calm", cpu_percent=5.0)
    for seed in range(10):
        assert [c.node_id for c in rank([hot, pressed, calm], BIG, rng=random.Random(seed))] == [
            "calm", "hot", "pressed"]  # fmt: skip


# -- progress -----------------------------------------------------------------------------------------------------
def test_where_a_job_is_comes_from_the_queues_the_peers_advertise() -> None:
    queue = {"running": [{"job_id": "r", "model": TURBO, "steps": 8, "progress": [2, 8], "started_at": 90.0,
                          "estimate_s": 40.0}],
             "waiting": [{"job_id": "w", "model": TURBO, "steps": 4, "estimate_s": 10.0}]}  # fmt: skip
    snapshot = MeshSnapshot(100.0, "a", (PeerState("a", "up", {}), PeerState("b", "up", {"image": {"queue": queue}})))
    running = progress(snapshot, "r")
    assert running == {"state": "running", "node": "b", "queue_position": 0, "step": 2, "steps": 8, "eta_s": 30.0}
    waiting = progress(snapshot, "w")
    assert waiting is not None and waiting["queue_position"] == 1 and waiting["eta_s"] == 40.0
    assert progress(snapshot, "nope") is None


# -- real peers ---------------------------------------------------------------------------------------------------
IMAGE = {"model": TURBO, "prompt": "a lighthouse", "width": 512, "height": 512, "steps": 4}


def test_a_job_that_does_not_fit_a_capped_mac_runs_elsewhere_and_alone_gets_a_memory_error(mesh: Mesh) -> None:
    laptop = mesh.add("laptop", args=["--max-memory-gb", "4"])
    studio = mesh.add("studio")
    mesh.wait_all_see_each_other()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: laptop.post("/api/generate-image", json={**IMAGE, "seed": i}), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert {a.headers["X-Fleet-Node"] for a in answers} == {"studio"}
    assert "laptop no room" in answers[0].headers["X-Fleet-Reason"]
    studio.terminate()
    wait_until(lambda: laptop.statuses().get("studio") is None, 10, what="studio to leave")
    alone = laptop.post("/api/generate-image", json=IMAGE)
    assert alone.status_code == 507
    error = alone.json()
    assert error["reason"] == "no-room" and "GB of memory" in error["error"] and "--max-memory-gb" in error["error"]
    q8 = laptop.post("/api/generate-image", json={**IMAGE, "quantize": 3})
    assert q8.status_code == 507 and q8.json()["need_gb"] > 4


def test_a_mac_busy_with_llm_streams_gets_fewer_images(mesh: Mesh) -> None:
    alpha = mesh.add("alpha", ms_per_mp_step=400)
    bravo = mesh.add("bravo", ms_per_mp_step=400, start=False)
    ollama = OllamaStandin("bravo", "llama3.2:3b", "llama3.2:3b", chunk_delay=0.5, machine=bravo)
    try:
        bravo.args += ["--ollama-url", ollama.url]
        bravo.start()
        mesh.wait_all_see_each_other()
        for runner, sender in ((alpha, bravo), (bravo, alpha)):  # each measures its speed once, on its own GPU
            forwarded = {"X-Herd-Forwarded": "1", "X-Herd-Node": sender.node_id, "X-Herd-Mesh": mesh.name}
            assert (
                runner.call_from(sender, "POST", "/api/generate-image", json=IMAGE, headers=forwarded).status_code
                == 200
            )
        wait_until(lambda: all(TURBO in p.get("/mesh/state").json()["image"]["speed"]["ms_per_mp_step"]
                               for p in (alpha, bravo)), 10, what="both speeds measured")  # fmt: skip
        stop = threading.Event()

        def chat() -> None:
            while not stop.is_set():
                body = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "tell " * 12}]}
                with httpx.stream("POST", bravo.url + "/api/chat", json=body, timeout=60) as response:
                    for _ in response.iter_lines():
                        if stop.is_set():
                            break

        streams = [threading.Thread(target=chat, daemon=True) for _ in range(3)]
        for thread in streams:
            thread.start()
        wait_until(lambda: len(bravo.get("/mesh/state").json()["llm"]["active"]) >= 2, 10, what="streams on bravo")
        entries = [alpha, bravo] * 4
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda p: p[1].post("/api/generate-image", json={**IMAGE, "seed": p[0]}),
                                    enumerate(entries)))  # fmt: skip
        stop.set()
        nodes = [a.headers["X-Fleet-Node"] for a in answers]
        assert all(a.status_code == 200 for a in answers)
        assert nodes.count("alpha") >= 6, nodes  # without the streams, an even split (4/4)
    finally:
        ollama.stop()


def test_waits_are_honest_for_moved_jobs_and_progress_is_visible_while_a_job_runs(mesh: Mesh) -> None:
    entry = mesh.add("entry", mflux=False)
    slow = mesh.add("slow", ms_per_mp_step=3000)
    fast = mesh.add("fast", ms_per_mp_step=600)
    mesh.wait_all_see_each_other()
    results: list[tuple[float, httpx.Response]] = []

    def timed(i: int) -> None:
        started = time.monotonic()
        response = entry.post("/api/generate-image", json={**IMAGE, "seed": i}, timeout=120)
        results.append((time.monotonic() - started, response))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(timed, range(6)))
    for total_s, response in results:
        assert response.status_code == 200
        queue_ms, generation_ms = int(response.headers["X-Queue-Time"]), int(response.headers["X-Generation-Time"])
        assert abs(total_s * 1000 - (queue_ms + generation_ms)) < 1500, (total_s, queue_ms, generation_ms)
        assert response.headers["X-Fleet-Attempts"] == "1"  # nothing failed
    assert any(int(r.headers["X-Fleet-Moves"]) > 0 for _, r in results) or len(
        {r.headers["X-Fleet-Node"] for _, r in results}) == 2  # fmt: skip
    # progress: name the job, and watch it from another peer
    watched: dict[str, Any] = {}
    job = threading.Thread(target=lambda: watched.update(
        answer=entry.post("/api/generate-image", json={**IMAGE, "steps": 6}, headers={"X-Request-Id": "watch-me"},
                          timeout=120)))  # fmt: skip
    job.start()
    running = wait_until(lambda: _running_with_steps(fast), 60, what="a step of the watched job")
    assert running["steps"] == 6 and running["node"] in ("slow", "fast") and running["eta_s"] is not None
    job.join(120)
    assert watched["answer"].headers["X-Request-Id"] == "watch-me"
    done = entry.get("/api/jobs/watch-me").json()
    assert done["state"] == "done" and done["node"] == watched["answer"].headers["X-Fleet-Node"]
    assert done["reason"] and slow.get("/api/jobs/nope").status_code == 404


def _running_with_steps(peer: Any) -> dict[str, Any] | None:
    doc = peer.get("/api/jobs/watch-me").json()
    return doc if doc.get("state") == "running" and (doc.get("step") or 0) >= 1 else None
