"""Peer-to-peer endpoints: liveness probes, the capability document, the peer list, leave notices, settings
exchange, and each peer's own request records for mesh-wide statistics."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...core.protocol import H_MESH, H_NODE
from ...core.units import DAY_S
from ...core.work import KINDS
from ...errors import RequestError
from ...mesh.membership import Membership
from ...mesh.node import Node
from ...mesh.settings_sync import SettingsSync
from ...storage.records import Records, shared_rows
from ..common import client_host, float_param, int_param, json_body

MAX_RECORDS_LIMIT = 100_000  # rows one /mesh/records answer may carry


class MeshRoutes:
    def __init__(self, *, node: Node, membership: Membership, settings_sync: SettingsSync, records: Records) -> None:
        self._node = node
        self._membership = membership
        self._settings_sync = settings_sync
        self._records = records

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/mesh/ping", self.ping, methods=["GET"]),
            Route("/mesh/state", self.state, methods=["GET"]),
            Route("/mesh/peers", self.peers, methods=["GET"]),
            Route("/mesh/known", self.known, methods=["GET"]),
            Route("/mesh/leave", self.leave, methods=["POST"]),
            Route("/mesh/settings", self.settings, methods=["GET", "POST"]),
            Route("/mesh/records", self.records, methods=["GET"]),
        ]

    async def ping(self, request: Request) -> Response:
        self._membership.heard_from(request.headers, client_host(request))
        return JSONResponse(self._node.ping())

    async def state(self, request: Request) -> Response:
        return JSONResponse(self._node.state.current())

    async def peers(self, request: Request) -> Response:
        return JSONResponse(self._node.peers_document())

    async def known(self, request: Request) -> Response:
        """The peers this one sees up (id and address), so that a peer that knows one address finds the rest."""
        return JSONResponse({"node_id": self._node.node_id, "peers": self._membership.known()})

    async def leave(self, request: Request) -> Response:
        """A peer says it is going. Checked before acted on: anyone could send these headers."""
        sender = request.headers.get(H_NODE)
        if sender and request.headers.get(H_MESH) == self._node.identity.mesh and self._node.table.get(sender):
            await self._membership.verify_leave(sender)
        return JSONResponse({"ok": True})

    async def settings(self, request: Request) -> Response:
        """GET: our entries. POST (another peer's entries): merge them, answer with ours after the merge."""
        if request.method == "POST":
            self._membership.heard_from(request.headers, client_host(request))
            mesh = self._node.identity.mesh
            if request.headers.get(H_MESH) != mesh:
                raise RequestError(f"settings are only taken from peers of mesh {mesh!r}", 403)
            body = await json_body(request)
            entries = body.get("entries")
            if not isinstance(entries, dict):
                raise RequestError('send {"entries": {key: {"value": ..., "ts": ..., "by": ...}}}')
            self._settings_sync.absorb(entries)
        return JSONResponse(self._settings_sync.document())

    async def records(self, request: Request) -> Response:
        """This peer's rows (`since`, optional `kind`, `limit`, `entry_node`: only requests that entered the mesh
        there), for another peer's mesh-wide statistics."""
        since = float_param(request, "since", time.time() - DAY_S)
        kind = request.query_params.get("kind")
        if kind is not None and kind not in KINDS:
            raise RequestError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        limit = int_param(request, "limit", MAX_RECORDS_LIMIT, 1, MAX_RECORDS_LIMIT)
        entry = request.query_params.get("entry_node") or None
        answer = await asyncio.to_thread(shared_rows, self._records, since=since, kind=kind, limit=limit,
                                         entry_node=entry)  # fmt: skip
        return JSONResponse({"node_id": self._node.node_id, "since": since, **answer})
