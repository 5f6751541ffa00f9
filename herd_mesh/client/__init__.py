"""herd-mesh's Python client: `Client` (blocking) and `AsyncClient` (asyncio), over httpx.

This package talks to peers over HTTP only; it imports nothing of the peer itself but the pure `core` helpers
and the error vocabulary (an import-linter contract in pyproject.toml keeps it so).
"""

from ._async_client import AsyncClient
from ._client import Client
from ._errors import Attempt, JobNotFound, NoPeerFound, RequestFailed
from ._models import ChatResult, Embeddings, ImageResult, Job, ModelInfo, PeerInfo, Segment, Transcript
from ._streams import AsyncChatStream, ChatStream

__all__ = [
    "AsyncChatStream",
    "AsyncClient",
    "Attempt",
    "ChatResult",
    "ChatStream",
    "Client",
    "Embeddings",
    "ImageResult",
    "Job",
    "JobNotFound",
    "ModelInfo",
    "NoPeerFound",
    "PeerInfo",
    "RequestFailed",
    "Segment",
    "Transcript",
]
