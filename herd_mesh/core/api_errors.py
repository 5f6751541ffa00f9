"""Errors in each API family's own shape, so each official client raises its proper exception.

- Ollama's (and herd-mesh's own): `{"error": "...", "reason"?: "...", ...}`;
- OpenAI's, on /v1 routes: `{"error": {"message", "type", "param", "code"}}`, which the `openai` client turns
  into `e.message`, `e.type` and `e.code`;
- Anthropic's, on /v1/messages: `{"type": "error", "error": {"type", "message"}}`, which the `anthropic` client
  turns into `NotFoundError`, `RateLimitError`, ... by status, with `e.body` as sent.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import RequestError

OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error",
                429: "rate_limit_error", 503: "service_unavailable"}  # fmt: skip
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 415: "invalid_request_error",
                   422: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error",
                   529: "overloaded_error"}  # fmt: skip
APIS = ("herd", "ollama", "openai", "anthropic")


def error_body(api: str, status: int, message: str, **fields: Any) -> dict[str, Any]:
    if api == "anthropic":
        kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message, **fields}}
    if api != "openai":
        return {"error": message, **fields}
    code = fields.pop("reason", None)
    return {
        "error": {
            "message": message,
            "type": OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "param": None,
            "code": code,
            **fields,
        }
    }


def request_error_body(api: str, exc: RequestError) -> dict[str, Any]:
    fields = {**({"reason": str(exc.reason)} if exc.reason is not None else {}), **exc.fields}
    return error_body(api, exc.status, exc.message, **fields)


def in_api_shape(api: str, status: int, fields: dict[str, Any], message: str) -> dict[str, Any] | None:
    """A peer's refusal (`fields`: its JSON object) rewritten in `api`'s shape, or None when it already is in
    it: Ollama writes its /v1 errors in OpenAI's and Anthropic's shapes, a peer's own refusals in herd-mesh's."""
    error = fields.get("error")
    if api == "anthropic":
        if fields.get("type") == "error" and isinstance(error, dict):
            return None
        extra = {k: v for k, v in fields.items() if k != "error"}
        return error_body(api, status, message, **extra)
    if api == "openai":
        if isinstance(error, dict):
            return None
        extra = {k: v for k, v in fields.items() if k != "error"}
        return error_body(api, status, message, **extra)
    return None


def stream_error_event(delimiter: bytes | None, message: str, *, api: str = "openai", named: bool = False) -> bytes:
    """The last thing a broken stream says, in its own format: an NDJSON error line, or an SSE error event
    (Anthropic's `event: error`, the Responses API's `event: error`, else Chat Completions' `data:` error).
    `named`: the stream's events carry `event:` lines (Anthropic's and the Responses API's do)."""
    if delimiter == b"\n\n":
        if api == "anthropic":
            data = error_body("anthropic", 502, message)
            return b"event: error\ndata: " + json.dumps(data).encode() + b"\n\n"
        if named:  # the Responses API's error event; `error` too, so the openai client raises APIError
            data = {"type": "error", "code": "server_error", "message": message, "param": None,
                    **error_body("openai", 502, message)}  # fmt: skip
            return b"event: error\ndata: " + json.dumps(data).encode() + b"\n\n"
        return b"data: " + json.dumps(error_body("openai", 502, message)).encode() + b"\n\n"
    if delimiter == b"\n":
        return json.dumps({"error": message}).encode() + b"\n"
    return b""  # a plain JSON answer cut short cannot be mended; the client sees a truncated body


def ends_with_error(frames: bytes, delimiter: bytes) -> bool:
    """Whether the last line or event of `frames` is an error its runner ended the stream with."""
    last = frames.rstrip(b"\n").rsplit(delimiter, 1)[-1].lstrip(b"\n")
    return last.removeprefix(b"data: ").startswith(b'{"error"') or last.startswith(b"event: error")
