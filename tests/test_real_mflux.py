"""The project's own engines, unchanged, against the real mflux 0.24.0: its smallest model (Anima) from locally made
random weights, declared as a local model, at 64x64 and one step.

- the command-line engine runs the real `mflux-generate-anima`;
- the resident engine runs the real Python API in its worker (under the mflux venv's Python): a load, two images,
  the keep-alive unload, a cancel;
- one peer serves `POST /api/generate-image` for that model end to end: a real PNG, progress parsed from mflux's
  own bar, and its metadata without the local path or the prompt.

The setup (tests/real_mflux/setup.py) installs mflux in a cached venv (~0.7 GB) and builds the weights (~5.6 GB)
once; a run needs about 6 GB of RAM. Skipped with the reason where that cannot be done; under CI, a failure.
Measured on 2 cores: the command line about 50 s an image, the Python API a 10 s load then about 37 s an image.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from herd_mesh.core import catalogue
from herd_mesh.core.image_request import ImageJob, parse_image_request, settle
from herd_mesh.engines import png_metadata
from herd_mesh.engines.mflux_cli import MfluxCliEngine
from herd_mesh.engines.mflux_resident import ResidentMfluxEngine
from tests.harness import Peer, next_address, wait_until
from tests.real_mflux import setup

pytestmark = [pytest.mark.real_mflux, pytest.mark.timeout(900)]

MODEL = "test-anima"
SIDE = 64
PROMPT = "a red fox in the snow"
MLX_ENV = ("HF_HOME", "HF_HUB_OFFLINE", "MPLCONFIGDIR", "TRANSFORMERS_NO_ADVISORY_WARNINGS")


@pytest.fixture(scope="session")
def real_anima() -> tuple[Path, Path]:
    """(the mflux venv's python, the random-weight Anima folder), made once and reused between runs."""
    reason = setup.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"real mflux is unavailable under CI: {reason}")
        pytest.skip(reason)
    try:
        return setup.ensure_all()
    except setup.RealMfluxSetupError as exc:
        pytest.fail(f"setting up real mflux failed: {exc}")


@pytest.fixture(scope="module")
def offline(real_anima: tuple[Path, Path]) -> Iterator[dict[str, str]]:
    """What the engines' processes inherit: an empty Hugging Face cache, offline (a download fails at once)."""
    env = setup.mflux_env()
    with pytest.MonkeyPatch.context() as patch:
        for name in MLX_ENV:
            patch.setenv(name, env[name])
        yield env


@pytest.fixture(scope="module")
def models(real_anima: tuple[Path, Path]) -> dict[str, catalogue.ImageModel]:
    """The catalogue plus the Anima folder as a local model, as `[image_models.test-anima]` would declare it."""
    return {**catalogue.MODELS, MODEL: catalogue.local_model(MODEL, path=str(real_anima[1]), base="anima-turbo")}


def job(models: dict[str, catalogue.ImageModel], seed: int = 42, **fields: Any) -> ImageJob:
    body = {"model": MODEL, "prompt": PROMPT, "width": SIDE, "height": SIDE, "steps": 1, "seed": seed, **fields}
    return settle(parse_image_request(body).job(uuid.uuid4().hex[:16], seed), models[MODEL])[0]


def size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        return im.size


@pytest.fixture(scope="module")
def results() -> dict[str, bytes]:
    """PNGs the tests hand on: the same job through both engines must give the same bytes."""
    return {}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_command_line_engine_runs_real_mflux(
    real_anima: tuple[Path, Path], offline: dict[str, str], models: dict[str, Any], results: dict[str, bytes]
) -> None:
    python, weights = real_anima
    engine = MfluxCliEngine(path=str(python.parent), models=models, timeout_s=600)
    assert {MODEL, "anima-turbo"} <= engine.installed_models()  # the real console scripts, found on the path
    steps: list[tuple[int, int]] = []
    settled = job(models)
    out = await engine.generate(settled, lambda i, n: steps.append((i, n)))
    assert size(out.png) == (SIDE, SIDE)
    assert steps and steps[-1] == (1, 1)  # mflux's tqdm bar on stderr, parsed
    assert out.peak_gb is not None and out.peak_gb > 1.0  # "Peak MLX memory: X GB" on stdout
    with Image.open(io.BytesIO(out.png)) as im:
        assert im.info == {}  # --no-exif: mflux wrote no metadata of its own
    assert str(weights).encode() not in out.png
    results["cli"] = png_metadata.finish(out.png, settled, store_prompts=False)


@pytest.mark.anyio
async def test_the_resident_engine_runs_the_real_python_api(
    real_anima: tuple[Path, Path], offline: dict[str, str], models: dict[str, Any], results: dict[str, bytes]
) -> None:
    python, _ = real_anima
    engine = ResidentMfluxEngine(python=str(python), models=models, keep_alive_s=600)
    try:
        steps: list[tuple[int, int]] = []
        settled = job(models)
        first = await engine.generate(settled, lambda i, n: steps.append((i, n)))
        assert first.load_ms > 0 and engine.loaded_models() == {MODEL}
        assert size(first.png) == (SIDE, SIDE)
        assert steps == [(1, 1)]  # mflux's callback registry, through the worker
        assert first.peak_gb is not None and first.peak_gb > 1.0
        if "cli" in results:  # the same call on both engines: the same pixels, so the same bytes
            assert png_metadata.finish(first.png, settled, store_prompts=False) == results["cli"]

        pid = engine.worker_pid
        second = await engine.generate(job(models, seed=43))
        assert second.load_ms == 0 and engine.worker_pid == pid  # it stayed loaded
        assert second.png != first.png  # another seed, another image

        engine.set_keep_alive(0.2)  # idle: the worker ends and gives the memory back
        await asyncio.to_thread(wait_until, lambda: engine.worker_pid is None, 30, 0.1, "the keep-alive unload")
        assert engine.loaded_models() == set()
        assert pid is not None and not _running(pid)

        engine.set_keep_alive(600)
        task = asyncio.ensure_future(engine.generate(job(models, seed=44)))
        await asyncio.to_thread(wait_until, lambda: engine.loaded_models() == {MODEL}, 120, 0.1, "a reload")
        worker = engine.worker_pid
        task.cancel()  # mid-generation: mflux cannot be interrupted, so the worker goes
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.worker_pid is None and engine.loaded_models() == set()
        assert worker is not None and not _running(worker)
    finally:
        await engine.aclose()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def peer(real_anima: tuple[Path, Path], offline: dict[str, str], tmp_path: Path) -> Iterator[Peer]:
    python, weights = real_anima
    data_dir = tmp_path / "peer"
    data_dir.mkdir()
    (data_dir / "config.toml").write_text(f'[image_models.{MODEL}]\npath = "{weights}"\nbase = "anima-turbo"\n')
    env = {k: v for k, v in offline.items() if not k.startswith(("HERD_", "OLLAMA_"))}
    env.update(PATH=f"{python.parent}{os.pathsep}/usr/bin:/bin", HOME=str(data_dir), PYTHONUNBUFFERED="1")
    node = Peer(node_id="real", host=next_address(), mesh=f"real-{uuid.uuid4().hex[:6]}", data_dir=data_dir,
                args=["--no-mdns", "--ollama-url", "http://127.0.0.1:9"], env=env)  # fmt: skip
    node.start()
    try:
        yield node
    finally:
        node.terminate()


def test_one_peer_serves_a_real_image_end_to_end(peer: Peer, real_anima: tuple[Path, Path]) -> None:
    listed = {m["name"]: m for m in peer.get("/api/image-models").json()["models"]}
    assert listed[MODEL]["available"] and listed[MODEL]["base"] == "anima-turbo"

    request_id = uuid.uuid4().hex[:16]
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            answer = peer.get(f"/api/jobs/{request_id}", timeout=5)
            if answer.status_code == 200:
                seen.append(answer.json())
            time.sleep(0.25)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        body = {"model": MODEL, "prompt": PROMPT, "negative_prompt": "blurry", "width": SIDE, "height": SIDE,
                "steps": 1, "seed": 42}  # fmt: skip
        response = peer.post("/api/generate-image", json=body, headers={"X-Request-Id": request_id}, timeout=600)
    finally:
        done.set()
        watcher.join()

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert size(response.content) == (SIDE, SIDE)
    assert (response.headers["X-Fleet-Node"], response.headers["X-Fleet-Model"]) == ("real", MODEL)
    assert response.headers["X-Fleet-Ignored"] == "negative_prompt"  # Anima at guidance 1.0 has no negative pass
    assert response.headers["X-Fleet-Steps"] == "1"
    assert any(s.get("state") == "running" and s.get("step") == 1 and s.get("steps") == 1 for s in seen), seen

    png = response.content
    assert str(real_anima[1]).encode() not in png  # never the local path
    assert PROMPT.encode() not in png  # store_prompts is off by default
    with Image.open(io.BytesIO(png)) as im:
        raw = im.getexif().get_ifd(0x8769)[0x9286]
    record = json.loads(raw[len(png_metadata.USER_COMMENT_PREFIX) :])
    assert (record["model"], record["seed"], record["steps"], record["guidance"]) == (MODEL, 42, 1, 1.0)

    def state() -> dict[str, Any]:
        return dict(peer.get("/mesh/state").json()["image"])

    learned = wait_until(
        lambda: f"{MODEL}@8" in state()["memory"]["peak"], 10, what="the run's peak to be advertised"
    )
    assert learned  # the real run's peak memory, learned for the memory check
    assert state()["models"][MODEL]["weights"] == "cached"
    with httpx.Client() as client:  # and the record of it
        assert client.get(peer.url + f"/api/jobs/{request_id}").json()["state"] == "done"
