"""Keeps one mflux model loaded in a worker process between requests, so "the peer with the model loaded" answers
without a reload, and ends the worker after an idle keep-alive to give the memory back to LLMs.

Parent and worker talk over a `multiprocessing` pipe, one request at a time (the messages: `mflux_worker`).
The worker is a separate process because mflux cannot be interrupted mid-generation: cancelling a job ends the
process, and ending the process is also the only sure way to free everything MLX holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import math
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import anyio

from ..core import catalogue
from ..errors import ConfigError, EngineError
from .base import Download, ImageJob, ImageOutput, Progress
from .messages import tidy_text
from .mflux_worker import worker_main

logger = logging.getLogger(__name__)

DEFAULT_KEEP_ALIVE_S = 300.0  # seconds without a job before the worker, and the model with it, goes away
DEFAULT_LOADER = "herd_mesh.engines.mflux_worker:load_mflux_model"
QUIT_GRACE_S = 2.0  # seconds an idle worker gets to exit on "quit" before SIGTERM
TERM_GRACE_S = 2.0  # seconds after SIGTERM before SIGKILL
KILL_WAIT_S = 5.0  # seconds to wait for a SIGKILLed worker before giving up on reaping it
EXIT_POLL_S = 0.01  # seconds between checks while waiting for the worker to exit


def available() -> bool:
    """True when mflux is importable here; found without importing it, since importing mflux loads MLX."""
    try:
        return importlib.util.find_spec("mflux") is not None
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection


def _exit_message(exitcode: int | None) -> str:
    if exitcode is None:
        return "mflux worker stopped answering and could not be reaped"
    message = f"mflux worker exited with code {exitcode}"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            message += f" (killed by {signal.Signals(-exitcode).name})"
    return message


async def _wait_exit(process: BaseProcess, timeout_s: float) -> bool:
    """Polls rather than blocking a thread on join(); True once the process has exited and been reaped."""
    deadline = time.monotonic() + timeout_s
    while process.is_alive():
        if time.monotonic() >= deadline:
            return False
        await anyio.sleep(EXIT_POLL_S)
    return True


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
        models: Iterable[str] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not keep_alive_s >= 0:
            raise ConfigError(f"keep_alive_s must be >= 0 seconds, not {keep_alive_s!r}")
        if ":" not in loader:
            raise ConfigError(f"loader must be 'module:function', not {loader!r}")
        if models is None:
            served = frozenset(name for name, model in catalogue.MODELS.items() if model.resident is not None)
        else:
            served = frozenset(models)
        unknown = sorted(name for name in served if name not in catalogue.MODELS)
        if unknown:
            raise ConfigError(f"unknown image models: {', '.join(unknown)}")
        if loader == DEFAULT_LOADER:
            not_resident = sorted(name for name in served if catalogue.MODELS[name].resident is None)
            if not_resident:
                raise ConfigError(f"mflux's Python API is not wired for: {', '.join(not_resident)}")
        self._keep_alive_s = keep_alive_s
        self._loader = loader
        self._models = served
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
        if job.model not in self._models:
            raise EngineError(f"{job.model} is not served by the resident mflux engine")
        async with self._lock:
            self._jobs_started += 1
            self._disarm_idle()
            try:
                return await self._run(job)
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

    # -- internals ----------------------------------------------------------------------------------------------

    async def _run(self, job: ImageJob) -> ImageOutput:
        worker = await self._ensure_worker()
        try:
            with contextlib.suppress(OSError):  # died since the liveness check: _receive reports how
                worker.conn.send(("generate", job))
            while True:
                message = await self._receive(worker)
                kind = message[0]
                if kind == "loaded":
                    self._set_loaded(message[1])
                elif kind == "image":
                    _, png, load_ms, generation_ms, ignored = message
                    if ignored:
                        logger.info("%s: %s ignored %s (the model does not take it)", job.job_id, job.model, ignored)
                    logger.info(
                        "%s: %s %dx%d, %d steps in %d ms (load %d ms)",
                        job.job_id, job.model, job.width, job.height, job.steps, generation_ms, load_ms,
                    )  # fmt: skip
                    return ImageOutput(png=png, generation_ms=generation_ms, load_ms=load_ms)
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
        if worker is not None and worker.process.is_alive():
            return worker
        if worker is not None:
            logger.warning("%s while idle; starting a new one", _exit_message(worker.process.exitcode))
            await self._stop_worker(worker, graceful=False)
        context = multiprocessing.get_context("spawn")  # no fork: safe with the event loop's threads
        parent_conn, child_conn = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main, args=(child_conn, self._loader), name="herd-mesh-mflux", daemon=True
        )
        process.start()
        child_conn.close()  # only the worker holds its end, so its death reads as EOF here
        logger.info("started mflux worker pid %s", process.pid)
        self._worker = _Worker(process, parent_conn)
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
        if graceful and process.is_alive():
            with contextlib.suppress(OSError):
                worker.conn.send(("quit",))
            await _wait_exit(process, QUIT_GRACE_S)
        if process.is_alive():
            process.terminate()
            if not await _wait_exit(process, TERM_GRACE_S):
                process.kill()
                if not await _wait_exit(process, KILL_WAIT_S):
                    logger.error("mflux worker pid %s did not exit after SIGKILL", process.pid)
        if not worker.conn.closed:
            anyio.notify_closing(worker.conn.fileno())  # wakes a job waiting on the pipe instead of stranding it
            worker.conn.close()
        if self._worker is worker:
            self._worker = None
        return process.exitcode

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
