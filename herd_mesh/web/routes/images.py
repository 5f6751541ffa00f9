"""Image generation: the seed's `/api/generate-image`, OpenAI's `/v1/images/generations`, `/api/image-models`,
and `/mesh/steal-image`, where an idle peer asks for a queued job."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...core import catalogue
from ...core.image_request import header_tags, parse_image_request, parse_openai_request
from ...core.names import valid_node_id
from ...core.protocol import H_FORWARDED, H_JOB, H_REDIRECTABLE
from ...dispatch.images import H_VISITED, ImageDispatch, ImageResult, new_job_id
from ...dispatch.jobs import request_id
from ...errors import ClientGone, RequestError
from ...mesh.membership import Membership
from ...mesh.snapshot import MeshView
from ..common import client_host, json_body, until_disconnect

T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's "client closed request": logged, never seen by the client


class ImageRoutes:
    def __init__(self, *, images: ImageDispatch, membership: Membership, view: MeshView) -> None:
        self._images = images
        self._membership = membership
        self._view = view

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/generate-image", self.generate_image, methods=["POST"]),
            Route("/v1/images/generations", self.openai_generations, methods=["POST"]),
            Route("/api/image-models", self.image_models, methods=["GET"]),
            Route("/mesh/steal-image", self.steal, methods=["POST"]),
        ]

    async def generate_image(self, request: Request) -> Response:
        body = await json_body(request)
        sender = self._membership.caller(request.headers, client_host(request))
        forwarded = request.headers.get(H_FORWARDED) == "1" and sender is not None
        req = await self._parsed(body, parse_image_request, forwarded=forwarded)
        try:
            if forwarded and sender is not None:
                self._membership.heard_from(request.headers, client_host(request))
                work = self._images.serve_forwarded(
                    req,
                    job_id=request_id(request.headers.get(H_JOB), new_job_id()),
                    entry_node=sender,
                    redirectable=request.headers.get(H_REDIRECTABLE) == "1",
                    visited=frozenset(filter(valid_node_id, request.headers.get(H_VISITED, "").split(","))),
                )
            else:
                tags = req.tags + header_tags(request.headers.get("X-Herd-Tags"))
                job_id = request_id(request.headers.get("X-Request-Id"), new_job_id())
                work = self._images.generate(req, tags=tags, job_id=job_id)
            result = await until_disconnect(request, work)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        return _png(result)

    async def _parsed(self, body: dict[str, Any], parse: Callable[[dict[str, Any]], T], *, forwarded: bool) -> T:
        """The parsed request; a client's malformed one is recorded as rejected (never a failure of the mesh)."""
        try:
            return parse(body)
        except RequestError as exc:
            if not forwarded:
                await self._images.rejected(body, exc)
            raise

    async def openai_generations(self, request: Request) -> Response:
        body = await json_body(request)
        req, n = await self._parsed(
            body, lambda b: parse_openai_request(b, default_model="z-image-turbo"), forwarded=False
        )
        tags = req.tags + header_tags(request.headers.get("X-Herd-Tags"))
        first = req.seed
        jobs = []
        for i in range(n):  # n images run in parallel, on as many peers as the scheduler likes
            seed = None if first is None else (first + i) % 2**32
            jobs.append(self._images.generate(replace(req, seed=seed), tags=tags))
        try:
            results = await until_disconnect(request, asyncio.gather(*jobs))
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        headers = results[0].headers()
        headers["X-Fleet-Node"] = ",".join(r.node for r in results)
        data = [{"b64_json": base64.b64encode(r.png).decode(), "revised_prompt": req.prompt} for r in results]
        return JSONResponse({"created": int(time.time()), "data": data}, headers=headers)

    async def image_models(self, request: Request) -> Response:
        snapshot = self._view.snapshot(time.time())
        views = {v.node_id: v for v in snapshot.image_views}
        out: list[dict[str, Any]] = []
        for name in sorted(set(catalogue.MODELS) | {m for v in views.values() for m in v.installed}):
            model = catalogue.get(name)
            peers = [
                {"node_id": v.node_id, "status": v.status, "loaded": name in v.loaded, "cached": name in v.cached,
                 "queue": len(v.job_ids), "accepting": v.accepting}
                for v in views.values()
                if name in v.installed
            ]  # fmt: skip
            base = next((v.bases[name] for v in views.values() if name in v.bases), None)
            entry = {
                "name": name,
                "description": model.description if model else f"a local model based on {base}" if base else "",
                "available": any(p["status"] == "up" and p["accepting"] for p in peers),
                "peers": peers,
            }
            if model is not None:
                entry["defaults"] = {"steps": model.default_steps, "guidance": model.default_guidance}
            if base is not None:
                entry["base"] = base
            out.append(entry)
        return JSONResponse({"models": out, "install": catalogue.INSTALL_COMMAND})

    async def steal(self, request: Request) -> Response:
        """An idle peer asks for a queued job; we answer with the one we handed over, if any."""
        thief = self._membership.caller(request.headers, client_host(request))
        body = await json_body(request)
        if thief is None or not isinstance(body.get("image"), dict):
            raise RequestError("steal requests come from a known peer, at its own address, with its 'image' state",
                               403)  # fmt: skip
        try:
            handover = self._images.service.give_away(thief, body["image"])
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise RequestError(f"the 'image' state sent with the steal request is malformed: {exc}") from exc
        if handover is None:
            return JSONResponse({"job_id": None})
        return JSONResponse({"job_id": handover.job_id, "reason": handover.reason})


def _png(result: ImageResult) -> Response:
    return Response(result.png, media_type="image/png", headers=result.headers())
