"""The one way middleware answers early: a JSON error, with headers, as a raw ASGI response."""

from __future__ import annotations

import json

from starlette.types import Receive, Send

from ...core.api_errors import error_body


def api_for(path: str) -> str:
    """Whose error shape a path's clients expect: Anthropic's on /v1/messages, OpenAI's on the other /v1 routes."""
    if path == "/v1/messages":
        return "anthropic"
    return "openai" if path.startswith("/v1/") else "herd"


async def send_json_error(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None, *, path: str = ""
) -> None:
    """A JSON error; with `path`, in that API family's own shape (so the official clients show the message)."""
    body = json.dumps(error_body(api_for(path), status, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def header(scope_headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of a request header (names are lower case in ASGI), as text."""
    for key, value in scope_headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def drain(receive: Receive, limit: int = 256 * 1024 * 1024) -> bool:
    """Read and drop the rest of a request body (up to `limit`), so that a client that sends the whole body
    before reading sees the error answer. True when some of it was left unread."""
    seen = 0
    more = True
    while more and seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return False
        seen += len(message.get("body", b""))
        more = message.get("more_body", False)
    return more
