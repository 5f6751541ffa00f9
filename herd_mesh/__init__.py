"""herd-mesh: identical peers on every Mac that find each other over mDNS and route AI work to the best one.

Run a peer with `herd`; talk to the mesh with `herd_mesh.Client` / `herd_mesh.AsyncClient`, the `herd` command
line, curl, or any OpenAI/Ollama client pointed at any peer. The names below are the public Python surface;
everything else is internal and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import Config
from .errors import (
    ClientGone,
    ConfigError,
    EngineError,
    HerdError,
    PeerError,
    PeerRefused,
    PeerUnreachable,
    RequestError,
)

if TYPE_CHECKING:
    from .client import (
        AsyncChatStream,
        AsyncClient,
        Attempt,
        ChatResult,
        ChatStream,
        Client,
        Embeddings,
        ImageResult,
        Job,
        JobNotFound,
        ModelInfo,
        NoPeerFound,
        PeerInfo,
        RequestFailed,
        Segment,
        Transcript,
    )

# The client's names load on first use: `import herd_mesh` stays fast for the peer and the CLI (httpx is slow).
_CLIENT_NAMES = frozenset({
    "AsyncChatStream", "AsyncClient", "Attempt", "ChatResult", "ChatStream", "Client", "Embeddings", "ImageResult",
    "Job", "JobNotFound", "ModelInfo", "NoPeerFound", "PeerInfo", "RequestFailed", "Segment", "Transcript",
})  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from . import client

        value = getattr(client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'herd_mesh' has no attribute {name!r}")


__all__ = [
    "AsyncChatStream",
    "AsyncClient",
    "Attempt",
    "ChatResult",
    "ChatStream",
    "Client",
    "ClientGone",
    "Config",
    "ConfigError",
    "Embeddings",
    "EngineError",
    "HerdError",
    "ImageResult",
    "Job",
    "JobNotFound",
    "ModelInfo",
    "NoPeerFound",
    "PeerError",
    "PeerInfo",
    "PeerRefused",
    "PeerUnreachable",
    "RequestError",
    "RequestFailed",
    "Segment",
    "Transcript",
    "__version__",
]
