"""herd-mesh's exceptions, translated at the edges from httpx, subprocess and zeroconf errors.

HerdError
├── ConfigError            bad flag, env var or config.toml value
├── RequestError           the client's request is wrong (-> 4xx); carries `status` and extra JSON fields
├── EngineError            an engine (mflux, Ollama, Whisper) failed to produce a result on this peer
└── PeerError              talking to another peer went wrong
    ├── PeerUnreachable    connection refused, timeout, reset, peer died mid-job
    └── PeerRefused        the peer answered but would not or could not do the job (4xx/5xx)
"""

from __future__ import annotations

from typing import Any


class HerdError(Exception):
    """Base of every error herd-mesh raises on purpose."""


class ConfigError(HerdError):
    pass


class RequestError(HerdError):
    """A client mistake; becomes `{"error": message, **extra}` with `status`."""

    def __init__(self, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class EngineError(HerdError):
    pass


class PeerError(HerdError):
    def __init__(self, node_id: str, reason: str) -> None:
        super().__init__(f"{node_id}: {reason}")
        self.node_id = node_id
        self.reason = reason


class PeerUnreachable(PeerError):
    pass


class PeerRefused(PeerError):
    def __init__(self, node_id: str, reason: str, status: int, body: dict[str, Any] | None = None) -> None:
        super().__init__(node_id, reason)
        self.status = status
        self.body = body or {}
