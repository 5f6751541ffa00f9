"""Copies of request records between peers (`mesh/records_sync.py`): a peer pushes the rows it just recorded,
and asks another for the rows it lacks. Only verified peers of this mesh may do either."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import RequestError
from ...mesh.membership import Membership
from ...mesh.records_sync import RecordsSync
from ...storage.records import Records, shared
from ..common import client_host, int_param, json_body

MAX_PUSH_ROWS = 5000  # rows one push may carry
MAX_PAGE_ROWS = 5000  # rows one changes page may carry
MAX_SEQ = 2**62


class RecordRoutes:
    def __init__(
        self,
        *,
        node_id: str,
        records: Records,
        sync: RecordsSync,
        membership: Membership,
    ) -> None:
        self._node_id = node_id
        self._records = records
        self._sync = sync
        self._membership = membership

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/mesh/records", self.push, methods=["POST"]),
            Route("/mesh/records/changes", self.changes, methods=["GET"]),
        ]

    def _peer(self, request: Request) -> str:
        """The verified peer making this call; anyone else gets 403 and nothing is read or stored."""
        caller = self._membership.caller(request.headers, client_host(request))
        if caller is None:
            raise RequestError("request records are only exchanged with known peers of this mesh, calling from "
                               "their own address", 403)  # fmt: skip
        return caller

    async def push(self, request: Request) -> Response:
        """A peer's new rows: stored once each (a copy seen before is skipped)."""
        caller = self._peer(request)
        body = await json_body(request)
        rows = body.get("rows")
        if not isinstance(rows, list) or len(rows) > MAX_PUSH_ROWS:
            raise RequestError(f'send {{"rows": [...]}} with at most {MAX_PUSH_ROWS} rows')
        accepted = self._sync.accept(rows)
        stored = await asyncio.to_thread(self._records.merge, accepted, source=caller) if accepted else 0
        return JSONResponse({"node_id": self._node_id, "stored": stored, "refused": len(rows) - len(accepted)})

    async def changes(self, request: Request) -> Response:
        """Rows stored here after `after` (this file's local ids), unless `db` names another file of ours: then
        from the start. Rows the caller gave us are not sent back."""
        caller = self._peer(request)
        after = int_param(request, "after", 0, 0, MAX_SEQ)
        limit = int_param(request, "limit", 1000, 1, MAX_PAGE_ROWS)
        if request.query_params.get("db", "") != self._records.db_id:
            after = 0
        rows, upto = await asyncio.to_thread(self._records.changes, after=after, limit=limit, skip_source=caller)
        shown = [shared(r, prompts=False) for r in rows]  # prompts stay on the Mac they were sent to
        return JSONResponse({"node_id": self._node_id, "db": self._records.db_id, "upto": upto,
                             "more": len(rows) >= limit, "rows": shown})  # fmt: skip
