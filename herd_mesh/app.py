"""The Starlette app factory: every route family, error handlers, and the node's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .errors import RequestError
from .middleware import BodyLimitMiddleware
from .node import Node
from .routes import dashboard, mesh

logger = logging.getLogger(__name__)

UPLOAD_PATHS = ("/api/transcribe", "/v1/audio/transcriptions")  # audio uploads; every other body is JSON


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


async def _root(request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=307)


def create_app(node: Node, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    routes: list[BaseRoute] = [Route("/", _root), *mesh.routes, *dashboard.routes, *(extra_routes or [])]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(BodyLimitMiddleware, upload_paths=UPLOAD_PATHS)],
        exception_handlers={RequestError: _request_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.node = node
    return app
