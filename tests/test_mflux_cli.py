"""The mflux command-line engine, driving real processes: the mflux stand-in (tests/standins) on a private PATH."""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from herd_mesh.core.catalogue import MODELS
from herd_mesh.engines.base import ImageJob
from herd_mesh.engines.mflux_cli import MfluxCliEngine
from herd_mesh.errors import EngineError
from tests.standins.install import install_mflux_standin

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    return install_mflux_standin(tmp_path / "bin")


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in reads its settings from the environment it inherits; it logs start/end events here."""
    path = tmp_path / "standin.jsonl"
    monkeypatch.setenv("HERD_STANDIN_LOG", str(path))
    monkeypatch.setenv("HERD_STANDIN_MS_PER_MP_STEP", "20")
    monkeypatch.delenv("HERD_STANDIN_FAIL", raising=False)
    monkeypatch.delenv("HERD_STANDIN_LOCK", raising=False)
    return path


@pytest.fixture
def tmpdir_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp dir, moved somewhere we can watch for leftovers."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def engine(bin_dir: Path, log: Path, tmpdir_root: Path) -> MfluxCliEngine:
    return MfluxCliEngine(path=str(bin_dir), timeout_s=20)


def job(model: str = "z-image-turbo", **fields: Any) -> ImageJob:
    values: dict[str, Any] = {"width": 64, "height": 48, "steps": 2, "seed": 7, "prompt": "a lighthouse"} | fields
    return ImageJob(job_id="job-1", model=model, **values)


def events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def png_metadata(png: bytes) -> dict[str, Any]:
    """mflux's record: the JSON after `ASCII\\0\\0\\0` in the EXIF UserComment (tag 0x9286 of the Exif IFD)."""
    with Image.open(io.BytesIO(png)) as im:
        raw = im.getexif().get_ifd(0x8769)[0x9286]
    assert raw[:8] == b"ASCII\x00\x00\x00"
    return dict(json.loads(raw[8:]))


async def started_pid(log: Path, timeout_s: float = 10.0) -> int:
    """The stand-in's pid, once it has logged its start."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        starts = [e for e in events(log) if e["event"] == "start"]
        if starts:
            return int(starts[-1]["pid"])
        await asyncio.sleep(0.02)
    raise AssertionError("the stand-in never started")


async def assert_gone(pid: int, within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.02)
    os.kill(pid, 0)  # still there
    raise AssertionError(f"process {pid} outlived the job")


def leftovers(root: Path) -> list[Path]:
    return list(root.glob("herd-mflux-*"))


async def test_installed_models_come_from_the_commands_on_the_path(engine: MfluxCliEngine, tmp_path: Path) -> None:
    found = engine.installed_models()
    assert {"z-image-turbo", "flux-dev", "flux-schnell", "z-image", "qwen-image", "fibo"} <= found
    assert found == set(MODELS)  # flux-krea-dev is mflux-generate too
    assert engine.loaded_models() == set()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert MfluxCliEngine(path=str(empty)).installed_models() == set()


async def test_a_job_returns_a_png_of_the_requested_size(
    engine: MfluxCliEngine, log: Path, tmpdir_root: Path
) -> None:
    steps: list[tuple[int, int]] = []
    out = await engine.generate(job(width=64, height=48), lambda i, n: steps.append((i, n)))
    assert png_size(out.png) == (64, 48)
    assert out.generation_ms > 0
    start = events(log)[0]
    assert (start["width"], start["height"], start["steps"], start["seeds"]) == (64, 48, 2, [7])
    assert steps and steps[-1] == (2, 2)  # mflux's tqdm bar on stderr, parsed step by step
    assert leftovers(tmpdir_root) == []


async def test_flux_schnell_runs_mflux_generate_with_model_schnell(engine: MfluxCliEngine, log: Path) -> None:
    await engine.generate(job("flux-schnell", quantize=4, negative_prompt=""))
    start = events(log)[0]
    assert start["command"] == "mflux-generate"
    argv = start["argv"]
    assert argv[argv.index("--model") + 1] == "schnell"
    assert argv[argv.index("--quantize") + 1] == "4"
    assert not any(a.startswith("--negative-prompt") for a in argv)  # empty: not passed (FLUX.1 would warn)
    assert start["model"] == "schnell"


async def test_each_model_runs_its_own_command(engine: MfluxCliEngine, log: Path) -> None:
    await engine.generate(job("qwen-image", negative_prompt="blurry"))
    start = events(log)[0]
    assert start["command"] == "mflux-generate-qwen"
    assert "--model" not in start["argv"]
    assert "--negative-prompt=blurry" in start["argv"]


async def test_prompts_that_look_like_options_reach_mflux_as_text(engine: MfluxCliEngine, log: Path) -> None:
    out = await engine.generate(job("qwen-image", prompt="-a cat --steps 99", negative_prompt="--help"))
    start = events(log)[0]
    assert start["steps"] == 2  # "--steps 99" stayed inside the prompt
    assert "--prompt=-a cat --steps 99" in start["argv"]
    assert "--negative-prompt=--help" in start["argv"]
    assert "--no-exif" in start["argv"]  # mflux writes no metadata of its own: herd-mesh writes it (no path)
    with Image.open(io.BytesIO(out.png)) as im:
        assert im.info == {} and not im.getexif()


async def test_a_failing_mflux_gives_the_stderr_tail(
    engine: MfluxCliEngine, monkeypatch: pytest.MonkeyPatch, tmpdir_root: Path
) -> None:
    monkeypatch.setenv("HERD_STANDIN_FAIL", "error")
    with pytest.raises(EngineError) as info:
        await engine.generate(job())
    message = str(info.value)
    assert "exited with code 1" in message
    assert "Insufficient Memory" in message  # the last line of mflux's traceback
    assert "%|" not in message  # progress bars are noise
    assert leftovers(tmpdir_root) == []


async def test_exiting_0_without_an_image_is_an_error(
    engine: MfluxCliEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERD_STANDIN_FAIL", "no-image")
    with pytest.raises(EngineError, match="without writing an image"):
        await engine.generate(job(steps=4))


async def test_a_hang_times_out_and_the_process_is_killed(
    bin_dir: Path, log: Path, monkeypatch: pytest.MonkeyPatch, tmpdir_root: Path
) -> None:
    monkeypatch.setenv("HERD_STANDIN_FAIL", "hang")
    engine = MfluxCliEngine(path=str(bin_dir), timeout_s=1)
    began = time.monotonic()
    with pytest.raises(EngineError, match="longer than 1 s"):
        await engine.generate(job())
    assert time.monotonic() - began < 8
    await assert_gone(await started_pid(log))
    assert leftovers(tmpdir_root) == []


async def test_cancelling_the_task_kills_the_process(
    engine: MfluxCliEngine, log: Path, monkeypatch: pytest.MonkeyPatch, tmpdir_root: Path
) -> None:
    monkeypatch.setenv("HERD_STANDIN_FAIL", "hang")
    task = asyncio.create_task(engine.generate(job()))
    pid = await started_pid(log)
    os.kill(pid, 0)  # running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_gone(pid)
    assert leftovers(tmpdir_root) == []


async def test_a_stale_image_png_cannot_confuse_it(
    engine: MfluxCliEngine, log: Path, tmpdir_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = b"\x89PNG\r\n\x1a\n" + b"stale image from an earlier run"
    (tmpdir_root / "image.png").write_bytes(stale)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "image.png").write_bytes(stale)
    monkeypatch.chdir(cwd)
    first = await engine.generate(job(seed=1))
    second = await engine.generate(job(seed=2, width=80))
    assert first.png != stale and second.png != stale
    assert first.png != second.png
    assert png_size(second.png) == (80, 48)
    outputs = [Path(e["outputs"][0]) for e in events(log) if e["event"] == "end"]
    assert [p.name for p in outputs] == ["image.png", "image.png"]  # never image_1.png: a fresh dir each time
    assert outputs[0].parent != outputs[1].parent
    assert not any(p.parent.exists() for p in outputs)  # and the dir is removed afterwards
    assert leftovers(tmpdir_root) == []


async def test_a_model_that_is_not_installed(tmp_path: Path, log: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineError, match="not installed"):
        await MfluxCliEngine(path=str(empty)).generate(job())
    with pytest.raises(EngineError, match="not installed"):
        await MfluxCliEngine(path=str(tmp_path)).generate(job("no-such-model"))


def test_step_bars_are_progress_and_download_bars_are_downloads() -> None:
    import collections

    from herd_mesh.engines import mflux_cli

    steps: list[tuple[int, int]] = []
    files: list[tuple[int, int]] = []
    tail: collections.deque[str] = collections.deque(maxlen=12)
    for line in ("Fetching 12 files:  50%|#####     | 6/12 [00:03<00:03,  2.0it/s]",
                 "  0%|          | 0/4 [00:00<?, ?it/s]", " 75%|#######5  | 3/4 [00:09<00:03,  3.1s/it]",
                 "INFO: Image saved successfully at: image.png"):  # fmt: skip
        mflux_cli._note(line, tail, lambda i, n: steps.append((i, n)), lambda i, n: files.append((i, n)))
    assert steps == [(0, 4), (3, 4)] and files == [(6, 12)]
    assert mflux_cli._join(tail).endswith("INFO: Image saved successfully at: image.png")
