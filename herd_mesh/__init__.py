"""herd-mesh: identical peers on every Mac that find each other over mDNS and route AI work to the best one.

Run a peer with `herd`; talk to the mesh with curl or any OpenAI/Ollama client pointed at any peer. The names
below are the public Python surface; everything else is internal and may change.
"""

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

__all__ = [
    "ClientGone",
    "Config",
    "ConfigError",
    "EngineError",
    "HerdError",
    "PeerError",
    "PeerRefused",
    "PeerUnreachable",
    "RequestError",
    "__version__",
]
