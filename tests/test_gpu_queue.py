"""The GPU queue: FIFO slots, cancellation, work-stealing withdrawals, and what it advertises."""

from __future__ import annotations

import asyncio

import pytest

from herd_mesh import errors as gpu_queue
from herd_mesh.core.work import Work
from herd_mesh.services.gpu_queue import GpuQueue, QueuedJob

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def job(job_id: str, estimate_s: float = 1.0) -> QueuedJob:
    return QueuedJob(Work.image("z-image-turbo", 512, 512, 4, job_id), entry_node="studio", estimate_s=estimate_s)


class Runner:
    """Runs jobs through a queue; each holds its slot until released, and records when it got one."""

    def __init__(self, queue: GpuQueue) -> None:
        self.queue = queue
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[float]] = {}
        self.concurrent = 0
        self.max_concurrent = 0

    async def _run(self, j: QueuedJob) -> float:
        async with self.queue.slot(j) as waited:
            self.started.append(j.job_id)
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            try:
                await self.gates[j.job_id].wait()
            finally:
                self.concurrent -= 1
        return waited

    async def submit(self, j: QueuedJob) -> asyncio.Task[float]:
        self.gates[j.job_id] = asyncio.Event()
        task = asyncio.create_task(self._run(j))
        self.tasks[j.job_id] = task
        await settle()
        return task

    async def release(self, job_id: str) -> None:
        self.gates[job_id].set()
        await self.tasks[job_id]
        await settle()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def ids(jobs: list[QueuedJob]) -> list[str]:
    return [j.job_id for j in jobs]


async def test_one_slot_runs_jobs_one_at_a_time_in_fifo_order() -> None:
    runner = Runner(GpuQueue(slots=1))
    for name in "abcde":
        await runner.submit(job(name))
    assert runner.started == ["a"]
    assert ids(runner.queue.waiting) == ["b", "c", "d", "e"]
    for name in "abcde":
        await runner.release(name)
    assert runner.started == ["a", "b", "c", "d", "e"]
    assert runner.max_concurrent == 1
    assert runner.queue.depth == 0


async def test_two_slots_run_two_at_once() -> None:
    runner = Runner(GpuQueue(slots=2))
    for name in "abcd":
        await runner.submit(job(name))
    assert runner.started == ["a", "b"]
    assert ids(runner.queue.waiting) == ["c", "d"]
    await runner.release("b")
    assert runner.started == ["a", "b", "c"]
    for name in "acd":
        await runner.release(name)
    assert runner.max_concurrent == 2
    assert runner.started == ["a", "b", "c", "d"]


async def test_the_wait_is_reported() -> None:
    runner = Runner(GpuQueue(slots=1))
    first = await runner.submit(job("a"))
    second = await runner.submit(job("b"))
    await asyncio.sleep(0.05)
    await runner.release("a")
    await runner.release("b")
    assert first.result() < 0.05
    assert second.result() >= 0.05


async def test_cancelling_a_waiting_job_removes_it_and_keeps_the_order() -> None:
    runner = Runner(GpuQueue(slots=1))
    for name in "abcd":
        await runner.submit(job(name))
    runner.tasks["c"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner.tasks["c"]
    assert ids(runner.queue.waiting) == ["b", "d"]
    assert runner.queue.depth == 3
    for name in "abd":
        await runner.release(name)
    assert runner.started == ["a", "b", "d"]


async def test_cancelling_the_running_job_frees_the_slot() -> None:
    runner = Runner(GpuQueue(slots=1))
    for name in "abc":
        await runner.submit(job(name))
    runner.tasks["a"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner.tasks["a"]
    await settle()
    assert runner.started == ["a", "b"]
    assert list(runner.queue.running) == ["b"]
    assert ids(runner.queue.waiting) == ["c"]


async def test_a_job_cancelled_just_as_it_was_handed_the_slot_passes_it_on() -> None:
    queue = GpuQueue(slots=1)
    runner = Runner(queue)
    await runner.submit(job("b"))  # b runs first so that "a" below can finish inside our own coroutine
    hold = asyncio.Event()

    async def first() -> None:
        async with queue.slot(job("a")):
            await hold.wait()
        runner.tasks["c"].cancel()  # c was given the slot by the exit above but has not woken up yet

    await runner.release("b")
    a = asyncio.create_task(first())
    await settle()
    await runner.submit(job("c"))
    await runner.submit(job("d"))
    hold.set()
    await a
    with pytest.raises(asyncio.CancelledError):
        await runner.tasks["c"]
    await settle()
    assert list(queue.running) == ["d"]  # the slot was not lost with c
    await runner.release("d")
    assert runner.started == ["b", "d"]
    assert queue.depth == 0


async def test_withdraw_takes_a_waiting_job_out() -> None:
    changes: list[int] = []
    queue = GpuQueue(slots=1)
    queue._on_change = lambda: changes.append(queue.depth)
    runner = Runner(queue)
    for name in "abc":
        await runner.submit(job(name))
    changes.clear()
    assert queue.withdraw("b") is True
    with pytest.raises(gpu_queue.JobMoved):
        await runner.tasks["b"]
    assert ids(queue.waiting) == ["c"]
    assert changes == [2]  # observers hear about it
    assert queue.withdraw("b") is False  # already gone
    await runner.release("a")
    await runner.release("c")
    assert runner.started == ["a", "c"]


async def test_withdraw_leaves_a_running_job_alone() -> None:
    runner = Runner(GpuQueue(slots=1))
    await runner.submit(job("a"))
    assert runner.queue.withdraw("a") is False
    assert list(runner.queue.running) == ["a"]
    assert runner.queue.withdraw("never-queued") is False
    await runner.release("a")
    assert runner.tasks["a"].exception() is None


async def test_snapshot_depth_and_backlog() -> None:
    runner = Runner(GpuQueue(slots=1))
    await runner.submit(job("a", estimate_s=10.0))
    await runner.submit(job("b", estimate_s=4.0))
    await runner.submit(job("c", estimate_s=6.0))
    queue = runner.queue
    started = queue.running["a"].started_at
    assert started is not None
    now = started + 3.0
    assert queue.depth == 3
    assert queue.backlog_s(now) == pytest.approx(7.0 + 4.0 + 6.0)
    snap = queue.snapshot(now)
    assert (snap["slots"], snap["depth"]) == (1, 3)
    assert [j["job_id"] for j in snap["running"]] == ["a"]
    assert snap["running"][0]["remaining_s"] == pytest.approx(7.0)
    assert [(j["job_id"], j["remaining_s"], j["started_at"]) for j in snap["waiting"]] == [
        ("b", 4.0, None),
        ("c", 6.0, None),
    ]
    assert queue.backlog_s(started + 60.0) == pytest.approx(10.0)  # an overrunning job counts as 0 left, not less
    for name in "abc":
        await runner.release(name)
    assert queue.backlog_s() == 0.0
    assert queue.snapshot()["depth"] == 0


async def test_backlog_is_shared_over_slots() -> None:
    runner = Runner(GpuQueue(slots=2))
    await runner.submit(job("a", estimate_s=10.0))
    await runner.submit(job("b", estimate_s=10.0))
    await runner.submit(job("c", estimate_s=4.0))
    now = max(j.started_at or 0.0 for j in runner.queue.running.values())
    assert runner.queue.backlog_s(now) == pytest.approx(12.0, abs=0.1)
    for name in "abc":
        await runner.release(name)


async def test_on_change_sees_every_depth_change() -> None:
    depths: list[int] = []
    queue = GpuQueue(slots=1)
    queue._on_change = lambda: depths.append(queue.depth)
    runner = Runner(queue)
    await runner.submit(job("a"))
    await runner.submit(job("b"))
    await runner.release("a")
    await runner.release("b")
    distinct = [d for i, d in enumerate(depths) if i == 0 or depths[i - 1] != d]
    assert distinct == [1, 2, 1, 0]


async def test_on_change_given_to_the_constructor_is_called() -> None:
    calls: list[None] = []
    runner = Runner(GpuQueue(on_change=lambda: calls.append(None)))
    await runner.submit(job("a"))
    assert calls
    await runner.release("a")
    assert len(calls) >= 2
