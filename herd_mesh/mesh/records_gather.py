"""Mesh-wide statistics from this peer's copy of the mesh's records, topped up by every peer's own rows.

Every record is copied to every peer (`records_sync.py`), so this peer's file alone holds the mesh's history,
including that of Macs that are off now. To also count what has not been copied yet (a row recorded a moment
ago, or while this peer was unreachable), every peer that is not down is asked, all at once, for the rows of
requests that entered the mesh there. One that does not answer within GATHER_TIMEOUT_S is named in the reply
with the reason; its rows are still counted from the copies here. Answers are reused for CACHE_S, so a
dashboard asking for statistics and health together costs one round of calls.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ..core.peer_table import PeerTable
from ..errors import PeerError
from ..storage.records import Records, shared_rows
from .clients import PeerClients

GATHER_TIMEOUT_S = 2.0  # a peer slower than this is left out of the statistics, and named
CACHE_S = 1.0  # answers younger than this are reused
MAX_ROWS_PER_PEER = 50_000  # the newest rows a peer sends; the reply lists peers that had more
MAX_LOCAL_ROWS = 100_000  # the newest rows read from this peer's own copy
MAX_RECORDS_BYTES = 16 * 1024 * 1024  # one peer's answer larger than this is refused


@dataclass(frozen=True)
class Gathered:
    answers: dict[str, list[Any]]  # node id -> its rows
    missing: dict[str, str]  # node id -> why it is not in `answers`
    truncated: frozenset[str]
    since: float


class MeshRecords:
    def __init__(self, *, node_id: str, records: Records, table: PeerTable, clients: PeerClients) -> None:
        self._node_id = node_id
        self._records = records
        self._table = table
        self._clients = clients
        self._cache: tuple[float, Gathered] | None = None
        self._lock = asyncio.Lock()

    async def gather(self, *, since: float, local_only: bool = False) -> Gathered:
        """Every peer's rows since `since` (all kinds), this peer's included."""
        if local_only:
            mine = await asyncio.to_thread(self._local, since)
            return Gathered({self._node_id: mine["rows"]}, {}, self._cut(self._node_id, mine), since)
        async with self._lock:
            now = time.monotonic()
            if self._cache is not None and now - self._cache[0] < CACHE_S and self._cache[1].since <= since:
                return self._cache[1]
            gathered = await self._gather(since)
            self._cache = (time.monotonic(), gathered)
            return gathered

    def _local(self, since: float) -> dict[str, Any]:
        return shared_rows(self._records, since=since, limit=MAX_LOCAL_ROWS, prompts=True)

    @staticmethod
    def _cut(node_id: str, answer: dict[str, Any]) -> frozenset[str]:
        return frozenset({node_id}) if answer.get("truncated") else frozenset()

    async def _gather(self, since: float) -> Gathered:
        peers = self._table.all()
        asked = [p for p in peers if p.status != "down"]
        missing = {p.node_id: f"down: {p.last_error or 'not reachable'}" for p in peers if p.status == "down"}
        path = f"/mesh/records?since={since!r}&limit={MAX_ROWS_PER_PEER}&entry_node="
        calls = [self._ask(p.node_id, path + p.node_id) for p in asked]
        mine, *theirs = await asyncio.gather(asyncio.to_thread(self._local, since), *calls)
        answers = {self._node_id: mine["rows"]}
        truncated = set(self._cut(self._node_id, mine))
        for peer, (answer, error) in zip(asked, theirs, strict=True):
            if answer is None:
                missing[peer.node_id] = error
                continue
            rows = answer.get("rows")
            if not isinstance(rows, list):
                missing[peer.node_id] = "answered without a list of rows"
                continue
            answers[peer.node_id] = rows
            truncated |= self._cut(peer.node_id, answer)
        return Gathered(answers, missing, frozenset(truncated), since)

    async def _ask(self, node_id: str, path: str) -> tuple[dict[str, Any] | None, str]:
        client = self._clients.for_node(node_id)
        if client is None:
            return None, "left the mesh"
        try:
            return await client.get_json(path, GATHER_TIMEOUT_S, max_bytes=MAX_RECORDS_BYTES), ""
        except PeerError as exc:
            return None, exc.message
