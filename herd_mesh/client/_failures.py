"""Why a request failed, in words: the server's error answer -> RequestFailed, a transport error -> a phrase.

Both clients raise the same errors for the same answers, and the attempt loop needs to know whether a failed
request ever reached a peer (see `Retry`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from ..errors import Reason
from ._errors import Attempt, JobNotFound, RequestFailed


def transport_failure(exc: httpx.TransportError) -> tuple[bool, str]:
    """(never connected?, words for it)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return True, "no answer to the connection attempt"
    if isinstance(exc, httpx.ConnectError):
        return True, "connection refused or no route"
    if isinstance(exc, httpx.TimeoutException):
        return False, "no answer in time"
    return False, f"the connection broke ({type(exc).__name__})"


def error_from(status: int, headers: httpx.Headers, body: bytes) -> RequestFailed:
    """The server's error answer -> RequestFailed carrying its message, reason, attempts and extra fields.

    herd-mesh answers `{"error": "...", "reason"?, "attempts"?}`; OpenAI routes `{"error": {"message", ...}}`."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    fields: dict[str, Any] = dict(doc) if isinstance(doc, dict) else {}
    error = fields.pop("error", None)
    if isinstance(error, dict):
        error = error.get("message")
    message = error if isinstance(error, str) and error else body.decode("utf-8", "replace").strip()[:300]
    message = message or f"HTTP {status}"
    reason = Reason.parse(fields.pop("reason", None))
    attempts = tuple(_attempt(a) for a in fields.pop("attempts", None) or () if isinstance(a, dict))
    retry_after = headers.get("Retry-After")
    return RequestFailed(
        message,
        status,
        reason=reason,
        attempts=attempts,
        node=headers.get("X-Fleet-Node"),
        retry_after=int(retry_after) if retry_after and retry_after.isdigit() else None,
        **fields,
    )


def job_not_found(status: int, headers: httpx.Headers, body: bytes) -> RequestFailed:
    """As `error_from`, but a 404 is a JobNotFound, so callers can tell an unknown id from a failure."""
    error = error_from(status, headers, body)
    if status != 404:
        return error
    return JobNotFound(error.message, 404, reason=error.reason, node=error.node, **error.fields)


def _attempt(raw: Mapping[str, Any]) -> Attempt:
    status = raw.get("status")
    return Attempt(
        str(raw.get("node") or "?"), str(raw.get("reason") or ""), status if isinstance(status, int) else None
    )
