"""Exception handlers, the root redirect and the API contract: every error a client sees is JSON, never a
traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..dispatch.relay import relayable
from ..errors import PeerRefused, RequestError
from . import openapi

logger = logging.getLogger(__name__)


async def request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def peer_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PeerRefused)
    return refusal_response(exc, {"X-Fleet-Node": exc.node_id})


def refusal_response(exc: PeerRefused, headers: dict[str, str]) -> Response:
    """A peer's refusal that no other peer would change: passed on as that peer wrote it when it is data, else
    as a JSON error (a peer's HTML must never run on this peer's origin). A backend's own failure (Ollama's
    500) is a bad gateway here: this peer itself did not fail."""
    status = 502 if exc.status >= 500 and exc.status not in (502, 503, 504) else exc.status
    if relayable(exc.content_type):
        return Response(exc.body, status_code=status, media_type=exc.content_type, headers=headers)
    return JSONResponse({"error": f"{exc.node_id}: {exc.message}"}, status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    message = f"internal error ({type(exc).__name__}) on {request.method} {request.url.path}; the peer's log has it"
    return JSONResponse({"error": message}, status_code=500)


async def root(request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=307)


async def openapi_json(request: Request) -> Response:
    """`GET /openapi.json`: the public API's contract (`web/openapi/`)."""
    return JSONResponse(openapi.SPEC)
