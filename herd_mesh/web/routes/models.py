"""LLM chat and embeddings, in Ollama's, OpenAI's (Chat Completions, Responses, legacy Completions) and
Anthropic's (Messages) APIs, on every peer: each request is routed to the best peer's Ollama
(`dispatch.models`), and the model lists are the union of the mesh."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...core.api_errors import error_body, request_error_body
from ...core.model_lists import openai_models, union_ps, union_tags
from ...core.model_request import parse_llm_request
from ...core.protocol import H_FORWARDED
from ...dispatch.models import Call
from ...errors import RequestError
from .calls import CallServer

PeerLists = list[tuple[str, list[dict[str, Any]]]]


class ModelRoutes:
    def __init__(self, *, server: CallServer) -> None:
        self._server = server
        self._models = server.models

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", self.openai_chat, methods=["POST"]),
            Route("/v1/responses", self.openai_chat, methods=["POST"]),  # stateless, as Ollama serves it
            Route("/v1/completions", self.openai_chat, methods=["POST"]),
            Route("/v1/messages", self.anthropic_messages, methods=["POST"]),
            Route("/v1/embeddings", self.openai_embeddings, methods=["POST"]),
            Route("/v1/models", self.openai_model_list, methods=["GET"]),
            Route("/v1/models/{model:path}", self.openai_model, methods=["GET"]),
            Route("/api/chat", self.ollama_chat, methods=["POST"]),
            Route("/api/generate", self.ollama_chat, methods=["POST"]),
            Route("/api/embed", self.ollama_embed, methods=["POST"]),
            Route("/api/embeddings", self.ollama_embed, methods=["POST"]),
            Route("/api/show", self.ollama_show, methods=["POST"]),
            Route("/api/tags", self.ollama_tags, methods=["GET"]),
            Route("/api/ps", self.ollama_ps, methods=["GET"]),
            Route("/api/version", self.ollama_version, methods=["GET"]),
        ]

    async def _call(self, request: Request, *, kind: str, api: str, default_stream: bool) -> Response:
        raw = await request.body()
        try:
            req = parse_llm_request(
                raw, default_stream=default_stream, tags_header=request.headers.get("X-Herd-Tags")
            )
        except RequestError as exc:
            return JSONResponse(request_error_body(api, exc), exc.status)
        call = Call(kind=kind, api=api, path=request.url.path, body=raw, model=req.model, tags=req.tags,
                    prompt=req.prompt)  # fmt: skip
        return await self._server.serve(request, call)

    async def openai_chat(self, request: Request) -> Response:
        return await self._call(request, kind="llm", api="openai", default_stream=False)

    async def anthropic_messages(self, request: Request) -> Response:
        """Anthropic's Messages API (Claude Code, the `anthropic` SDK). Its key, as `x-api-key` or `Authorization`,
        is checked by the API-key middleware when keys are on, and ignored otherwise; `anthropic-version` is
        accepted and not needed (Ollama ignores both)."""
        return await self._call(request, kind="llm", api="anthropic", default_stream=False)

    async def openai_embeddings(self, request: Request) -> Response:
        return await self._call(request, kind="embeddings", api="openai", default_stream=False)

    async def ollama_chat(self, request: Request) -> Response:
        return await self._call(request, kind="llm", api="ollama", default_stream=True)

    async def ollama_embed(self, request: Request) -> Response:
        return await self._call(request, kind="embeddings", api="ollama", default_stream=False)

    async def ollama_show(self, request: Request) -> Response:
        return await self._call(request, kind="meta", api="ollama", default_stream=False)

    # -- lists: the union of the mesh (a forwarded list request answers for this peer only) ---------------------
    def _forwarded(self, request: Request) -> bool:
        return request.headers.get(H_FORWARDED) == "1" and self._server.from_peer(request)

    async def _lists(self, request: Request, path: str) -> tuple[PeerLists, dict[str, str]]:
        if self._forwarded(request):
            lists = [(self._models.me, await self._models.local_list(path))]
        else:
            lists = await self._models.mesh_lists(path)
        nodes = [node for node, entries in lists if entries] or [self._models.me]
        return lists, {"X-Fleet-Node": ",".join(nodes)}

    async def ollama_tags(self, request: Request) -> Response:
        lists, headers = await self._lists(request, "/api/tags")
        if self._forwarded(request):
            return JSONResponse({"models": lists[0][1]}, headers=headers)
        return JSONResponse({"models": union_tags(lists)}, headers=headers)

    async def ollama_ps(self, request: Request) -> Response:
        lists, headers = await self._lists(request, "/api/ps")
        if self._forwarded(request):
            return JSONResponse({"models": lists[0][1]}, headers=headers)
        return JSONResponse({"models": union_ps(lists)}, headers=headers)

    async def openai_model_list(self, request: Request) -> Response:
        """OpenAI's model list; for the `anthropic` client (it sends `anthropic-version`), with Anthropic's fields
        and page markers added."""
        lists, headers = await self._lists(request, "/api/tags")
        models = openai_models(union_tags(lists))
        if not _anthropic(request):
            return JSONResponse({"object": "list", "data": models}, headers=headers)
        page = {
            "object": "list",
            "data": [_anthropic_model(m) for m in models],
            "has_more": False,
            "first_id": models[0]["id"] if models else None,
            "last_id": models[-1]["id"] if models else None,
        }
        return JSONResponse(page, headers=headers)

    async def openai_model(self, request: Request) -> Response:
        name = request.path_params["model"]
        lists, headers = await self._lists(request, "/api/tags")
        models = openai_models(union_tags(lists))
        for model in models:
            if model["id"] == name or model["id"] == f"{name}:latest":
                body = _anthropic_model(model) if _anthropic(request) else model
                return JSONResponse(body, headers={**headers, "X-Fleet-Model": model["id"]})
        available = ", ".join(m["id"] for m in models) or "none"
        api = "anthropic" if _anthropic(request) else "openai"
        return JSONResponse(error_body(api, 404, f"model {name!r} is not in the mesh; models: {available}"),
                            404, headers=headers)  # fmt: skip

    async def ollama_version(self, request: Request) -> Response:
        version = self._models.ollama_version()
        headers = {"X-Fleet-Node": self._models.me}
        if version is None:
            message = "no peer of the mesh has a running Ollama: start it with `ollama serve`"
            return JSONResponse(error_body("ollama", 503, message), 503, headers=headers)
        return JSONResponse({"version": version}, headers=headers)


def _anthropic(request: Request) -> bool:
    """The `anthropic` client sends `anthropic-version` with every request; the `openai` client never does."""
    return "anthropic-version" in request.headers


def _anthropic_model(model: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI model entry with the fields Anthropic's `ModelInfo` has, so both clients can read it."""
    created = datetime.fromtimestamp(int(model.get("created") or 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**model, "type": "model", "display_name": model["id"], "created_at": created, "lifecycle": "active"}
