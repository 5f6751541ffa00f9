"""The one attempt loop: its pure rules on literal outcomes, then the loop itself on peers built in this process
(`tests/inprocess.py`), with failures injected at the transport and in the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from herd_mesh.core.attempts import MAX_MOVES, Attempts, EngineFailed, Moved, Refused, Unreachable, Verdict
from herd_mesh.core.work import Choice
from herd_mesh.errors import Reason
from tests.inprocess import InProcessMesh, until

BODY = {"model": "z-image-turbo", "prompt": "a lighthouse", "width": 256, "height": 256, "steps": 2}


def choices(*names: str) -> list[Choice]:
    return [Choice(n, float(i), "") for i, n in enumerate(names)]


# -- the rules, pure --------------------------------------------------------------------------------------------
def test_each_peer_is_tried_once_best_first_up_to_the_limit() -> None:
    attempts = Attempts(max_tries=2)
    assert attempts.pick(choices("a", "b", "c")).node_id == "a"  # type: ignore[union-attr]
    assert attempts.record(Unreachable("a", "connection refused")) is Verdict.RETRY
    assert attempts.pick(choices("a", "b", "c")).node_id == "b"  # type: ignore[union-attr]
    assert attempts.record(EngineFailed("b", "mflux exited with code 1")) is Verdict.RETRY
    assert attempts.pick(choices("a", "b", "c")) is None  # two tries were allowed
    assert attempts.report() == [{"node": "a", "reason": "unreachable: connection refused"},
                                 {"node": "b", "reason": "mflux exited with code 1"}]  # fmt: skip


def test_a_move_goes_to_the_named_peer_once_and_is_not_a_failure() -> None:
    attempts = Attempts()
    attempts.pick(choices("a", "b", "c"))
    busy = Refused("a", 503, "busy", Reason.BUSY, redirect_to="c")
    assert attempts.record(busy) is Verdict.RETRY
    assert (attempts.tries, attempts.moves, attempts.failures, attempts.movable) == (0, 1, [], True)
    assert attempts.pick(choices("a", "b", "c")).node_id == "c"  # type: ignore[union-attr]  # not b, the best left
    assert attempts.attempts == 1
    again = Attempts()  # a peer that said "busy" may take the job back later, when it is idle: it never had it
    again.pick(choices("a", "b"))
    again.record(busy)
    again.pick(choices("a", "b", "c"))
    again.record(Moved("c", "a", stolen=True))
    assert again.pick(choices("b", "a", "c")).node_id == "a" and again.left == {"c"}  # type: ignore[union-attr]
    stolen = Attempts()
    stolen.pick(choices("a", "b", "c", "d"))
    stolen.record(Moved("a", "b", stolen=True))
    assert stolen.pick(choices("a", "b", "c", "d")).node_id == "b" and stolen.movable  # type: ignore[union-attr]
    stolen.record(Moved("b", "a", stolen=True))  # never back to a queue it left: the best one left instead
    assert stolen.pick(choices("a", "b", "c", "d")).node_id == "c"  # type: ignore[union-attr]
    stolen.record(Moved("c", "d", stolen=True))
    assert stolen.moves == MAX_MOVES and not stolen.movable  # and not forever


def test_a_move_never_sends_a_job_back_to_a_peer_that_failed_it() -> None:
    """b ran out of memory on it; c, busy, answers "try b": the job goes to the next peer, not back to b."""
    attempts = Attempts()
    attempts.pick(choices("b", "c", "d"))
    attempts.record(EngineFailed("b", "out of memory"))
    attempts.pick(choices("b", "c", "d"))
    attempts.record(Refused("c", 503, "busy", Reason.BUSY, redirect_to="b"))
    assert attempts.pick(choices("b", "c", "d")).node_id == "d"  # type: ignore[union-attr]
    assert "b" in attempts.avoid  # and the peers it is sent to are told not to name b either


@pytest.mark.parametrize(
    ("status", "reason", "verdict"),
    [
        (400, None, Verdict.PASS_ON),  # the client's mistake: no other peer would say otherwise
        (400, Reason.BAD_AUDIO, Verdict.PASS_ON),
        (413, None, Verdict.PASS_ON),
        (404, None, Verdict.RETRY),  # that peer lacks the model after all
        (404, Reason.NOT_INSTALLED, Verdict.RETRY),
        (429, None, Verdict.RETRY),
        (503, Reason.DISABLED, Verdict.RETRY),
        (502, Reason.ENGINE_FAILED, Verdict.RETRY),
        (500, None, Verdict.RETRY),
    ],
)
def test_which_refusals_fail_over(status: int, reason: Reason | None, verdict: Verdict) -> None:
    attempts = Attempts()
    attempts.pick(choices("a", "b"))
    assert attempts.record(Refused("a", status, "no", reason)) is verdict


def test_giving_up_names_every_peer_and_picks_the_status_a_client_can_act_on() -> None:
    def after(*outcomes: Refused | Unreachable) -> Attempts:
        attempts = Attempts()
        for outcome in outcomes:
            attempts.pick(choices(outcome.node))
            attempts.record(outcome)
        return attempts

    off = after(Refused("a", 503, "off on a", Reason.DISABLED), Refused("b", 503, "off on b", Reason.DISABLED))
    error = off.give_up(what="image generation", model="z-image-turbo", setting="image_generation")
    assert error.status == 503 and "switched off" in error.message and '{"image_generation": true}' in error.message
    missing = after(Refused("a", 404, "gone"), Refused("b", 404, "gone too"))
    error = missing.give_up(what="LLM chat", model="qwen3:8b", setting="llm", available=["llama3.2:3b"])
    assert error.status == 404 and "llama3.2:3b" in error.message and len(error.fields["attempts"]) == 2
    busy = after(Refused("a", 429, "slow down"), Refused("b", 503, "overloaded"))
    assert busy.give_up(what="LLM chat", model="m", setting="llm").status == 503
    broken = after(Unreachable("a", "reset"), Refused("b", 502, "mflux crashed", Reason.ENGINE_FAILED))
    error = broken.give_up(what="image generation", model="z-image-turbo", setting="image_generation")
    assert error.status == 502 and "a: unreachable: reset" in error.message and "b: mflux crashed" in error.message
    assert Attempts().give_up(what="LLM chat", model="m", setting="llm").status == 503


# -- the loop, on peers in this process -----------------------------------------------------------------------
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_burst_spreads_and_a_held_peer_gets_no_second_job(tmp_path: Path) -> None:
    mesh = InProcessMesh(tmp_path, ["a", "b"])
    async with mesh.running():
        await mesh.converged()
        for engine in mesh.engines.values():
            engine.hold = True  # every job runs until released
        async with mesh.client("a") as client:
            first = asyncio.ensure_future(client.post("/api/generate-image", json=BODY))
            busy = await until(lambda: [n for n, e in mesh.engines.items() if e.jobs], 5, "the first job to start")
            other = ({"a", "b"} - set(busy)).pop()
            second = asyncio.ensure_future(client.post("/api/generate-image", json=BODY))
            await until(lambda: mesh.engines[other].jobs, 5, f"the second job to start on idle {other}")
            for engine in mesh.engines.values():
                engine.release()
            assert (await first).headers["X-Fleet-Node"] == busy[0]
            assert (await second).headers["X-Fleet-Node"] == other
        assert [len(e.jobs) for e in mesh.engines.values()] == [1, 1]


@pytest.mark.anyio
async def test_an_unreachable_peer_is_skipped_and_marked_suspect(tmp_path: Path) -> None:
    mesh = InProcessMesh(tmp_path, ["a", "b"])
    async with mesh.running():
        await mesh.converged()
        mesh.engines["a"].fail_with = "mflux exited with code 1"  # a cannot serve, so b is its only choice
        mesh.network.cut.add(mesh.hosts["b"])  # ... and b has just lost its network
        async with mesh.client("a") as client:
            response = await client.post("/api/generate-image", json=BODY)
        assert response.status_code == 502
        body = response.json()
        reasons = {a["node"]: a["reason"] for a in body["attempts"]}
        assert reasons["a"] == "mflux exited with code 1" and reasons["b"].startswith("unreachable:")
        assert mesh.peers["a"].node.table.get("b").status != "up"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_failing_engine_fails_over_and_the_client_sees_the_attempts(tmp_path: Path) -> None:
    mesh = InProcessMesh(tmp_path, ["a", "b"])
    async with mesh.running():
        await mesh.converged()
        mesh.engines["b"].fail_with = "out of memory"
        mesh.engines["a"].hold = True
        async with mesh.client("a") as client:
            first = asyncio.ensure_future(client.post("/api/generate-image", json=BODY))
            await until(lambda: mesh.engines["a"].jobs, 5, "a to hold the first job (after b failed it, or not)")
            tried_on_b = len(mesh.engines["b"].jobs)
            second_call = asyncio.ensure_future(client.post("/api/generate-image", json=BODY))
            await until(lambda: len(mesh.engines["b"].jobs) > tried_on_b, 5, "the second job to be tried on b first")
            mesh.engines["a"].release()  # it failed on b, came back to a, and waits behind the first
            second = await second_call
            await first
        assert second.status_code == 200, second.text
        assert second.headers["X-Fleet-Node"] == "a" and second.headers["X-Fleet-Attempts"] == "2"
        assert len(mesh.engines["b"].jobs) == tried_on_b + 1  # tried there once


@pytest.mark.anyio
async def test_a_client_mistake_caught_where_it_runs_is_passed_on_not_retried(tmp_path: Path) -> None:
    mesh = InProcessMesh(tmp_path, ["a", "b"])
    async with mesh.running():
        await mesh.converged()
        async with mesh.client("a") as client:
            bad = await client.post("/api/generate-image", json={**BODY, "steps": 0})
        assert bad.status_code == 400 and "'steps'" in bad.json()["error"]
        assert not mesh.engines["a"].jobs and not mesh.engines["b"].jobs
        assert ("10.77.0.2", "/api/generate-image") not in mesh.network.calls  # refused at the entry, never sent


@pytest.mark.anyio
async def test_what_the_running_peer_ignored_reaches_the_client_through_the_entry_peer(tmp_path: Path) -> None:
    mesh = InProcessMesh(tmp_path, ["a", "b"], {"a": frozenset(), "b": frozenset({"flux-schnell"})})  # a forwards
    async with mesh.running():
        await mesh.converged()
        async with mesh.client("a") as client:
            body = {"model": "flux-schnell", "prompt": "a fox", "negative_prompt": "blurry", "guidance": 3.5}
            response = await client.post("/api/generate-image", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["X-Fleet-Node"] == "b"
    assert response.headers["X-Fleet-Ignored"] == "guidance, negative_prompt"  # schnell takes neither
    assert response.headers["X-Fleet-Steps"] == "4"  # schnell's default, applied on b
    (ran,) = mesh.engines["b"].jobs
    assert (ran.steps, ran.guidance, ran.negative_prompt) == (4, None, "")
