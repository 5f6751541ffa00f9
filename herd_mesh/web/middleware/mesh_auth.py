"""With a mesh key, only the mesh may speak as the mesh: every `/mesh/` call (but `GET /mesh/peers`, which the
dashboard and `herd peers` read) and every job another peer forwards must be signed with the key
(`core/signing.py`), within the replay window, once. Anything else gets 401 and changes nothing.

Answers to signed calls are signed back when they are a single body (pings, state, settings, records, a PNG),
so a Mac without the key cannot pass for a member by answering. Streamed answers (chat) are not.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...core import signing
from .responses import drain, header, send_json_error

PEER_CALL = "herd_peer_call"  # set in scope["state"] once a call is verified as a member's


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def needs_signature(scope: Scope) -> bool:
    path: str = scope["path"]
    if path.startswith("/mesh/"):
        return not (path == "/mesh/peers" and scope["method"] in ("GET", "HEAD"))
    return header(scope["headers"], b"x-herd-forwarded") is not None


class MeshAuthMiddleware:
    def __init__(self, app: ASGIApp, *, key: str | None, nonces: signing.Nonces | None = None) -> None:
        self.app = app
        self.key = key
        self.nonces = nonces or signing.Nonces()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self.key
        if scope["type"] != "http" or key is None:
            await self.app(scope, receive, send)
            return
        value = header(scope["headers"], f"{signing.AUTH_HEADER.lower()}".encode())
        if value is None and not needs_signature(scope):
            await self.app(scope, receive, send)
            return
        streamed = media_type(header(scope["headers"], b"content-type")) == "multipart/form-data"
        body = b"" if streamed else await _read_all(receive)
        query = scope.get("query_string", b"")
        raw_path = scope.get("raw_path") or scope["path"].encode()
        target = (raw_path + (b"?" + query if query else b"")).decode("latin-1")
        body_sha = signing.UNSIGNED_BODY if streamed else signing.body_hash(body)
        now = time.time()
        claim, why = signing.check_request(key, scope["method"], target, value, body_sha, now=now)
        if claim is not None and not self.nonces.first_time(claim.nonce, now=now):
            claim, why = None, "this signed call was already used once (a replay)"
        if claim is None:
            if streamed:
                await drain(receive)
            await send_json_error(send, 401, why)
            return
        scope.setdefault("state", {})[PEER_CALL] = True
        replay = receive if streamed else _replaying(body, receive)
        await self.app(scope, replay, _signing_send(send, key, claim.nonce))


async def _read_all(receive: Receive) -> bytes:
    """The whole body (the body limit, outside, bounds it)."""
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _signing_send(send: Send, key: str, nonce: str) -> Send:
    """Holds the response start until the first body part: a whole body is signed, a streamed one passes."""
    start: Message | None = None

    async def signed(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if start is not None and message["type"] == "http.response.body":
            held, start = start, None
            if not message.get("more_body", False):
                mac = signing.response_mac(key, nonce, held["status"], signing.body_hash(message.get("body", b"")))
                held = {
                    **held,
                    "headers": [*held.get("headers", []), (signing.AUTH_HEADER.lower().encode(), mac.encode())],
                }
            await send(held)
        await send(message)

    return signed
