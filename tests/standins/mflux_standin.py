#!/usr/bin/env python3
"""Stand-in for mflux's image-generation console scripts (stdlib only).

mflux needs Apple Silicon and tens of GB of weights, so on Linux CI this script plays
``mflux-generate``, ``mflux-generate-z-image-turbo``, ``mflux-generate-z-image``,
``mflux-generate-qwen`` and ``mflux-generate-fibo``. It picks the command from
``basename(argv[0])`` (symlink install) or from ``HERD_STANDIN_COMMAND`` (wrapper install,
see ``install.py``) and reproduces what a wrapper has to cope with, as read from the
mflux 0.24.0 sources:

* the argparse flags (``allow_abbrev=False``, unknown flags exit 2 with a usage line);
* width/height rounded down to multiples of 16 (with mflux's warning);
* ``--output`` is never overwritten: ``image.png`` -> ``image_1.png`` -> ``image_2.png``;
* several seeds insert ``_seed_{seed}`` into the output name (via ``str.format``);
* a tqdm bar on stderr written the way tqdm writes to a pipe: ``\\r`` before each
  refresh and a single ``\\n`` at the end (so a line reader sees one line per image);
* ``INFO: Image saved successfully at: <path>`` on stderr (mflux logs via ``logging``);
* an interrupted run prints the reason on stdout and exits 0 without an image.

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
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

# ---------------------------------------------------------------------------------------
# Command table (subset of mflux 0.24.0's registry, enough for routing tests)
# ---------------------------------------------------------------------------------------

DEFAULT_STEPS = 25  # mflux's generic fallback (ui_defaults.DEFAULT_INFERENCE_STEPS)
QUANTIZE_CHOICES = [3, 5, 4, 6, 8]  # same order as mflux, which shows up in error messages


@dataclass(frozen=True)
class ModelEntry:
    """One built-in model: its canonical key, accepted spellings and default steps."""

    key: str
    aliases: tuple[str, ...]
    steps: int


@dataclass(frozen=True)
class CommandSpec:
    """How one console script behaves: its models and which flags it accepts."""

    name: str
    description: str
    models: tuple[ModelEntry, ...]
    default_model: str | None
    require_model: bool = False
    supports_lora: bool = True
    compute_precision: bool = False
    default_guidance: float = 3.5
    force_guidance: float | None = None  # guidance-distilled models ignore --guidance
    scale_dims: bool = True  # --width/--height default "auto" and accept "2x" (img2img reference size)
    ignored_options: dict[str, str] = field(default_factory=dict)


FLUX1 = (
    ModelEntry("dev", ("dev", "black-forest-labs/FLUX.1-dev"), 25),
    ModelEntry("schnell", ("schnell", "black-forest-labs/FLUX.1-schnell"), 4),
    ModelEntry("krea-dev", ("krea-dev", "dev-krea", "black-forest-labs/FLUX.1-Krea-dev"), 25),
)
Z_IMAGE_TURBO = (ModelEntry("z-image-turbo", ("z-image-turbo", "zimage-turbo", "Tongyi-MAI/Z-Image-Turbo"), 9),)
Z_IMAGE = (ModelEntry("z-image", ("z-image", "zimage", "Tongyi-MAI/Z-Image"), 50),)
QWEN = (ModelEntry("qwen-image", ("qwen-image", "qwen", "qwen-image-2512", "qwen-2512", "Qwen/Qwen-Image-2512"), 20),)
FIBO = (
    ModelEntry("fibo", ("fibo", "briaai/FIBO"), 50),
    ModelEntry("fibo-lite", ("fibo-lite", "fibo_lite", "briaai/Fibo-lite"), 8),
)
# Other built-in names: a restricted command rejects them instead of loading a foreign model.
OTHER_BUILTINS = (
    "flux2-klein-4b", "flux2-klein-9b", "klein-4b", "klein-9b", "flux3", "qwen-image-edit", "qwen-image-2.1",
    "fibo-edit", "fibo2", "lens-turbo", "krea-2", "ernie-image", "ernie-image-turbo", "seedvr2",
)  # fmt: skip

COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            "mflux-generate",
            "Generate an image based on a prompt.",
            FLUX1,
            default_model=None,
            require_model=True,
            ignored_options={"--negative-prompt": "FLUX.1 uses distilled guidance and has no negative branch."},
        ),
        CommandSpec(
            "mflux-generate-z-image-turbo",
            "Generate an image using Z-Image Turbo based on a prompt.",
            Z_IMAGE_TURBO,
            default_model="z-image-turbo",
            compute_precision=True,
            force_guidance=0.0,
            ignored_options={
                "--guidance": "Z-Image Turbo is guidance-distilled; guidance is forced to 0.0.",
                "--negative-prompt": "CFG is disabled on Z-Image Turbo, so the negative prompt is never encoded.",
            },
        ),
        CommandSpec(
            "mflux-generate-z-image",
            "Generate an image using Z-Image based on a prompt.",
            Z_IMAGE,
            default_model="z-image",
            compute_precision=True,
            default_guidance=0.0,
            scale_dims=False,
        ),
        CommandSpec(
            "mflux-generate-qwen",
            "Generate an image using Qwen Image based on a prompt.",
            QWEN,
            default_model="qwen-image",
        ),
        CommandSpec(
            "mflux-generate-fibo",
            "Generate an image using FIBO based on a prompt.",
            FIBO,
            default_guidance=5.0,
            default_model=None,  # mflux 0.24.0 quirk: no fallback model, so no --model means 25 steps
            supports_lora=False,  # mflux has no LoRA mapping for FIBO: --lora is an unknown flag
        ),
    )
}

# ---------------------------------------------------------------------------------------
# Argument parsing
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


def int_or_auto(value: str) -> int | float | str:
    """Width/height: an int, ``auto`` (reference size) or a scale factor like ``2x`` (float factor)."""
    if value.lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        pass
    match = re.fullmatch(r"(\d+(?:\.\d+)?)x", value.strip(), re.IGNORECASE)
    if match and float(match.group(1)) > 0:
        return float(match.group(1))
    raise argparse.ArgumentTypeError(
        f"'{value}' is not a valid integer or 'auto' or a scale factor like '2x' or '3.5x'"
    )


def build_parser(spec: CommandSpec) -> argparse.ArgumentParser:
    """Build the same flag set mflux 0.24.0 gives this command (allow_abbrev off, like mflux)."""
    p = argparse.ArgumentParser(prog=spec.name, description=spec.description, allow_abbrev=False)
    p.add_argument("--verbose", "-v", action="store_true", default=False)
    # general
    p.add_argument("--battery-percentage-stop-limit", "-B", type=int, default=5)
    p.add_argument("--low-ram", action="store_true")
    p.add_argument("--mlx-cache-limit-gb", type=positive_float, default=None)
    p.add_argument("--vae-tiling", action="store_true")
    p.add_argument("--vae-tile-size", type=int, default=None)
    # model
    p.add_argument("--model", "-m", type=str, default=None)
    p.add_argument("--base-model", type=str, default=None, metavar="MODEL")
    p.add_argument("--quantize", "-q", type=int, choices=QUANTIZE_CHOICES, default=None)
    if spec.compute_precision:
        p.add_argument("--compute-precision", type=str, choices=["bfloat16", "float16"], default=None)
    # lora
    if spec.supports_lora:
        p.add_argument("--lora", dest="lora", action="append", nargs="+", default=None, metavar=("PATH", "SCALE"))
        p.add_argument("--lora-paths", type=str, nargs="*", default=None)
        p.add_argument("--lora-scales", type=float, nargs="*", default=None)
        p.add_argument("--bake-lora", action=argparse.BooleanOptionalAction, default=True)
    # image generator
    group = p.add_mutually_exclusive_group(required=False)
    group.add_argument("--prompt", type=str)
    group.add_argument("--prompt-file", type=Path)
    p.add_argument("--negative-prompt", type=str, default="")
    p.add_argument("--seed", type=int, default=None, nargs="+")
    p.add_argument("--auto-seeds", type=int, default=-1)
    p.add_argument("--scheduler", type=str, default="linear")
    if spec.scale_dims:
        p.add_argument("--height", type=int_or_auto, default="auto")
        p.add_argument("--width", type=int_or_auto, default="auto")
    else:
        p.add_argument("--height", type=int, default=1024)
        p.add_argument("--width", type=int, default=1024)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--config-from-conf", "--config-from-metadata", "-C", dest="config_from_metadata", type=Path)
    # image to image
    p.add_argument("--image", dest="image", nargs="+", default=None, metavar=("PATH", "STRENGTH"))
    p.add_argument("--image-path", type=Path, default=None)
    p.add_argument("--image-strength", type=float, default=0.4)
    # decode / precision extras (accepted, ignored)
    if spec.name != "mflux-generate-fibo":
        p.add_argument("--pid-decode", action=argparse.BooleanOptionalAction, default=False)
        p.add_argument("--pid-degrade-sigma", type=float, default=0.0)
    if spec.compute_precision:
        p.add_argument("--float32", action=argparse.BooleanOptionalAction, default=False)
        p.add_argument("--vae-full-precision", action=argparse.BooleanOptionalAction, default=False)
    # output
    p.add_argument("--make-conf", "--metadata", dest="metadata", action="store_true")
    p.add_argument("--no-exif", "--no-metadata", dest="no_metadata", action="store_true")
    p.add_argument("--output", type=str, default="image.png")
    p.add_argument("--stepwise-image-output-dir", type=str, default=None)
    return p


def option_was_provided(argv: list[str], *names: str) -> bool:
    """Same argv scan mflux uses to decide whether to warn about an ignored option."""
    return any(tok == n or tok.startswith(n + "=") for tok in argv for n in names)


def find_model(spec: CommandSpec, name: str) -> ModelEntry | None:
    """Return the command's own model entry for a name or alias, if it is one."""
    return next((m for m in spec.models if name in m.aliases), None)


def parse_args(spec: CommandSpec, argv: list[str]) -> argparse.Namespace:
    """Parse and post-process argv the way mflux's CommandLineParser.parse_args does."""
    parser = build_parser(spec)
    ns = parser.parse_args(argv)

    # --lora PATH [SCALE] / --image PATH [STRENGTH] folding, with mflux's messages.
    if getattr(ns, "lora", None):
        paths: list[str] = []
        scales: list[float] = []
        for grp in ns.lora:
            if len(grp) > 2:
                parser.error(
                    f"--lora takes one PATH and an optional SCALE but got {len(grp)} values: {' '.join(grp)}"
                )
            try:
                scale = float(grp[1]) if len(grp) == 2 else 1.0
            except ValueError:
                parser.error(f"Invalid LoRA scale '{grp[1]}' for '{grp[0]}'.")
            paths.append(grp[0])
            scales.append(scale)
        ns.lora_paths, ns.lora_scales = paths, scales
    if ns.image:
        if len(ns.image) > 2:
            parser.error(f"--image takes one PATH and an optional STRENGTH but got {len(ns.image)} values")
        ns.image_path = Path(ns.image[0])
        if len(ns.image) == 2:
            try:
                ns.image_strength = float(ns.image[1])
            except ValueError:
                parser.error(f"Invalid image strength '{ns.image[1]}' for '{ns.image[0]}'.")

    if ns.config_from_metadata is not None:
        prior: dict[str, Any] = json.loads(ns.config_from_metadata.read_text())
        ns.model = ns.model or prior.get("model")
        ns.prompt = ns.prompt if ns.prompt is not None else prior.get("prompt")
        if ns.seed is None and prior.get("seed") is not None:
            ns.seed = [int(prior["seed"])]
        ns.steps = ns.steps if ns.steps is not None else prior.get("steps")
        if not option_was_provided(argv, "--width"):
            ns.width = prior.get("width") or ns.width
        if not option_was_provided(argv, "--height"):
            ns.height = prior.get("height") or ns.height

    if ns.model is None and spec.require_model:
        parser.error("--model / -m must be provided, or 'model' must be specified in the config file.")

    if ns.seed is None and ns.auto_seeds > 0:
        import random

        ns.seed = random.sample(range(10_000_001), ns.auto_seeds)
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
        entry = find_model(spec, ns.model or ns.base_model or spec.default_model or "")
        ns.steps = entry.steps if entry else DEFAULT_STEPS

    for lora_path in getattr(ns, "lora_paths", None) or []:
        if lora_is_missing(lora_path):
            parser.error(f"LoRA file not found: '{lora_path}'. File does not exist and is not in the LoRA library.")
    return ns


def lora_is_missing(path: str) -> bool:
    """A LoRA that is neither a local file nor shaped like a HF repo / collection (mflux errors then)."""
    if Path(path).expanduser().exists():
        return False
    if ":" in path and not path.startswith(("/", ".", "~")):
        return False  # collection format repo:filename.safetensors
    return not (re.fullmatch(r"[\w.-]+/[\w.-]+", path) and not path.endswith(".safetensors"))


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


def fake_traceback(command: str, last_line: str = OOM_MESSAGE) -> str:
    """A traceback shaped like a failure (Metal out-of-memory by default) inside mflux's denoise loop."""
    module = {
        "mflux-generate": "flux/cli/flux_generate.py",
        "mflux-generate-qwen": "qwen/cli/qwen_image_generate.py",
        "mflux-generate-fibo": "fibo/cli/fibo_generate.py",
        "mflux-generate-z-image": "z_image/cli/z_image_generate.py",
    }.get(command, "z_image/cli/z_image_turbo_generate.py")
    site = "/Users/mac/.local/share/uv/tools/mflux/lib/python3.12/site-packages/mflux"
    return (
        "Traceback (most recent call last):\n"
        f'  File "/Users/mac/.local/bin/{command}", line 10, in <module>\n'
        "    sys.exit(main())\n"
        "             ^^^^^^\n"
        f'  File "{site}/models/{module}", line 112, in main\n'
        "    image = model.generate_image(\n"
        "            ^^^^^^^^^^^^^^^^^^^^^\n"
        f'  File "{site}/models/common/latent/denoise_loop.py", line 88, in run\n'
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
# PNG writer
# ---------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC32 over type+data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def render_png(width: int, height: int, seed: int, prompt: str, text: dict[str, str] | None = None) -> bytes:
    """Render a deterministic 8-bit RGB bilinear gradient whose corner colours hash seed+prompt.

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

    rows = [b"\x00" + base_row.translate(tables[y * bands // height]) for y in range(height)]
    raw = b"".join(rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", ihdr)]
    for key, value in (text or {}).items():  # iTXt: UTF-8 text, uncompressed, no language tag
        chunks.append(_png_chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode()))
    chunks.append(_png_chunk(b"IDAT", zlib.compress(raw, 6)))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


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
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    ref = image_size(ns.image_path) if ns.image_path is not None else None

    def one(value: int | float | str, orig: int) -> int:
        if isinstance(value, int):
            return value
        if ref is None:
            return 1024
        factor = 1.0 if value == "auto" else float(value)
        return int(factor * orig - (factor * orig) % 16)

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


def check_model(spec: CommandSpec, ns: argparse.Namespace) -> str:
    """Validate --model like mflux's resolvers; return the name that ends up in metadata."""
    name = ns.model
    if name is None:
        return spec.default_model or spec.models[0].key
    entry = find_model(spec, name)
    if entry is not None:
        return entry.key
    if "/" in name or ns.base_model is not None:
        return name  # a HF repo id or local checkpoint path: accepted, loaded "from disk"
    foreign = name in OTHER_BUILTINS or any(find_model(s, name) for s in COMMANDS.values())
    reason = (
        f"'{name}' is not a model {spec.name} can run. Choose one of {[m.key for m in spec.models]}"
        if foreign
        else f"Cannot infer base_model from {name}"
    )
    raise_model_error(spec.name, reason)


def raise_model_error(command: str, reason: str) -> NoReturn:
    """Exit 1 with a ModelConfigError traceback, as mflux does for an unusable --model."""
    sys.stderr.write(
        "Traceback (most recent call last):\n"
        f'  File "/Users/mac/.local/bin/{command}", line 10, in <module>\n'
        "    sys.exit(main())\n"
        f"mflux.utils.exceptions.ModelConfigError: {reason}\n"
    )
    sys.exit(1)


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


def generate(command: str, argv: list[str]) -> int:
    """Run one mflux invocation; returns the exit code."""
    spec = COMMANDS[command]
    ns = parse_args(spec, argv)
    model = check_model(spec, ns)

    for option, reason in spec.ignored_options.items():
        if option_was_provided(argv, option):
            sys.stderr.write(f"{sys.argv[0]}:1: UserWarning: {option} is ignored; {reason}\n")
    if ns.image_path is not None and not Path(ns.image_path).exists():
        msg = f"FileNotFoundError: [Errno 2] No such file or directory: '{ns.image_path}'"
        sys.stderr.write(fake_traceback(command, msg))
        return 1
    width, height = resolve_dimensions(ns)
    if width % 16 or height % 16:
        sys.stderr.write("WARNING: Width and height should be multiples of 16. Rounding down.\n")
    width, height = 16 * (width // 16), 16 * (height // 16)
    if width <= 0 or height <= 0:
        sys.stderr.write(fake_traceback(command, "ValueError: image size must be at least 16x16"))
        return 1
    guidance = ns.guidance if ns.guidance is not None else spec.default_guidance
    if spec.force_guidance is not None:
        guidance = spec.force_guidance
    fail = os.environ.get("HERD_STANDIN_FAIL", "").strip().lower()

    lock_fd: int | None = None
    lock_path = os.environ.get("HERD_STANDIN_LOCK")
    if lock_path:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # released by the kernel when this process dies
    common = {"argv": [command, *argv], "command": command}
    log_event("start", **common, model=model, seeds=ns.seed, width=width, height=height, steps=ns.steps)
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
                time.sleep(step)
                bar.update()
                if fail == "error":
                    bar.close()
                    sys.stderr.write(fake_traceback(command))
                    status, code = "error", 1
                    return code
            bar.close()
            metadata = {
                "mflux_version": "0.24.0",
                "model": model,
                "base_model": ns.base_model,
                "seed": seed,
                "prompt": prompt,
                "negative_prompt": ns.negative_prompt,
                "steps": ns.steps,
                "guidance": guidance,
                "width": width,
                "height": height,
                "quantize": ns.quantize,
                "lora_paths": getattr(ns, "lora_paths", None),
                "lora_scales": getattr(ns, "lora_scales", None),
                "image_path": str(ns.image_path) if ns.image_path else None,
                "image_strength": ns.image_strength if ns.image_path else None,
            }
            text = None if ns.no_metadata else {"mflux": json.dumps(metadata, sort_keys=True)}
            png = render_png(width, height, seed, prompt, text)
            path = resolve_output_path(ns.output.format(seed=seed))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            written.append(str(path))
            sys.stderr.write(f"INFO: Image saved successfully at: {path}\n")
            if ns.metadata:
                path.with_suffix(".metadata.json").write_text(json.dumps(metadata, indent=4))
            sys.stderr.flush()
        peak = 8.0 + width * height / 1e6 * (4 if ns.quantize else 8)
        print(f"Peak MLX memory: {peak:.2f} GB")
        status = "ok"
        return code
    finally:
        log_event("end", **common, status=status, exit_code=code, outputs=written)
        if lock_fd is not None:
            os.close(lock_fd)


def main() -> int:
    """Entry point: dispatch on the impersonated command name."""
    command = resolve_command(sys.argv[0])
    return generate(command, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
