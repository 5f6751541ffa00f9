"""The one interface every image engine offers, so routing and the GPU queue never care which engine runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..core.image_request import ImageJob

__all__ = ["Download", "ImageEngine", "ImageJob", "ImageOutput", "Progress"]

Progress = Callable[[int, int], None]  # (step done, steps in all), called as the engine reports them
Download = Callable[[int, int], None]  # (files done, files in all; 0, 0 when not told), while weights download


@dataclass(frozen=True)
class ImageOutput:
    png: bytes
    generation_ms: int  # wall time of the generation itself, load excluded
    load_ms: int = 0  # time spent loading the model first (0 when it was resident)
    peak_gb: float | None = None  # the most memory the run took, when the engine can tell


class ImageEngine(Protocol):
    """An engine runs one job at a time; the GPU queue in front of it does the waiting.

    `generate` raises `EngineError` with a message a user can act on. Cancelling the awaiting task must stop
    the work (kill the process group, or the worker) before `generate` returns.
    """

    name: str
    resident: bool  # keeps models loaded between jobs; if False, each job's load is inside its run time

    def installed_models(self) -> set[str]: ...

    def loaded_models(self) -> set[str]: ...

    def set_keep_alive(self, seconds: float) -> None: ...  # how long an idle model may stay loaded

    async def generate(
        self, job: ImageJob, progress: Progress | None = None, downloading: Download | None = None
    ) -> ImageOutput: ...

    async def aclose(self) -> None: ...
