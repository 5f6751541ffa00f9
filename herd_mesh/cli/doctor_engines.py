"""`herd doctor`'s checks of what this machine can run: Python, mflux and its weights, the image engine, the
local models of config.toml, Ollama and Whisper.

Each check takes what it looks at as an argument (with the real thing as the default), so tests stand it in.
"""

from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..core import catalogue
from ..core.extras import install_hint
from .doctor_check import PROBE_TIMEOUT_S, Check


def check_python(version: Sequence[int] = sys.version_info[:3], executable: str = sys.executable) -> Check:
    """Is this Python new enough for herd-mesh (3.11+)? An older one cannot run a peer at all."""
    text = ".".join(str(v) for v in version[:3])
    if tuple(version[:2]) >= (3, 11):
        return Check("ok", f"Python {text} ({executable})")
    return Check(
        "fail",
        f"Python {text} is too old: herd-mesh needs 3.11 or newer",
        "install with `uv tool install herd-mesh` (uv brings its own Python)",
    )


def apple_silicon() -> bool:
    """mflux runs only on Apple Silicon Macs; elsewhere its absence is expected, not a gap."""
    return sys.platform == "darwin" and platform.machine() == "arm64"


def check_mflux(
    find: Callable[[str], str | None] | None = None, apple: bool | None = None
) -> tuple[Check, list[str]]:
    """Which image models have their mflux command here; returns the check and those models."""
    from ..engines.mflux_cli import find_command

    find = find or find_command
    apple = apple_silicon() if apple is None else apple
    found = [name for name, model in catalogue.MODELS.items() if find(model.command)]
    if found:
        return Check("ok", f"mflux commands found for {len(found)} image models: {', '.join(found)}"), found
    if not apple:
        return Check(
            "warn",
            "no mflux commands: this machine makes no images",
            "mflux runs on Apple Silicon Macs only; this peer still sends images to the Macs that have it",
        ), []
    return Check(
        "warn",
        "no mflux commands found (looked on PATH, ~/.local/bin, /opt/homebrew/bin)",
        "install them with `uv tool install mflux`; the peer notices within 30 s",
    ), []


def check_image_engine(mflux_python: str | None, found: Sequence[str]) -> Check | None:
    """Which engine makes the images: mflux kept loaded (a Python with mflux), or a process per image."""
    from ..engines.mflux_resident import find_mflux_python

    python = mflux_python or find_mflux_python()
    if python:
        return Check("ok", f"images run in a resident mflux worker ({python}): the model stays loaded between images")
    if found:
        return Check(
            "ok",
            "images run one mflux command each (the model loads for every image)",
            "to keep it loaded between images, give the peer a Python with mflux: `uv tool install mflux` does, "
            "or set mflux_python in config.toml",
        )
    return None


def check_local_models(models: Mapping[str, catalogue.ImageModel]) -> list[Check]:
    """Each `[image_models.NAME]` of config.toml: is its folder there?"""
    checks = []
    for name, model in sorted(models.items()):
        if model.path and Path(model.path).is_dir():
            checks.append(Check("ok", f"local model {name} ({model.base}) at {model.path}"))
        else:
            checks.append(Check("warn", f"local model {name}: {model.path} is not a folder, so it is not offered",
                                "fix `path` in config.toml, or mount the disk it is on"))  # fmt: skip
    return checks


def _cached(model: catalogue.ImageModel, cache_dir: Path) -> bool | None:
    """Imported late: the Hugging Face cache helpers are not needed for the other checks."""
    from ..engines.hfcache import weights_cached

    return weights_cached(model, cache_dir)


def check_weights(
    models: Sequence[str], cached: Callable[[catalogue.ImageModel], bool | None] | None = None
) -> list[Check]:
    """Are the found models' weights downloaded? Else the first image waits minutes for them."""
    if not models:
        return []
    if cached is None:
        from ..engines.hfcache import hub_cache_dir

        cache_dir = hub_cache_dir()
        cached = lambda model: _cached(model, cache_dir)  # noqa: E731
    ready: list[str] = []
    missing: list[str] = []
    for name in models:
        (ready if cached(catalogue.MODELS[name]) else missing).append(name)
    checks = []
    if ready:
        checks.append(Check("ok", f"weights downloaded for {', '.join(ready)}"))
    for name in missing:
        model = catalogue.MODELS[name]
        command = " ".join([model.command, *model.extra_args])
        checks.append(
            Check(
                "warn",
                f"weights for {name} are not downloaded: its first image will fetch them "
                f"(~{model.weights_bf16_gb:g} GB) and take minutes",
                f"fetch them now: `{command} --prompt test --steps 1 --output /tmp/herd-warmup.png`",
            )
        )
    return checks


def check_ollama(url: str, get: Callable[[str], httpx.Response] | None = None) -> Check:
    """Does Ollama answer at `url`? Without it this peer serves no LLM chat or embeddings."""
    get = get or (lambda u: httpx.get(u, timeout=PROBE_TIMEOUT_S, trust_env=False))
    try:
        response = get(url.rstrip("/") + "/api/version")
        version = response.json().get("version") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        version = None
    if version:
        return Check("ok", f"Ollama {version} answers at {url}")
    return Check(
        "warn",
        f"Ollama does not answer at {url}: this machine serves no LLM chat or embeddings",
        "start it (`ollama serve`, or open the Ollama app) or point at it with --ollama-url / OLLAMA_HOST; "
        "LLM requests go to other peers meanwhile",
    )


def check_whisper(configured: str | None, choose: Callable[[str | None], Any] | None = None) -> Check:
    """Is there a Whisper engine with a model? Without one this peer transcribes no speech."""
    if choose is None:
        from ..engines.whisper import choose_engine

        choose = choose_engine
    logging.getLogger("herd_mesh.engines.whisper").setLevel(logging.WARNING)
    engine = choose(configured)
    if engine is None:
        return Check(
            "warn",
            "no Whisper engine: this machine transcribes no speech",
            f"{install_hint('stt')}; other peers serve it meanwhile",
        )
    models = ", ".join(engine.models()) or "none"
    if models == "none":
        return Check(
            "warn", f"Whisper engine {engine.name} has no model configured", "set whisper_model in config.toml"
        )
    return Check("ok", f"Whisper engine {engine.name} with {models}")
