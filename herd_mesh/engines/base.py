"""The one interface every image engine offers, so routing and the GPU queue never care which engine runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ImageJob:
    """A validated image request, as an engine receives it (the seed is always concrete here)."""

    job_id: str
    model: str
    prompt: str
    width: int = 1024
    height: int = 1024
    steps: int = 4
    quantize: int = 8
    seed: int = 0
    negative_prompt: str = ""


@dataclass(frozen=True)
class ImageOutput:
    png: bytes
    generation_ms: int  # wall time of the generation itself, load excluded
    load_ms: int = 0  # time spent loading the model first (0 when it was resident)


class ImageEngine(Protocol):
    """An engine runs one job at a time; the GPU queue in front of it does the waiting.

    `generate` raises `EngineError` with a message a user can act on. Cancelling the awaiting task must stop
    the work (kill the process group, or the worker) before `generate` returns.
    """

    name: str
    resident: bool  # keeps models loaded between jobs; if False, each job's load is inside its run time

    def installed_models(self) -> set[str]: ...

    def loaded_models(self) -> set[str]: ...

    async def generate(self, job: ImageJob) -> ImageOutput: ...

    async def aclose(self) -> None: ...
