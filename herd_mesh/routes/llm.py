"""LLM chat and embeddings, Ollama's API and OpenAI's, on every peer: each request is routed to the best peer's
Ollama (`llm_routing`), and the model lists are the union of the mesh."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import EngineError, RequestError
from ..llm_requests import parse_llm_request
from ..llm_routing import Call, ModelRouter, new_job_id
from ..model_lists import openai_models, union_ps, union_tags
from ..node import Node
from ..peer_client import H_FORWARDED, H_JOB
from ..relay import Upstream, error_body, error_response
from .common import ClientGone, until_disconnect


def _router(request: Request) -> ModelRouter:
    router: ModelRouter = request.app.state.models
    return router


def _forwarded(request: Request) -> bool:
    return request.headers.get(H_FORWARDED) == "1"


async def serve(request: Request, call: Call) -> Response:
    """Run `call` where it belongs and answer with its (possibly streamed) result, or an error in the call's
    API's own shape. A forwarded call runs here and only here, and is recorded by the peer that forwarded it."""
    router = _router(request)
    started = time.monotonic()
    forwarded = _forwarded(request)
    job_id = (request.headers.get(H_JOB) if forwarded else None) or new_job_id()
    record = not forwarded
    try:
        if forwarded:
            node: Node = request.app.state.node
            node.heard_from(request.headers)
            opened = await until_disconnect(request, router.open_here(call, job_id))
        else:
            opened = await until_disconnect(request, router.open(call, job_id))
    except ClientGone:
        if record:
            router.record(call, job_id, status="cancelled", node=None, model=call.model, started=started,
                          error="client disconnected")  # fmt: skip
        return Response(status_code=499)
    except Upstream as exc:  # refused where it ran, for a reason no other peer would change: passed on as written
        if record:
            router.record(call, job_id, status="failed", node=exc.node, model=call.model, started=started,
                          error=exc.reason())  # fmt: skip
        headers = {"X-Fleet-Node": exc.node, "X-Fleet-Model": call.model}
        return Response(exc.body, status_code=exc.status, media_type=exc.content_type, headers=headers)
    except RequestError as exc:
        if record:
            router.record(call, job_id, status="failed", node=None, model=call.model, started=started,
                          error=exc.message)  # fmt: skip
        return error_response(call.api, exc, headers={"X-Fleet-Node": router.node.node_id})
    except EngineError as exc:  # only where a forwarded call runs: the entry peer tries another
        body = error_body(call.api, 503, str(exc), reason="engine")
        return JSONResponse(body, 503, headers={"X-Fleet-Node": router.node.node_id})
    return await router.respond(call, opened, job_id=job_id, started=started, record=record)


async def _model_call(request: Request, *, kind: str, api: str, default_stream: bool) -> Response:
    raw = await request.body()
    try:
        req = parse_llm_request(raw, default_stream=default_stream, tags_header=request.headers.get("X-Herd-Tags"))
    except RequestError as exc:
        return error_response(api, exc)
    call = Call(kind=kind, api=api, path=request.url.path, body=raw, model=req.model, tags=req.tags,
                prompt=req.prompt)  # fmt: skip
    return await serve(request, call)


async def openai_chat(request: Request) -> Response:
    return await _model_call(request, kind="llm", api="openai", default_stream=False)


async def openai_embeddings(request: Request) -> Response:
    return await _model_call(request, kind="embeddings", api="openai", default_stream=False)


async def ollama_chat(request: Request) -> Response:
    return await _model_call(request, kind="llm", api="ollama", default_stream=True)


async def ollama_embed(request: Request) -> Response:
    return await _model_call(request, kind="embeddings", api="ollama", default_stream=False)


async def ollama_show(request: Request) -> Response:
    return await _model_call(request, kind="meta", api="ollama", default_stream=False)


# -- lists: the union of the mesh (a forwarded list request answers for this peer only) -----------------------------
async def _lists(request: Request, path: str) -> tuple[list[tuple[str, list[dict]]], dict[str, str]]:
    router = _router(request)
    if _forwarded(request):
        lists = [(router.node.node_id, await router.local_list(path))]
    else:
        lists = await router.mesh_lists(path)
    nodes = [node for node, entries in lists if entries] or [router.node.node_id]
    return lists, {"X-Fleet-Node": ",".join(nodes)}


async def ollama_tags(request: Request) -> Response:
    lists, headers = await _lists(request, "/api/tags")
    if _forwarded(request):
        return JSONResponse({"models": lists[0][1]}, headers=headers)
    return JSONResponse({"models": union_tags(lists)}, headers=headers)


async def ollama_ps(request: Request) -> Response:
    lists, headers = await _lists(request, "/api/ps")
    if _forwarded(request):
        return JSONResponse({"models": lists[0][1]}, headers=headers)
    return JSONResponse({"models": union_ps(lists)}, headers=headers)


async def openai_model_list(request: Request) -> Response:
    lists, headers = await _lists(request, "/api/tags")
    return JSONResponse({"object": "list", "data": openai_models(union_tags(lists))}, headers=headers)


async def openai_model(request: Request) -> Response:
    name = request.path_params["model"]
    lists, headers = await _lists(request, "/api/tags")
    models = openai_models(union_tags(lists))
    for model in models:
        if model["id"] == name or model["id"] == f"{name}:latest":
            return JSONResponse(model, headers={**headers, "X-Fleet-Model": model["id"]})
    available = ", ".join(m["id"] for m in models) or "none"
    return JSONResponse(error_body("openai", 404, f"model {name!r} is not in the mesh; models: {available}"), 404,
                        headers=headers)  # fmt: skip


async def ollama_version(request: Request) -> Response:
    router = _router(request)
    version = router.ollama_version()
    if version is None:
        message = "no peer of the mesh has a running Ollama: start it with `ollama serve`"
        return JSONResponse(error_body("ollama", 503, message), 503, headers={"X-Fleet-Node": router.node.node_id})
    return JSONResponse({"version": version}, headers={"X-Fleet-Node": router.node.node_id})


routes = [
    Route("/v1/chat/completions", openai_chat, methods=["POST"]),
    Route("/v1/embeddings", openai_embeddings, methods=["POST"]),
    Route("/v1/models", openai_model_list, methods=["GET"]),
    Route("/v1/models/{model:path}", openai_model, methods=["GET"]),
    Route("/api/chat", ollama_chat, methods=["POST"]),
    Route("/api/generate", ollama_chat, methods=["POST"]),
    Route("/api/embed", ollama_embed, methods=["POST"]),
    Route("/api/embeddings", ollama_embed, methods=["POST"]),
    Route("/api/show", ollama_show, methods=["POST"]),
    Route("/api/tags", ollama_tags, methods=["GET"]),
    Route("/api/ps", ollama_ps, methods=["GET"]),
    Route("/api/version", ollama_version, methods=["GET"]),
]
