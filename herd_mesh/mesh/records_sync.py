"""Every request record is kept on every peer, so the mesh's history survives any Mac being off.

Why a copy on every peer rather than one replica: records are small (a few hundred bytes), meshes are a handful
of Macs, and a peer that holds everything answers statistics for the whole mesh from its own file even when
several Macs are off, with nothing to re-balance when peers come and go.

Two paths, both idempotent (a row is identified by entry peer, job id and time; a second copy is ignored):

- push: right after this peer records a request it sends the new row to every peer that is not down and keeps
  copies (it advertises `storage.records`): `POST /mesh/records`, `PUSH_TIMEOUT_S`. For an image the entry peer
  answers the client only once the copies are stored (`settle`, at most SETTLE_TIMEOUT_S): an answered image is
  on more than one Mac when any other is up. Streams are recorded when they end, and copied milliseconds later.
- pull (anti-entropy): every peer advertises its records file's id and change sequence in its state document
  (`storage.records`). A peer whose sequence moved past what we have read from it is asked for the rows added
  after our cursor (`GET /mesh/records/changes`), page by page; the cursor is kept in SQLite. A peer that was
  off, missed a push or is new catches up within a probe of being reachable, and rows travel on through any
  peer: a copy of a dead peer's row is pulled from whoever has it.

Only verified peers may push or pull (`Membership.caller`, as for forwarded jobs). Prompts never travel: a
prompt (kept only while store_prompts is on) stays on the Mac it was sent to, and a copy that carries one has it
dropped on arrival. A copy older than the retention window is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..core import stats
from ..core.peer_table import PeerTable
from ..core.units import DAY_S
from ..errors import PeerError
from ..storage.records import Records, shared
from ..storage.settings_store import SettingsStore
from .clients import PeerClients

logger = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 2.0  # a peer slower than this gets the rows by pulling them later
PULL_TIMEOUT_S = 5.0
PULL_CHECK_S = 0.5  # how often the peers' advertised sequences are compared with our cursors
PUSH_BATCH_ROWS = 500  # rows read for one push round
MAX_BATCH_BYTES = 512 * 1024  # one push body at most (peers refuse JSON bodies over 1 MB)
PULL_PAGE_ROWS = 2000  # rows asked for per pull page
MAX_PULL_BYTES = 16 * 1024 * 1024  # one pull page larger than this is refused
MAX_FUTURE_S = DAY_S  # a copy stamped further ahead than this (a wrong clock) is refused
RETRY_AFTER_FAILURE_S = 5.0  # a peer whose pull failed is not asked again sooner
SETTLE_TIMEOUT_S = 0.5  # an entry peer waits at most this long for its copies before answering the client


def accept(rows: Iterable[Any], *, now: float, retention_days: float) -> list[dict[str, Any]]:
    """The copies worth storing, cleaned: well formed, identified, inside the retention window, no prompt."""
    oldest, newest = now - retention_days * DAY_S, now + MAX_FUTURE_S
    kept = (stats.copy_row(r, oldest=oldest, newest=newest) for r in rows)
    return [r for r in kept if r is not None]


def batches(rows: list[dict[str, Any]], max_bytes: int = MAX_BATCH_BYTES) -> list[list[dict[str, Any]]]:
    """Rows cut into bodies under `max_bytes` (a row with a long prompt counts for what it is)."""
    out: list[list[dict[str, Any]]] = []
    size = 0
    for row in rows:
        length = len(json.dumps(row, default=str)) + 2
        if not out or size + length > max_bytes:
            out.append([])
            size = 0
        out[-1].append(row)
        size += length
    return out


class RecordsSync:
    def __init__(
        self, *, node_id: str, records: Records, settings: SettingsStore, table: PeerTable, clients: PeerClients
    ) -> None:
        self._node_id = node_id
        self._records = records
        self._settings = settings
        self._table = table
        self._clients = clients
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._pushed = records.seq  # own rows up to here were pushed (older ones reach peers by pulling)
        self._push_lock = asyncio.Lock()
        self._settling: set[asyncio.Future[None]] = set()
        self._pulling: dict[str, asyncio.Future[int]] = {}
        self._cursors: dict[str, tuple[str, int]] = {}  # node id -> (its records file id, seq read up to)
        self._failed_at: dict[str, float] = {}
        self.pushed_to: dict[str, float] = {}  # node id -> when a push last succeeded (for tests and health)

    # -- signals ------------------------------------------------------------------------------------------------
    def added(self) -> None:
        """Rows were stored here (called from the writer thread, or any other): push them soon."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the peer is stopping
                loop.call_soon_threadsafe(self._wake.set)

    def accept(self, rows: Iterable[Any]) -> list[dict[str, Any]]:
        return accept(rows, now=time.time(), retention_days=float(self._settings.get("stats_retention_days")))

    # -- loops ---------------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Push what this peer records, and pull what the others advertise and we lack, until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake.set()  # anything recorded before the loop started
        pusher = asyncio.ensure_future(self._push_loop())
        try:
            while True:
                try:
                    self._pull_where_behind()
                except Exception:
                    logger.exception("comparing record sequences failed")
                await asyncio.sleep(PULL_CHECK_S)
        finally:
            running: list[asyncio.Future[Any]] = [pusher, *self._pulling.values()]
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            self._loop = None

    async def _push_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                more = await self.push_new()
            except Exception:
                logger.exception("pushing request records failed")
                more = False
            if more:
                self._wake.set()

    async def settle(self, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Copy what this peer recorded to the others now, waiting at most `timeout_s` (the copying goes on)."""
        task = asyncio.ensure_future(self._push_recorded())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout_s)

    async def _push_recorded(self) -> None:
        await asyncio.to_thread(self._records.flush)
        try:
            await self.push_new()
        except Exception:
            logger.exception("pushing request records failed")

    async def push_new(self) -> bool:
        """Send this peer's rows recorded since the last push to every peer not down. True when more wait."""
        async with self._push_lock:
            rows, upto = await asyncio.to_thread(
                self._records.changes, after=self._pushed, limit=PUSH_BATCH_ROWS, own_only=True
            )
            self._pushed = upto
            if rows:
                body = [shared(r, prompts=False) for r in rows]
                targets = [p.node_id for p in self._table.all()
                           if p.status != "down" and advertised_records(p.capabilities) is not None]  # fmt: skip
                await asyncio.gather(*(self._push_to(node, body) for node in targets))
        return len(rows) >= PUSH_BATCH_ROWS

    async def _push_to(self, node_id: str, rows: list[dict[str, Any]]) -> None:
        client = self._clients.for_node(node_id)
        if client is None:
            return
        try:
            for batch in batches(rows):
                await client.post_json("/mesh/records", {"rows": batch}, PUSH_TIMEOUT_S)
        except PeerError as exc:  # it pulls them once it is reachable (or answers with the rows we lack)
            logger.debug("pushing %d records to %s failed: %s", len(rows), node_id, exc.message)
            return
        self.pushed_to[node_id] = time.time()

    def _pull_where_behind(self) -> None:
        now = time.monotonic()
        for peer in self._table.all():
            if peer.status != "up" or peer.node_id in self._pulling:
                continue
            if now - self._failed_at.get(peer.node_id, -RETRY_AFTER_FAILURE_S) < RETRY_AFTER_FAILURE_S:
                continue
            advertised = advertised_records(peer.capabilities)
            if advertised is None:
                continue  # an older peer without copies: its rows reach statistics by gathering
            db, seq = advertised
            have = self._cursors.get(peer.node_id)
            if have is None or db != have[0] or seq > have[1]:
                task = self._pulling[peer.node_id] = asyncio.ensure_future(self.pull(peer.node_id))
                task.add_done_callback(self._pulled(peer.node_id))

    def _pulled(self, node_id: str) -> Callable[[asyncio.Future[int]], None]:
        def done(_: asyncio.Future[int]) -> None:
            self._pulling.pop(node_id, None)

        return done

    async def pull(self, node_id: str) -> int:
        """Read the rows `node_id` stored after our cursor, page by page; returns how many were new here."""
        client = self._clients.for_node(node_id)
        if client is None:
            return 0
        db, seq = await asyncio.to_thread(self._records.cursor, node_id)
        added = 0
        while True:
            try:
                answer = await client.get_json(f"/mesh/records/changes?after={seq}&db={db}&limit={PULL_PAGE_ROWS}",
                                               PULL_TIMEOUT_S, max_bytes=MAX_PULL_BYTES)  # fmt: skip
            except PeerError as exc:
                self._failed_at[node_id] = time.monotonic()
                logger.debug("pulling records from %s failed: %s", node_id, exc.message)
                return added
            page = changes_page(answer)
            if page is None:
                self._failed_at[node_id] = time.monotonic()
                logger.warning("ignoring the records of %s: its answer is malformed", node_id)
                return added
            db, seq, rows, more = page
            added += await asyncio.to_thread(self._store, node_id, db, seq, self.accept(rows))
            self._cursors[node_id] = (db, seq)
            if not more:
                break
        if added:
            logger.info("copied %d request records from %s", added, node_id)
        return added

    def _store(self, node_id: str, db: str, seq: int, rows: list[dict[str, Any]]) -> int:
        added = self._records.merge(rows, source=node_id)
        self._records.set_cursor(node_id, db, seq)
        return added


def advertised_records(capabilities: Mapping[str, Any]) -> tuple[str, int] | None:
    """(records file id, change sequence) from a peer's state document, or None when it says nothing usable."""
    storage = capabilities.get("storage")
    records = storage.get("records") if isinstance(storage, Mapping) else None
    if not isinstance(records, Mapping):
        return None
    db, seq = records.get("db"), records.get("seq")
    if not isinstance(db, str) or not db or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return None
    return db, seq


def changes_page(answer: Mapping[str, Any]) -> tuple[str, int, list[Any], bool] | None:
    """(db, upto, rows, more) from a `/mesh/records/changes` answer, or None when it is not one."""
    db, upto, rows, more = answer.get("db"), answer.get("upto"), answer.get("rows"), answer.get("more")
    if not isinstance(db, str) or not isinstance(rows, list) or not isinstance(more, bool):
        return None
    if not isinstance(upto, int) or isinstance(upto, bool) or upto < 0:
        return None
    return db, upto, rows, more and bool(rows)
