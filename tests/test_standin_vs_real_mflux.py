"""The mflux stand-in (tests/standins/mflux_standin.py) against the real mflux 0.24.0, so that drift is caught.

The real package is installed into a cached venv (tests/real_mflux/setup.py; no weights needed). One probe script
runs there with the venv's python and reports, for every command the stand-in implements, what mflux's own
``build_parser()`` builds (each option's flags, type, nargs, choices, default, group; the usage line), what its
``parse_args()`` makes of a set of command lines (steps defaults, model_path, the post-parse errors), its model
registry and defaults, and the PNG that ``ImageUtil.save_image`` writes for given pixels and metadata. The tests
compare each with the stand-in, in process. A handful of invalid command lines also go through both console
scripts (the real ones stop before loading any weights, ~0.7 s each) to compare exit codes and messages.

Skipped with the setup's reason where real mflux cannot be installed; under CI that is a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath
from typing import Any

import pytest
from PIL import Image

from tests.real_mflux import setup
from tests.standins import mflux_standin as standin
from tests.standins.install import MFLUX_COMMANDS, install_mflux_standin, path_with

pytestmark = [pytest.mark.real_mflux, pytest.mark.timeout(900)]  # a first install takes ~30 s, more on CI

COLUMNS = "100"  # argparse wraps usage lines to the terminal width: the same for both sides
CLI_MODULES = {  # mflux 0.24.0's console_scripts entry points
    "mflux-generate": "mflux.models.flux.cli.flux_generate",
    "mflux-generate-z-image-turbo": "mflux.models.z_image.cli.z_image_turbo_generate",
    "mflux-generate-z-image": "mflux.models.z_image.cli.z_image_generate",
    "mflux-generate-qwen": "mflux.models.qwen.cli.qwen_image_generate",
    "mflux-generate-fibo": "mflux.models.fibo.cli.fibo_generate",
    "mflux-generate-flux2": "mflux.models.flux2.cli.flux2_generate",
    "mflux-generate-anima": "mflux.models.anima.cli.anima_generate",
}

# Runs inside the real mflux venv: reads a JSON request on stdin, prints one JSON object.
PROBE = r"""
import argparse, contextlib, importlib, io, json, sys
from pathlib import PurePath

def norm(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if type(value).__name__ == "ScaleFactor":
        return f"scale:{value.value}"
    if isinstance(value, PurePath):
        return str(value)
    return repr(value)

def describe(parser):
    actions = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        kind = type(a).__name__
        actions.append({
            "flags": list(a.option_strings), "dest": a.dest, "action": kind,
            "type": None if a.type is None else getattr(a.type, "__name__", repr(a.type)),
            "nargs": a.nargs, "const": norm(a.const),
            "choices": None if a.choices is None else [str(c) for c in a.choices],
            "required": a.required, "metavar": norm(a.metavar), "default": norm(parser.get_default(a.dest)),
        })
    groups = [sorted(x.dest for x in g._group_actions) + [g.required] for g in parser._mutually_exclusive_groups]
    return {"actions": actions, "groups": groups, "usage": parser.format_usage(), "allow_abbrev": parser.allow_abbrev}

request = json.load(sys.stdin)
out = {"parsers": {}, "parses": [], "steps": []}
for name, module in request["cli_modules"].items():
    sys.argv = [name]
    parser = importlib.import_module(module).build_parser()
    parser.prog = name
    out["parsers"][name] = describe(parser)

for name, argv in request["parse_cases"]:
    sys.argv = [name, *argv]
    parser = importlib.import_module(request["cli_modules"][name]).build_parser()
    parser.prog = name
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args()
        out["parses"].append({"namespace": {k: norm(v) for k, v in sorted(vars(ns).items())}})
    except SystemExit as exc:
        out["parses"].append({"exit": exc.code, "stderr": err.getvalue()})

from mflux.cli.defaults import defaults as ui_defaults
for model, base, fallback in request["steps_cases"]:
    out["steps"].append(ui_defaults.model_inference_steps(model, base, fallback_model=fallback))

from mflux.models.common.config.model_config import AVAILABLE_MODELS
from mflux.models.common.resolution.config_resolution import ConfigResolution
from mflux.models.common.compute_precision import ComputePrecision
from mflux.models.flux.variants.in_context.utils.in_context_loras import LORA_NAME_MAP
from mflux.models.anima.model.anima_scheduler.anima_sampler import AnimaSampler
from mflux.models.anima.variants.txt2img.anima import Anima
out["registry"] = {
    key: [c.model_name, list(c.aliases), ui_defaults.MODEL_INFERENCE_STEPS.get(key), c.supports_guidance,
          c.priority, c.controlnet_model is not None, c.base_model]
    for key, c in AVAILABLE_MODELS.items()
}
out["model_choices"] = sorted(ui_defaults.model_choices())
out["base_model_names"] = sorted(set(ConfigResolution.base_model_names()))
out["constants"] = {
    "DEFAULT_INFERENCE_STEPS": ui_defaults.DEFAULT_INFERENCE_STEPS, "GUIDANCE_SCALE": ui_defaults.GUIDANCE_SCALE,
    "IMAGE_STRENGTH": ui_defaults.IMAGE_STRENGTH, "QUANTIZE_CHOICES": list(ui_defaults.QUANTIZE_CHOICES),
    "LORA_STYLES": sorted(LORA_NAME_MAP), "COMPUTE_PRECISIONS": sorted(ComputePrecision.CHOICES),
    "ANIMA_SAMPLERS": list(AnimaSampler.NAMES), "ANIMA_GUIDANCE": dict(Anima.DEFAULT_GUIDANCE),
    "ANIMA_STEPS": dict(Anima.DEFAULT_STEPS),
}

import PIL.Image
from mflux.utils.image_util import ImageUtil
ImageUtil.embed_metadata_enabled = True  # a parse case with --no-exif turned it off for the process
for case in request["save_cases"]:
    with PIL.Image.open(case["source"]) as image:
        image.load()
        ImageUtil.save_image(image, case["output"], case["metadata"], export_json_metadata=True)
print(json.dumps(out))
"""


def norm(value: Any) -> Any:
    """The probe's normaliser, for the stand-in's side: JSON-able and comparable across the two processes."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [norm(v) for v in value]
    if type(value).__name__ == "ScaleFactor":
        return f"scale:{value.value}"
    if isinstance(value, PurePath):
        return str(value)
    return repr(value)


def describe(parser: Any) -> dict[str, Any]:
    """The probe's ``describe``, for the stand-in's parser."""
    import argparse

    actions = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        actions.append({
            "flags": list(a.option_strings), "dest": a.dest, "action": type(a).__name__,
            "type": None if a.type is None else getattr(a.type, "__name__", repr(a.type)),
            "nargs": a.nargs, "const": norm(a.const),
            "choices": None if a.choices is None else [str(c) for c in a.choices],
            "required": a.required, "metavar": norm(a.metavar), "default": norm(parser.get_default(a.dest)),
        })  # fmt: skip
    groups = [sorted(x.dest for x in g._group_actions) + [g.required] for g in parser._mutually_exclusive_groups]
    return {"actions": actions, "groups": groups, "usage": parser.format_usage(), "allow_abbrev": parser.allow_abbrev}


# Command lines parsed by both parsers in process: defaults (steps from --model/--base-model/the name of a path),
# model_path, seeds and output names, the --lora/--image folding and the post-parse errors.
PARSE_CASES: list[tuple[str, list[str]]] = (
    [
        (name, argv)
        for name in MFLUX_COMMANDS
        for argv in (
            ["--prompt", "p", "--seed", "1"],
            ["--seed", "1"],  # no prompt
            ["--prompt", "p", "--seed", "1", "2", "--output", "out/x.png", "--width", "64", "--height", "48"],
            ["--prompt", "p", "--seed", "1", "--model", "/nonexistent/my-finetune", "--base-model", "anima-turbo"],
            ["--prompt", "p", "--seed", "1", "--base-model", "not-a-model"],
            ["--prompt", "p", "--seed", "-1", "--steps", "0", "--guidance", "2.5", "--quantize", "3", "-B", "200"],
            ["--prompt", "p", "--seed", "1", "--lora", "a.safetensors", "0.5", "--lora-paths", "b.safetensors"],
            ["--prompt", "p", "--seed", "1", "--lora", "missing.safetensors"],
            ["--prompt", "p", "--seed", "1", "--image", "in.png", "0.6"],
            ["--prompt", "p", "--seed", "1", "--image", "in.png", "x"],
            ["--prompt", "p", "--seed", "1", "--vae-tile-size", "200"],
            ["--prompt", "p", "--seed", "1", "--no-exif", "--metadata", "--negative-prompt=-x"],
        )
    ]
    + [
        ("mflux-generate", ["--prompt", "p", "--seed", "1", "--model", model])
        for model in (
            "dev",
            "schnell",
            "krea-dev",
            "dev-krea",
            "black-forest-labs/FLUX.1-dev",
            "/x/schnell-ft",
            "/x/foo",
        )
    ]
    + [
        ("mflux-generate-z-image", ["--prompt", "p", "--seed", "1", "-m", "z-image-turbo"]),
        ("mflux-generate-z-image-turbo", ["--prompt", "p", "--seed", "1", "-m", "Tongyi-MAI/Z-Image-Turbo"]),
        ("mflux-generate-qwen", ["--prompt", "p", "--seed", "1", "-m", "qwen-2512"]),
        ("mflux-generate-fibo", ["--prompt", "p", "--seed", "1", "-m", "fibo-lite"]),
        ("mflux-generate-flux2", ["--prompt", "p", "--seed", "1", "-m", "klein-base-9b"]),
        ("mflux-generate-anima", ["--prompt", "p", "--seed", "1", "-m", "anima-aesthetic"]),
        ("mflux-generate-anima", ["--prompt", "p", "--seed", "1", "--width", "2x"]),
        ("mflux-generate-qwen", ["--prompt", "p", "--seed", "1", "--width", "2x", "--height", "auto"]),
        ("mflux-generate-qwen", ["--prompt", "p", "--seed", "1", "--width", "0x"]),
        ("mflux-generate-qwen", ["--prompt", "p", "--auto-seeds", "3", "--output", "o.png"]),
    ]
)
STEPS_CASES: list[tuple[str | None, str | None, str | None]] = [
    *((name, None, None) for m in standin.MODELS.values() for name in (m.key, *m.aliases, m.repo)),
    *((None, m.key, "z-image-turbo") for m in standin.MODELS.values()),
    *((None, None, key) for key in (None, "z-image-turbo", "anima-turbo", "flux2-klein-4b")),
    *((path, None, "qwen-image") for path in (
        "/x/schnell", "/x/schnell-ft", "/x/schnellish", "org/klein-9b-8bit", "/x/my-klein-9b", "/x/Z-Image-Turbo_v2",
        "/x/anima", "/x/qwen-image-edit-ft", "/x/foo/", "foo")),
    ("/x/foo", "dev", None),
    ("/x/foo", "nope", None),
]  # fmt: skip
# Invalid command lines run through both console scripts: exit code, and for exit 2 the whole stderr.
CLI_CASES: list[tuple[str, list[str]]] = [
    ("mflux-generate", ["--prompt", "p"]),  # exit 1: ModelConfigError, no model requested
    ("mflux-generate", ["--prompt", "p", "--model", "foo"]),  # exit 1: cannot infer base_model
    ("mflux-generate", ["--prompt", "p", "--model", "dev", "--prom", "x"]),  # exit 2: no abbreviations
    ("mflux-generate-z-image-turbo", ["--prompt", "p", "--model", "dev"]),  # exit 1: a foreign model
    ("mflux-generate-z-image-turbo", ["--prompt", "p", "--seed", "x"]),
    ("mflux-generate-z-image", ["--prompt", "p", "--compute-precision", "bfloat16"]),
    ("mflux-generate-qwen", ["--prompt", "p", "--model", "/nonexistent/dir"]),  # exit 1: Model not found
    ("mflux-generate-qwen", ["--prompt", "p", "--vae-tile-size", "100"]),
    ("mflux-generate-fibo", ["--prompt", "p", "--lora", "x.safetensors"]),
    ("mflux-generate-flux2", ["--prompt", "p", "--negative-prompt", "x"]),
    ("mflux-generate-flux2", ["--prompt", "p", "--guidance", "2"]),
    ("mflux-generate-anima", ["--prompt", "p", "-q", "3"]),  # exit 1
    ("mflux-generate-anima", ["--prompt", "p", "--steps", "0"]),  # exit 1
    ("mflux-generate-anima", ["--prompt", "p", "--width", "60", "--height", "64"]),  # exit 1
    ("mflux-generate-anima", ["--prompt", "p", "--base-model", "foo"]),
    ("mflux-generate-anima", ["--seed", "1"]),
]
SAVE_METADATA: list[dict[str, Any]] = [
    {
        "mflux_version": "0.24.0", "model": "circlestone-labs/Anima", "model_path": "/models/anima-q8",
        "base_model": None, "seed": 42, "steps": 1, "guidance": 1.0, "height": 48, "width": 64,
        "precision": "mlx.core.bfloat16", "quantize": 8, "generation_time_seconds": 30.96,
        "created_at": "2026-11-29T20:55:29.747182", "lora_paths": ["/loras/a.safetensors", "b.safetensors"],
        "lora_scales": [0.7], "image_path": None, "prompt": 'a red fox <in> the "snow" & ☃ ' + "long " * 30,
        "negative_prompt": "blurry, lowres",
    },
    {
        "mflux_version": "0.24.0", "model": "briaai/FIBO", "seed": 2**63, "steps": 50, "guidance": None,
        "prompt": json.dumps({"short_description": "x" * 2500}), "negative_prompt": None,
    },
]  # fmt: skip


def unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"real mflux is unavailable under CI: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def real_python() -> Path:
    """The real mflux venv's python (installed on first use, ~30 s; cached in ~/.cache/herd-mesh-real-mflux)."""
    reason = setup.unavailable_reason()
    if reason:
        unavailable(reason)
    try:
        return setup.venv_python(setup.ensure_venv())
    except setup.RealMfluxSetupError as exc:
        pytest.fail(f"installing real mflux failed: {exc}")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Path]]:
    """For each SAVE_METADATA record: the stand-in's PNG without and with it, and where the real one goes."""
    base = tmp_path_factory.mktemp("save")
    cases = []
    scanlines = standin.render_rgb(64, 48, 7, "a red fox")
    for i, metadata in enumerate(SAVE_METADATA):
        source = base / f"source{i}.png"
        source.write_bytes(standin.encode_png(64, 48, scanlines, None))
        with contextlib.redirect_stderr(io.StringIO()):
            mine = standin.save_image(
                base / f"standin{i}.png", 64, 48, scanlines, metadata, export_json_metadata=True
            )
        cases.append({"source": source, "standin": mine, "real": base / f"real{i}.png"})
    return cases


@pytest.fixture(scope="module")
def real(real_python: Path, saved: list[dict[str, Path]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the real mflux reports (see PROBE)."""
    request = {
        "cli_modules": CLI_MODULES,
        "parse_cases": PARSE_CASES,
        "steps_cases": STEPS_CASES,
        "save_cases": [
            {"source": str(c["source"]), "output": str(c["real"]), "metadata": m}
            for c, m in zip(saved, SAVE_METADATA, strict=True)
        ],
    }
    env = setup.mflux_env(overrides={"COLUMNS": COLUMNS})
    proc = subprocess.run([str(real_python), "-c", PROBE], input=json.dumps(request), capture_output=True, text=True,
                          env=env, cwd=tmp_path_factory.mktemp("probe"), timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", COLUMNS)


def standin_parse(name: str, argv: list[str]) -> dict[str, Any]:
    """The stand-in's parse_args on argv, reported like the probe's."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            _parser, ns = standin.parse_args(standin.COMMANDS[name], argv)
    except SystemExit as exc:
        return {"exit": exc.code, "stderr": err.getvalue()}
    return {"namespace": {k: norm(v) for k, v in sorted(vars(ns).items())}}


def test_the_stand_in_implements_the_commands_it_installs() -> None:
    assert set(standin.COMMANDS) == set(MFLUX_COMMANDS) == set(CLI_MODULES)


def test_each_command_has_the_same_options_choices_defaults_and_usage(real: dict[str, Any], columns: None) -> None:
    for name in MFLUX_COMMANDS:
        mine = describe(standin.build_parser(standin.COMMANDS[name]))
        theirs = real["parsers"][name]
        assert [a["flags"] for a in mine["actions"]] == [a["flags"] for a in theirs["actions"]], name
        for ours, real_action in zip(mine["actions"], theirs["actions"], strict=True):
            assert ours == real_action, f"{name} {ours['flags']}"
        assert mine["groups"] == theirs["groups"], name
        assert mine["allow_abbrev"] is theirs["allow_abbrev"] is False
        assert mine["usage"] == theirs["usage"], name


def test_parsing_gives_the_same_namespace_or_the_same_error(
    real: dict[str, Any], columns: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # "in.png" and "a.safetensors" do not exist, on either side
    for (name, argv), theirs in zip(PARSE_CASES, real["parses"], strict=True):
        mine = standin_parse(name, argv)
        if "--auto-seeds" in argv:  # random seeds: compare how many, and the rest
            assert len(mine["namespace"].pop("seed")) == len(theirs["namespace"].pop("seed")) == 3
        assert mine == theirs, f"{name} {argv}"


def test_default_steps_follow_mflux(real: dict[str, Any]) -> None:
    mine = [standin.model_inference_steps(model, base, fallback) for model, base, fallback in STEPS_CASES]
    assert mine == real["steps"]


def test_registry_names_and_constants_are_mfluxs(real: dict[str, Any]) -> None:
    mine = {
        key: [m.repo, list(m.aliases), m.steps, m.supports_guidance, m.priority, m.controlnet, None]
        for key, m in standin.MODELS.items()
    }
    assert list(mine) == list(real["registry"])  # the order shows in the --base-model error message
    assert mine == real["registry"]
    assert sorted(standin.model_choices()) == real["model_choices"]
    assert sorted(standin.base_model_names()) == real["base_model_names"]
    assert {
        "DEFAULT_INFERENCE_STEPS": standin.DEFAULT_INFERENCE_STEPS,
        "GUIDANCE_SCALE": standin.GUIDANCE_SCALE,
        "IMAGE_STRENGTH": standin.IMAGE_STRENGTH,
        "QUANTIZE_CHOICES": standin.QUANTIZE_CHOICES,
        "LORA_STYLES": standin.LORA_STYLES,
        "COMPUTE_PRECISIONS": standin.COMPUTE_PRECISIONS,
        "ANIMA_SAMPLERS": list(standin.ANIMA_SAMPLERS),
        "ANIMA_GUIDANCE": standin.ANIMA_GUIDANCE,
        "ANIMA_STEPS": {k: standin.MODELS[k].steps for k in standin.ANIMA_GUIDANCE},
    } == real["constants"]


def chunks(path: Path) -> list[tuple[bytes, bytes]]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        found.append((kind, body))
        pos += 12 + length
    return found


def test_png_metadata_is_what_mflux_writes(real: dict[str, Any], saved: list[dict[str, Path]]) -> None:
    for case, metadata in zip(saved, SAVE_METADATA, strict=True):
        mine, theirs = chunks(case["standin"]), chunks(case["real"])
        assert [k for k, _ in theirs if k != b"IDAT"] == [b"IHDR", b"iTXt", b"tEXt", b"eXIf", b"IEND"]
        assert [c for c in mine if c[0] != b"IDAT"] == [c for c in theirs if c[0] != b"IDAT"]  # byte for byte
        with Image.open(case["standin"]) as ours, Image.open(case["real"]) as real_image:
            assert ours.tobytes() == real_image.tobytes()
            assert ours.info["XML:com.adobe.xmp"] == real_image.info["XML:com.adobe.xmp"]
            raw = ours.getexif().get_ifd(0x8769)[0x9286]
        assert json.loads(raw[8:]) == metadata
        sidecar = case["standin"].with_suffix(".metadata.json")
        assert sidecar.read_text() == case["real"].with_suffix(".metadata.json").read_text()


@pytest.fixture
def standin_bin(tmp_path: Path) -> Iterator[Path]:
    yield install_mflux_standin(tmp_path / "bin")


def run_cli(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120, check=False)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def test_invalid_command_lines_fail_the_same_way(real_python: Path, standin_bin: Path, tmp_path: Path) -> None:
    real_env = setup.mflux_env(overrides={"COLUMNS": COLUMNS})
    standin_env = {**os.environ, "COLUMNS": COLUMNS, "HERD_STANDIN_MS_PER_MP_STEP": "0"}
    standin_env["PATH"] = path_with(standin_bin, standin_env)
    for key in ("HERD_STANDIN_FAIL", "HERD_STANDIN_LOCK", "HERD_STANDIN_LOG"):
        standin_env.pop(key, None)
    (tmp_path / "real").mkdir()
    (tmp_path / "standin").mkdir()
    real_bin = real_python.parent
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        theirs = list(pool.map(lambda c: run_cli([str(real_bin / c[0]), *c[1]], real_env, tmp_path / "real"),
                               CLI_CASES))  # fmt: skip
        mine = list(pool.map(lambda c: run_cli([c[0], *c[1]], standin_env, tmp_path / "standin"), CLI_CASES))
    for (name, argv), (real_code, real_err), (code, err) in zip(CLI_CASES, theirs, mine, strict=True):
        assert real_code in (1, 2), f"{name} {argv}: the real one got past validation\n{real_err[-2000:]}"
        assert code == real_code, f"{name} {argv}\nreal:\n{real_err[-1500:]}\nstand-in:\n{err[-1500:]}"
        if code == 2:
            assert err == real_err, f"{name} {argv}"
        else:
            assert err.strip().splitlines()[-1] == real_err.strip().splitlines()[-1], f"{name} {argv}"
            assert err.startswith("Traceback (most recent call last):\n")
    assert not list((tmp_path / "standin").iterdir()) and not list((tmp_path / "real").iterdir())


if __name__ == "__main__":  # pragma: no cover - `python -m tests.test_standin_vs_real_mflux` runs just this file
    sys.exit(pytest.main([__file__, "-q"]))
