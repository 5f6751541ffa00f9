"""Errors in each API family's own shape, so each official client raises its proper exception.

- Ollama's (and herd-mesh's own): `{"error": "...", "reason"?: "...", ...}`;
- OpenAI's, on /v1 routes: `{"error": {"message", "type", "param", "code"}}`, which the `openai` client turns
  into `e.message`, `e.type` and `e.code`.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import RequestError

OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error",
                429: "rate_limit_error", 503: "service_unavailable"}  # fmt: skip
APIS = ("herd", "ollama", "openai")


def error_body(api: str, status: int, message: str, **fields: Any) -> dict[str, Any]:
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


def stream_error_event(delimiter: bytes | None, message: str) -> bytes:
    """The last thing a broken stream says: an NDJSON error line, or an SSE error event."""
    if delimiter == b"\n\n":
        return b"data: " + json.dumps(error_body("openai", 502, message)).encode() + b"\n\n"
    if delimiter == b"\n":
        return json.dumps({"error": message}).encode() + b"\n"
    return b""  # a plain JSON answer cut short cannot be mended; the client sees a truncated body
