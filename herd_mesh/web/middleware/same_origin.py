"""Only this peer's own pages, and the web origins the user allowed, may make a browser change state or start
work here (CSRF); those origins get CORS headers, preflights included.

A request that changes state or starts work (any method but GET, HEAD and OPTIONS) gets 403 when its `Origin`
names another origin, or its `Sec-Fetch-Site` says `cross-site` or `same-site`, unless the origin was allowed
with `--cors-origin`. Clients that send neither header (curl, SDKs, peers) are unaffected.

herd-mesh's own JSON APIs also answer 415 unless the body is `application/json`: an HTML form or a no-cors
fetch can only send form, multipart or text/plain bodies. The Ollama- and OpenAI-compatible routes keep
accepting bodies as Ollama does (the seed's embeddings curl sends no content type); the origin check guards
them.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import header, send_json_error

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
EXPOSED_HEADERS = (
    "X-Fleet-Node, X-Fleet-Model, X-Generation-Time, X-Queue-Time, X-Fleet-Seed, X-Fleet-Attempts, "
    "X-Fleet-Moves, X-Fleet-Reason, X-Image-Size, X-Request-Id, Retry-After"
)
PREFLIGHT_MAX_AGE_S = 600


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


class SameOriginMiddleware:
    def __init__(self, app: ASGIApp, *, cors_origins: Collection[str], json_paths: Collection[str]) -> None:
        self.app = app
        self.cors_origins = frozenset(cors_origins)
        self.json_paths = tuple(json_paths)  # prefixes of herd-mesh's own JSON APIs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        method = scope["method"]
        origin = header(headers, b"origin")
        allowed = origin is not None and origin in self.cors_origins
        if method == "OPTIONS" and origin is not None and header(headers, b"access-control-request-method"):
            await self._preflight(send, origin, allowed, header(headers, b"access-control-request-headers"))
            return
        if method not in SAFE_METHODS:
            if not allowed and self._cross_site(scope, origin, header(headers, b"sec-fetch-site")):
                message = f"cross-site requests may not change anything here (from {origin or 'another site'}); "
                await send_json_error(send, 403, message + "a web app needs its origin allowed with --cors-origin")
                return
            if self._needs_json(scope) and media_type(header(headers, b"content-type")) != "application/json":
                got = media_type(header(headers, b"content-type")) or "none"
                await send_json_error(send, 415, f"send the body as JSON with Content-Type: application/json "
                                                 f"(got {got})")  # fmt: skip
                return
        if not allowed:
            await self.app(scope, receive, send)
            return
        assert origin is not None

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = origin
                response_headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
                response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    def _cross_site(scope: Scope, origin: str | None, fetch_site: str | None) -> bool:
        if fetch_site in ("cross-site", "same-site"):
            return True
        if origin is None:
            return False
        host = header(scope["headers"], b"host") or ""
        return origin != f"{scope.get('scheme', 'http')}://{host}"

    def _needs_json(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if not path.startswith(self.json_paths):
            return False
        length = header(scope["headers"], b"content-length")
        chunked = (header(scope["headers"], b"transfer-encoding") or "").lower() == "chunked"
        return chunked or (length is not None and length.strip() not in ("", "0"))

    async def _preflight(self, send: Send, origin: str, allowed: bool, requested: str | None) -> None:
        if not allowed:
            await send_json_error(send, 403, f"origin {origin} may not call this API; allow it with --cors-origin")
            return
        raw = [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
            (b"access-control-allow-headers", (requested or "Content-Type, Authorization").encode("latin-1")),
            (b"access-control-max-age", str(PREFLIGHT_MAX_AGE_S).encode()),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": raw})
        await send({"type": "http.response.body", "body": b""})
