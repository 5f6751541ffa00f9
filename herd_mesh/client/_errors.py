"""The client's errors: every one is a `herd_mesh.HerdError`, so `except herd_mesh.HerdError` catches them all.

HerdError
├── NoPeerFound           no peer answered: names what was tried (HERD_URL, the local peer, mDNS)
├── RequestError
│   └── RequestFailed     the mesh answered with an error: its message, status, reason and attempts
│       └── JobNotFound   GET /api/jobs/{id} does not know that id (404)
└── PeerError
    └── PeerUnreachable   the peer went away (connection refused, reset, timeout) and no other took over
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import HerdError, Reason, RequestError


@dataclass(frozen=True)
class Attempt:
    """One peer the mesh tried for a request that failed everywhere (from the error's `attempts` list)."""

    node: str
    reason: str
    status: int | None = None


class NoPeerFound(HerdError):
    """No herd peer could be reached. `tried` names each place looked at, in order."""

    def __init__(self, mesh: str, tried: Sequence[str]) -> None:
        self.mesh = mesh
        self.tried = tuple(tried)
        where = "; ".join(self.tried) or "nothing"
        super().__init__(
            f"no herd-mesh peer found for mesh {mesh!r} (tried: {where}). Start one with `herd`, or point the "
            "client at a peer (Client(url=...), `herd ... --url`, or HERD_URL=http://<mac>:11435)"
        )


class RequestFailed(RequestError):
    """The mesh answered with an error status. `message` is the server's own text; `attempts` lists the peers
    tried when every one failed (502); `node` is the peer that answered."""

    def __init__(
        self,
        message: str,
        status: int,
        *,
        reason: Reason | None = None,
        attempts: Sequence[Attempt] = (),
        node: str | None = None,
        retry_after: int | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message, status, reason=reason, retry_after=retry_after, **fields)
        self.attempts = tuple(attempts)
        self.node = node

    def __str__(self) -> str:
        text = f"{self.message} (HTTP {self.status})"
        if self.attempts:
            tried = "; ".join(f"{a.node}: {a.reason}" for a in self.attempts)
            text += f"; tried {tried}"
        return text


class JobNotFound(RequestFailed):
    """No peer knows this job id (never sent, finished long ago, or sent to another mesh)."""
