"""This peer's image capability: the engine behind a GPU queue, the models it has, and how fast it is.

It is a node `Service`: it adds the `image` section to the state document that other peers route on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import hfcache, image_models
from .engines.base import ImageEngine, ImageJob, ImageOutput
from .gpu_queue import GpuQueue, QueuedJob
from .scheduling import Handover, ImageWork, PeerView, load_seconds, run_seconds, steal_pick
from .settings import SettingsStore
from .speed import SpeedBook

logger = logging.getLogger(__name__)

CACHE_RESCAN_S = 30.0  # how often the Hugging Face cache is looked at again


class ImageService:
    name = "image"

    def __init__(
        self,
        *,
        node_id: str,
        engine: ImageEngine,
        settings: SettingsStore,
        speed: SpeedBook,
        speed_path: Path,
        slots: int = 1,
        hf_cache_dir: Path | None = None,
        on_change: Any = None,
    ) -> None:
        self.node_id = node_id
        self.engine = engine
        self.settings = settings
        self.speed = speed
        self.speed_path = speed_path
        self.hf_cache_dir = hf_cache_dir or hfcache.hub_cache_dir()
        self._on_change = on_change or (lambda: None)
        self.queue = GpuQueue(slots=slots, on_change=self._changed)
        self._cached: set[str] = set()
        self._cached_at = -CACHE_RESCAN_S
        self.pinned: set[str] = set()  # queued jobs that already moved once and must stay

    def _changed(self) -> None:
        self._on_change()

    # -- what we have -----------------------------------------------------------------------------------------
    def installed(self) -> set[str]:
        return self.engine.installed_models()

    def cached(self) -> set[str]:
        now = time.monotonic()
        if now - self._cached_at >= CACHE_RESCAN_S:
            self._cached = {
                name
                for name, model in image_models.MODELS.items()
                if hfcache.weights_cached(model.hf_repo, self.hf_cache_dir)
            }
            self._cached_at = now
        return self._cached

    @property
    def enabled(self) -> bool:
        return bool(self.settings.get("image_generation"))

    def state(self) -> dict[str, Any]:
        """The structural part only (no clocks ticking), so the state version moves when something happens."""
        installed, cached, loaded = self.installed(), self.cached(), self.engine.loaded_models()
        names = sorted(installed | loaded)
        return {
            "enabled": self.enabled,
            "engine": self.engine.name,
            "models": {
                name: {"installed": name in installed, "cached": name in cached, "loaded": name in loaded}
                for name in names
            },
            "queue": {
                "slots": self.queue.slots,
                "running": [_job_doc(j) for j in self.queue.running.values()],
                "waiting": [_job_doc(j) for j in self.queue.waiting],
            },
            "speed": {
                "ms_per_mp_step": {m: round(v, 1) for m, v in self.speed.ms.items()},
                "prior_ms_per_mp_step": {m: round(self.speed.prior_ms_per_mp_step(m), 1) for m in names},
                "load_s": self._load_seconds(names),
                "factor": self.speed.factor,
            },
        }

    def _load_seconds(self, names: list[str]) -> dict[str, float]:
        """Measured loads for a resident engine. The command line loads on every run, inside its measured
        speed, so it advertises no separate load (else every job would pay the load twice)."""
        if not self.engine.resident:
            return {m: 0.0 for m in names}
        return {m: round(v, 2) for m, v in self.speed.load.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "image_models": tuple(sorted(self.installed())),
            "image_loaded": tuple(sorted(self.engine.loaded_models())),
            "queue": self.queue.depth,
        }

    def view(self) -> PeerView:
        """This peer as the scheduler sees it: always fresh, never stale."""
        return view_from_state(self.node_id, "up", {"image": self.state()}, is_self=True, now=time.time())

    # -- doing the work ---------------------------------------------------------------------------------------
    async def run(self, job: ImageJob, *, entry_node: str, movable: bool = True) -> tuple[ImageOutput, int]:
        """Queue, then generate. Returns the output and the milliseconds spent waiting in the queue.

        While it waits, an idle peer may steal a `movable` job (`give_away`): then `Withdrawn` is raised here
        and the caller sends the job on. A job that moved once is not movable, so it cannot bounce.
        """
        work = ImageWork(job.model, job.width, job.height, job.steps, job.job_id)
        me = self.view()
        estimate = run_seconds(me, work) + (0.0 if job.model in me.loaded else load_seconds(me, job.model))
        queued = QueuedJob(job.job_id, job.model, job.width, job.height, job.steps, entry_node, estimate)
        if not movable:
            self.pinned.add(job.job_id)
        try:
            async with self.queue.slot(queued) as waited_s:
                output = await self.engine.generate(job)
        finally:
            self.pinned.discard(job.job_id)
        self.speed.record_run(job.model, work.megapixel_steps(), output.generation_ms)
        if output.load_ms:
            self.speed.record_load(job.model, output.load_ms / 1000)
        self._save_speed()
        self._changed()
        return output, int(waited_s * 1000)

    def give_away(self, thief_id: str, thief_image_state: dict[str, Any]) -> Handover | None:
        """An idle peer asks for work: hand over the queued job that gains most by moving, if one clearly does."""
        now = time.time()
        here = self.view()
        thief = replace(
            view_from_state(thief_id, "up", {"image": thief_image_state}, is_self=False, now=now),
            transfer_s=TRANSFER_BASE_S,
        )
        waiting = self.queue.waiting
        queue = [ImageWork(j.model, j.width, j.height, j.steps, j.job_id) for j in waiting]
        running_left = sum(
            max(0.0, j.estimate_s - (now - (j.started_at or now))) for j in self.queue.running.values()
        ) / max(1, self.queue.slots)
        handover = steal_pick(here, queue, thief, running_left_s=running_left, pinned=frozenset(self.pinned))
        if handover is None or not self.queue.withdraw(handover.job_id, to=thief_id):
            return None
        logger.info("job %s handed to idle %s: %s", handover.job_id, thief_id, handover.reason)
        return handover

    def _save_speed(self) -> None:
        try:
            self.speed_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.speed_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.speed.to_dict(), indent=2))
            os.replace(tmp, self.speed_path)
        except OSError as exc:
            logger.warning("cannot save speed measurements to %s: %s", self.speed_path, exc)

    async def start(self) -> None:
        await asyncio.to_thread(self.cached)

    async def aclose(self) -> None:
        await self.engine.aclose()


def load_speed(path: Path, chip: str, gpu_cores: int | None = None) -> SpeedBook:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    return SpeedBook.from_dict(data, chip=chip, gpu_cores=gpu_cores)


def _job_doc(job: QueuedJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "model": job.model,
        "width": job.width,
        "height": job.height,
        "steps": job.steps,
        "entry_node": job.entry_node,
        "estimate_s": round(job.estimate_s, 2),
        "enqueued_at": job.enqueued_at,
        "started_at": job.started_at,
    }


TRANSFER_BASE_S = 0.05  # one LAN round trip plus request handling
TRANSFER_S_PER_MP = 0.05  # a 1 MP PNG is ~1.5 MB: ~40 ms on gigabit Ethernet, more on Wi-Fi


def view_from_state(node_id: str, status: str, state: dict[str, Any], *, is_self: bool, now: float) -> PeerView:
    """Adapter: a peer's advertised capability document -> the scheduler's frozen PeerView.

    The remaining time of running jobs is computed here from when they started, so the document itself can
    stay free of ticking clocks. The document is another peer's JSON: a part of the wrong shape counts as
    empty, a number that is not finite and non-negative as absent, and nothing here raises.
    """
    image = _object(_object(state).get("image"))
    models = {m: s for m, s in _object(image.get("models")).items() if isinstance(s, dict)}
    queue = _object(image.get("queue"))
    speed = _object(image.get("speed"))
    backlog = 0.0
    job_ids: set[str] = set()
    for job in _jobs(queue.get("running")):
        started = _number(job.get("started_at")) or now
        backlog += max(0.0, (_number(job.get("estimate_s")) or 0.0) - max(0.0, now - started))
        job_ids.add(str(job.get("job_id")))
    for job in _jobs(queue.get("waiting")):
        backlog += _number(job.get("estimate_s")) or 0.0
        job_ids.add(str(job.get("job_id")))
    slots = queue.get("slots")
    return PeerView(
        node_id=node_id,
        status=status,
        is_self=is_self,
        accepting=image.get("enabled") is True,
        installed=frozenset(m for m, s in models.items() if s.get("installed") is True),
        cached=frozenset(m for m, s in models.items() if s.get("cached") is True),
        loaded=frozenset(m for m, s in models.items() if s.get("loaded") is True),
        ms_per_mp_step=_numbers(speed.get("ms_per_mp_step")),
        prior_ms_per_mp_step=_numbers(speed.get("prior_ms_per_mp_step")),
        load_s=_numbers(speed.get("load_s")),
        backlog_s=backlog,  # scheduling divides by slots
        job_ids=frozenset(job_ids),
        slots=slots if isinstance(slots, int) and not isinstance(slots, bool) and slots >= 1 else 1,
        transfer_s=0.0 if is_self else TRANSFER_BASE_S,
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _jobs(value: Any) -> list[dict[str, Any]]:
    return [job for job in value if isinstance(job, dict)] if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    """A finite, non-negative JSON number as a float; anything else (a string, NaN, -1, true, 1e999) is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _numbers(value: Any) -> dict[str, float]:
    return {k: n for k, v in _object(value).items() if isinstance(k, str) and (n := _number(v)) is not None}
