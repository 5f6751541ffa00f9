"""This peer's image capability: the engine behind a GPU queue, the models it has, and how fast it is.

It is a node service: it adds the `image` section to the state document that other peers route on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core import catalogue
from ..core.catalogue import ImageModel
from ..core.image_request import ImageJob, settle
from ..core.memory import need_gb, shortfall
from ..core.ranking import load_seconds, run_seconds
from ..core.speed import SpeedBook
from ..core.stealing import steal_pick
from ..core.views import TRANSFER_BASE_S, image_view
from ..core.work import Handover, PeerView, Work
from ..engines import hfcache, png_metadata
from ..engines.base import ImageEngine, ImageOutput
from ..errors import PeerRefused, Reason
from ..storage.settings_store import SettingsStore
from ..storage.speed_file import SpeedFile
from .gpu_queue import GpuQueue, QueuedJob

logger = logging.getLogger(__name__)

CACHE_RESCAN_S = 30.0  # how often the Hugging Face cache is looked at again
MAX_WAITING_JOBS = 32  # jobs that may wait in this peer's queue; more are refused ("overloaded")


@dataclass(frozen=True)
class Generated:
    """One finished job: the PNG (with herd-mesh's metadata), the job as it ran (the model's defaults applied)
    and the fields the model ignored."""

    output: ImageOutput
    queue_ms: int
    job: ImageJob
    ignored: tuple[str, ...] = ()


class ImageService:
    name = "image"

    def __init__(
        self,
        *,
        node_id: str,
        engine: ImageEngine,
        settings: SettingsStore,
        speed: SpeedBook,
        speed_file: SpeedFile | None,
        on_change: Callable[[], None],
        other_work: Callable[[], int] = lambda: 0,
        max_memory_gb: float | None = None,
        slots: int = 1,
        hf_cache_dir: Path | None = None,
        models: Mapping[str, ImageModel] | None = None,
    ) -> None:
        self.node_id = node_id
        self.models = dict(models) if models is not None else dict(catalogue.MODELS)  # the catalogue + local ones
        self.engine = engine
        self.settings = settings
        self.speed = speed
        self._speed_file = speed_file
        self.hf_cache_dir = hf_cache_dir or hfcache.hub_cache_dir()
        self._on_change = on_change
        self._other_work = other_work  # requests of other kinds running on this machine now (LLM, STT)
        self.max_memory_gb = max_memory_gb
        self.queue = GpuQueue(slots=slots, on_change=on_change)
        self._weights: dict[str, bool | None] = {}  # model -> on disk (True), missing (False), unknown (None)
        self._downloading: dict[str, list[int]] = {}  # model -> [files done, files] while its weights download
        self._scanned_at = -CACHE_RESCAN_S

    # -- what we have -----------------------------------------------------------------------------------------
    def installed(self) -> set[str]:
        return self.engine.installed_models()

    def weights(self) -> dict[str, bool | None]:
        """Per model: weights on disk (True), missing (False) or unknown (None). Evidence first: a model that
        generated here is on disk; else mflux's own rule on the Hugging Face cache (rescanned every 30 s)."""
        now = time.monotonic()
        if now - self._scanned_at >= CACHE_RESCAN_S:
            pins = hfcache.installed_pins() or catalogue.PINS
            self._weights = {
                name: Path(model.path).is_dir()
                if model.path
                else hfcache.weights_cached(model, self.hf_cache_dir, pins)
                for name, model in self.models.items()
            }
            self._scanned_at = now
        return {**self._weights, **{model: True for model, runs in self.speed.runs.items() if runs > 0}}

    def cached(self) -> set[str]:
        return {model for model, on_disk in self.weights().items() if on_disk}

    def held_gb(self) -> float:
        """Memory herd-mesh's image engine holds now: a running job's, else the resident model's."""
        running = list(self.queue.running.values())
        if running:
            return sum(need_gb(replace(job.work, model=self.figures(job.work.model))) for job in running)
        loaded = self.engine.loaded_models()
        return sum(need_gb(Work.image(self.figures(model), 0, 0, 0)) for model in loaded)

    def figures(self, model: str) -> str:
        """The catalogue model whose speed and memory figures apply: a local model's base, else itself."""
        entry = self.models.get(model)
        return entry.base if entry is not None and entry.base else model

    @property
    def enabled(self) -> bool:
        return bool(self.settings.get("image_generation"))

    def settings_changed(self) -> None:
        """The settings in force changed: an idle model's keep-alive follows `image_keep_alive_s` at once."""
        self.engine.set_keep_alive(float(self.settings.get("image_keep_alive_s")))

    def state(self) -> dict[str, Any]:
        """The structural part only (no clocks ticking), so the state version moves when something happens."""
        installed, weights, loaded = self.installed(), self.weights(), self.engine.loaded_models()
        names = sorted(installed | loaded)
        now = time.time()
        return {
            "enabled": self.enabled,
            "engine": self.engine.name,
            "models": {
                name: {
                    "installed": name in installed,
                    "cached": weights.get(name) is True,
                    "loaded": name in loaded,
                    "weights": "downloading" if name in self._downloading else WEIGHTS[weights.get(name)],
                    "download": self._downloading.get(name),
                    **({"base": self.figures(name)} if self.figures(name) != name else {}),
                }
                for name in names
            },  # fmt: skip
            "queue": {
                "slots": self.queue.slots,
                "running": [_job_doc(j, now) for j in self.queue.running.values()],
                "waiting": [_job_doc(j, now) for j in self.queue.waiting],
            },
            "speed": {
                "ms_per_mp_step": {m: round(v, 1) for m, v in self.speed.ms.items()},
                "prior_ms_per_mp_step": {
                    m: round(self.speed.prior_ms_per_mp_step(self.figures(m)), 1) for m in names
                },
                "load_s": self._load_seconds(names),
                "factor": self.speed.factor,
                "slowdown": round(self.speed.slowdown_per_job(), 3),
            },
            "memory": {
                "held_gb": round(self.held_gb(), 2),
                "cap_gb": self.max_memory_gb,
                "peak": {key: list(value) for key, value in sorted(self.speed.peak_gb.items())},
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

    def view(self, system: dict[str, Any] | None = None) -> PeerView:
        """This peer as the scheduler sees it: always fresh, never stale (`system`: this machine's metrics)."""
        doc = {"image": self.state(), "system": system or {}, "llm": {"active": [{}] * self._other_work()}}
        return image_view(self.node_id, "up", doc, is_self=True, now=time.time())

    # -- doing the work ---------------------------------------------------------------------------------------
    async def run(
        self,
        job: ImageJob,
        *,
        entry_node: str,
        movable: bool = True,
        visited: frozenset[str] = frozenset(),
        system: dict[str, Any] | None = None,
    ) -> Generated:
        """Queue, then generate: the model's defaults applied (`settle`), and the PNG's metadata made ours.

        While it waits, an idle peer may steal a `movable` job (`give_away`): then `JobMoved` is raised here
        and the caller sends the job on, but never to a peer in `visited` (the ones it left), so it cannot
        bounce. `system` is this machine's metrics, for the memory check.
        """
        waiting = len(self.queue.waiting)
        if waiting >= MAX_WAITING_JOBS:
            raise PeerRefused.of(self.node_id, 503, f"{self.node_id}'s queue is full ({waiting} jobs waiting)",
                                 Reason.OVERLOADED)  # fmt: skip
        model = self.models.get(job.model)
        if model is None:
            raise PeerRefused.of(self.node_id, 404, f"{job.model} is not installed on {self.node_id}",
                                 Reason.NOT_INSTALLED)  # fmt: skip
        job, ignored = settle(job, model)
        work = job.work()
        me = self.view(system)
        if (no_room := shortfall(me, work)) is not None:
            raise PeerRefused.of(self.node_id, 507, f"{self.node_id} has {no_room}", Reason.NO_ROOM)
        estimate = run_seconds(me, work) + load_seconds(me, job.model)
        queued = QueuedJob(work, entry_node, estimate, movable=movable, visited=visited)
        others = self._other_work()
        async with self.queue.slot(queued) as waited_s:
            try:
                output = await self.engine.generate(
                    job,
                    lambda i, n: self.queue.progressed(queued, i, n),
                    lambda i, n: self._downloaded(job.model, i, n),
                )
            finally:
                self._downloading.pop(job.model, None)
            others = max(others, self._other_work())
        self.speed.record_run(job.model, work.units, output.generation_ms, others=others)
        if output.load_ms:
            self.speed.record_load(job.model, output.load_ms / 1000)
        if output.peak_gb:
            self.speed.record_peak(job.model, job.quantize, output.peak_gb, job.width * job.height / 1e6)
        if self._speed_file is not None:
            self._speed_file.save(self.speed)
        self._on_change()
        png = png_metadata.finish(output.png, job, store_prompts=bool(self.settings.get("store_prompts")))
        return Generated(replace(output, png=png), int(waited_s * 1000), job, ignored)

    def _downloaded(self, model: str, done: int, files: int) -> None:
        """mflux is fetching this model's weights: advertise it (with how far it got), so peers know."""
        self._downloading[model] = [done, files]
        self._on_change()

    def give_away(self, thief_id: str, thief_image_state: dict[str, Any]) -> Handover | None:
        """An idle peer asks for work: hand over the queued job that gains most by moving, if one clearly does."""
        now = time.time()
        here = self.view()
        thief = replace(
            image_view(thief_id, "up", {"image": thief_image_state}, is_self=False, now=now),
            transfer_s=TRANSFER_BASE_S,
        )
        waiting = self.queue.waiting
        queue = [j.work for j in waiting]
        running_left = sum(
            max(0.0, j.estimate_s - (now - (j.started_at or now))) for j in self.queue.running.values()
        ) / max(1, self.queue.slots)
        pinned = frozenset(j.job_id for j in waiting if not j.movable or thief_id in j.visited)
        handover = steal_pick(here, queue, thief, running_left_s=running_left, pinned=pinned)
        if handover is None or not self.queue.withdraw(handover.job_id, to=thief_id):
            return None
        logger.info("job %s handed to idle %s: %s", handover.job_id, thief_id, handover.reason)
        return handover

    async def start(self) -> None:
        await asyncio.to_thread(self.weights)

    async def aclose(self) -> None:
        await self.engine.aclose()


WEIGHTS = {True: "cached", False: "missing", None: "unknown"}


def _job_doc(job: QueuedJob, now: float) -> dict[str, Any]:
    doc = job.to_dict(now)
    del doc["remaining_s"]  # ticks every second: peers compute it from started_at and estimate_s
    return doc
