#!/usr/bin/env python3
"""Stand-in for mflux 0.24.0's image-generation console scripts (stdlib only).

mflux needs Apple Silicon and tens of GB of weights, so on Linux CI this script plays
``mflux-generate``, ``mflux-generate-z-image-turbo``, ``mflux-generate-z-image``, ``mflux-generate-qwen``,
``mflux-generate-fibo``, ``mflux-generate-flux2`` and ``mflux-generate-anima``. It picks the command from
``basename(argv[0])`` (symlink install) or from ``HERD_STANDIN_COMMAND`` (wrapper install, see ``install.py``).

It agrees with the real program (``tests/real_mflux/facts.md``; ``tests/test_standin_vs_real_mflux.py`` checks it
against the installed package) on:

* the argparse parsers: the same options, in the same order, with the same types, choices, defaults and
  mutually exclusive groups (so the same usage line); ``allow_abbrev=False``; errors exit 2;
* the post-parse checks and their messages (no prompt, ``--lora``/``--image`` folding, ``--base-model``), and
  the checks each command's ``main()`` makes before loading: ``mflux-generate`` without ``--model`` exits 1
  with a ``ModelConfigError`` traceback; a foreign built-in model exits 1; a ``--model`` path that does not
  exist exits 1 (``Model not found``); Anima's steps (1..1000), size (positive multiples of 16) and ``-q 3``
  checks (exit 1); FLUX.2's ``--negative-prompt`` and ``--guidance`` errors (exit 2);
* the defaults ``main()`` passes: steps per model (mflux's ``MODEL_INFERENCE_STEPS``), guidance (3.5 for FLUX.1
  and Qwen, forced 0.0 on Z-Image Turbo, 0.0 on Z-Image, 5.0 for FIBO and 1.0 for fibo-lite, 1.0 for FLUX.2,
  1.0 for Anima Turbo and 4.0 for its other variants), schedulers;
* the UserWarnings for options a model ignores (Anima's negative prompt at guidance 1.0, ...);
* width/height rounded down to multiples of 16 (with mflux's warning) where mflux rounds;
* seeds outside 0..2**64-1 pass the parser and fail at generation (exit 1, ``mx.random.key``'s TypeError);
* ``--output`` is never overwritten: ``image.png`` -> ``image_1.png`` -> ``image_2.png``;
* several seeds insert ``_seed_{seed}`` into the output name (via ``str.format``);
* a tqdm bar on stderr written the way tqdm writes to a pipe: ``\\r`` before each
  refresh and a single ``\\n`` at the end (so a line reader sees one line per image);
* ``INFO: Image saved successfully at: <path>`` and ``INFO: Metadata embedded successfully at: <path>`` on
  stderr (mflux logs via ``logging``), ``Peak MLX memory: X.XX GB`` last on stdout;
* the PNG metadata: chunks ``iTXt`` ``XML:com.adobe.xmp`` (XMP), ``tEXt`` ``IPTC`` (hex IIM records) and
  ``eXIf`` (EXIF UserComment, tag 0x9286 in the Exif IFD, holding ``ASCII\\0\\0\\0`` + the JSON record), in
  that order before ``IDAT``, byte for byte as mflux's ``ImageUtil.save_image`` writes them; ``--no-exif``
  writes none of them (same pixels); ``--metadata`` also writes ``<output>.metadata.json``;
* an interrupted run prints the reason on stdout and exits 0 without an image.

The pixels are a deterministic gradient of seed and prompt, and the weights are never looked at: a built-in model
counts as downloaded, as does any ``org/name`` repo id.

Environment variables (all optional):

``HERD_STANDIN_MS_PER_MP_STEP``
    GPU time in milliseconds per megapixel per step (default 50).
``HERD_STANDIN_LOCK``
    Path of a lock file; an exclusive ``flock`` is held while generating, like one GPU.
``HERD_STANDIN_FAIL``
    ``error`` (traceback, exit 1), ``no-image`` (exit 0, no file) or ``hang`` (sleep forever).
``HERD_STANDIN_LOG``
    Path of a JSON-lines file; ``start`` (after the lock is taken) and ``end`` events.
``HERD_STANDIN_COMMAND``
    Command name to impersonate when argv[0] is this script itself.
``HERD_STANDIN_CONTENTION``, ``HERD_STANDIN_CONTENTION_FACTOR``
    A contention file shared with the Ollama stand-in of the same "machine" (``contention.py``): while it
    generates, this job is listed there as kind ``image``, and each step is slowed by ``1 + k x`` the jobs of
    other kinds running (``k`` = the factor, default 1.0), as one GPU shared by an LLM and mflux would be.
``HERD_STANDIN_MEMORY_GB``
    The "machine's" memory: a run whose peak exceeds it fails as MLX does when it cannot allocate (exit 1).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import random
import re
import struct
import sys
import time
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contention  # noqa: E402 - the stand-ins' shared helper, next to this file

MFLUX_VERSION = "0.24.0"
# Where tracebacks and warnings say mflux lives (a `uv tool install mflux` on a Mac).
BIN_DIR = "/Users/mac/.local/bin"
SITE = "/Users/mac/.local/share/uv/tools/mflux/lib/python3.12/site-packages/mflux"

# ---------------------------------------------------------------------------------------
# mflux 0.24.0's model registry (AVAILABLE_MODELS, in its order) and defaults
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """One entry of mflux's registry: ``ModelConfig`` fields the command lines read."""

    key: str
    repo: str  # model_config.model_name: the HF repo id, what the metadata's "model" holds
    aliases: tuple[str, ...]
    steps: int | None  # MODEL_INFERENCE_STEPS (None: not listed, the generic 25)
    supports_guidance: bool | None
    priority: int
    controlnet: bool


# key: (repo, aliases, steps, supports_guidance, priority, controlnet); checked against the installed mflux.
_REGISTRY: dict[str, tuple[str, tuple[str, ...], int | None, bool | None, int, bool]] = {
    "krea-2": ("krea/Krea-2-Turbo", ("krea-2", "krea2"), 8, True, 15, False),
    "krea-2-raw": ("krea/Krea-2-Raw", ("krea-2-raw", "krea2-raw"), None, True, 15, False),
    "krea-2-controlnet-depth": ("krea/Krea-2-Turbo", ("krea-2-controlnet-depth", "krea-2-controlnet",
                                "krea2-controlnet"), 8, True, 16, True),
    "dev": ("black-forest-labs/FLUX.1-dev", ("dev",), 25, True, 0, False),
    "schnell": ("black-forest-labs/FLUX.1-schnell", ("schnell",), 4, False, 1, False),
    "dev-kontext": ("black-forest-labs/FLUX.1-Kontext-dev", ("dev-kontext",), 25, True, 2, False),
    "dev-fill": ("black-forest-labs/FLUX.1-Fill-dev", ("dev-fill",), 25, True, 3, False),
    "dev-redux": ("black-forest-labs/FLUX.1-Redux-dev", ("dev-redux",), 25, True, 4, False),
    "dev-depth": ("black-forest-labs/FLUX.1-Depth-dev", ("dev-depth",), 25, True, 5, False),
    "dev-controlnet-canny": ("black-forest-labs/FLUX.1-dev", ("dev-controlnet-canny",), 25, True, 6, True),
    "schnell-controlnet-canny": ("black-forest-labs/FLUX.1-schnell", ("schnell-controlnet-canny",), 4, False, 7,
                                 True),
    "dev-controlnet-upscaler": ("black-forest-labs/FLUX.1-dev", ("dev-controlnet-upscaler",), 25, False, 8, True),
    "dev-fill-catvton": ("black-forest-labs/FLUX.1-Fill-dev", ("dev-fill-catvton",), 25, True, 9, False),
    "krea-dev": ("black-forest-labs/FLUX.1-Krea-dev", ("krea-dev", "dev-krea"), 25, True, 10, False),
    "flux2-klein-4b": ("black-forest-labs/FLUX.2-klein-4B", ("flux2-klein-4b", "flux2-klein-4B", "flux2-klein",
                       "klein-4b", "klein-4B"), 4, True, 11, False),
    "flux3-image-klein": ("black-forest-labs/flux-3-image-klein", ("flux3-image-klein", "flux3-klein", "flux3",
                          "flux-3-image-klein"), 16, False, 11, False),
    "flux3-image-klein-base": ("black-forest-labs/flux-3-image-klein-base", ("flux3-image-klein-base",
                               "flux3-klein-base", "flux3-base", "flux-3-image-klein-base"), 50, True, 11, False),
    "iris-3b": ("speridlabs/iris-3b", ("iris-3b", "iris-3b-turbo", "iris-turbo", "iris"), 4, False, 35, False),
    "iris-3b-base": ("speridlabs/iris-3b", ("iris-3b-base", "iris-base"), 100, True, 36, False),
    "flux2-klein-9b": ("black-forest-labs/FLUX.2-klein-9B", ("flux2-klein-9b", "flux2-klein-9B", "klein-9b",
                       "klein-9B"), 4, True, 12, False),
    "flux2-klein-9b-kv": ("black-forest-labs/FLUX.2-klein-9b-kv", ("flux2-klein-9b-kv", "flux2-klein-9B-kv",
                          "flux2-klein-9b-KV", "klein-9b-kv", "klein-9B-kv"), 4, True, 12, False),
    "flux2-klein-base-4b": ("black-forest-labs/FLUX.2-klein-base-4B", ("flux2-klein-base-4b", "flux2-klein-base-4B",
                            "flux2-base-4b", "flux2-base-4B", "klein-base-4b", "klein-base-4B"), 50, True, 13, False),
    "flux2-klein-base-9b": ("black-forest-labs/FLUX.2-klein-base-9B", ("flux2-klein-base-9b", "flux2-klein-base-9B",
                            "flux2-base-9b", "flux2-base-9B", "klein-base-9b", "klein-base-9B"), 50, True, 14, False),
    "qwen-image": ("Qwen/Qwen-Image-2512", ("qwen-image", "qwen", "qwen-image-2512", "qwen-2512"), 20, None, 15,
                   False),
    "qwen-image-edit": ("Qwen/Qwen-Image-Edit-2509", ("qwen-image-edit", "qwen-edit", "qwen-edit-plus",
                        "qwen-edit-2509"), 20, None, 16, False),
    "qwen-image-edit-2511": ("Qwen/Qwen-Image-Edit-2511", ("qwen-image-edit-2511", "qwen-edit-2511"), 20, None, 16,
                             False),
    "fibo": ("briaai/FIBO", ("fibo",), 50, True, 17, False),
    "fibo-lite": ("briaai/Fibo-lite", ("fibo-lite", "fibo_lite"), 8, True, 18, False),
    "fibo-edit": ("briaai/Fibo-Edit", ("fibo-edit", "fiboedit"), 50, True, 19, False),
    "fibo-edit-rmbg": ("briaai/Fibo-Edit-RMBG", ("fibo-edit-rmbg", "fiboedit-rmbg"), 10, True, 24, False),
    "fibo2": ("briaai/Fibo-2.0-dev", ("fibo2", "fibo-2.0-dev"), 50, True, 38, False),
    "fibo2-edit-turbo": ("briaai/Fibo-2.0-edit-turbo", ("fibo2-edit-turbo", "fibo-2-edit-turbo",
                         "fibo-2.0-edit-turbo"), 4, False, 39, False),
    "z-image": ("Tongyi-MAI/Z-Image", ("z-image", "zimage"), 50, True, 20, False),
    "ming-image-design": ("inclusionAI/Ming-Image-0.1-Design", ("ming-image-design", "ming-image", "ming-design",
                          "ming"), 12, True, 30, False),
    "lens-turbo": ("Comfy-Org/Lens", ("lens-turbo", "lens"), 4, False, 22, False),
    "z-image-turbo-controlnet-union-2.1": ("Tongyi-MAI/Z-Image-Turbo", ("z-image-turbo-controlnet-union-2.1",
                                           "z-image-controlnet-union-2.1", "z-image-controlnet",
                                           "z-image-turbo-controlnet"), 8, False, 15, True),
    "z-image-turbo": ("Tongyi-MAI/Z-Image-Turbo", ("z-image-turbo", "zimage-turbo"), 9, False, 21, False),
    "seedvr2-3b": ("numz/SeedVR2_comfyUI", ("seedvr2-3b", "seedvr2"), None, True, 22, False),
    "ernie-image": ("baidu/ERNIE-Image", ("ernie-image",), 50, True, 27, False),
    "ernie-image-turbo": ("baidu/ERNIE-Image-Turbo", ("ernie-image-turbo",), 8, False, 26, False),
    "qwen-image-2.1-turbo-controlnet-union": ("Qwen/Qwen-Image-2.1-Turbo", ("qwen-image-2.1-turbo-controlnet-union",
                                              "qwen-image-2.1-turbo-controlnet", "qwen-2.1-turbo-controlnet"), 8,
                                              False, 34, True),
    "seedvr2-7b": ("numz/SeedVR2_comfyUI", ("seedvr2-7b", "seedvr2-7B"), None, True, 23, False),
    "ideogram-4-fp8": ("ideogram-ai/ideogram-4-fp8", ("ideogram-4-fp8", "ideogram4-fp8", "ideogram4", "ideogram-4",
                       "ideogram"), 20, True, 25, False),
    "boogu-image-turbo": ("Boogu/Boogu-Image-0.1-Turbo", ("boogu-image-turbo", "boogu-turbo", "boogu-image",
                          "boogu"), 4, False, 28, False),
    "moss-image-sft": ("OpenMOSS-Team/MOSS-Image-SFT", ("moss-image-sft", "moss-image", "moss"), 50, True, 37, False),
    "moss-image-base": ("OpenMOSS-Team/MOSS-Image-Base", ("moss-image-base", "moss-base"), 50, True, 38, False),
    "qwen-image-2.1": ("Qwen/Qwen-Image-2.1", ("qwen-image-2.1", "qwen-2.1", "qwen-image-21"), 40, True, 29, False),
    "qwen-image-2.1-turbo": ("Qwen/Qwen-Image-2.1-Turbo", ("qwen-image-2.1-turbo", "qwen-2.1-turbo",
                             "qwen-image-21-turbo", "qwen-image-turbo-21"), 8, False, 32, False),
    "qwen-image-2.1-controlnet-union": ("Qwen/Qwen-Image-2.1", ("qwen-image-2.1-controlnet-union",
                                        "qwen-image-2.1-controlnet", "qwen-2.1-controlnet"), 40, True, 31, True),
    "anima-turbo": ("circlestone-labs/Anima", ("anima-turbo", "anima"), 10, True, 39, False),
    "anima-aesthetic": ("circlestone-labs/Anima", ("anima-aesthetic",), 30, True, 40, False),
    "anima-base": ("circlestone-labs/Anima", ("anima-base",), 30, True, 41, False),
}  # fmt: skip
MODELS: dict[str, Model] = {key: Model(key, *fields) for key, fields in _REGISTRY.items()}

DEFAULT_INFERENCE_STEPS = 25  # ui_defaults.DEFAULT_INFERENCE_STEPS
GUIDANCE_SCALE = 3.5  # ui_defaults.GUIDANCE_SCALE
IMAGE_STRENGTH = 0.4
QUANTIZE_CHOICES = [3, 5, 4, 6, 8]  # mflux's order, which shows in usage lines and error messages
LORA_STYLES = ["couple", "font", "home", "identity", "illustration", "portrait", "ppt", "sandstorm", "sparklers",
               "storyboard"]  # fmt: skip
COMPUTE_PRECISIONS = ["float16"]
ANIMA_SAMPLERS = ("er_sde", "euler")
ANIMA_GUIDANCE = {"anima-turbo": 1.0, "anima-aesthetic": 4.0, "anima-base": 4.0}
MAX_SEED = 2**64 - 1  # mx.random.key takes an unsigned 64-bit seed


def model_choices() -> set[str]:
    """ui_defaults.model_choices(): every built-in spelling (keys and aliases); anything else is a path/repo."""
    return {name for m in MODELS.values() for name in (m.key, *m.aliases)}


def base_model_names() -> set[str]:
    """ConfigResolution.base_model_names(): what --base-model accepts (aliases and repo ids)."""
    return {name for m in MODELS.values() for name in (*m.aliases, m.repo)}


def _by_priority(models: list[Model]) -> list[Model]:
    """The order ConfigResolution searches: base variants before ControlNets, then priority."""
    return sorted(models, key=lambda m: (m.controlnet, m.priority))


def exact_match(name: str) -> Model | None:
    """ConfigResolution's exact-match rule: a repo id or an alias."""
    return next((m for m in _by_priority(list(MODELS.values())) if name == m.repo or name in m.aliases), None)


def infer_from_name(name: str, candidates: list[Model]) -> Model | None:
    """ConfigResolution._infer_from_name: the longest alias contained in the name, then priority."""
    lowered = name.lower()
    matches = [(m, a) for m in candidates for a in m.aliases if a and a.lower() in lowered]
    return sorted(matches, key=lambda ma: (-len(ma[1]), ma[0].priority))[0][0] if matches else None


def model_inference_steps(model: str | None, base_model: str | None, fallback: str | None) -> int:
    """ui_defaults.model_inference_steps: explicit name -> --base-model -> name prefix -> the CLI's default."""

    def steps_of(m: Model) -> int:
        return m.steps if m.steps is not None else DEFAULT_INFERENCE_STEPS

    if model is None and base_model is None:
        return model_inference_steps(fallback, None, None) if fallback else DEFAULT_INFERENCE_STEPS
    if model is not None:
        if model in MODELS:
            return steps_of(MODELS[model])
        for m in MODELS.values():
            if model in m.aliases:
                return steps_of(m)
        for m in _by_priority(list(MODELS.values())):
            if model == m.repo:
                return steps_of(m)
    if base_model is not None:
        base = exact_match(base_model)
        return steps_of(base) if base is not None else DEFAULT_INFERENCE_STEPS
    assert model is not None
    basename = model.rstrip("/").rsplit("/", 1)[-1].lower()
    matches = [
        (m, a)
        for m in MODELS.values()
        for a in m.aliases
        if a and basename.startswith(a.lower()) and not basename[len(a) :][:1].isalnum()
    ]
    if not matches:
        return model_inference_steps(fallback, None, None) if fallback else DEFAULT_INFERENCE_STEPS
    return steps_of(max(matches, key=lambda ma: len(ma[1]))[0])


# ---------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    """One console script: how its parser is built (mflux's add_*_arguments calls, in order) and what main() does."""

    name: str
    description: str
    module: str  # its main()'s file under mflux/models/ (for tracebacks and warnings)
    kind: str  # which main(): flux1, restricted, fibo, flux2, anima
    sections: tuple[str, ...]
    default_model: str | None = None  # the parser's default_model (the --steps fallback); restricted CLIs run it
    family: tuple[str, ...] = ()  # the other registry keys a restricted CLI accepts
    scale_dims: bool = True  # --width/--height take "auto" and "2x" (int_or_special_value), else plain int
    scheduler: str = "linear"  # the parser's --scheduler default (set_defaults where mflux overrides it)
    parser_model_default: str | None = None  # set_defaults(model=...): only FIBO


_FLUX2_FAMILY = ("flux2-klein-9b", "flux2-klein-9b-kv", "flux2-klein-base-4b", "flux2-klein-base-9b")
_Z_IMAGE_SECTIONS = ("general", "model", "compute_precision", "lora", "image_generator", "image_to_image",
                     "pid_decode", "float32", "output", "vae_full_precision")  # fmt: skip

COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("mflux-generate", "Generate an image based on a prompt.", "flux/cli/flux_generate.py", "flux1",
                    ("general", "model", "lora", "image_generator", "image_to_image", "pid_decode", "output")),
        CommandSpec("mflux-generate-z-image-turbo", "Generate an image using Z-Image Turbo based on a prompt.",
                    "z_image/cli/z_image_turbo_generate.py", "restricted", _Z_IMAGE_SECTIONS,
                    default_model="z-image-turbo"),
        CommandSpec("mflux-generate-z-image", "Generate an image using Z-Image.", "z_image/cli/z_image_generate.py",
                    "restricted", _Z_IMAGE_SECTIONS, default_model="z-image", family=("z-image-turbo",),
                    scale_dims=False, scheduler="flow_match_euler_discrete"),
        CommandSpec("mflux-generate-qwen", "Generate an image using Qwen Image model.",
                    "qwen/cli/qwen_image_generate.py", "restricted",
                    ("general", "model", "lora", "image_generator", "image_to_image", "pid_decode", "output"),
                    default_model="qwen-image"),
        CommandSpec("mflux-generate-fibo", "Generate an image using FIBO model.", "fibo/cli/fibo_generate.py",
                    "fibo", ("general", "model", "image_generator", "image_to_image", "output"),
                    parser_model_default="fibo"),
        CommandSpec("mflux-generate-flux2", "Generate an image using Flux2 Klein.", "flux2/cli/flux2_generate.py",
                    "flux2", ("general", "model", "compute_precision", "small_text_encoder", "lora",
                              "image_generator", "image_to_image", "pid_decode", "small_decoder", "output",
                              "vae_full_precision"),
                    default_model="flux2-klein-4b", family=_FLUX2_FAMILY),
        CommandSpec("mflux-generate-anima", "Generate an image using Anima (Turbo, Aesthetic or Base).",
                    "anima/cli/anima_generate.py", "anima",
                    ("general", "model", "lora", "image_generator", "compute_precision", "output"),
                    default_model="anima-turbo", family=("anima-aesthetic", "anima-base"), scale_dims=False,
                    scheduler="er_sde"),
    )
}  # fmt: skip

# Options a command accepts but cannot honour, with mflux's reasons (its IGNORED_OPTIONS / CONDITIONAL_OPTIONS).
FLUX1_IGNORED = {"--negative-prompt": "FLUX.1 uses distilled guidance and has no negative branch."}
SCHNELL_GUIDANCE = "schnell builds no guidance embedder, so the value has no path to affect the output."
Z_TURBO_IGNORED = {
    "--guidance": "Z-Image Turbo is guidance-distilled; guidance is forced to 0.0.",
    "--negative-prompt": "CFG is disabled on Z-Image Turbo, so the negative prompt is never encoded.",
}
Z_IMAGE_CONDITIONAL = {
    "--guidance": "guidance-distilled Z-Image variants force guidance to 0.0.",
    "--negative-prompt": (
        "CFG is disabled at guidance <= 1.0 (the default is 0.0) and on guidance-distilled variants."
    ),
}
ANIMA_NEGATIVE = (
    "at guidance 1.0 (the Turbo default) there is no unconditional pass, so the negative prompt is never encoded."
)

# ---------------------------------------------------------------------------------------
# Argument parsing (mflux's CommandLineParser)
# ---------------------------------------------------------------------------------------


def positive_float(value: str) -> float:
    """Mirror mflux's ``positive_float`` so ``--mlx-cache-limit-gb 0`` fails the same way."""
    try:
        parsed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a valid number") from None
    if parsed <= 0:
        raise argparse.ArgumentTypeError(f"'{value}' must be > 0")
    return parsed


def vae_tile_size(value: str) -> int:
    """Mirror mflux's ``vae_tile_size``: an int >= 128 and a multiple of 16."""
    try:
        parsed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a valid integer") from None
    if parsed < 128:
        raise argparse.ArgumentTypeError(f"'{value}' is too small: minimum tile size is 128 (tiles overlap by 64px)")
    if parsed % 16 != 0:
        raise argparse.ArgumentTypeError(f"'{value}' must be a multiple of 16")
    return parsed


@dataclass(frozen=True)
class ScaleFactor:
    """mflux's ScaleFactor: ``auto`` is 1x; ``2x`` scales the init image's size (1024 without one)."""

    value: int | float

    def scaled(self, orig: int) -> int:
        return int(self.value * orig - (self.value * orig) % 16)


def int_or_special_value(value: str) -> int | ScaleFactor:
    """Width/height on the scale-factor commands: an int, ``auto`` or a scale factor like ``2x``."""
    if value.lower() == "auto":
        return ScaleFactor(1)
    try:
        return int(value)
    except ValueError:
        pass
    match = re.match(r"^(\d+(?:\.\d+)?)x$", value.strip(), re.IGNORECASE)
    factor = (float(match.group(1)) if "." in match.group(1) else int(match.group(1))) if match else 0
    if factor <= 0:
        raise argparse.ArgumentTypeError(
            f"'{value}' is not a valid integer or 'auto' or a scale factor like '2x' or '3.5x'"
        )
    return ScaleFactor(factor)


class ModelSpecAction(argparse.Action):
    """mflux's action for --model (a plain store)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        setattr(namespace, self.dest, values)


def build_parser(spec: CommandSpec) -> argparse.ArgumentParser:
    """The parser mflux 0.24.0 builds for this command: same options, order, types, choices and defaults."""
    p = argparse.ArgumentParser(prog=spec.name, description=spec.description, allow_abbrev=False)
    p.add_argument("--verbose", "-v", action="store_true", default=False)
    for section in spec.sections:
        if section == "general":
            p.add_argument("--battery-percentage-stop-limit", "-B", type=lambda v: max(min(int(v), 99), 1), default=5)
            p.add_argument("--low-ram", action="store_true")
            p.add_argument("--mlx-cache-limit-gb", type=positive_float, default=None)
            p.add_argument("--vae-tiling", action="store_true")
            p.add_argument("--vae-tile-size", type=vae_tile_size, default=None)
        elif section == "model":
            p.add_argument("--model", "-m", type=str, required=False, action=ModelSpecAction)
            p.add_argument("--base-model", type=str, required=False, metavar="MODEL")
            p.add_argument("--quantize", "-q", type=int, choices=QUANTIZE_CHOICES, default=None)
            if spec.parser_model_default is not None:
                p.set_defaults(model=spec.parser_model_default)
        elif section == "compute_precision":
            p.add_argument("--compute-precision", type=str, choices=COMPUTE_PRECISIONS, default=None)
        elif section == "small_text_encoder":
            p.add_argument("--small-text-encoder", action=argparse.BooleanOptionalAction, default=False)
        elif section == "lora":
            p.add_argument("--lora-style", type=str, choices=LORA_STYLES)
            p.add_argument("--lora", dest="lora", action="append", nargs="+", default=None, metavar=("PATH", "SCALE"))
            p.add_argument("--lora-paths", type=str, nargs="*", default=None)
            p.add_argument("--lora-scales", type=float, nargs="*", default=None)
            p.add_argument("--bake-lora", action=argparse.BooleanOptionalAction, default=True)
        elif section == "image_generator":
            group = p.add_mutually_exclusive_group(required=False)  # the prompt is checked after parsing
            group.add_argument("--prompt", type=str)
            group.add_argument("--prompt-file", type=Path)
            p.add_argument("--negative-prompt", type=str, default="")
            p.add_argument("--seed", type=int, default=None, nargs="+")
            p.add_argument("--auto-seeds", type=int, default=-1)
            p.add_argument("--scheduler", type=str, default="linear")
            if spec.scale_dims:
                p.add_argument("--height", type=int_or_special_value, default="auto")
                p.add_argument("--width", type=int_or_special_value, default="auto")
            else:
                p.add_argument("--height", type=int, default=1024)
                p.add_argument("--width", type=int, default=1024)
            p.add_argument("--steps", type=int, default=None)
            p.add_argument("--guidance", type=float, default=None)
            p.add_argument("--config-from-conf", "--config-from-metadata", "-C", dest="config_from_metadata",
                           type=Path, required=False, default=argparse.SUPPRESS)  # fmt: skip
        elif section == "image_to_image":
            p.add_argument("--image", dest="image", nargs="+", default=None, metavar=("PATH", "STRENGTH"))
            p.add_argument("--image-path", type=Path, required=False, default=None)
            p.add_argument("--image-strength", type=float, required=False, default=IMAGE_STRENGTH)
        elif section == "pid_decode":
            p.add_argument("--pid-decode", action=argparse.BooleanOptionalAction, default=False)
            p.add_argument("--pid-degrade-sigma", type=float, default=0.0)
        elif section == "small_decoder":
            p.add_argument("--small-decoder", action=argparse.BooleanOptionalAction, default=False)
        elif section == "float32":
            p.add_argument("--float32", action=argparse.BooleanOptionalAction, default=False)
        elif section == "output":
            p.add_argument("--make-conf", "--metadata", dest="metadata", action="store_true")
            p.add_argument("--no-exif", "--no-metadata", dest="no_metadata", action="store_true")
            p.add_argument("--output", type=str, default="image.png")
            p.add_argument("--stepwise-image-output-dir", type=str, default=None)
        elif section == "vae_full_precision":
            p.add_argument("--vae-full-precision", action=argparse.BooleanOptionalAction, default=False)
        else:
            raise ValueError(f"unknown parser section {section!r}")
    p.set_defaults(scheduler=spec.scheduler)
    return p


def option_was_provided(argv: list[str], *names: str) -> bool:
    """CommandLineParser._option_was_provided: the argv scan mflux uses for "given explicitly"."""
    for token in argv:
        for name in names:
            if token == name or (name.startswith("--") and token.startswith(name + "=")):
                return True
            if len(name) == 2 and name[0] == "-" and name[1] != "-" and token.startswith(name) and token != name:
                return True
    return False


def parse_args(spec: CommandSpec, argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse and post-process argv the way mflux's CommandLineParser.parse_args does, in its order."""
    parser = build_parser(spec)
    ns = parser.parse_args(argv)
    has = set(vars(ns))

    if "lora" in has and ns.lora is not None:  # --lora PATH [SCALE] folded into lora_paths/lora_scales
        if option_was_provided(argv, "--lora-paths", "--lora-scales"):
            parser.error("Use either --lora or the legacy --lora-paths/--lora-scales, not both.\nTip: --lora pairs "
                         "each path with its scale: --lora A.safetensors 0.7 --lora B.safetensors 0.4")  # fmt: skip
        paths: list[str] = []
        scales: list[float] = []
        for grp in ns.lora:
            if len(grp) > 2:
                parser.error(f"--lora takes one PATH and an optional SCALE but got {len(grp)} values: "
                             f"{' '.join(grp)}\nTip: give each adapter its own --lora: --lora A.safetensors 0.7 "
                             "--lora B.safetensors")  # fmt: skip
            try:
                scale = float(grp[1]) if len(grp) == 2 else 1.0
            except ValueError:
                parser.error(f"Invalid LoRA scale '{grp[1]}' for '{grp[0]}'.\nTip: --lora takes a PATH and an "
                             f"optional numeric SCALE: --lora {grp[0]} 0.7")  # fmt: skip
            paths.append(grp[0])
            scales.append(scale)
        ns.lora_paths, ns.lora_scales = paths, scales
    if "image" in has and ns.image is not None:  # --image PATH [STRENGTH]
        if option_was_provided(argv, "--image-path", "--image-strength"):
            parser.error("Use either --image or the legacy --image-path/--image-strength, not both.\nTip: --image "
                         "pairs the path with its strength: --image photo.jpg 0.6")  # fmt: skip
        grp = ns.image
        if len(grp) > 2:
            parser.error(f"--image takes one PATH and an optional STRENGTH but got {len(grp)} values: "
                         f"{' '.join(grp)}\nTip: --image photo.jpg 0.6")  # fmt: skip
        ns.image_path = Path(grp[0])
        if len(grp) == 2:
            try:
                ns.image_strength = float(grp[1])
            except ValueError:
                parser.error(f"Invalid image strength '{grp[1]}' for '{grp[0]}'.\nTip: --image takes a PATH and "
                             f"an optional numeric STRENGTH: --image {grp[0]} 0.6")  # fmt: skip

    if getattr(ns, "config_from_metadata", None):
        restore_from_metadata(parser, ns, argv)

    if ns.seed is None and ns.auto_seeds > 0:
        ns.seed = random.sample(range(int(1e7) + 1), ns.auto_seeds) if ns.auto_seeds <= 1e7 + 1 else [
            random.randint(0, int(1e7)) for _ in range(ns.auto_seeds)]  # fmt: skip
    if ns.seed is None:
        ns.seed = [int(time.time())]
    if len(ns.seed) > 1:
        out = Path(ns.output)
        ns.output = str(out.with_stem(out.stem + "_seed_{seed}"))

    if ns.prompt is None and ns.prompt_file is None:
        parser.error(
            "Either --prompt or --prompt-file argument is required, or 'prompt' required in metadata config file"
        )

    if ns.steps is None:
        ns.steps = model_inference_steps(ns.model, ns.base_model, spec.default_model)

    for lora_path in getattr(ns, "lora_paths", None) or []:
        if lora_is_missing(lora_path):
            parser.error(f"LoRA file not found: '{lora_path}'. File does not exist and is not in the LoRA library.")

    if ns.base_model is not None and ns.base_model not in base_model_names():
        keys = ", ".join(MODELS)
        parser.error(f"argument --base-model: invalid choice: {ns.base_model!r} (choose from {keys}, any of their "
                     "aliases, or the HuggingFace repo id of a built-in model)")  # fmt: skip

    ns.model_path = None if ns.model is None or ns.model in model_choices() else ns.model
    return parser, ns


def restore_from_metadata(parser: argparse.ArgumentParser, ns: argparse.Namespace, argv: list[str]) -> None:
    """--config-from-conf: fill what the command line left out from a ``--metadata`` sidecar."""
    prior: dict[str, Any] = json.loads(Path(ns.config_from_metadata).read_text())
    restored_source = None
    if not option_was_provided(argv, "--model", "-m"):
        restored_source = prior.get("model_path")
        ns.model = restored_source or prior.get("model", ns.model)
    if ns.base_model is None:
        base = prior.get("base_model")
        if base in (None, "None") and restored_source is not None:
            base = prior.get("model")
        if base not in (None, "None"):
            ns.base_model = base
    if ns.prompt is None:
        ns.prompt = prior.get("prompt")
    if not option_was_provided(argv, "--negative-prompt"):
        ns.negative_prompt = prior.get("negative_prompt") or ns.negative_prompt
    for dim in ("height", "width"):
        if not option_was_provided(argv, f"--{dim}"):
            setattr(ns, dim, prior.get(dim) or getattr(ns, dim))
    precision = prior.get("compute_precision")
    if (
        "compute_precision" in vars(ns)
        and precision is not None
        and not option_was_provided(argv, "--compute-precision")
    ):
        ns.compute_precision = precision
    if ns.guidance == parser.get_default("guidance") and prior.get("guidance"):
        ns.guidance = prior["guidance"]
    if ns.quantize is None:
        ns.quantize = prior.get("quantize")
    if ns.seed is None and prior.get("seed") is not None:
        ns.seed = [prior["seed"]]
    if ns.steps is None:
        ns.steps = prior.get("steps")
    if "lora_paths" in vars(ns) and not option_was_provided(argv, "--lora", "--lora-paths"):
        ns.lora_paths = prior.get("lora_paths")
        if not option_was_provided(argv, "--lora-scales"):
            ns.lora_scales = prior.get("lora_scales")
    if "image_path" in vars(ns) and ns.image_path is None:
        ns.image_path = prior.get("image_path")
        if ns.image_strength == parser.get_default("image_strength") and prior.get("image_strength"):
            ns.image_strength = prior["image_strength"]
    for flag in ("float32", "pid_decode", "vae_full_precision", "small_text_encoder", "small_decoder"):
        option = "--" + flag.replace("_", "-")
        if flag in vars(ns) and not option_was_provided(argv, option, "--no-" + option[2:]):
            setattr(ns, flag, bool(prior.get(flag, False)))


def lora_is_missing(path: str) -> bool:
    """LoraResolution's error rule: not a local file, not a collection (``org/repo:file``), not an ``org/repo`` id.

    (A collection or repo would be downloaded; here it counts as present.)"""
    if Path(path).expanduser().exists():
        return False
    if path.startswith("hf:"):
        rest = path[3:]
        collection = (":" in rest and "/" in rest) or (
            rest.count("/") == 2 and not rest.startswith(("./", "../", "~/"))
        )
    else:
        collection = ":" in path and "/" in path
    hf_repo = path.count("/") == 1 and not path.startswith(("./", "../", "~/"))
    return not (collection or hf_repo)


# ---------------------------------------------------------------------------------------
# What each command's main() decides before loading the model
# ---------------------------------------------------------------------------------------


@dataclass
class Plan:
    """The resolved run: which registry entry, the guidance the model uses, and what the metadata records."""

    entry: Model
    model_name: str  # metadata "model": the config's model_name (a repo id, or the path for FLUX.1)
    base_model: str | None  # metadata "base_model"
    guidance: float | None  # what the model uses (None: passed but ignored, as on schnell)
    guidance_recorded: float | None  # metadata "guidance" (None where the model does not support guidance)
    scheduler: str
    negative_prompt_used: bool


class UsageError(Exception):
    """A parser.error() raised by main() (exit 2 with the usage line)."""


class RunError(Exception):
    """An exception that ends the run with exit 1 and a traceback: the last line is ``<type>: <message>``."""

    def __init__(self, last_line: str, code: str = "model = load(args)", line: int = 100) -> None:
        super().__init__(last_line)
        self.last_line, self.code, self.line = last_line, code, line


def config_error(message: str) -> RunError:
    return RunError(f"mflux.utils.exceptions.ModelConfigError: {message}", "model_config = validate(args)")


def warning_line(filename: str, lineno: int, message: str, source: str) -> str:
    """warnings.formatwarning's output for a UserWarning."""
    return f"{filename}:{lineno}: UserWarning: {message}\n  {source}\n"


def warn_ignored_options(spec: CommandSpec, argv: list[str], options: dict[str, str], lineno: int,
                         source: str) -> None:  # fmt: skip
    """CommandLineParser.warn_ignored_options: a UserWarning on stderr for each option given on the command line."""
    for option, reason in options.items():
        if option_was_provided(argv, option):
            sys.stderr.write(warning_line(f"{SITE}/models/{spec.module}", lineno, f"{option} is ignored; {reason}",
                                          source))  # fmt: skip


def resolve_restricted(spec: CommandSpec, ns: argparse.Namespace) -> Model:
    """ConfigResolution.resolve_restricted: the default entry, a family member, or a ModelConfigError."""
    assert spec.default_model is not None
    allowed = [MODELS[spec.default_model]] + [MODELS[key] for key in spec.family]
    expected = allowed[0]
    aliases = [alias for m in allowed for alias in m.aliases]
    if ns.model is None or ns.model_path is not None:
        if ns.base_model is not None:
            root = next((m for m in allowed if ns.base_model == m.repo or ns.base_model in m.aliases), None)
            if root is None:
                raise config_error(f"'{ns.base_model}' is not {expected.repo}; this CLI only accepts the aliases "
                                   f"{aliases}.")  # fmt: skip
            return root
        if ns.model_path is not None:
            exact = next((m for m in allowed if ns.model_path == m.repo), None)
            basename = ns.model_path.rstrip("/").rsplit("/", 1)[-1]
            inferred = exact or infer_from_name(basename, allowed)
            if inferred is not None:
                return inferred
        return expected
    resolved = exact_match(ns.model)
    if resolved is None or all(resolved is not m for m in allowed):
        raise config_error(f"'{ns.model}' is not {expected.repo}; this CLI only accepts the aliases {aliases}.")
    return resolved


def from_name(model: str | None, base_model: str | None) -> tuple[Model, str, str | None]:
    """ModelConfig.from_name: (entry, model_name, base_model repo) or a ModelConfigError."""
    if model is None and base_model is not None:
        model = base_model
    if model is None:
        raise config_error("No model requested: pass a model_name, a base_model, or both.")
    exact = exact_match(model)
    if exact is not None:
        return exact, exact.repo, None
    if base_model is not None:
        base = exact_match(base_model)
        assert base is not None  # the parser has validated it
        return base, model, base.repo
    inferred = infer_from_name(model, _by_priority(list(MODELS.values())))
    if inferred is None:
        raise config_error(f"Cannot infer base_model from {model}")
    return inferred, model, inferred.repo


def plan_run(spec: CommandSpec, ns: argparse.Namespace, argv: list[str]) -> Plan:
    """What the command's main() does between parsing and loading the model, warnings included (on stderr, where
    mflux emits them). Raises UsageError (exit 2) or RunError (exit 1)."""
    negative_given = option_was_provided(argv, "--negative-prompt")
    ignored = "CommandLineParser.warn_ignored_options(IGNORED_OPTIONS)"
    if spec.kind == "flux1":
        warn_ignored_options(spec, argv, FLUX1_IGNORED, 41, ignored)
        model_name = None if ns.model_path and ns.base_model else ns.model
        names = (model_name and model_name.rstrip("/").rsplit("/", 1)[-1], ns.base_model)
        if any(name and re.search(r"flux[-_]?3(?!\d)", name.lower()) for name in names):
            raise UsageError("FLUX 3 Image Klein is not supported by mflux-generate. Use mflux-generate-flux3 "
                             "instead.")  # fmt: skip
        if (ns.base_model and "klein" in ns.base_model.lower()) or (ns.model and "flux2-klein" in ns.model.lower()):
            raise UsageError("FLUX.2 Klein is not supported by mflux-generate. Use mflux-generate-flux2 instead.")
        guidance = GUIDANCE_SCALE if ns.guidance is None else ns.guidance
        entry, name, base = from_name(ns.model, ns.base_model)
        if entry.key not in ("dev", "schnell", "krea-dev"):  # the stand-in's choice: FLUX.1 weights only
            raise config_error(f"'{ns.model or ns.base_model}' is not a FLUX.1 text-to-image model "
                               f"({entry.repo}); use its own mflux command.")  # fmt: skip
        if not entry.supports_guidance:  # schnell: passed, but there is no guidance embedder
            warn_ignored_options(spec, argv, {"--guidance": SCHNELL_GUIDANCE}, 60,
                                 'CommandLineParser.warn_ignored_options({"--guidance": '
                                 'CONDITIONAL_OPTIONS["--guidance"]["reason"]})')  # fmt: skip
            return Plan(entry, name, base, None, None, ns.scheduler, False)
        return Plan(entry, name, base, guidance, guidance, ns.scheduler, False)

    if spec.kind == "restricted":
        if spec.name == "mflux-generate-z-image-turbo":
            warn_ignored_options(spec, argv, Z_TURBO_IGNORED, 98, ignored)
        entry = resolve_restricted(spec, ns)
        if spec.name == "mflux-generate-z-image":
            if not entry.supports_guidance:
                warn_ignored_options(spec, argv, Z_IMAGE_CONDITIONAL, 119, "CommandLineParser.warn_ignored_options(")
            elif negative_given and (ns.guidance is None or ns.guidance <= 1.0):
                message = (f"--negative-prompt has no effect: {Z_IMAGE_CONDITIONAL['--negative-prompt']} Pass "
                           "--guidance above 1.0 to enable it.")  # fmt: skip
                sys.stderr.write(warning_line(f"{SITE}/models/{spec.module}", 128, message, "warnings.warn("))
        if entry.key == "qwen-image":
            guidance: float = GUIDANCE_SCALE if ns.guidance is None else ns.guidance  # QwenImageCommand._guidance
            return Plan(entry, entry.repo, None, guidance, None, ns.scheduler, bool(ns.negative_prompt))
        if entry.supports_guidance:  # Z-Image: Config turns None into 0.0; CFG (and the negative) only above 1.0
            guidance = 0.0 if ns.guidance is None else float(ns.guidance)
            negative_used = guidance > 1.0 and bool(ns.negative_prompt)
            return Plan(entry, entry.repo, None, guidance, guidance, ns.scheduler, negative_used)
        # Z-Image Turbo: ZImage.generate_image forces guidance to 0.0; the metadata records null
        return Plan(entry, entry.repo, None, 0.0, None, ns.scheduler, False)

    if spec.kind == "fibo":
        try:
            entry, name, base = from_name(ns.model, ns.base_model)
        except RunError:  # main() falls back to ModelConfig.fibo()
            entry, name, base = MODELS["fibo"], MODELS["fibo"].repo, None
        if entry.key not in ("fibo", "fibo-lite"):  # the stand-in's choice: FIBO weights only
            raise config_error(f"'{ns.model}' is not a FIBO model ({entry.repo}).")
        if ns.guidance is None:
            guidance = 1.0 if entry.key == "fibo-lite" else 5.0
        else:
            guidance = ns.guidance
        return Plan(entry, name, base, guidance, guidance, "flow_match_euler_discrete",
                    guidance != 1.0 and bool(ns.negative_prompt))  # fmt: skip

    if spec.kind == "flux2":
        if negative_given:
            raise UsageError("--negative-prompt is not supported for FLUX.2. Focus on describing what you want.")
        if ns.small_decoder and ns.pid_decode:
            raise UsageError("--small-decoder cannot be used with --pid-decode: PiD replaces the VAE decoder.")
        entry = resolve_restricted(spec, ns)
        guidance = 1.0 if ns.guidance is None else ns.guidance
        named = ns.model_path is not None and ns.base_model is None
        if named:
            allowed = [MODELS[spec.default_model or ""]] + [MODELS[k] for k in spec.family]
            basename = ns.model_path.rstrip("/").rsplit("/", 1)[-1]
            named = any(ns.model_path == m.repo for m in allowed) or infer_from_name(basename, allowed) is not None
        judged = ns.model_path is None or ns.base_model is not None or named
        if judged and guidance != 1.0 and "base" not in entry.repo.lower():
            raise UsageError("--guidance is only supported for FLUX.2 base models. Use --guidance 1.0, or declare a "
                             "base checkpoint with --base-model.")  # fmt: skip
        if ns.small_text_encoder and entry.key not in ("flux2-klein-4b", "flux2-klein-base-4b"):
            raise UsageError("--small-text-encoder only works with FLUX.2-klein-4B / klein-base-4B.")
        return Plan(entry, entry.repo, None, guidance, guidance, "flow_match_euler_discrete", False)

    # anima: AnimaCommand.validate, then the Anima class's own check of -q
    validate = "model_config=AnimaCommand.validate(args),"
    entry = resolve_restricted(spec, ns)
    if ns.scheduler not in (None, "linear", *ANIMA_SAMPLERS):
        raise RunError(f"ValueError: Unknown Anima sampler {ns.scheduler!r}. Expected one of "
                       f"{', '.join(ANIMA_SAMPLERS)}.", validate, 69)  # fmt: skip
    if not 1 <= ns.steps <= 1000:
        raise RunError(f"ValueError: Anima takes 1 to 1000 steps, got {ns.steps}.", validate, 69)
    if ns.width <= 0 or ns.height <= 0 or ns.width % 16 or ns.height % 16:
        raise RunError("ValueError: Anima needs a width and height that are positive multiples of 16, got "
                       f"{ns.width}x{ns.height}.", validate, 69)  # fmt: skip
    if ns.quantize == 3:
        raise RunError("ValueError: Anima does not work with -q 3, the 2B transformer turns to noise. Use -q 4, 5, 6 "
                       "or 8.", "return Anima(", 68)  # fmt: skip
    guidance = ANIMA_GUIDANCE[entry.key] if ns.guidance is None else float(ns.guidance)
    if guidance == 1.0 and negative_given:  # warned after the load, from main(): stacklevel 2 is the script
        sys.stderr.write(warning_line(f"{BIN_DIR}/{spec.name}", 8,
                                      f"--negative-prompt is ignored at guidance 1.0; {ANIMA_NEGATIVE}",
                                      "sys.exit(main())"))  # fmt: skip
    scheduler = "er_sde" if ns.scheduler in (None, "linear") else ns.scheduler
    return Plan(entry, entry.repo, None, guidance, guidance, scheduler, guidance != 1.0 and bool(ns.negative_prompt))


def check_model_path(model_path: str | None) -> None:
    """PathResolution: a local path must exist; an ``org/name`` repo id counts as downloaded here."""
    if model_path is None or Path(model_path).expanduser().exists():
        return
    hf_format = model_path.count("/") == 1 and not model_path.startswith(("./", "../", "~/"))
    if not hf_format:
        raise RunError(f"FileNotFoundError: Model not found: '{model_path}'. If local path, make sure it exists. "
                       "If HuggingFace repo, use 'org/model' format.")  # fmt: skip


# ---------------------------------------------------------------------------------------
# Output helpers: tqdm-like progress, mflux-like messages, failure tracebacks
# ---------------------------------------------------------------------------------------


def _format_interval(seconds: float) -> str:
    """tqdm.format_interval: mm:ss or h:mm:ss."""
    mins, s = divmod(int(seconds), 60)
    h, m = divmod(mins, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """Writes a tqdm-identical bar; one refresh per step, ``\\r``-separated like tqdm on a pipe."""

    CHARSET = " " + "".join(map(chr, range(0x258F, 0x2587, -1)))  # tqdm's unicode bar: " ▏▎▍▌▋▊▉█"
    WIDTH = 10  # tqdm's bar width when it cannot size the terminal

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.n = 0
        self.stream = stream
        self.start = time.monotonic()
        self._display()

    def _bar(self, frac: float) -> str:
        nsyms = len(self.CHARSET) - 1
        full, part = divmod(int(frac * self.WIDTH * nsyms), nsyms)
        if full >= self.WIDTH:
            return self.CHARSET[-1] * self.WIDTH
        return self.CHARSET[-1] * full + self.CHARSET[part] + self.CHARSET[0] * (self.WIDTH - full - 1)

    def _display(self) -> None:
        elapsed = time.monotonic() - self.start
        frac = self.n / self.total if self.total else 1.0
        rate = self.n / elapsed if self.n and elapsed > 0 else None
        if rate is None:
            remaining, rate_fmt = "?", "?it/s"
        else:
            remaining = _format_interval((self.total - self.n) / rate)
            rate_fmt = f"{1 / rate:5.2f}s/it" if rate < 1 else f"{rate:5.2f}it/s"
        line = (
            f"{frac * 100:3.0f}%|{self._bar(frac)}| {self.n}/{self.total} "
            f"[{_format_interval(elapsed)}<{remaining}, {rate_fmt}]"
        )
        self.stream.write("\r" + line)
        self.stream.flush()

    def update(self) -> None:
        """Advance one step and redraw."""
        self.n += 1
        self._display()

    def close(self) -> None:
        """Finish the bar with a newline, as tqdm does with ``leave=True``."""
        self.stream.write("\n")
        self.stream.flush()


OOM_MESSAGE = (
    "RuntimeError: [METAL] Command buffer execution failed: Insufficient Memory "
    "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)"
)
SEED_MESSAGE = (
    "TypeError: key(): incompatible function arguments. The following argument types are supported:\n"
    "    1. key(seed: int) -> mlx.core.array\n\nInvoked with types: int"
)


def traceback_head(command: str, module: str, line: int, code: str) -> str:
    """The first frames of a traceback out of the console script and the command's main()."""
    return (
        "Traceback (most recent call last):\n"
        f'  File "{BIN_DIR}/{command}", line 8, in <module>\n'
        "    sys.exit(main())\n"
        "             ^^^^^^\n"
        f'  File "{SITE}/models/{module}", line {line}, in main\n'
        f"    {code}\n"
    )


def fake_traceback(command: str, last_line: str = OOM_MESSAGE) -> str:
    """A traceback shaped like a failure (Metal out-of-memory by default) inside mflux's denoise loop."""
    module = COMMANDS[command].module if command in COMMANDS else "z_image/cli/z_image_turbo_generate.py"
    return (
        traceback_head(command, module, 112, "image = model.generate_image(")
        + f'  File "{SITE}/models/common/latent/denoise_loop.py", line 88, in run\n'
        "    mx.eval(latents)\n"
        f"{last_line}\n"
    )


def log_event(event: str, **fields: Any) -> None:
    """Append one JSON line to $HERD_STANDIN_LOG with O_APPEND (one write per line)."""
    path = os.environ.get("HERD_STANDIN_LOG")
    if not path:
        return
    record = {"event": event, "pid": os.getpid(), "time": time.time(), **fields}
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# PNG writer, with mflux's metadata (ImageUtil.save_image + MetadataBuilder.embed_metadata)
# ---------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC32 over type+data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def render_rgb(width: int, height: int, seed: int, prompt: str) -> bytes:
    """Deterministic 8-bit RGB scanlines (filter byte 0 + pixels): a bilinear gradient whose corners hash seed+prompt.

    Speed trick: each base-row byte encodes (channel, x-level); a per-band 256-byte
    ``bytes.translate`` table maps it to the colour, so no Python loop touches pixels.
    """
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    corners = [digest[i * 3 : i * 3 + 3] for i in range(4)]  # top-left, top-right, bottom-left, bottom-right
    levels = 85  # 3 channels * 85 levels fit into one byte
    base = bytearray(width * 3)
    for x in range(width):
        lvl = x * (levels - 1) // max(width - 1, 1)
        base[3 * x : 3 * x + 3] = bytes((lvl, levels + lvl, 2 * levels + lvl))
    base_row = bytes(base)

    bands = min(height, 256)
    tables: list[bytes] = []
    for b in range(bands):
        v = b / max(bands - 1, 1)
        table = bytearray(256)
        for c in range(3):
            top_l, top_r = corners[0][c], corners[1][c]
            bot_l, bot_r = corners[2][c], corners[3][c]
            left = top_l + (bot_l - top_l) * v
            right = top_r + (bot_r - top_r) * v
            for lvl in range(levels):
                u = lvl / (levels - 1)
                table[c * levels + lvl] = int(left + (right - left) * u + 0.5)
        tables.append(bytes(table))
    return b"".join(b"\x00" + base_row.translate(tables[y * bands // height]) for y in range(height))


def build_xmp_packet(metadata: dict[str, Any]) -> str:
    """MetadataBuilder.build_xmp_packet, verbatim."""
    prompt = (metadata.get("prompt") or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    lora_info = _lora_string(metadata)
    model_name = metadata.get("model_config") or metadata.get("model")
    version = metadata.get("mflux_version", "unknown")
    xmp = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:mflux="http://ns.mflux.ai/1.0/">
    <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{prompt}</rdf:li></rdf:Alt></dc:description>
    <dc:creator><rdf:Seq><rdf:li>MFLUX</rdf:li></rdf:Seq></dc:creator>
    <dc:rights><rdf:Alt><rdf:li xml:lang="x-default">AI Generated Content</rdf:li></rdf:Alt></dc:rights>
    <xmp:CreatorTool>MFLUX {version}</xmp:CreatorTool>
    <photoshop:Category>ART</photoshop:Category>
    <photoshop:Credit>Generated by MFLUX</photoshop:Credit>"""
    if "seed" in metadata:
        xmp += f"\n    <mflux:seed>{metadata['seed']}</mflux:seed>"
    if "steps" in metadata:
        xmp += f"\n    <mflux:steps>{metadata['steps']}</mflux:steps>"
    if "guidance" in metadata:
        xmp += f"\n    <mflux:guidance>{metadata['guidance']}</mflux:guidance>"
    if model_name:
        xmp += f"\n    <mflux:model>{model_name}</mflux:model>"
    if lora_info:
        xmp += f"\n    <mflux:loras>{lora_info}</mflux:loras>"
    if "generation_time_seconds" in metadata:
        seconds = metadata["generation_time_seconds"]
        xmp += f"\n    <mflux:generationTimeSeconds>{seconds}</mflux:generationTimeSeconds>"
    return xmp + '\n</rdf:Description>\n</rdf:RDF>\n</x:xmpmeta>\n<?xpacket end="w"?>'


def _looks_like_json(text: str) -> bool:
    stripped = (text or "").lstrip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True


def build_iptc_binary(metadata: dict[str, Any]) -> bytes:
    """MetadataBuilder.build_iptc_binary: IIM records 2:<dataset>, in mflux's insertion order."""
    lora_info = _lora_string(metadata)
    iptc: dict[int, bytes] = {}
    if "prompt" in metadata:
        prompt = metadata["prompt"]
        encoded = prompt.encode()
        if _looks_like_json(prompt) and len(encoded) > 2000:
            summary = (f"Structured JSON prompt ({len(encoded)} bytes). Full prompt preserved in MFLUX metadata "
                       "(EXIF UserComment) and may be saved as a sidecar .json.")  # fmt: skip
            iptc[120] = summary.encode()[:2000]
            iptc[5] = b"AI: (structured prompt)"
            iptc[105] = b"AI Generated (structured prompt)"
        else:
            iptc[120] = encoded[:2000]
            iptc[5] = f"AI: {prompt[:50]}...".encode()
            iptc[105] = f"AI Generated: {prompt[:80]}...".encode()
    iptc[80] = b"MFLUX"
    iptc[85] = b"AI Artist"
    iptc[15] = b"ART"
    iptc[110] = b"Generated by MFLUX"
    iptc[115] = b"AI Generation"
    iptc[116] = b"AI Generated Content"
    iptc[118] = b"AI Generated using MFLUX"
    iptc[103] = b"AI"
    if "seed" in metadata:
        iptc[122] = f"Seed: {metadata['seed']}".encode()
    model_name = metadata.get("model_config") or metadata.get("model")
    if model_name:
        iptc[90] = f"Model: {model_name}".encode()
    if lora_info:
        iptc[95] = f"LoRA: {lora_info}".encode()
    if "steps" in metadata and "guidance" in metadata:
        iptc[101] = f"Steps:{metadata['steps']} CFG:{metadata['guidance']}".encode()
    keywords = ["AI", "Generated", "MFLUX"]
    for key in ("seed", "steps", "guidance"):
        if key in metadata:
            keywords.append(f"{key}-{metadata[key]}")
    if "model_config" in metadata:
        keywords.append(f"model-{metadata['model_config']}")
    elif metadata.get("model"):
        keywords.append(f"model-{metadata['model']}")
    if lora_info:
        keywords.append(f"loras-{lora_info}")
    iptc[25] = ";".join(keywords).encode()
    return b"".join(
        bytes([0x1C, 0x02, tag]) + len(value).to_bytes(2, "big") + value
        for tag, value in iptc.items()
        if len(value) < 32768
    )


def _lora_string(metadata: dict[str, Any]) -> str:
    paths = metadata.get("lora_paths")
    if not paths:
        return ""
    scales = metadata.get("lora_scales") or []
    return ", ".join(f"{Path(p).name}:{scales[i] if i < len(scales) else '1.0'}" for i, p in enumerate(paths))


def build_exif(metadata: dict[str, Any]) -> bytes:
    """What piexif.dump({"Exif": {0x9286: b"ASCII\\0\\0\\0" + json}}) writes, less its ``Exif\\0\\0`` prefix.

    Big-endian TIFF: IFD0 holds one entry, the Exif IFD pointer (0x8769); the Exif IFD holds UserComment
    (0x9286, type UNDEFINED) and no next-IFD offset (piexif's layout); the comment's bytes follow at offset 40.
    """
    comment = b"ASCII\x00\x00\x00" + json.dumps(metadata).encode("utf-8")
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x9286, 7, len(comment), 40)
    return b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + exif_ifd + comment


def metadata_chunks(metadata: dict[str, Any]) -> list[bytes]:
    """The chunks mflux adds between IHDR and IDAT: iTXt XMP, tEXt IPTC (hex), eXIf."""
    xmp = build_xmp_packet(metadata).encode("utf-8")
    chunks = [_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)]  # uncompressed, no language
    iptc = build_iptc_binary(metadata)
    if iptc:
        chunks.append(_png_chunk(b"tEXt", b"IPTC\x00" + iptc.hex().encode("latin-1")))
    chunks.append(_png_chunk(b"eXIf", build_exif(metadata)))
    return chunks


def encode_png(width: int, height: int, scanlines: bytes, metadata: dict[str, Any] | None) -> bytes:
    """An 8-bit RGB PNG; with ``metadata``, carrying it the way mflux embeds it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", ihdr)]
    if metadata is not None:
        chunks += metadata_chunks(metadata)
    chunks.append(_png_chunk(b"IDAT", zlib.compress(scanlines, 6)))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


def render_png(width: int, height: int, seed: int, prompt: str, metadata: dict[str, Any] | None = None) -> bytes:
    """The stand-in's image for (seed, prompt), with mflux's metadata chunks unless ``metadata`` is None."""
    return encode_png(width, height, render_rgb(width, height, seed, prompt), metadata)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG or JPEG from its header, like mflux's header-only read."""
    with open(path, "rb") as fh:
        head = fh.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            width, height = struct.unpack(">II", head[16:24])
            return width, height
        if head[:2] != b"\xff\xd8":
            raise OSError(f"cannot identify image file '{path}'")
        fh.seek(2)
        while True:
            marker = fh.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                raise OSError(f"cannot identify image file '{path}'")
            (length,) = struct.unpack(">H", fh.read(2))
            if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">xHH", fh.read(5))
                return width, height
            fh.seek(length - 2, os.SEEK_CUR)


def resolve_dimensions(ns: argparse.Namespace) -> tuple[int, int]:
    """mflux's DimensionResolver: ints as given; auto/Nx from the init image, else 1024."""
    width, height = ns.width, ns.height
    if not isinstance(width, ScaleFactor) and not isinstance(height, ScaleFactor):
        return int(width), int(height)
    image_path = getattr(ns, "image_path", None)
    ref = image_size(Path(image_path)) if image_path is not None else None

    def one(value: int | ScaleFactor, orig: int) -> int:
        if not isinstance(value, ScaleFactor):
            return int(value)
        return 1024 if ref is None else value.scaled(orig)

    return one(width, ref[0] if ref else 0), one(height, ref[1] if ref else 0)


def resolve_output_path(path: str | Path) -> Path:
    """mflux's ImageUtil.resolve_output_path: never overwrite, append _1, _2, ... to the stem."""
    file_path = Path(path)
    stem, suffix = file_path.stem, file_path.suffix
    counter = 1
    while file_path.exists():
        file_path = file_path.with_name(f"{stem}_{counter}{suffix}")
        counter += 1
    return file_path


def save_image(path: str | Path, width: int, height: int, scanlines: bytes, metadata: dict[str, Any],
               export_json_metadata: bool, embed: bool = True) -> Path:  # fmt: skip
    """ImageUtil.save_image: the PNG at a fresh name (never overwriting), the ``.metadata.json`` sidecar with
    ``--metadata``, the metadata chunks unless ``--no-exif``; returns the path written."""
    file_path = resolve_output_path(path)
    file_path.parent.mkdir(parents=True, exist_ok=True)
    file_path.write_bytes(encode_png(width, height, scanlines, metadata if embed else None))
    sys.stderr.write(f"INFO: Image saved successfully at: {file_path}\n")
    if export_json_metadata:
        file_path.with_suffix(".metadata.json").write_text(json.dumps(metadata, indent=4))
    if embed:
        sys.stderr.write(f"INFO: Metadata embedded successfully at: {file_path}\n")
    sys.stderr.flush()
    return file_path


def build_metadata(ns: argparse.Namespace, plan: Plan, seed: int, prompt: str, width: int, height: int,
                   seconds: float) -> dict[str, Any]:  # fmt: skip
    """GeneratedImage._get_metadata: the record mflux embeds (EXIF JSON) and writes to the sidecar."""
    image_path = getattr(ns, "image_path", None)
    lora_paths = getattr(ns, "lora_paths", None)
    lora_scales = getattr(ns, "lora_scales", None)
    metadata: dict[str, Any] = {
        "mflux_version": MFLUX_VERSION,
        "model": plan.model_name,
        "model_path": ns.model_path,
        "base_model": plan.base_model,
        "seed": seed,
        "steps": ns.steps,
        "guidance": plan.guidance_recorded,
        "height": height,
        "width": width,
        "precision": "mlx.core.bfloat16",
        "quantize": ns.quantize,
        "generation_time_seconds": round(seconds, 2),
        "created_at": datetime.now().isoformat(),
        "lora_paths": [str(p) for p in lora_paths] if lora_paths else None,
        "lora_scales": [float(s) for s in lora_scales] if lora_scales else None,
        "image_path": str(image_path) if image_path else None,
        "image_paths": None,
        "image_strength": ns.image_strength if image_path else None,
        "controlnet_image_path": None,
        "controlnet_strength": None,
        "masked_image_path": None,
        "depth_image_path": None,
        "redux_image_paths": None,
        "redux_image_strengths": None,
        "prompt": prompt,
        "negative_prompt": ns.negative_prompt or None,
    }
    if getattr(ns, "pid_decode", False):
        metadata.update(pid_decode=True, pid_degrade_sigma=ns.pid_degrade_sigma)
    if getattr(ns, "float32", False):
        metadata["float32"] = True
    if getattr(ns, "compute_precision", None):
        metadata["compute_precision"] = ns.compute_precision
    if getattr(ns, "vae_full_precision", False):
        metadata["vae_full_precision"] = True
    return metadata


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def resolve_command(argv0: str) -> str:
    """Pick the impersonated command: argv[0]'s name if known, else $HERD_STANDIN_COMMAND."""
    name = os.path.basename(argv0)
    if name in COMMANDS:
        return name
    env = os.environ.get("HERD_STANDIN_COMMAND", "")
    if env in COMMANDS:
        return env
    sys.stderr.write(f"mflux_standin: cannot tell which mflux command to play (argv[0]={argv0!r})\n")
    sys.exit(2)


def read_prompt(ns: argparse.Namespace) -> str | None:
    """--prompt, or --prompt-file re-read before each seed (mflux's PromptUtil); None if unreadable."""
    if ns.prompt is not None:
        return str(ns.prompt)
    try:
        return Path(ns.prompt_file).read_text().strip()
    except OSError as exc:
        print(f"Failed to read prompt file {ns.prompt_file}: {exc}")
        return None


def gpu_step_seconds(width: int, height: int) -> float:
    """Seconds one denoising step takes on the pretend GPU."""
    ms = float(os.environ.get("HERD_STANDIN_MS_PER_MP_STEP", "50"))
    return ms * (width * height / 1e6) / 1000.0


def exit_with(command: str, spec: CommandSpec, exc: RunError) -> NoReturn:
    """Exit 1 with a traceback ending in the exception's line, as an uncaught exception in main() does."""
    sys.stderr.write(traceback_head(command, spec.module, exc.line, exc.code) + exc.last_line + "\n")
    sys.exit(1)


def generate(command: str, argv: list[str]) -> int:
    """Run one mflux invocation; returns the exit code."""
    spec = COMMANDS[command]
    parser, ns = parse_args(spec, argv)
    try:
        plan = plan_run(spec, ns, argv)
    except UsageError as exc:
        parser.error(str(exc))
    except RunError as exc:
        exit_with(command, spec, exc)
    try:
        check_model_path(ns.model_path)
        if getattr(ns, "image_path", None) is not None and not Path(ns.image_path).exists():
            raise RunError(f"FileNotFoundError: [Errno 2] No such file or directory: '{ns.image_path}'",
                           "image = model.generate_image(", 112)  # fmt: skip
    except RunError as exc:
        exit_with(command, spec, exc)
    width, height = resolve_dimensions(ns)
    if width % 16 or height % 16:
        sys.stderr.write("WARNING: Width and height should be multiples of 16. Rounding down.\n")
    width, height = 16 * (width // 16), 16 * (height // 16)
    if width <= 0 or height <= 0:
        sys.stderr.write(fake_traceback(command, "ValueError: image size must be at least 16x16"))
        return 1
    fail = os.environ.get("HERD_STANDIN_FAIL", "").strip().lower()

    lock_fd: int | None = None
    lock_path = os.environ.get("HERD_STANDIN_LOCK")
    if lock_path:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # released by the kernel when this process dies
    common = {"argv": [command, *argv], "command": command}
    contention_path = os.environ.get(contention.ENV_VAR) or None
    contention_factor = float(os.environ.get("HERD_STANDIN_CONTENTION_FACTOR", "1.0"))
    peak = 8.0 + width * height / 1e6 * (4 if ns.quantize else 8)
    memory = os.environ.get("HERD_STANDIN_MEMORY_GB")
    if memory and peak > float(memory):
        sys.stderr.write(f"libc++abi: terminating due to uncaught exception of type std::runtime_error: "
                         f"[metal::malloc] Attempting to allocate {int(peak * 2**30)} bytes which is greater than "
                         f"the maximum allowed buffer size of {int(float(memory) * 2**30)} bytes.\n")  # fmt: skip
        return 1
    registered = ExitStack()
    registered.enter_context(contention.job(contention_path, "image", what=command))
    log_event("start", **common, model=plan.entry.key, model_path=ns.model_path, seeds=ns.seed, width=width,
              height=height, steps=ns.steps, guidance=plan.guidance, scheduler=plan.scheduler,
              negative_prompt_used=plan.negative_prompt_used)  # fmt: skip
    written: list[str] = []
    status = "crashed"  # overwritten on every normal exit path below
    code = 0
    try:
        step = gpu_step_seconds(width, height)
        for seed in ns.seed:
            prompt = read_prompt(ns)
            if prompt is None:  # mflux prints PromptFileReadError and exits 0 without an image
                status = "no-image"
                return code
            started = time.monotonic()
            if not 0 <= seed <= MAX_SEED:  # mx.random.key(seed), before the denoise loop
                sys.stderr.write(traceback_head(command, spec.module, 112, "image = model.generate_image(")
                                 + SEED_MESSAGE + "\n")  # fmt: skip
                status, code = "error", 1
                return code
            bar = ProgressBar(ns.steps, sys.stderr)
            for t in range(ns.steps):
                if fail == "hang":
                    while True:
                        time.sleep(3600)
                if fail == "no-image" and t == ns.steps // 2:
                    bar.close()
                    print(f"Stopping image generation at step {t + 1}/{ns.steps}")
                    status = "no-image"
                    return code
                time.sleep(step * contention.slowdown(contention_path, "image", contention_factor))
                bar.update()
                if fail == "error":
                    bar.close()
                    sys.stderr.write(fake_traceback(command))
                    status, code = "error", 1
                    return code
            bar.close()
            metadata = build_metadata(ns, plan, seed, prompt, width, height, time.monotonic() - started)
            scanlines = render_rgb(width, height, seed, prompt)
            path = save_image(ns.output.format(seed=seed), width, height, scanlines, metadata, ns.metadata,
                              embed=not ns.no_metadata)  # fmt: skip
            written.append(str(path))
            sys.stderr.flush()
        status = "ok"
        return code
    finally:
        print(f"Peak MLX memory: {peak:.2f} GB")  # mflux prints it in a `finally`, after any interruption
        sys.stdout.flush()
        registered.close()
        log_event("end", **common, status=status, exit_code=code, outputs=written)
        if lock_fd is not None:
            os.close(lock_fd)


def main() -> int:
    """Entry point: dispatch on the impersonated command name."""
    command = resolve_command(sys.argv[0])
    return generate(command, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
