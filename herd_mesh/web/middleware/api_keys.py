"""Who may use this peer's API.

- With API keys (`--api-key`): every public call needs `Authorization: Bearer <key>` (or Anthropic's
  `x-api-key`), one of the API keys or the mesh key: 401 without one, 403 with a wrong one. The dashboard page
  itself, `GET /openapi.json` and `GET /mesh/peers` stay readable.
- With only a mesh key: the calls that change the mesh (settings, pulling, copying, creating or deleting models)
  need the mesh key or an API key; everything else works as without keys.
- With neither: everything is open, as the seed's examples expect, and the logs and dashboard say so.

Peers are not clients: `/mesh/` calls are the mesh key's business (`mesh_auth`), and a call a member signed,
or, in an open mesh, a peer's call from that peer's own address, passes (so API keys without a mesh key keep
out the LAN, not another user of a member Mac: docs/security.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from .mesh_auth import PEER_CALL
from .responses import drain, header, send_json_error

OPEN_PATHS = ("/dashboard", "/openapi.json")  # readable without a key (GET): the page asks for the key itself
OPEN_PREFIXES = ("/dashboard/static/",)
CHANGES_MESH = {  # (method, path): the public calls that change the mesh, not only ask it for work
    ("POST", "/dashboard/api/settings"),
    ("POST", "/api/pull"),
    ("POST", "/api/delete"),
    ("DELETE", "/api/delete"),
    ("POST", "/api/copy"),
    ("POST", "/api/create"),
}


QUERY_KEY_PATHS = ("/dashboard/api/events",)  # a browser's EventSource cannot send headers: `?key=` there only


def presented_key(scope: Scope) -> str | None:
    authorization = header(scope["headers"], b"authorization") or ""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if scope["path"] in QUERY_KEY_PATHS:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("key"):
            return query["key"][0].strip() or None
    return (header(scope["headers"], b"x-api-key") or "").strip() or None


class ApiKeyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: Collection[str],
        mesh_key: str | None,
        is_peer: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.api_keys = tuple(api_keys)
        self.keys = tuple(k.encode() for k in (*api_keys, *([mesh_key] if mesh_key else [])))
        self.mesh_key = mesh_key
        self._is_peer = is_peer

    def _protected(self, scope: Scope) -> bool:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/mesh/") or method == "OPTIONS":
            return False
        if scope.get("state", {}).get(PEER_CALL):
            return False  # a member's signed call
        client = scope.get("client")
        if (
            self.mesh_key is None
            and client
            and header(scope["headers"], b"x-herd-forwarded")
            and self._is_peer(client[0])
        ):
            return False  # an open mesh: a verified peer passing a job on
        if self.api_keys:
            readable = method in ("GET", "HEAD") and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))
            return not readable
        return self.mesh_key is not None and (method, path) in CHANGES_MESH

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or not self._protected(scope):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        what = "an API key" if self.api_keys else "the mesh key (`herd key show` on a member Mac) or an API key"
        if key is None:
            await drain(receive)
            await send_json_error(send, 401, f"this call needs {what}: send it as Authorization: Bearer <key>",
                                  {"WWW-Authenticate": 'Bearer realm="herd-mesh"'}, path=scope["path"])  # fmt: skip
            return
        if not any(hmac.compare_digest(key.encode(), k) for k in self.keys):
            await drain(receive)
            await send_json_error(send, 403, f"that key is not accepted here: this call needs {what}",
                                  path=scope["path"])  # fmt: skip
            return
        await self.app(scope, receive, send)
