"""The mflux worker process: it loads one model with mflux's Python API and keeps it between jobs.

It runs as a script (`python -P mflux_worker.py FD LOADER`) under whichever Python has mflux, which need not be
the peer's own: with `uv tool install mflux`, mflux lives in its own environment. So this file imports only the
standard library and talks in plain tuples, dicts and bytes over the socket it is handed (file descriptor FD).

    parent -> worker   ("generate", job, model) | ("quit",)       job, model: dicts (see `mflux_resident`)
    worker -> parent   ("loaded", name | None)                    whenever the resident model changes
                       ("step", done, total)                      after each denoising step
                       ("image", png, load_ms, generation_ms, ignored, peak_gb)   or   ("error", type, message)
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

MAX_ERROR_CHARS = 2000  # longest worker error message passed on to the user
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_LOADER = "herd_mesh.engines.mflux_worker:load_mflux_model"

Send = Callable[[tuple[Any, ...]], None]
Loader = Callable[[dict[str, Any], int], Any]  # (model spec, quantize bits) -> object with mflux's generate_image


def load_mflux_model(model: dict[str, Any], quantize: int) -> Any:
    """The real loader: the catalogue's mflux class with its ModelConfig, or a model saved at `path`.

    mflux's own metadata is switched off (herd-mesh writes its own, without local paths). A local model loads
    the way mflux's command line loads `--model PATH --base-model NAME`: FLUX.1 names the path in its config,
    the others keep their registry config and take `model_path`.
    """
    module_name, class_name, factory = model["api"]
    model_class = getattr(importlib.import_module(module_name), class_name)
    model_config = importlib.import_module("mflux.models.common.config").ModelConfig
    importlib.import_module("mflux.utils.image_util").ImageUtil.embed_metadata_enabled = False
    path = model.get("path")
    if path and class_name == "Flux1":
        config = model_config.from_name(model_name=path, base_model=model["base_model"])
    else:
        config = getattr(model_config, factory)()
    options: dict[str, Any] = {"quantize": quantize, "model_config": config}
    if path:
        options["model_path"] = path
    return model_class(**options)


def _resolve(path: str) -> Loader:
    """Imports "module:attr" here, so the peer never imports mflux (or a test's fake)."""
    if path == DEFAULT_LOADER:
        return load_mflux_model
    module_name, _, attr = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"loader {path} is not callable")
    return target  # type: ignore[no-any-return]


def _accepts(function: Callable[..., Any], parameter: str) -> bool:
    """mflux's models differ in keywords (Flux2Klein has no negative_prompt), so look before passing one."""
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


def _mlx() -> Any:
    return sys.modules.get("mlx.core")


def _free_memory() -> None:
    gc.collect()
    mx = _mlx()
    clear = getattr(mx, "clear_cache", None) or getattr(getattr(mx, "metal", None), "clear_cache", None)
    if callable(clear):
        clear()


def _reset_peak() -> None:
    reset = getattr(_mlx(), "reset_peak_memory", None)
    if callable(reset):
        reset()


def _peak_gb() -> float | None:
    """MLX's peak since the last reset, as mflux prints it (`Peak MLX memory: X GB`)."""
    peak = getattr(_mlx(), "get_peak_memory", None)
    return round(peak() / 1e9, 2) if callable(peak) else None


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


class _Steps:
    """A callback in mflux's registry (duck-typed: it calls `call_in_loop` once per step, `t` from 0)."""

    def __init__(self) -> None:
        self.send: Send | None = None

    def call_in_loop(self, t: int, seed: int, prompt: str, latents: Any, config: Any, time_steps: Any) -> None:
        total = getattr(time_steps, "total", None) or getattr(config, "num_inference_steps", None) or 0
        if self.send is not None:
            self.send(("step", int(t) + 1, int(total)))


class _Resident:
    """The worker's state: at most one model in memory, keyed by (name, quantize)."""

    def __init__(self, loader_path: str) -> None:
        self._loader_path = loader_path
        self._loader: Loader | None = None
        self._model: Any = None
        self._key: tuple[str, int] | None = None
        self._steps = _Steps()

    def handle(self, job: dict[str, Any], model: dict[str, Any], send: Send) -> None:
        self._steps.send = send
        try:
            reply = self._generate(job, model, send)
        except Exception as exc:  # every failure goes back to the parent as a message
            message = str(exc) or repr(exc)
            reply = ("error", type(exc).__name__, message[:MAX_ERROR_CHARS])
        finally:
            self._steps.send = None
        send(reply)

    def _load(self, model: dict[str, Any], quantize: int, send: Send) -> int:
        if self._model is not None:
            self._model, self._key = None, None
            _free_memory()
            send(("loaded", None))
        if self._loader is None:
            self._loader = _resolve(self._loader_path)
        started = time.perf_counter()
        self._model = self._loader(model, quantize)
        self._key = (model["name"], quantize)
        register = getattr(getattr(self._model, "callbacks", None), "register", None)
        if callable(register):
            register(self._steps)
        send(("loaded", model["name"]))
        return _ms_since(started)

    def _generate(self, job: dict[str, Any], model: dict[str, Any], send: Send) -> tuple[Any, ...]:
        load_ms = 0
        if self._key != (model["name"], job["quantize"]):
            load_ms = self._load(model, job["quantize"], send)
        generate = self._model.generate_image
        kwargs: dict[str, Any] = {
            "seed": job["seed"],
            "prompt": job["prompt"],
            "num_inference_steps": job["steps"],
            "height": job["height"],
            "width": job["width"],
        }
        ignored: list[str] = []
        for field in ("guidance", "negative_prompt"):
            if job.get(field) in (None, ""):
                continue
            if _accepts(generate, field):
                kwargs[field] = job[field]
            else:
                ignored.append(field)
        _reset_peak()
        started = time.perf_counter()
        png = _png_bytes(generate(**kwargs))
        return ("image", png, load_ms, _ms_since(started), tuple(ignored), _peak_gb())


def serve(conn: Connection, loader_path: str) -> None:
    """Serve requests until "quit" or until the parent goes away."""
    resident = _Resident(loader_path)
    try:
        while True:
            request = conn.recv()
            if request[0] != "generate":
                return
            resident.handle(request[1], request[2], conn.send)
    except (EOFError, OSError):  # the parent closed the socket or died: nobody is left to serve
        return


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    if len(argv) != 3:
        sys.stderr.write("usage: mflux_worker.py FD LOADER\n")
        return 2
    serve(Connection(int(argv[1])), argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
