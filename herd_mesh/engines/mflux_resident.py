"""Keeps one mflux model loaded in a worker process between requests, so "the peer with the model loaded" answers
without a reload, and ends the worker after an idle keep-alive to give the memory back to LLMs.

The worker (`mflux_worker`, a standard-library script) runs under the Python that has mflux: the peer's own,
or another environment's (`uv tool install mflux` puts mflux in its own; `find_mflux_python` looks there).
Parent and worker talk over a socket pair, one request at a time. The worker is a separate process because
mflux cannot be interrupted mid-generation: cancelling a job ends the process, and ending the process is also
the only sure way to free everything MLX holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio

from ..core import catalogue
from ..core.catalogue import ImageModel
from ..errors import ConfigError, EngineError
from . import mflux_worker
from .base import Download, ImageJob, ImageOutput, Progress
from .messages import tidy_text

logger = logging.getLogger(__name__)

DEFAULT_KEEP_ALIVE_S = 300.0  # seconds without a job before the worker, and the model with it, goes away
DEFAULT_LOADER = mflux_worker.DEFAULT_LOADER
QUIT_GRACE_S = 2.0  # seconds an idle worker gets to exit on "quit" before SIGTERM
TERM_GRACE_S = 2.0  # seconds after SIGTERM before SIGKILL
KILL_WAIT_S = 5.0  # seconds to wait for a SIGKILLed worker before giving up on reaping it
EXIT_POLL_S = 0.01  # seconds between checks while waiting for the worker to exit
WORKER_SCRIPT = Path(mflux_worker.__file__).resolve()
TOOL_PYTHONS = (  # under $HOME: where `uv tool install mflux` and `pipx install mflux` put mflux's own Python
    ".local/share/uv/tools/mflux/bin/python",
    ".local/pipx/venvs/mflux/bin/python",
)


def available() -> bool:
    """True when mflux is importable here; found without importing it, since importing mflux loads MLX."""
    try:
        return importlib.util.find_spec("mflux") is not None
    except (ImportError, ValueError):
        return False


def find_mflux_python(env: Mapping[str, str] | None = None) -> str | None:
    """The Python to run the worker with: this one when it has mflux, else a tool environment's that does."""
    env = os.environ if env is None else env
    if available():
        return sys.executable
    home = Path(env.get("HOME") or Path.home())
    tool_dir = env.get("UV_TOOL_DIR")
    candidates = ([Path(tool_dir) / "mflux/bin/python"] if tool_dir else []) + [home / p for p in TOOL_PYTHONS]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def model_spec(model: ImageModel) -> dict[str, Any]:
    """What the worker needs to load a model: plain data, since it may run under another Python."""
    return {"name": model.name, "api": model.resident, "path": model.path, "base_model": model.base_model}


def job_spec(job: ImageJob, model: ImageModel) -> dict[str, Any]:
    steps = job.steps if job.steps is not None else model.default_steps
    return {"job_id": job.job_id, "prompt": job.prompt, "width": job.width, "height": job.height, "steps": steps,
            "quantize": job.quantize, "seed": job.seed, "guidance": job.guidance,
            "negative_prompt": job.negative_prompt}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection

    def alive(self) -> bool:
        return self.process.poll() is None


def _exit_message(exitcode: int | None) -> str:
    if exitcode is None:
        return "mflux worker stopped answering and could not be reaped"
    message = f"mflux worker exited with code {exitcode}"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            message += f" (killed by {signal.Signals(-exitcode).name})"
    return message


async def _wait_exit(worker: _Worker, timeout_s: float) -> bool:
    """Polls rather than blocking a thread on wait(); True once the process has exited and been reaped."""
    deadline = time.monotonic() + timeout_s
    while worker.alive():
        if time.monotonic() >= deadline:
            return False
        await anyio.sleep(EXIT_POLL_S)
    return True


def _worker_env(python: str) -> dict[str, str]:
    """The peer's own import path when the worker runs the peer's Python (a custom loader lives there)."""
    env = dict(os.environ)
    if Path(python).resolve() == Path(sys.executable).resolve():
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)
    return env


class ResidentMfluxEngine:
    """An ImageEngine that keeps the last used mflux model loaded in one worker process.

    One model at a time (memory): a job for another model or quantize level unloads and loads in the same
    worker. After `keep_alive_s` without a job the worker ends. `on_change` is called whenever the set of loaded
    models changes, so the peer can re-advertise. Runs on asyncio (the keep-alive timer uses the running loop).
    """

    name = "mflux-resident"
    resident = True

    def __init__(
        self,
        *,
        keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
        loader: str = DEFAULT_LOADER,
        models: Mapping[str, ImageModel] | None = None,
        python: str | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not keep_alive_s >= 0:
            raise ConfigError(f"keep_alive_s must be >= 0 seconds, not {keep_alive_s!r}")
        if ":" not in loader:
            raise ConfigError(f"loader must be 'module:function', not {loader!r}")
        known = catalogue.MODELS if models is None else models
        self._keep_alive_s = keep_alive_s
        self._loader = loader
        self._python = python or sys.executable
        # served: the models whose mflux class is wired for the Python API (a local model inherits its base's)
        self._models = {name: model for name, model in known.items() if model.resident is not None}
        self._on_change = on_change
        self._lock = asyncio.Lock()
        self._worker: _Worker | None = None
        self._loaded: str | None = None
        self._jobs_started = 0  # lets a late idle timer see that a job came in after it was armed
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- ImageEngine --------------------------------------------------------------------------------------------

    def installed_models(self) -> set[str]:
        return set(self._models)

    @property
    def keep_alive_s(self) -> float:
        return self._keep_alive_s

    def set_keep_alive(self, seconds: float) -> None:
        """A changed `image_keep_alive_s` setting applies at once: an idle worker's timer is re-armed."""
        if math.isnan(seconds) or seconds < 0:
            raise ConfigError(f"keep_alive_s must be >= 0 seconds, got {seconds}")
        self._keep_alive_s = float(seconds)
        if self._idle_handle is not None:
            self._disarm_idle()
            self._arm_idle()

    def loaded_models(self) -> set[str]:
        return {self._loaded} if self._loaded is not None else set()

    async def generate(
        self, job: ImageJob, progress: Progress | None = None, downloading: Download | None = None
    ) -> ImageOutput:
        if self._closed:
            raise EngineError("the resident mflux engine is closed")
        model = self._models.get(job.model)
        if model is None:
            raise EngineError(f"{job.model} is not served by the resident mflux engine")
        async with self._lock:
            self._jobs_started += 1
            self._disarm_idle()
            try:
                return await self._run(job, model, progress)
            finally:
                self._arm_idle()

    async def aclose(self) -> None:
        self._closed = True
        self._disarm_idle()
        worker = self._worker
        if worker is not None:
            with anyio.CancelScope(shield=True):
                await self._stop_worker(worker, graceful=not self._lock.locked())
        task, self._idle_task = self._idle_task, None
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task

    # -- extras -------------------------------------------------------------------------------------------------

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while one runs (for the dashboard and tests)."""
        return self._worker.process.pid if self._worker is not None else None

    @property
    def python(self) -> str:
        """The Python the worker runs under."""
        return self._python

    # -- internals ----------------------------------------------------------------------------------------------

    async def _run(self, job: ImageJob, model: ImageModel, progress: Progress | None) -> ImageOutput:
        worker = await self._ensure_worker()
        try:
            with contextlib.suppress(OSError):  # died since the liveness check: _receive reports how
                worker.conn.send(("generate", job_spec(job, model), model_spec(model)))
            while True:
                message = await self._receive(worker)
                kind = message[0]
                if kind == "loaded":
                    self._set_loaded(message[1])
                elif kind == "step":
                    if progress is not None:
                        progress(int(message[1]), int(message[2]))
                elif kind == "image":
                    _, png, load_ms, generation_ms, ignored, peak_gb = message
                    if ignored:
                        logger.info("%s: %s ignored %s (the model does not take it)", job.job_id, job.model, ignored)
                    logger.info(
                        "%s: %s %dx%d, %s steps in %d ms (load %d ms)",
                        job.job_id, job.model, job.width, job.height, job.steps, generation_ms, load_ms,
                    )  # fmt: skip
                    return ImageOutput(png=png, generation_ms=generation_ms, load_ms=load_ms, peak_gb=peak_gb)
                elif kind == "error":
                    raise EngineError(f"mflux {job.model}: {message[1]}: {tidy_text(message[2])}")
                else:
                    await self._stop_worker(worker, graceful=False)
                    raise EngineError(f"mflux worker sent an unexpected message: {kind!r}")
        except EngineError:
            raise
        except BaseException as exc:
            # Cancelled (or broken): mflux cannot be interrupted, so the worker goes, and its model with it.
            logger.info("%s: stopping the mflux worker (%s)", job.job_id, type(exc).__name__)
            with anyio.CancelScope(shield=True):
                await self._stop_worker(worker, graceful=False)
            raise

    async def _ensure_worker(self) -> _Worker:
        worker = self._worker
        if worker is not None and worker.alive():
            return worker
        if worker is not None:
            logger.warning("%s while idle; starting a new one", _exit_message(worker.process.returncode))
            await self._stop_worker(worker, graceful=False)
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [self._python, "-P", str(WORKER_SCRIPT), str(theirs.fileno()), self._loader],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=_worker_env(self._python),
            )
        except OSError as exc:
            ours.close()
            raise EngineError(f"cannot start the mflux worker with {self._python}: {exc}") from exc
        finally:
            theirs.close()  # only the worker holds its end, so its death reads as EOF here
        logger.info("started mflux worker pid %s (%s)", process.pid, self._python)
        self._worker = _Worker(process, Connection(ours.detach()))
        return self._worker

    async def _receive(self, worker: _Worker) -> tuple[Any, ...]:
        """Waits on the pipe without a thread, so cancellation is immediate and the pipe has one reader."""
        try:
            while not worker.conn.poll():
                await anyio.wait_readable(worker.conn.fileno())
            message: tuple[Any, ...] = worker.conn.recv()
            return message
        except (EOFError, OSError, anyio.ClosedResourceError):
            exitcode = await self._stop_worker(worker, graceful=False)
            if self._closed:
                raise EngineError("the resident mflux engine was closed during the job") from None
            logger.warning(_exit_message(exitcode))
            raise EngineError(_exit_message(exitcode)) from None

    async def _stop_worker(self, worker: _Worker, *, graceful: bool) -> int | None:
        """Ends the worker: "quit" if idle and graceful, then SIGTERM, then SIGKILL. Safe to call twice."""
        self._set_loaded(None)  # say so first, so the peer stops advertising a model that is going away
        process = worker.process
        if graceful and worker.alive():
            with contextlib.suppress(OSError):
                worker.conn.send(("quit",))
            await _wait_exit(worker, QUIT_GRACE_S)
        if worker.alive():
            process.terminate()
            if not await _wait_exit(worker, TERM_GRACE_S):
                process.kill()
                if not await _wait_exit(worker, KILL_WAIT_S):
                    logger.error("mflux worker pid %s did not exit after SIGKILL", process.pid)
        if not worker.conn.closed:
            anyio.notify_closing(worker.conn.fileno())  # wakes a job waiting on the pipe instead of stranding it
            worker.conn.close()
        if self._worker is worker:
            self._worker = None
        return process.returncode

    def _set_loaded(self, model: str | None) -> None:
        if model == self._loaded:
            return
        if model is None:
            logger.info("mflux model %s unloaded", self._loaded)
        else:
            logger.info("mflux model %s loaded", model)
        self._loaded = model
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                logger.exception("on_change callback failed")

    def _arm_idle(self) -> None:
        if self._worker is None or self._closed or math.isinf(self._keep_alive_s):
            return
        loop = asyncio.get_running_loop()
        self._idle_handle = loop.call_later(self._keep_alive_s, self._on_idle, self._jobs_started)

    def _disarm_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _on_idle(self, jobs_started: int) -> None:
        self._idle_handle = None
        self._idle_task = asyncio.get_running_loop().create_task(self._unload_if_idle(jobs_started))

    async def _unload_if_idle(self, jobs_started: int) -> None:
        try:
            async with self._lock:
                worker = self._worker
                if worker is None or jobs_started != self._jobs_started:
                    return  # a job came in after the timer was armed; it re-arms the timer when done
                logger.info("mflux worker idle for %.0f s; ending it to free memory", self._keep_alive_s)
                await self._stop_worker(worker, graceful=True)
        except Exception:
            logger.exception("stopping the idle mflux worker failed")
