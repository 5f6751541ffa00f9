"""413 for bodies over the route's limit, before any route reads them.

The body is read and thrown away (up to `DRAIN_LIMIT`) before the 413 is sent: clients that send the whole
body before reading the answer (urllib, many SDKs) would otherwise see a reset connection, not the error.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import header, send_json_error

MAX_BODY_BYTES = 1024 * 1024  # JSON bodies; larger ones get 413
MAX_CONVERSATION_BYTES = 32 * 1024 * 1024  # a whole conversation (an agent's, with images), on the LLM routes
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # audio uploads, on the upload paths only
DRAIN_LIMIT = 256 * 1024 * 1024  # the most of an oversized body read (and dropped) so that the 413 is seen


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """`upload_limit` on `upload_paths`, `conversation_limit` on `conversation_paths` (chat: an agent sends its
    whole conversation every turn), `limit` everywhere else (whatever the Content-Type says)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int = MAX_BODY_BYTES,
        upload_limit: int = MAX_UPLOAD_BYTES,
        upload_paths: Collection[str] = (),
        conversation_limit: int = MAX_CONVERSATION_BYTES,
        conversation_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_paths = frozenset(upload_paths)
        self.conversation_limit = conversation_limit
        self.conversation_paths = frozenset(conversation_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.upload_paths:
            limit = self.upload_limit
        elif path in self.conversation_paths:
            limit = self.conversation_limit
        else:
            limit = self.limit
        declared = header(scope["headers"], b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(receive, send, limit, seen=0, more=True, path=path)
            return
        seen = 0
        started = False
        finished = False

        async def limited_receive() -> Message:
            nonlocal seen, finished
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                finished = not message.get("more_body", False)
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reject(receive, send, limit, seen=seen, more=not finished, path=path)


async def _reject(receive: Receive, send: Send, limit: int, *, seen: int, more: bool, path: str) -> None:
    while more and seen <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            break
        seen += len(message.get("body", b""))
        more = message.get("more_body", False)
    headers = {"Connection": "close"} if more else None
    size = f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit // 1024} KB"
    await send_json_error(send, 413, f"request body is larger than {size}", headers, path=path)
