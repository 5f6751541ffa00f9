"""What a request becomes on the way to mflux: each model's defaults, `guidance`, what a model ignores, local
models, and the PNG's metadata. Both engines are driven through the image service: the command line against the
mflux stand-in (a real process), the resident engine against its real worker with the fake model."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from herd_mesh.config import resolve
from herd_mesh.core import catalogue
from herd_mesh.core.image_request import ImageJob, parse_image_request, settle
from herd_mesh.core.speed import SpeedBook
from herd_mesh.engines import png_metadata
from herd_mesh.engines.base import ImageEngine
from herd_mesh.engines.mflux_cli import MfluxCliEngine, build_argv
from herd_mesh.engines.mflux_resident import ResidentMfluxEngine, available, find_mflux_python
from herd_mesh.errors import ConfigError, RequestError
from herd_mesh.services.image_service import ImageService
from herd_mesh.storage.settings_store import SettingsStore
from tests import fake_mflux_model as fake
from tests.standins.install import install_mflux_standin

MODELS = catalogue.MODELS


def job(model: str, **fields: Any) -> ImageJob:
    body = {"model": model, "prompt": "a lighthouse", "width": 64, "height": 64, "seed": 7, **fields}
    return parse_image_request(body).job("job-1", 7)


# -- the rules (pure) ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "steps", "guidance"),
    [
        ("z-image-turbo", 4, None),  # the seed's default of 4 stays; guidance-distilled
        ("flux-schnell", 4, None),
        ("flux-dev", 25, 3.5),  # mflux's command-line defaults, not Python's (4 steps, 4.0)
        ("flux-krea-dev", 25, 3.5),
        ("z-image", 50, None),  # no guidance unless asked: mflux's Config makes it 0.0
        ("qwen-image", 20, 3.5),
        ("fibo", 50, 5.0),
        ("anima-turbo", 10, 1.0),
    ],
)
def test_each_model_gets_mfluxs_defaults(model: str, steps: int, guidance: float | None) -> None:
    settled, ignored = settle(job(model), MODELS[model])
    assert (settled.steps, settled.guidance, ignored) == (steps, guidance, ())


def test_what_the_request_says_wins() -> None:
    settled, ignored = settle(job("flux-dev", steps=12, guidance=2.0), MODELS["flux-dev"])
    assert (settled.steps, settled.guidance, ignored) == (12, 2.0, ())


@pytest.mark.parametrize(
    ("model", "fields", "ignored"),
    [
        ("flux-dev", {"negative_prompt": "blurry"}, ("negative_prompt",)),  # FLUX.1 has no negative branch
        ("flux-schnell", {"guidance": 3.5, "negative_prompt": "blurry"}, ("guidance", "negative_prompt")),
        ("z-image-turbo", {"guidance": 2.0}, ("guidance",)),
        ("z-image", {"negative_prompt": "blurry"}, ("negative_prompt",)),  # no CFG at the default guidance
        ("z-image", {"negative_prompt": "blurry", "guidance": 4.0}, ()),
        ("z-image", {"negative_prompt": "blurry", "guidance": 1.0}, ("negative_prompt",)),
        ("anima-turbo", {"negative_prompt": "blurry"}, ("negative_prompt",)),  # no unconditional pass at 1.0
        ("anima-turbo", {"negative_prompt": "blurry", "guidance": 0.5}, ()),
        ("qwen-image", {"negative_prompt": "blurry"}, ()),
        ("fibo", {"negative_prompt": "blurry"}, ()),
    ],
)
def test_what_a_model_ignores_is_named_and_not_passed(model: str, fields: dict[str, Any], ignored: tuple) -> None:
    settled, named = settle(job(model, **fields), MODELS[model])
    assert named == ignored
    if "negative_prompt" in ignored:
        assert settled.negative_prompt == ""
    if "guidance" in ignored:
        assert settled.guidance is None


@pytest.mark.parametrize("guidance", [0, 3.5, 7, 30])
def test_guidance_is_accepted(guidance: float) -> None:
    assert parse_image_request({"model": "flux-dev", "prompt": "x", "guidance": guidance}).guidance == guidance


@pytest.mark.parametrize("guidance", [-1, 30.5, "3.5", True, [3.5], {"v": 1}])
def test_bad_guidance_is_a_400_naming_the_field_and_the_range(guidance: Any) -> None:
    with pytest.raises(RequestError) as info:
        parse_image_request({"model": "flux-dev", "prompt": "x", "guidance": guidance})
    assert info.value.status == 400
    assert "'guidance' must be a number from 0 to 30" in info.value.message


def test_the_command_line_for_a_settled_job() -> None:
    settled, _ = settle(job("flux-dev", guidance=3.5), MODELS["flux-dev"])
    argv = build_argv("mflux-generate", MODELS["flux-dev"], settled, Path("/tmp/out.png"))
    assert argv[argv.index("--model") + 1] == "dev"
    assert argv[argv.index("--steps") + 1] == "25" and argv[argv.index("--guidance") + 1] == "3.5"
    assert "--no-exif" in argv
    turbo, _ = settle(job("z-image-turbo"), MODELS["z-image-turbo"])
    assert "--guidance" not in build_argv("mflux-generate-z-image-turbo", MODELS["z-image-turbo"], turbo, Path("x"))


# -- local models -------------------------------------------------------------------------------------------------


def write_config(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.toml").write_text(text)


def test_a_local_model_in_config_toml(tmp_path: Path) -> None:
    saved = tmp_path / "my-anima"
    saved.mkdir()
    write_config(tmp_path / "data", f'[image_models.my-anima]\npath = "{saved}"\nbase = "anima-turbo"\nsteps = 8\n')
    config = resolve({"data_dir": str(tmp_path / "data"), "node_id": "a"}, env={})
    model = config.image_models["my-anima"]
    assert (model.path, model.base, model.default_steps, model.default_guidance) == (
        str(saved),
        "anima-turbo",
        8,
        1.0,
    )
    assert model.command == "mflux-generate-anima" and model.resident == MODELS["anima-turbo"].resident
    assert model.extra_args == ("--model", str(saved), "--base-model", "anima-turbo")
    flux = catalogue.local_model("my-dev", path="/m", base="flux-dev")
    assert flux.extra_args == ("--model", "/m", "--base-model", "dev")  # mflux's own name for the base


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('[image_models.x]\nbase = "anima-turbo"\n', "needs path"),
        ('[image_models.x]\npath = "/m"\n', "base must be one of"),
        ('[image_models.x]\npath = "/m"\nbase = "sdxl"\n', "base must be one of"),
        ('[image_models.x]\npath = "/m"\nbase = "flux-dev"\nsteps = 0\n', "steps must be a whole number from 1"),
        ('[image_models.x]\npath = "/m"\nbase = "flux-dev"\nguidance = 31\n', "guidance must be a number from 0"),
        ('[image_models.x]\npath = "/m"\nbase = "flux-dev"\nlora = "a"\n', "unknown keys lora"),
        ('[image_models.flux-dev]\npath = "/m"\nbase = "flux-dev"\n', "is a catalogue model"),
        ('[image_models."a b"]\npath = "/m"\nbase = "flux-dev"\n', "a model name is 1-64 letters"),
        ('image_models = "x"\n', "must be a table"),
    ],
)
def test_a_bad_local_model_is_a_config_error_that_says_why(tmp_path: Path, table: str, says: str) -> None:
    write_config(tmp_path, table)
    with pytest.raises(ConfigError, match=says):
        resolve({"data_dir": str(tmp_path), "node_id": "a"}, env={})


# -- both engines, through the image service ----------------------------------------------------------------------


def service(tmp_path: Path, engine: ImageEngine, models: dict[str, catalogue.ImageModel]) -> ImageService:
    return ImageService(
        node_id="alpha",
        engine=engine,
        settings=SettingsStore(tmp_path / "settings.json", "alpha"),
        speed=SpeedBook.for_hardware("Apple M3 Ultra", 80),
        speed_file=None,
        on_change=lambda: None,
        hf_cache_dir=tmp_path / "hf",
        models=models,
    )


@pytest.fixture
def saved_model(tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "my-dev"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def models(saved_model: Path) -> dict[str, catalogue.ImageModel]:
    return {**MODELS, "my-dev": catalogue.local_model("my-dev", path=str(saved_model), base="flux-dev", steps=6)}


@pytest.fixture
def standin_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "standin.jsonl"
    monkeypatch.setenv("HERD_STANDIN_LOG", str(path))
    monkeypatch.setenv("HERD_STANDIN_MS_PER_MP_STEP", "5")
    for name in ("HERD_STANDIN_FAIL", "HERD_STANDIN_LOCK", "HERD_STANDIN_CONTENTION", "HERD_STANDIN_MEMORY_GB"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def fake_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fake.jsonl"
    monkeypatch.setenv(fake.LOG_ENV, str(path))
    monkeypatch.setenv(fake.LOAD_S_ENV, "0.05")
    monkeypatch.setenv(fake.STEP_S_ENV, "0.001")
    return path


@pytest.fixture
async def engines(
    tmp_path: Path, standin_log: Path, fake_log: Path, models: dict[str, catalogue.ImageModel]
) -> AsyncIterator[tuple[ImageService, ImageService]]:
    cli = service(tmp_path, MfluxCliEngine(path=str(install_mflux_standin(tmp_path / "bin")), models=models), models)
    resident_engine = ResidentMfluxEngine(loader="tests.fake_mflux_model:load", models=models)
    resident = service(tmp_path, resident_engine, models)
    yield cli, resident
    await resident_engine.aclose()


def events(path: Path, kind: str) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["event"] == kind]


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("fields", "steps", "guidance"),
    [({"guidance": 3.5}, 25, 3.5), ({}, 25, 3.5), ({"guidance": 6.0, "steps": 3}, 3, 6.0)],
)
async def test_flux_dev_gets_the_same_call_from_both_engines(
    engines: tuple[ImageService, ImageService], standin_log: Path, fake_log: Path, fields: dict, steps: int,
    guidance: float,
) -> None:  # fmt: skip
    cli, resident = engines
    for svc in (cli, resident):
        await svc.run(job("flux-dev", **fields), entry_node="alpha")
    (command,) = events(standin_log, "start")
    (call,) = events(fake_log, "generate")
    assert (command["steps"], command["guidance"]) == (steps, guidance)  # what mflux's main() passes on
    assert (call["steps"], call["guidance"]) == (steps, guidance)  # not Python's own default of 4.0


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_local_model_runs_from_its_folder_on_both_engines(
    engines: tuple[ImageService, ImageService], standin_log: Path, fake_log: Path, saved_model: Path
) -> None:
    cli, resident = engines
    for svc in (cli, resident):
        assert "my-dev" in svc.installed()
        doc = svc.state()["models"]["my-dev"]
        assert (doc["base"], doc["weights"]) == ("flux-dev", "cached")  # advertised with its base's figures
        done = await svc.run(job("my-dev"), entry_node="alpha")
        assert done.job.steps == 6  # its own default from config.toml
    (command,) = events(standin_log, "start")
    argv = command["argv"]
    assert argv[argv.index("--model") + 1] == str(saved_model)
    assert argv[argv.index("--base-model") + 1] == "dev"
    (load,) = events(fake_log, "load")
    assert (load["model"], load["path"]) == ("my-dev", str(saved_model))


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_local_model_whose_folder_is_gone_is_not_offered(
    tmp_path: Path, standin_log: Path, models: dict[str, catalogue.ImageModel], saved_model: Path
) -> None:
    saved_model.rmdir()
    cli = MfluxCliEngine(path=str(install_mflux_standin(tmp_path / "bin")), models=models)
    assert "my-dev" not in cli.installed_models() and "flux-dev" in cli.installed_models()
    assert service(tmp_path, cli, models).weights()["my-dev"] is False


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_the_resident_engine_reports_each_step(engines: tuple[ImageService, ImageService]) -> None:
    _, resident = engines
    steps: list[tuple[int, int]] = []
    await resident.engine.generate(
        settle(job("flux-dev", steps=3), MODELS["flux-dev"])[0], lambda i, n: steps.append((i, n))
    )
    assert steps == [(1, 3), (2, 3), (3, 3)]  # mflux's callback registry, once per step


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("store_prompts", [False, True])
async def test_the_png_carries_our_metadata_and_never_a_path(
    engines: tuple[ImageService, ImageService], store_prompts: bool
) -> None:
    for svc in engines:
        svc.settings.update({"store_prompts": store_prompts})
        done = await svc.run(job("my-dev", negative_prompt="blurry", guidance=4.0), entry_node="alpha")
        assert b"/models/my-dev" not in done.output.png  # the local folder appears nowhere
        with Image.open(io.BytesIO(done.output.png)) as im:
            raw = im.getexif().get_ifd(0x8769)[0x9286]  # where mflux's reader and --config-from-metadata look
            assert set(im.info) == {"Software", "exif"}  # mflux's XMP and IPTC are gone
        record = json.loads(raw[len(png_metadata.USER_COMMENT_PREFIX) :])
        assert (record["model"], record["seed"], record["steps"], record["guidance"]) == ("my-dev", 7, 6, 4.0)
        assert ("prompt" in record) is store_prompts
        assert "negative_prompt" not in record  # FLUX.1 ignored it: the image does not claim it was used
        assert b"a lighthouse" not in done.output.png or store_prompts


def test_finishing_keeps_the_pixels_and_is_deterministic() -> None:
    png = fake.png_bytes(16, 16, 3, "x")
    settled = settle(job("flux-dev"), MODELS["flux-dev"])[0]
    once = png_metadata.finish(png, settled, store_prompts=False)
    assert once == png_metadata.finish(once, settled, store_prompts=False)  # the same bytes on every peer
    with Image.open(io.BytesIO(png)) as a, Image.open(io.BytesIO(once)) as b:
        assert a.tobytes() == b.tobytes()


@pytest.mark.skipif(available(), reason="this Python has mflux itself, so it is the worker's")
def test_the_worker_python_is_found_in_a_uv_tool_environment(tmp_path: Path) -> None:
    python = tmp_path / "tools" / "mflux" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    assert find_mflux_python({"UV_TOOL_DIR": str(tmp_path / "tools")}) == str(python)
    assert find_mflux_python({"UV_TOOL_DIR": str(tmp_path / "elsewhere"), "HOME": str(tmp_path)}) is None
