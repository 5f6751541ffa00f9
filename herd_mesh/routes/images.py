"""Image generation: the seed's `/api/generate-image`, OpenAI's `/v1/images/generations`, `/api/image-models`."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import image_models
from ..errors import RequestError
from ..image_routing import ImageResult, ImageRouter
from ..node import Node
from ..peer_client import H_FORWARDED, H_JOB, H_NODE, H_REDIRECTABLE
from ..validation import header_tags, parse_image_request, parse_openai_request
from .common import ClientGone, json_body, until_disconnect


def _router(request: Request) -> ImageRouter:
    router: ImageRouter = request.app.state.images
    return router


async def generate_image(request: Request) -> Response:
    router = _router(request)
    req = parse_image_request(await json_body(request))
    try:
        if request.headers.get(H_FORWARDED) == "1":
            node: Node = request.app.state.node
            node.heard_from(request.headers)
            result = await until_disconnect(
                request,
                router.run_here(
                    req,
                    job_id=request.headers.get(H_JOB, "") or uuid.uuid4().hex[:16],
                    entry_node=request.headers.get(H_NODE, "?"),
                    redirectable=request.headers.get(H_REDIRECTABLE) == "1",
                ),
            )
        else:
            tags = req.tags + header_tags(request.headers.get("X-Herd-Tags"))
            result = await until_disconnect(request, router.generate(req, tags=tags))
    except ClientGone:
        return Response(status_code=499)
    return _png(result)


def _png(result: ImageResult) -> Response:
    return Response(result.png, media_type="image/png", headers=result.headers())


async def openai_generations(request: Request) -> Response:
    router = _router(request)
    req, n = parse_openai_request(await json_body(request), default_model="z-image-turbo")
    tags = req.tags + header_tags(request.headers.get("X-Herd-Tags"))
    first = req.seed if req.seed is not None else None
    jobs = []
    for i in range(n):  # n images run in parallel, on as many peers as the scheduler likes
        seed = None if first is None else (first + i) % 2**32
        jobs.append(router.generate(type(req)(**{**req.__dict__, "seed": seed}), tags=tags))
    try:
        results = await until_disconnect(request, asyncio.gather(*jobs))
    except ClientGone:
        return Response(status_code=499)
    headers = results[0].headers()
    headers["X-Fleet-Node"] = ",".join(r.node for r in results)
    return JSONResponse(
        {
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(r.png).decode(), "revised_prompt": req.prompt} for r in results],
        },
        headers=headers,
    )


async def image_models_list(request: Request) -> Response:
    router = _router(request)
    node: Node = request.app.state.node
    views = {v.node_id: v for v in router.views()}
    statuses = {p.node_id: p.status for p in node.table.all()}
    statuses[node.node_id] = "up"
    out = []
    for name in sorted(set(image_models.MODELS) | {m for v in views.values() for m in v.installed}):
        model = image_models.get(name)
        peers = [
            {
                "node_id": v.node_id,
                "status": statuses.get(v.node_id, v.status),
                "loaded": name in v.loaded,
                "cached": name in v.cached,
                "queue": len(v.job_ids),
                "accepting": v.accepting,
            }
            for v in views.values()
            if name in v.installed
        ]
        out.append(
            {
                "name": name,
                "description": model.description if model else "",
                "available": any(p["status"] == "up" and p["accepting"] for p in peers),
                "peers": peers,
            }
        )
    return JSONResponse({"models": out, "install": "uv tool install mflux"})


async def steal(request: Request) -> Response:
    """An idle peer asks for a queued job; we answer with the one we handed over, if any."""
    node: Node = request.app.state.node
    node.heard_from(request.headers)
    thief = request.headers.get(H_NODE)
    body = await json_body(request)
    if not thief or node.table.get(thief) is None or not isinstance(body.get("image"), dict):
        raise RequestError("steal requests come from a known peer with its 'image' state")
    try:
        handover = _router(request).service.give_away(thief, body["image"])
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise RequestError(f"the 'image' state sent with the steal request is malformed: {exc}") from exc
    if handover is None:
        return JSONResponse({"job_id": None})
    return JSONResponse({"job_id": handover.job_id, "reason": handover.reason})


routes = [
    Route("/api/generate-image", generate_image, methods=["POST"]),
    Route("/v1/images/generations", openai_generations, methods=["POST"]),
    Route("/api/image-models", image_models_list, methods=["GET"]),
    Route("/mesh/steal-image", steal, methods=["POST"]),
]
