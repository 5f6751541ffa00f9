"""`GET /api/jobs/{id}` on any peer: where a job is and how it is getting on (queued where, step i of n, ETA),
and why it runs where it runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...core.views import LIVE
from ...dispatch.jobs import REQUEST_ID_RE, Jobs, progress
from ...errors import PeerError, RequestError
from ...mesh.clients import PeerClients
from ...mesh.snapshot import MeshView

ASK_TIMEOUT_S = 1.0  # another peer's share of a lookup


class JobRoutes:
    def __init__(self, *, jobs: Jobs, view: MeshView, clients: PeerClients) -> None:
        self._jobs = jobs
        self._view = view
        self._clients = clients

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/jobs/{job_id}", self.job, methods=["GET"])]

    def lookup(self, job_id: str) -> dict[str, Any] | None:
        """What this peer knows: its own record of the job (it took it from a client), and where it is now in the
        queues the mesh advertises."""
        record = self._jobs.get(job_id)
        live = progress(self._view.snapshot(time.time()), job_id)
        if record is None:
            return None if live is None else {"id": job_id, "kind": "image", **live}
        doc = {**record.to_json(), "queue_position": None, "step": None, "steps": None, "eta_s": None}
        if live is not None and record.finished is None:
            doc.update(live)
        return doc

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if not REQUEST_ID_RE.match(job_id):
            raise RequestError(f"no such job {job_id[:80]!r}: job ids are what X-Request-Id said", 404)
        found = self.lookup(job_id)
        if found is None and request.query_params.get("local") != "1":
            found = await self._ask_peers(job_id)
        if found is None:
            raise RequestError(f"no peer knows job {job_id!r} (finished jobs are kept for 10 minutes)", 404)
        return JSONResponse(found)

    async def _ask_peers(self, job_id: str) -> dict[str, Any] | None:
        peers = [p for p in self._view.snapshot(time.time()).peers if not p.is_self and p.status in LIVE]

        async def ask(node_id: str) -> dict[str, Any] | None:
            client = self._clients.for_node(node_id)
            try:
                return await client.get_json(f"/api/jobs/{job_id}?local=1", ASK_TIMEOUT_S) if client else None
            except PeerError:
                return None

        answers = await asyncio.gather(*(ask(p.node_id) for p in peers))
        return next((a for a in answers if a is not None), None)
