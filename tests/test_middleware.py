"""The body limit, through the app factory: only the audio upload paths take bodies over 1 MB."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from herd_mesh.web.app import UPLOAD_PATHS
from herd_mesh.web.middleware.body_limit import MAX_BODY_BYTES, BodyLimitMiddleware

MB = 1024 * 1024


async def _size(request: Request) -> Response:
    return JSONResponse({"bytes": len(await request.body())})


@pytest.fixture
def client() -> TestClient:
    """The middleware alone, in front of routes that only count the body they were let read."""
    routes = [Route(path, _size, methods=["POST"]) for path in ("/api/chat", *UPLOAD_PATHS)]
    app = Starlette(routes=routes, middleware=[Middleware(BodyLimitMiddleware, upload_paths=UPLOAD_PATHS)])
    return TestClient(app)


def multipart(size: int) -> dict:
    return {"files": {"audio": ("a.wav", b"x" * size, "audio/wav")}}


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/json"])
def test_json_routes_refuse_over_1_mb_whatever_the_content_type(client: TestClient, content_type: str) -> None:
    body = b'{"model": "m", "prompt": "' + b"x" * (MAX_BODY_BYTES + MB // 10) + b'"}'
    response = client.post("/api/chat", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 413 and "larger than 1024 KB" in response.json()["error"]
    streamed = client.post("/api/chat", content=iter([body[: MB // 2], body[MB // 2 :]]))  # no Content-Length
    assert streamed.status_code == 413
    assert client.post("/api/chat", **multipart(MB // 2)).status_code == 200


@pytest.mark.parametrize("path", UPLOAD_PATHS)
def test_audio_uploads_may_be_larger(client: TestClient, path: str) -> None:
    response = client.post(path, **multipart(2 * MB))
    assert response.status_code == 200 and response.json()["bytes"] > 2 * MB
