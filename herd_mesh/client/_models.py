"""What the client's methods return: small frozen dataclasses read from the mesh's answers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

JobState = Literal["queued", "running", "done", "failed"]


@dataclass(frozen=True)
class ImageResult:
    """A generated image: the PNG bytes and where, how and how fast it was made."""

    png: bytes = field(repr=False)
    node: str  # the Mac that generated it
    model: str
    seed: int | None  # send it back as `seed` to get the same image
    generation_ms: int | None  # on that Mac, model load included
    queue_ms: int | None  # waiting in that Mac's GPU queue
    attempts: int  # peers tried (more than 1 when a peer failed and another took over)
    request_id: str  # the X-Request-Id: `Client.job(request_id)` follows it
    width: int | None = None
    height: int | None = None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the PNG to `path` (parent folders are created) and return the path."""
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.png)
        return target


@dataclass(frozen=True)
class ChatResult:
    """A whole chat answer (`stream=False`)."""

    content: str
    model: str
    node: str | None  # the Mac whose Ollama answered
    done_reason: str | None
    message: Mapping[str, Any]  # Ollama's message object (role, content, tool_calls, ...)
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Embeddings:
    embeddings: list[list[float]] = field(repr=False)
    model: str
    node: str | None


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float | None
    segments: tuple[Segment, ...]
    node: str | None


@dataclass(frozen=True)
class PeerInfo:
    """One peer as the mesh sees it (`GET /mesh/peers`)."""

    node_id: str
    url: str
    status: str  # up, suspect or down
    is_self: bool  # the peer that answered
    chip: str | None
    memory_total_gb: float | None
    memory_available_gb: float | None
    cpu_percent: float | None
    image_models: tuple[str, ...]
    image_loaded: tuple[str, ...]
    llm_models: tuple[str, ...]
    stt_models: tuple[str, ...]
    jobs_running: int  # image jobs running plus LLM and speech-to-text calls in flight
    queue: int  # image jobs waiting
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ModelInfo:
    """A model somewhere in the mesh: `kind` is image or llm; `nodes` have it installed."""

    name: str
    kind: Literal["image", "llm"]
    nodes: tuple[str, ...]
    loaded_on: tuple[str, ...]
    available: bool


@dataclass(frozen=True)
class Job:
    """A job's progress as the peers report it (`GET /api/jobs/{id}`)."""

    id: str
    kind: str
    model: str | None
    state: JobState
    node: str | None  # where it runs (or waits)
    queue_position: int | None
    step: int | None
    steps: int | None
    elapsed_s: float | None
    eta_s: float | None
    reason: str | None
    error: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @property
    def fraction(self) -> float | None:
        """Steps done out of all steps (0-1), when the engine reports steps."""
        if self.step is None or not self.steps:
            return None
        return max(0.0, min(1.0, self.step / self.steps))
