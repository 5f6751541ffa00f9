"""Peer-to-peer endpoints: liveness probes, the capability document, the peer list, leave notices, settings
exchange, and each peer's own request records for mesh-wide statistics."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import records
from ..errors import RequestError
from ..node import Node
from ..peer_client import H_MESH, H_NODE
from ..stats import KINDS
from .common import json_body

MAX_RECORDS_LIMIT = 100_000  # rows one /mesh/records answer may carry


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
    """A peer says it is going. Checked before acted on: anyone could send these headers."""
    node = _node(request)
    sender = request.headers.get(H_NODE)
    if sender and request.headers.get(H_MESH) == node.config.mesh and node.table.get(sender) is not None:
        await node.verify_leave(sender)
    return JSONResponse({"ok": True})


async def settings(request: Request) -> Response:
    """GET: our entries. POST (another peer's entries): merge them, answer with ours after the merge."""
    node = _node(request)
    if request.method == "POST":
        node.heard_from(request.headers)
        if request.headers.get(H_MESH) != node.config.mesh:
            raise RequestError(f"settings are only taken from peers of mesh {node.config.mesh!r}", 403)
        body = await json_body(request)
        entries = body.get("entries")
        if not isinstance(entries, dict):
            raise RequestError('send {"entries": {key: {"value": ..., "ts": ..., "by": ...}}}')
        node.settings_sync.absorb(entries)
    return JSONResponse(node.settings_sync.document())


def _float_param(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RequestError(f"{name} must be a number (seconds since the epoch), got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RequestError(f"{name} must be a finite number, got {raw!r}")
    return value


async def records_since(request: Request) -> Response:
    """This peer's own rows (`since`, optional `kind`, `limit`), for another peer's mesh-wide statistics."""
    node = _node(request)
    since = _float_param(request, "since", time.time() - 86400)
    kind = request.query_params.get("kind")
    if kind is not None and kind not in KINDS:
        raise RequestError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    raw_limit = request.query_params.get("limit", str(MAX_RECORDS_LIMIT))
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_RECORDS_LIMIT:
        raise RequestError(f"limit must be an integer from 1 to {MAX_RECORDS_LIMIT}, got {raw_limit!r}")
    answer = await asyncio.to_thread(records.shared_rows, node.records, since=since, kind=kind, limit=int(raw_limit))
    return JSONResponse({"node_id": node.node_id, "since": since, **answer})


routes = [
    Route("/mesh/ping", ping, methods=["GET"]),
    Route("/mesh/state", state, methods=["GET"]),
    Route("/mesh/peers", peers, methods=["GET"]),
    Route("/mesh/leave", leave, methods=["POST"]),
    Route("/mesh/settings", settings, methods=["GET", "POST"]),
    Route("/mesh/records", records_since, methods=["GET"]),
]
