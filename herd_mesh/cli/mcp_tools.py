"""The MCP tools `herd mcp` offers agents, on the official `mcp` SDK: each is a call through `herd_mesh.client`
to a peer, so an agent gets the whole mesh (the best Mac for each image) from one local process.

Failures an agent can act on (no peer, a refused request, a missing file) come back as tool errors with the
mesh's own message, never as a crash.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from typing_extensions import TypedDict  # pydantic reads nested ones below Python 3.12 too

from ..client import AsyncClient
from ..client._common import DEFAULT_MODEL
from ..errors import HerdError, RequestError

logger = logging.getLogger(__name__)
T = TypeVar("T")

INSTRUCTIONS = (
    "herd-mesh runs image generation and speech-to-text on the best Mac of a local fleet. generate_image saves a "
    "PNG and says which Mac made it; list_image_models says which models exist and where; mesh_status shows the "
    "Macs, their free memory and what they run; transcribe turns an audio file into text."
)


class SavedImage(TypedDict):
    path: str  # where the PNG was written
    node: str  # the Mac that generated it
    model: str
    seed: int | None  # pass it back as `seed` to get the same image again
    width: int | None
    height: int | None
    generation_ms: int | None  # on that Mac, model load included
    queue_ms: int | None  # waiting in that Mac's queue
    seconds: float  # the whole call, as the agent waited for it


class ImageModelEntry(TypedDict):
    name: str
    nodes: list[str]  # the Macs it is installed on
    loaded_on: list[str]  # the Macs that have it in memory now (fastest)
    available: bool


class ImageModels(TypedDict):
    models: list[ImageModelEntry]


class PeerEntry(TypedDict):
    node: str
    status: str  # up, suspect or down
    memory_free_gb: float | None
    memory_total_gb: float | None
    image_models: list[str]
    llm_models: list[str]
    jobs_running: int
    jobs_queued: int


class MeshStatus(TypedDict):
    mesh: str | None
    status: str | None
    answered_by: str | None
    peers: list[PeerEntry]
    advice: list[str]


class TranscriptResult(TypedDict):
    text: str
    language: str | None
    duration_s: float | None
    node: str | None


async def _mesh(call: Awaitable[T]) -> T:
    """The mesh's answer, or a tool error with its message and the models it offers instead (an agent reads it
    and can fix its request)."""
    try:
        return await call
    except HerdError as exc:
        available = exc.fields.get("available") if isinstance(exc, RequestError) else None
        names = [str(n) for n in available] if isinstance(available, list) else []
        raise ToolError(str(exc) + (f"; available: {', '.join(names)}" if names else "")) from exc


def _png_path(path: str | None) -> Path:
    """Where to save: the path given (a folder gets a fresh file name), else a new file in the temp folder."""
    if path:
        target = Path(path).expanduser()
        if not target.is_dir():
            return target
        return Path(tempfile.mkstemp(prefix="herd-", suffix=".png", dir=target)[1])
    return Path(tempfile.mkstemp(prefix="herd-", suffix=".png")[1])


def build_server(herd: AsyncClient) -> MCPServer:
    """The MCP server, its tools calling the mesh through `herd`."""
    server: MCPServer = MCPServer("herd-mesh", instructions=INSTRUCTIONS)

    @server.tool()
    async def generate_image(
        prompt: str,
        path: str | None = None,
        model: str = DEFAULT_MODEL,
        width: int = 1024,
        height: int = 1024,
        steps: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
    ) -> SavedImage:
        """Generate an image on the best Mac of the mesh and save it as a PNG.

        `path`: the file to write (a folder: a new file in it); none: a new file in the temp folder. `steps`
        none: the model's default. Returns the saved path, the Mac (node) that made it, the seed (pass it back
        to get the same image) and the time it took."""
        started = time.monotonic()
        result = await _mesh(
            herd.generate_image(
                prompt,
                model=model,
                width=width,
                height=height,
                steps=steps,
                seed=seed,
                negative_prompt=negative_prompt,
            )  # fmt: skip
        )
        try:
            saved = await asyncio.to_thread(result.save, _png_path(path))
        except OSError as exc:
            raise ToolError(f"the image was made on {result.node} but could not be saved: {exc}") from exc
        logger.info("image from %s saved to %s", result.node, saved)
        return SavedImage(path=str(saved), node=result.node, model=result.model, seed=result.seed,
                          width=result.width, height=result.height, generation_ms=result.generation_ms,
                          queue_ms=result.queue_ms, seconds=round(time.monotonic() - started, 2))  # fmt: skip

    @server.tool()
    async def list_image_models() -> ImageModels:
        """The image models of the mesh: the Macs each is installed on, and where it is loaded (fastest)."""
        found = await _mesh(herd.models())
        return ImageModels(models=[
            ImageModelEntry(name=m.name, nodes=list(m.nodes), loaded_on=list(m.loaded_on), available=m.available)
            for m in found if m.kind == "image"
        ])  # fmt: skip

    @server.tool()
    async def mesh_status() -> MeshStatus:
        """The Macs of the mesh: up or not, free memory, models, and the jobs each runs and queues."""
        health, peers = await _mesh(asyncio.gather(herd.health(), herd.peers()))
        return MeshStatus(
            mesh=_text(health.get("mesh")), status=_text(health.get("status")), answered_by=_text(health.get("self")),
            peers=[PeerEntry(node=p.node_id, status=p.status, memory_free_gb=p.memory_available_gb,
                             memory_total_gb=p.memory_total_gb, image_models=list(p.image_models),
                             llm_models=list(p.llm_models), jobs_running=p.jobs_running, jobs_queued=p.queue)
                   for p in peers],
            advice=[str(line) for line in health.get("recommendations") or ()],
        )  # fmt: skip

    @server.tool()
    async def transcribe(path: str, model: str | None = None, language: str | None = None) -> TranscriptResult:
        """Speech to text on a Mac of the mesh: `path` is an audio file (WAV, MP3, M4A, FLAC, OGG, WebM);
        `language` a code such as "en" (none: detected)."""
        audio = Path(path).expanduser()
        if not audio.is_file():
            raise ToolError(f"no audio file at {audio}: give the path of a WAV, MP3, M4A, FLAC, OGG or WebM file")
        transcript = await _mesh(herd.transcribe(audio, model=model, language=language))
        return TranscriptResult(text=transcript.text, language=transcript.language, duration_s=transcript.duration,
                                node=transcript.node)  # fmt: skip

    return server


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
