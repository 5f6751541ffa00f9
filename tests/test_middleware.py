"""The body limit, through the app factory: only the audio upload paths and whole conversations (chat) take
bodies over 1 MB."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from herd_mesh.web.app import CONVERSATION_PATHS, UPLOAD_PATHS
from herd_mesh.web.middleware.body_limit import MAX_BODY_BYTES, MAX_CONVERSATION_BYTES, BodyLimitMiddleware
from herd_mesh.web.middleware.client_limit import ClientLimitMiddleware
from tests.inprocess import until

MB = 1024 * 1024


async def _size(request: Request) -> Response:
    return JSONResponse({"bytes": len(await request.body())})


@pytest.fixture
def client() -> TestClient:
    """The middleware alone, in front of routes that only count the body they were let read."""
    routes = [Route(path, _size, methods=["POST"]) for path in ("/api/embed", "/v1/messages", *UPLOAD_PATHS)]
    middleware = Middleware(BodyLimitMiddleware, upload_paths=UPLOAD_PATHS, conversation_paths=CONVERSATION_PATHS)
    app = Starlette(routes=routes, middleware=[middleware])
    return TestClient(app)


def multipart(size: int) -> dict:
    return {"files": {"audio": ("a.wav", b"x" * size, "audio/wav")}}


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/json"])
def test_json_routes_refuse_over_1_mb_whatever_the_content_type(client: TestClient, content_type: str) -> None:
    body = b'{"model": "m", "prompt": "' + b"x" * (MAX_BODY_BYTES + MB // 10) + b'"}'
    response = client.post("/api/embed", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 413 and "larger than 1 MB" in response.json()["error"]
    streamed = client.post("/api/embed", content=iter([body[: MB // 2], body[MB // 2 :]]))  # no Content-Length
    assert streamed.status_code == 413
    assert client.post("/api/embed", **multipart(MB // 2)).status_code == 200


def test_a_long_conversation_fits_but_not_an_endless_one(client: TestClient) -> None:
    """An agent sends its whole conversation every turn (Claude Code's reach megabytes)."""
    turn = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * (5 * MB) + b'"}]}'
    assert client.post("/v1/messages", content=turn, headers={"Content-Type": "application/json"}).status_code == 200
    endless = b"x" * (MAX_CONVERSATION_BYTES + MB)
    response = client.post("/v1/messages", content=endless, headers={"Content-Type": "application/json"})
    assert response.status_code == 413  # in Anthropic's shape there, so its client shows the message
    assert "larger than 32 MB" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", UPLOAD_PATHS)
def test_audio_uploads_may_be_larger(client: TestClient, path: str) -> None:
    response = client.post(path, **multipart(2 * MB))
    assert response.status_code == 200 and response.json()["bytes"] > 2 * MB


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_one_client_address_may_have_only_so_many_requests_in_flight() -> None:
    release = asyncio.Event()
    entered: list[str] = []

    async def slow(request: Request) -> Response:
        entered.append(request.client.host if request.client else "")
        await release.wait()
        return Response("done")

    app = ClientLimitMiddleware(Starlette(routes=[Route("/work", slow)]), is_peer=lambda host: host == "10.0.0.2",
                                limit=3)  # fmt: skip

    def client(host: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 1)), base_url="http://peer")

    async with client("10.0.0.1") as one, client("10.0.0.2") as peer, client("10.0.0.3") as other:
        held = [asyncio.ensure_future(one.get("/work")) for _ in range(3)]
        await until(lambda: len(entered) == 3, 5, "the first three to reach the endpoint")
        refused = await one.get("/work")
        assert (
            refused.status_code == 429 and refused.headers["Retry-After"] and "in flight" in refused.json()["error"]
        )
        others = [asyncio.ensure_future(c.get("/work")) for c in (peer, peer, peer, peer, other)]
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held, *others)] == [200] * 8
        assert (await one.get("/work")).status_code == 200
