"""Model management through the mesh, in Ollama's API: `POST /api/pull`, `POST|DELETE /api/delete`,
`POST /api/copy` and `POST /api/create`, each run on one peer's Ollama (`dispatch.manage`), with progress
streamed as Ollama streams it; and `GET /mesh/disk`, a peer's free disk, which a pull with no peer named is
placed by."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...core.manage_request import parse_manage_request
from ...core.protocol import H_FORWARDED
from ...dispatch.manage import ModelManager
from ...dispatch.relay import Opened, relay_response
from ...errors import ClientGone, EngineError, PeerRefused, PeerUnreachable, RequestError
from ..common import until_disconnect
from ..handlers import refusal_response
from .calls import CallServer
from .images import CLIENT_CLOSED

logger = logging.getLogger(__name__)


class ManageRoutes:
    def __init__(self, *, manager: ModelManager, server: CallServer) -> None:
        self._manager = manager
        self._server = server

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/pull", self.pull, methods=["POST"]),
            Route("/api/delete", self.delete, methods=["POST", "DELETE"]),  # DELETE: what Ollama's clients send
            Route("/api/copy", self.copy, methods=["POST"]),
            Route("/api/create", self.create, methods=["POST"]),
            Route("/mesh/disk", self.disk, methods=["GET"]),
        ]

    async def pull(self, request: Request) -> Response:
        return await self._run(request, "pull")

    async def delete(self, request: Request) -> Response:
        return await self._run(request, "delete")

    async def copy(self, request: Request) -> Response:
        return await self._run(request, "copy")

    async def create(self, request: Request) -> Response:
        return await self._run(request, "create")

    async def disk(self, request: Request) -> Response:
        return JSONResponse(self._manager.disk())

    async def _run(self, request: Request, op: str) -> Response:
        """Check the request (the guardrails hold on every peer, forwarded or not), run it where it belongs,
        and answer with Ollama's answer or progress stream, `X-Fleet-Node` naming the peer it ran on."""
        raw = await request.body()
        me = self._manager.me
        try:
            req = parse_manage_request(op, raw)
            forwarded = request.headers.get(H_FORWARDED) == "1" and self._server.from_peer(request)
            if forwarded and req.node not in (None, me):
                raise RequestError(f"this is {me}, not {req.node}: the request was sent to the wrong peer", 409)
            work = self._manager.open_here(req) if forwarded else self._manager.open(req, raw)
            opened = await until_disconnect(request, work)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        except PeerRefused as exc:  # that peer's Ollama (or that peer) refused: as it was written
            return refusal_response(exc, {"X-Fleet-Node": exc.node_id})
        except RequestError as exc:
            return JSONResponse(exc.body(), exc.status, headers={"X-Fleet-Node": me, **exc.headers()})
        except (PeerUnreachable, EngineError) as exc:  # not retried elsewhere: the model goes where it was asked
            node = exc.node_id if isinstance(exc, PeerUnreachable) else me
            return JSONResponse({"error": f"{op} failed: {exc}"}, 502, headers={"X-Fleet-Node": node})
        return await _respond(opened)


async def _respond(opened: Opened) -> Response:
    headers = {"X-Fleet-Node": opened.node, "X-Fleet-Model": opened.model}
    if opened.complete:
        await opened.close()
        return Response(opened.head, media_type=opened.content_type, headers=headers)

    def on_end(status: str, error: str | None) -> None:
        if status != "ok":
            logger.warning("model change on %s ended %s: %s", opened.node, status, error)

    return relay_response(opened, headers=headers, on_end=on_end, api="ollama")
