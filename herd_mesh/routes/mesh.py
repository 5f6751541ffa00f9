"""Peer-to-peer endpoints: liveness probes, the capability document, the peer list, leave notices."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..node import Node
from ..peer_client import H_MESH, H_NODE


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


async def ping(request: Request) -> Response:
    node = _node(request)
    node.heard_from(request.headers)
    return JSONResponse(node.ping())


async def state(request: Request) -> Response:
    return JSONResponse(_node(request).state())


async def peers(request: Request) -> Response:
    return JSONResponse(_node(request).peers_document())


async def leave(request: Request) -> Response:
    node = _node(request)
    sender = request.headers.get(H_NODE)
    if sender and request.headers.get(H_MESH) == node.config.mesh:
        node.table.goodbye(sender, now=time.time())
    return JSONResponse({"ok": True})


routes = [
    Route("/mesh/ping", ping, methods=["GET"]),
    Route("/mesh/state", state, methods=["GET"]),
    Route("/mesh/peers", peers, methods=["GET"]),
    Route("/mesh/leave", leave, methods=["POST"]),
]
