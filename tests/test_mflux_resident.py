"""The resident mflux engine, driven through its real worker process with a fake model (tests/fake_mflux_model)."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from herd_mesh.core import catalogue
from herd_mesh.engines.base import ImageEngine, ImageJob
from herd_mesh.engines.mflux_resident import ResidentMfluxEngine, available
from herd_mesh.errors import ConfigError, EngineError
from tests import fake_mflux_model as fake

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

FAKE = "tests.fake_mflux_model"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The worker inherits these at spawn: quick loads and steps, and a file to report loads in."""
    path = tmp_path / "fake.jsonl"
    monkeypatch.setenv(fake.LOG_ENV, str(path))
    monkeypatch.setenv(fake.LOAD_S_ENV, "0.2")
    monkeypatch.setenv(fake.STEP_S_ENV, "0.01")
    return path


@pytest.fixture
async def make_engine(anyio_backend: str, log: Path) -> AsyncIterator[Callable[..., ResidentMfluxEngine]]:
    engines: list[ResidentMfluxEngine] = []

    def make(loader: str = "load", **options: Any) -> ResidentMfluxEngine:
        engine = ResidentMfluxEngine(loader=f"{FAKE}:{loader}", **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()


def job(model: str = "z-image-turbo", *, steps: int = 2, **fields: Any) -> ImageJob:
    values: dict[str, Any] = {"width": 64, "height": 48, "seed": 7, "prompt": "a lighthouse"} | fields
    return ImageJob(job_id="job-1", model=model, steps=steps, **values)


def loads(log: Path) -> list[dict[str, Any]]:
    return [event for event in fake.read_log(log) if event["event"] == "load"]


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(fake.PNG_SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def process_gone(pid: int) -> bool:
    """True once the process has exited and been reaped (a zombie would still answer signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def worker_pid(engine: ResidentMfluxEngine) -> int:
    pid = engine.worker_pid
    assert pid is not None
    return pid


async def wait_for(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    with anyio.fail_after(timeout_s):
        while not condition():
            await anyio.sleep(0.02)


# -- construction -------------------------------------------------------------------------------------------------


def test_defaults_serve_the_catalogue_models_with_a_python_api() -> None:
    engine = ResidentMfluxEngine()
    assert engine.installed_models() == {"z-image-turbo", "flux-schnell", "flux-dev", "anima-turbo"}
    assert engine.loaded_models() == set()
    assert engine.worker_pid is None
    assert isinstance(available(), bool)
    assert "mflux" not in sys.modules  # neither the check nor the import pulled mflux in
    _: ImageEngine = engine


@pytest.mark.parametrize(
    "options",
    [
        {"keep_alive_s": -1.0},
        {"keep_alive_s": float("nan")},
        {"loader": "no_colon_here"},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ResidentMfluxEngine(**options)


async def test_model_not_served_is_refused_without_a_worker(make_engine: Callable[..., ResidentMfluxEngine]) -> None:
    engine: ResidentMfluxEngine = make_engine(models={"z-image-turbo": catalogue.MODELS["z-image-turbo"]})
    with pytest.raises(EngineError, match="not served"):
        await engine.generate(job("flux-dev"))
    assert engine.worker_pid is None


# -- residency ----------------------------------------------------------------------------------------------------


async def test_model_stays_loaded_between_jobs(make_engine: Callable[..., ResidentMfluxEngine], log: Path) -> None:
    changes: list[set[str]] = []
    engine: ResidentMfluxEngine = make_engine(on_change=lambda: changes.append(engine.loaded_models()))

    first = await engine.generate(job())
    assert engine.loaded_models() == {"z-image-turbo"}
    pid = engine.worker_pid
    second = await engine.generate(job(seed=8))

    assert len(loads(log)) == 1
    assert first.load_ms >= 150  # the fake load sleeps 0.2 s
    assert second.load_ms == 0
    assert second.generation_ms >= 15  # 2 steps at 10 ms
    assert engine.worker_pid == pid
    assert changes == [{"z-image-turbo"}]
    assert png_size(first.png) == (64, 48)
    assert first.png != second.png  # another seed
    assert (await engine.generate(job())).png == first.png  # deterministic for the same seed and prompt


async def test_idle_keep_alive_ends_the_worker_and_the_next_job_reloads(
    make_engine: Callable[..., ResidentMfluxEngine], log: Path
) -> None:
    changes: list[set[str]] = []
    engine: ResidentMfluxEngine = make_engine(
        keep_alive_s=0.5, on_change=lambda: changes.append(engine.loaded_models())
    )
    await engine.generate(job())
    pid = worker_pid(engine)

    await anyio.sleep(0.2)
    assert engine.loaded_models() == {"z-image-turbo"}  # not yet
    await wait_for(lambda: engine.worker_pid is None, timeout_s=3.0)
    assert engine.loaded_models() == set()
    assert process_gone(pid)
    assert changes == [{"z-image-turbo"}, set()]

    again = await engine.generate(job())
    assert again.load_ms > 0
    assert len(loads(log)) == 2
    assert engine.worker_pid not in (None, pid)


async def test_a_job_resets_the_keep_alive(make_engine: Callable[..., ResidentMfluxEngine]) -> None:
    engine: ResidentMfluxEngine = make_engine(keep_alive_s=0.6)
    await engine.generate(job())
    pid = engine.worker_pid
    for _ in range(3):
        await anyio.sleep(0.3)
        await engine.generate(job())
    assert engine.worker_pid == pid
    assert engine.loaded_models() == {"z-image-turbo"}


async def test_another_model_or_quantize_replaces_the_loaded_one(
    make_engine: Callable[..., ResidentMfluxEngine], log: Path
) -> None:
    changes: list[set[str]] = []
    engine: ResidentMfluxEngine = make_engine(on_change=lambda: changes.append(engine.loaded_models()))
    await engine.generate(job("z-image-turbo"))
    pid = engine.worker_pid

    switched = await engine.generate(job("flux-schnell"))
    assert switched.load_ms > 0
    assert engine.loaded_models() == {"flux-schnell"}
    assert changes == [{"z-image-turbo"}, set(), {"flux-schnell"}]
    assert engine.worker_pid == pid  # unloaded in place, no new process

    await engine.generate(job("flux-schnell", quantize=4))
    assert [(e["model"], e["quantize"]) for e in loads(log)] == [
        ("z-image-turbo", 8),
        ("flux-schnell", 8),
        ("flux-schnell", 4),
    ]


async def test_negative_prompt_is_passed_only_to_models_that_take_it(
    make_engine: Callable[..., ResidentMfluxEngine], log: Path
) -> None:
    flux = make_engine()
    await flux.generate(job("flux-dev", negative_prompt="blurry"))
    await flux.generate(job("flux-dev"))
    turbo = make_engine(loader="load_turbo")
    await turbo.generate(job("z-image-turbo", negative_prompt="blurry"))  # ZImageTurbo has no such keyword
    generated = [e["negative_prompt"] for e in fake.read_log(log) if e["event"] == "generate"]
    assert generated == ["blurry", None, None]


# -- failures -----------------------------------------------------------------------------------------------------


async def test_generate_raising_is_an_engine_error_and_the_model_stays(
    make_engine: Callable[..., ResidentMfluxEngine], log: Path
) -> None:
    engine: ResidentMfluxEngine = make_engine(loader="load_raising")
    with pytest.raises(EngineError, match="ValueError: fake: height must be a multiple of 16"):
        await engine.generate(job())
    assert engine.loaded_models() == {"z-image-turbo"}
    with pytest.raises(EngineError):
        await engine.generate(job())
    assert len(loads(log)) == 1


async def test_loader_failing_is_an_engine_error_with_nothing_loaded(
    make_engine: Callable[..., ResidentMfluxEngine],
) -> None:
    engine: ResidentMfluxEngine = make_engine(loader="load_failing")
    with pytest.raises(EngineError, match="RuntimeError: fake: no weights for z-image-turbo"):
        await engine.generate(job())
    assert engine.loaded_models() == set()


async def test_missing_loader_is_an_engine_error(make_engine: Callable[..., ResidentMfluxEngine]) -> None:
    engine: ResidentMfluxEngine = make_engine(loader="no_such_function")
    with pytest.raises(EngineError, match="AttributeError"):
        await engine.generate(job())


async def test_worker_killed_mid_job_is_an_engine_error_and_the_next_job_works(
    make_engine: Callable[..., ResidentMfluxEngine], log: Path
) -> None:
    engine: ResidentMfluxEngine = make_engine()
    async with anyio.create_task_group() as tg:
        outcome: list[BaseException] = []

        async def run() -> None:
            try:
                await engine.generate(job(steps=500))  # 5 s
            except EngineError as exc:
                outcome.append(exc)

        tg.start_soon(run)
        await wait_for(engine.loaded_models)  # loaded, so generating now
        pid = worker_pid(engine)
        os.kill(pid, signal.SIGKILL)

    assert len(outcome) == 1
    assert "mflux worker exited with code -9" in str(outcome[0])
    assert engine.loaded_models() == set()
    assert engine.worker_pid is None
    assert process_gone(pid)

    output = await engine.generate(job())
    assert png_size(output.png) == (64, 48)
    assert output.load_ms > 0
    assert len(loads(log)) == 2


async def test_worker_dead_while_idle_is_replaced(make_engine: Callable[..., ResidentMfluxEngine]) -> None:
    engine: ResidentMfluxEngine = make_engine()
    await engine.generate(job())
    pid = worker_pid(engine)
    os.kill(pid, signal.SIGKILL)
    await anyio.sleep(0.1)
    output = await engine.generate(job())
    assert output.load_ms > 0
    assert engine.worker_pid not in (None, pid)


# -- cancellation and shutdown ------------------------------------------------------------------------------------


async def test_cancelling_the_task_ends_the_worker(make_engine: Callable[..., ResidentMfluxEngine]) -> None:
    changes: list[set[str]] = []
    engine: ResidentMfluxEngine = make_engine(on_change=lambda: changes.append(engine.loaded_models()))
    task = asyncio.create_task(engine.generate(job(steps=500)))
    await wait_for(engine.loaded_models)
    pid = worker_pid(engine)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.worker_pid is None
    assert process_gone(pid)  # terminated and reaped before generate returned
    assert engine.loaded_models() == set()
    assert changes == [{"z-image-turbo"}, set()]

    assert (await engine.generate(job())).load_ms > 0  # the next job starts afresh


async def test_cancel_scope_timeout_ends_the_worker(make_engine: Callable[..., ResidentMfluxEngine]) -> None:
    pids: list[int | None] = []
    engine: ResidentMfluxEngine = make_engine(on_change=lambda: pids.append(engine.worker_pid))
    with anyio.move_on_after(1.0) as scope:
        await engine.generate(job(steps=500))
    assert scope.cancelled_caught
    pid = pids[0]
    assert pid is not None
    assert engine.worker_pid is None
    assert process_gone(pid)
    assert engine.loaded_models() == set()


async def test_aclose_stops_the_worker(make_engine: Callable[..., ResidentMfluxEngine]) -> None:
    engine: ResidentMfluxEngine = make_engine()
    await engine.generate(job())
    pid = worker_pid(engine)

    await engine.aclose()
    assert engine.worker_pid is None
    assert process_gone(pid)
    assert engine.loaded_models() == set()
    with pytest.raises(EngineError, match="closed"):
        await engine.generate(job())


async def test_aclose_during_a_job_fails_the_job(make_engine: Callable[..., ResidentMfluxEngine]) -> None:
    engine: ResidentMfluxEngine = make_engine()
    async with anyio.create_task_group() as tg:
        errors: list[EngineError] = []

        async def run() -> None:
            try:
                await engine.generate(job(steps=500))
            except EngineError as exc:
                errors.append(exc)

        tg.start_soon(run)
        await wait_for(engine.loaded_models)
        pid = worker_pid(engine)
        with anyio.fail_after(5):
            await engine.aclose()

    assert [str(e) for e in errors] == ["the resident mflux engine was closed during the job"]
    assert process_gone(pid)


@pytest.mark.skipif(available(), reason="mflux is installed here")
async def test_real_loader_without_mflux_is_an_engine_error(anyio_backend: str) -> None:
    engine = ResidentMfluxEngine()
    try:
        with pytest.raises(EngineError, match="ModuleNotFoundError: No module named 'mflux'"):
            await engine.generate(job())
        assert engine.loaded_models() == set()
    finally:
        await engine.aclose()
