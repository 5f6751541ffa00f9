"""A stand-in for an mflux model, loaded inside the resident engine's worker process (mflux cannot run here).

It has mflux's shape: `generate_image(seed=, prompt=, num_inference_steps=, height=, width=, guidance=,
negative_prompt=)` returns an object whose `.save(path)` writes a real PNG, and `model.callbacks.register(obj)`
makes it call `obj.call_in_loop(t, ...)` after each step, as mflux's callback registry does. Because it runs in
another process, it is steered by environment variables and reports through a JSON-lines file that the tests
read back. A loader gets the model as the worker does: a dict with "name", "api", "path" and "base_model".
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

LOAD_S_ENV = "FAKE_MFLUX_LOAD_S"  # seconds a load takes (default 0.2)
STEP_S_ENV = "FAKE_MFLUX_STEP_S"  # seconds per denoising step (default 0.01)
LOG_ENV = "FAKE_MFLUX_LOG"  # file that gets one JSON line per load and per generation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _record(event: str, **fields: Any) -> None:
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n")


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The events the worker recorded, oldest first."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def png_bytes(width: int, height: int, seed: int, prompt: str) -> bytes:
    """A deterministic RGB PNG (a gradient tinted by seed and prompt), written with zlib and struct only."""
    r, g, b = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()[:3]
    rows = (
        b"\x00" + bytes(c for x in range(width) for c in ((r + x) & 255, (g + y) & 255, b))  # filter 0, then RGB
        for y in range(height)
    )
    raw = b"".join(rows)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class FakeImage:
    """Like mflux's GeneratedImage: `save(path)` writes the PNG."""

    def __init__(self, width: int, height: int, seed: int, prompt: str) -> None:
        self.width, self.height, self.seed, self.prompt = width, height, seed, prompt

    def save(self, path: str | Path, export_json_metadata: bool = False, overwrite: bool = False) -> None:
        Path(path).write_bytes(png_bytes(self.width, self.height, self.seed, self.prompt))


class CallbackRegistry:
    """mflux's `callbacks`: objects registered once (there is no unregister), their hooks found by name."""

    def __init__(self) -> None:
        self.in_loop: list[Any] = []

    def register(self, callback: Any) -> None:
        if hasattr(callback, "call_in_loop"):
            self.in_loop.append(callback)


class _Bar:
    """The tqdm bar mflux passes as `time_steps`: `.n` is still t during the callback, `.total` the steps."""

    def __init__(self, total: int) -> None:
        self.n, self.total = 0, total


class FakeModel:
    """Like mflux's Flux1: takes guidance and a negative prompt (Python's guidance default is 4.0, not 3.5)."""

    def __init__(self, model: dict[str, Any], quantize: int) -> None:
        self.model_name, self.quantize, self.path = model["name"], quantize, model.get("path")
        self.callbacks = CallbackRegistry()

    def generate_image(
        self,
        seed: int,
        prompt: str,
        num_inference_steps: int = 4,
        height: int = 1024,
        width: int = 1024,
        guidance: float = 4.0,
        negative_prompt: str | None = None,
    ) -> FakeImage:
        return self._run(seed, prompt, num_inference_steps, height, width, guidance, negative_prompt)

    def _run(self, seed: int, prompt: str, steps: int, height: int, width: int, guidance: float | None,
             negative_prompt: str | None) -> FakeImage:  # fmt: skip
        _record("generate", model=self.model_name, path=self.path, seed=seed, steps=steps, guidance=guidance,
                negative_prompt=negative_prompt)  # fmt: skip
        bar = _Bar(steps)
        for t in range(steps):
            time.sleep(float(os.environ.get(STEP_S_ENV, "0.01")))
            for callback in self.callbacks.in_loop:
                callback.call_in_loop(t=t, seed=seed, prompt=prompt, latents=None, config=None, time_steps=bar)
            bar.n = t + 1
        return FakeImage(width, height, seed, prompt)


class FakeTurboModel(FakeModel):
    """Like mflux's Flux2Klein: no negative_prompt keyword at all."""

    def generate_image(  # type: ignore[override]
        self,
        seed: int,
        prompt: str,
        num_inference_steps: int = 4,
        height: int = 1024,
        width: int = 1024,
        guidance: float = 1.0,
    ) -> FakeImage:
        return self._run(seed, prompt, num_inference_steps, height, width, guidance, None)


class RaisingModel(FakeModel):
    def generate_image(self, *args: Any, **kwargs: Any) -> FakeImage:
        raise ValueError("fake: height must be a multiple of 16")


def _load(model: dict[str, Any], quantize: int) -> None:
    _record("load", model=model["name"], path=model.get("path"), quantize=quantize)
    time.sleep(float(os.environ.get(LOAD_S_ENV, "0.2")))


def load(model: dict[str, Any], quantize: int) -> FakeModel:
    _load(model, quantize)
    return FakeModel(model, quantize)


def load_turbo(model: dict[str, Any], quantize: int) -> FakeTurboModel:
    _load(model, quantize)
    return FakeTurboModel(model, quantize)


def load_raising(model: dict[str, Any], quantize: int) -> RaisingModel:
    _load(model, quantize)
    return RaisingModel(model, quantize)


def load_failing(model: dict[str, Any], quantize: int) -> FakeModel:
    _record("load", model=model["name"], quantize=quantize)
    raise RuntimeError(f"fake: no weights for {model['name']}")
