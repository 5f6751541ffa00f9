"""herd-mesh's one error vocabulary: the exception tree and the reason codes peers exchange.

Errors from the layers below (httpx, subprocesses, zeroconf, Ollama) are translated at the edge that meets
them into the most specific error here, raised `from` the original.

    HerdError
    ├── ConfigError          a bad flag, environment variable or config.toml value
    ├── RequestError         the client's request cannot be served as asked (-> 4xx/5xx JSON)
    ├── EngineError          an engine (mflux, Ollama, Whisper) failed to produce a result on this peer
    │   └── BackendUnavailable   this peer's Ollama or Whisper did not answer at all
    ├── PeerError            talking to another peer went wrong
    │   ├── PeerUnreachable      connection refused, timeout, reset, or the peer went down mid-job
    │   └── PeerRefused          the peer answered with an error status (its body is kept as sent)
    ├── JobMoved             a queued job was handed to an idle peer (work stealing): send it there
    ├── ClientGone           the client hung up before its answer was ready; its work was cancelled
    └── TxtError             an mDNS TXT record that is not ours, or of a protocol version we do not speak

`Reason` is the machine-readable code a peer puts in a refusal (`{"error": ..., "reason": "busy"}`), so the
sender can act on it (try the named peer, skip a peer that is switched off) without reading prose.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a peer refused a job: shared by the peer that answers and the peer that reads the answer."""

    BUSY = "busy"  # another peer would finish sooner; `redirect_to` names it
    MOVED = "moved"  # the queued job was handed to the idle peer `redirect_to` names
    DISABLED = "disabled"  # the capability is switched off in the settings
    NOT_INSTALLED = "not-installed"  # the model is not on that peer
    NO_ENGINE = "no-engine"  # no engine for this kind of work on that peer
    ENGINE_FAILED = "engine-failed"  # the engine ran and failed
    BAD_AUDIO = "bad-audio"  # the upload is not audio the engine can decode
    OVERLOADED = "overloaded"  # its queue (or the caller's share of it) is full: retry later or elsewhere
    NO_ROOM = "no-room"  # the job does not fit in its memory (or its --max-memory-gb)

    @classmethod
    def parse(cls, value: Any) -> Reason | None:
        """The code in a peer's answer, or None for anything unknown (a newer peer may send new codes)."""
        try:
            return cls(value) if isinstance(value, str) else None
        except ValueError:
            return None


class HerdError(Exception):
    """Base of every error herd-mesh raises on purpose."""


class ConfigError(HerdError):
    pass


class RequestError(HerdError):
    """A request that cannot be served as asked; becomes `{"error": message, "reason"?, **fields}` with `status`,
    and a `Retry-After` header when `retry_after` (seconds) is set."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        *,
        reason: Reason | None = None,
        retry_after: int | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.fields = fields

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.reason is not None:
            out["reason"] = str(self.reason)
        return {**out, **self.fields}


class EngineError(HerdError):
    pass


class BackendUnavailable(EngineError):
    """This peer's Ollama (or another local backend) did not answer: not running, or a wrong URL."""


class PeerError(HerdError):
    def __init__(self, node_id: str, message: str) -> None:
        super().__init__(f"{node_id}: {message}")
        self.node_id = node_id
        self.message = message


class PeerUnreachable(PeerError):
    pass


MAX_REASON_CHARS = 300  # how much of a peer's error text is quoted in our own messages


class PeerRefused(PeerError):
    """A peer (or this peer's own backend) answered with an error status. The body is kept byte for byte, so
    an error that no other peer would change can reach the client exactly as it was written."""

    def __init__(self, node_id: str, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.status = status
        self.body = body
        self.content_type = content_type or "application/json"
        self.fields = _json_object(body)
        super().__init__(node_id, self._message())

    @classmethod
    def of(cls, node_id: str, status: int, message: str, reason: Reason, **fields: Any) -> PeerRefused:
        """A refusal made here, in the shape a peer would send it."""
        return cls(node_id, status, json.dumps({"error": message, "reason": str(reason), **fields}).encode())

    def _message(self) -> str:
        error = self.fields.get("error")
        if isinstance(error, dict):  # OpenAI's and Anthropic's shapes
            error = error.get("message")
        if isinstance(error, str) and error:
            return error[:MAX_REASON_CHARS]
        text = self.body.decode("utf-8", "replace").strip()[:MAX_REASON_CHARS]
        return text or f"HTTP {self.status}"

    @property
    def reason(self) -> Reason | None:
        return Reason.parse(self.fields.get("reason"))

    @property
    def redirect_to(self) -> str | None:
        target = self.fields.get("redirect_to")
        return target if isinstance(target, str) and target else None


class JobMoved(HerdError):
    """The waiting job was taken out of this peer's queue to run on `to` (work stealing)."""

    def __init__(self, job_id: str, to: str = "") -> None:
        super().__init__(f"job {job_id} moved to {to or 'another peer'}")
        self.job_id = job_id
        self.to = to


class ClientGone(HerdError):
    """The client disconnected before the answer was ready; its work was cancelled."""


class TxtError(HerdError, ValueError):
    """A TXT record that is not ours, or not of a protocol version we speak."""


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
