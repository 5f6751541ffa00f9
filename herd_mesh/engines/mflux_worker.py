"""The mflux worker process: it loads one model with mflux's Python API and keeps it between jobs.

Only this module runs inside the worker (spawned by `mflux_resident`), so the peer itself never imports mflux
or MLX. Messages on the pipe:

    parent -> worker   ("generate", ImageJob) | ("quit",)
    worker -> parent   ("loaded", name | None)               zero or more, whenever the resident model changes
                       ("image", png, load_ms, generation_ms, ignored)   or   ("error", type name, message)
"""

from __future__ import annotations

import gc
import importlib
import inspect
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..core import catalogue
from .base import ImageJob

MAX_ERROR_CHARS = 2000  # longest worker error message passed on to the user
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Loader = Callable[[str, int], Any]  # (catalogue model name, quantize bits) -> object with mflux's generate_image


def load_mflux_model(model_name: str, quantize: int) -> Any:
    """The real loader, run inside the worker: builds the catalogue's mflux class with its ModelConfig."""
    entry = catalogue.get(model_name)
    if entry is None or entry.resident is None:
        raise ValueError(f"{model_name} has no Python API entry in the catalogue, so it cannot stay resident")
    module_name, class_name, factory = entry.resident
    model_class = getattr(importlib.import_module(module_name), class_name)
    model_config_class = importlib.import_module("mflux.models.common.config").ModelConfig
    return model_class(quantize=quantize, model_config=getattr(model_config_class, factory)())


def _resolve(path: str) -> Loader:
    """Imports "module:attr" inside the worker, so the parent never imports mflux (or a test's fake)."""
    module_name, _, attr = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"loader {path} is not callable")
    return target  # type: ignore[no-any-return]


def _accepts(function: Callable[..., Any], parameter: str) -> bool:
    """mflux's models differ in keywords (ZImageTurbo has no negative_prompt), so look before passing one."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return True
    return parameter in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _png_bytes(image: Any) -> bytes:
    """mflux's GeneratedImage.save(path) never overwrites (it picks image_1.png...), hence a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="herd-mesh-mflux-") as directory:
        path = Path(directory) / "image.png"
        image.save(str(path))
        if not path.exists():
            written = sorted(Path(directory).glob("*.png"))
            if not written:
                raise RuntimeError("the model saved no image")
            path = written[0]
        data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise RuntimeError("the model saved something that is not a PNG")
    return data


def _free_memory() -> None:
    gc.collect()
    mx = sys.modules.get("mlx.core")
    if mx is None:
        return
    clear = getattr(mx, "clear_cache", None) or getattr(getattr(mx, "metal", None), "clear_cache", None)
    if callable(clear):
        clear()


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


class _Resident:
    """The worker's state: at most one model in memory, keyed by (name, quantize)."""

    def __init__(self, loader_path: str) -> None:
        self._loader_path = loader_path
        self._loader: Loader | None = None
        self._model: Any = None
        self._key: tuple[str, int] | None = None

    def handle(self, job: ImageJob, send: Callable[[tuple[Any, ...]], None]) -> None:
        try:
            reply = self._generate(job, send)
        except Exception as exc:  # every failure goes back to the parent as a message
            message = str(exc) or repr(exc)
            reply = ("error", type(exc).__name__, message[:MAX_ERROR_CHARS])
        send(reply)

    def _generate(self, job: ImageJob, send: Callable[[tuple[Any, ...]], None]) -> tuple[Any, ...]:
        load_ms = 0
        key = (job.model, job.quantize)
        if self._key != key:
            if self._model is not None:
                self._model, self._key = None, None
                _free_memory()
                send(("loaded", None))
            if self._loader is None:
                self._loader = _resolve(self._loader_path)
            started = time.perf_counter()
            self._model = self._loader(job.model, job.quantize)
            self._key = key
            load_ms = _ms_since(started)
            send(("loaded", job.model))
        kwargs: dict[str, Any] = {
            "seed": job.seed,
            "prompt": job.prompt,
            "num_inference_steps": job.steps,
            "height": job.height,
            "width": job.width,
        }
        ignored: list[str] = []
        if job.negative_prompt:
            if _accepts(self._model.generate_image, "negative_prompt"):
                kwargs["negative_prompt"] = job.negative_prompt
            else:
                ignored.append("negative_prompt")
        started = time.perf_counter()
        png = _png_bytes(self._model.generate_image(**kwargs))
        return ("image", png, load_ms, _ms_since(started), tuple(ignored))


def worker_main(conn: Connection, loader_path: str) -> None:
    """Entry point of the spawned worker: serve requests until "quit" or until the parent goes away."""
    # Ctrl-C reaches the whole process group; the parent decides when the worker ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    resident = _Resident(loader_path)
    try:
        while True:
            request = conn.recv()
            if request[0] != "generate":
                return
            resident.handle(request[1], conn.send)
    except (EOFError, OSError):  # the parent closed the pipe or died: nobody is left to serve
        return
