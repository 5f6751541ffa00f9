"""`/dashboard` and its JSON API: mesh-wide settings, statistics, health and a live event stream, answered by
any peer.

The page itself is static (`herd_mesh/web/static/`, see docs/dashboard.md); it listens to the event stream
(`/dashboard/api/events`) and reads the same JSON endpoints a person can curl, polling them only when the
stream is not available.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ...core import health as health_mod
from ...core import stats
from ...core.settings import SCHEMA, validate_changes
from ...core.units import DAY_S
from ...dispatch.jobs import REQUEST_ID_RE
from ...errors import PeerError, RequestError
from ...mesh.clients import PeerClients
from ...mesh.node import Node
from ...mesh.records_gather import MeshRecords
from ...mesh.settings_sync import SettingsSync
from ...services.changes import Changes
from ...storage.records import Records
from ...storage.settings_store import SettingsStore
from ..common import choice_param, int_param, json_body
from ..events import LiveEvents

MAX_HOURS = 24 * 365  # the longest statistics window asked for
MAX_RECENT = 200  # the most recent events one statistics answer lists
MAX_TZ_MINUTES = 14 * 60  # the page's UTC offset, for buckets that start on its round hours and midnights
STATIC_FILES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
BOOTSTRAP_MARK = "__HERD_BOOTSTRAP__"  # replaced in the page by the peer list, so it paints before any fetch
CLOCK_TIMEOUT_S = 0.8  # a peer's clock is read with one ping, no longer than this
CLOCK_REUSE_S = 10.0  # a clock reading is reused this long
FAILURES_WINDOW_S = 3600.0  # the health check for a peer that keeps failing looks this far back
VOLATILE = ("last_seen", "generated_at", "system")  # fields that tick: not a change worth an event on their own
METRICS_EVENT_S = 5.0  # ... but CPU and memory still reach the page this often


def _static_text(name: str) -> str:
    return (resources.files("herd_mesh.web") / "static" / name).read_text(encoding="utf-8")


def _flag_param(request: Request, name: str) -> bool:
    return choice_param(request, name, ("1", "true", "0", "false"), "0") in ("1", "true")


def _tz_param(request: Request) -> float:
    """`tz`: the page's offset from UTC in minutes (east positive, -840..840), 0 when absent."""
    raw = request.query_params.get("tz")
    if raw is None:
        return 0.0
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_TZ_MINUTES:
        raise RequestError(f"tz must be minutes east of UTC, from -{MAX_TZ_MINUTES} to {MAX_TZ_MINUTES}, got {raw!r}")
    return int(raw) * 60.0


def _steady(document: dict[str, Any]) -> dict[str, Any]:
    """The peer list without the fields that tick on every read: what is compared to decide on an event."""
    peers = []
    for peer in document.get("peers", []):
        caps = peer.get("capabilities")
        caps = {k: v for k, v in caps.items() if k not in VOLATILE} if isinstance(caps, dict) else caps
        peers.append({**{k: v for k, v in peer.items() if k not in VOLATILE}, "capabilities": caps})
    return {**document, "peers": peers}


class DashboardRoutes:
    def __init__(
        self,
        *,
        node: Node,
        settings: SettingsStore,
        settings_sync: SettingsSync,
        mesh_records: MeshRecords,
        records: Records,
        clients: PeerClients,
        changes: Changes,
    ) -> None:
        self._node = node
        self._settings = settings
        self._settings_sync = settings_sync
        self._mesh_records = mesh_records
        self._records = records
        self._clients = clients
        self._clocks: dict[str, tuple[float, float | None]] = {}  # node id -> (read at, its clock minus ours)
        self.events = LiveEvents(
            sources={"peers": self._peers_event, "settings": self._settings_event, "records": self._records_event},
            changes=changes,
            stopping=lambda: node.leaving,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self.page, methods=["GET"]),
            Route("/dashboard/static/{name}", self.static, methods=["GET"]),
            Route("/dashboard/api/settings", self.settings, methods=["GET", "POST"]),
            Route("/dashboard/api/image-stats", self.image_stats, methods=["GET"]),
            Route("/dashboard/api/stats", self.any_stats, methods=["GET"]),
            Route("/dashboard/api/health", self.health, methods=["GET"]),
            Route("/dashboard/api/events", self.live, methods=["GET"]),
            Route("/dashboard/api/routing", self.routing, methods=["GET"]),
        ]

    # -- the page -------------------------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        bootstrap = json.dumps(self._node.peers_document(), default=str).replace("<", "\\u003c")
        body = _static_text("dashboard.html").replace(BOOTSTRAP_MARK, bootstrap, 1)
        return HTMLResponse(body, headers={"Cache-Control": "no-cache"})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise RequestError(f"no such dashboard file: {name!r}; there are {', '.join(STATIC_FILES)}", 404)
        return Response(_static_text(name), media_type=media_type, headers={"Cache-Control": "no-cache"})

    # -- live -----------------------------------------------------------------------------------------------------
    def _peers_event(self) -> tuple[Any, Any]:
        document = self._node.peers_document()
        return (_steady(document), int(time.monotonic() // METRICS_EVENT_S)), document

    def _settings_event(self) -> tuple[Any, Any]:
        detail = self._settings_detail()
        return detail, detail

    def _records_event(self) -> tuple[Any, Any]:
        mark = {"db": self._records.db_id, "seq": self._records.seq}
        return mark, mark

    async def live(self, request: Request) -> Response:
        """Server-sent events: `peers` (the /mesh/peers answer: peers, queues, job progress), `settings` (the
        settings detail) and `records` (a new record or copy arrived: statistics changed), each when it changes."""
        self.events.check_room()
        return StreamingResponse(
            self.events.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- settings -------------------------------------------------------------------------------------------------
    def _settings_detail(self) -> dict[str, Any]:
        """Values plus what the page needs to draw the form: the schema, who changed what, which peers agree."""
        schema = {
            key: {
                "type": "boolean" if s.type is bool else "integer",
                "default": s.default,
                "help": s.help,
                "minimum": s.minimum,
                "maximum": s.maximum,
            }
            for key, s in SCHEMA.items()
        }
        changed = {key: {"by": e.get("by"), "at": e.get("ts")} for key, e in self._settings.entries.items()}
        differ = self._settings_sync.differ_since
        peers = [
            {"node_id": p.node_id, "status": p.status,
             "in_sync": None if p.status == "down" else p.node_id not in differ}
            for p in self._node.table.all()
        ]  # fmt: skip
        return {"settings": self._settings.values(), "schema": schema, "changed": changed, "peers": peers}

    async def settings(self, request: Request) -> Response:
        """GET: the settings in force. POST: change some, on every peer; the answer shows the result."""
        detail = _flag_param(request, "detail")
        if request.method == "GET":
            return JSONResponse(self._settings_detail() if detail else self._settings.values())
        changes = validate_changes(await json_body(request))
        applied, pending = await self._settings_sync.change(changes)
        headers = {"X-Herd-Applied-On": ",".join(applied)}
        if pending:
            headers["X-Herd-Pending"] = ",".join(sorted(pending))
        if detail:
            doc = {**self._settings_detail(), "applied_on": applied, "pending": pending}
            return JSONResponse(doc, headers=headers)
        return JSONResponse(self._settings.values(), headers=headers)

    # -- statistics -----------------------------------------------------------------------------------------------
    async def _stats(self, request: Request, kind: str | None) -> dict[str, Any]:
        hours = int_param(request, "hours", 24, 1, MAX_HOURS)
        recent = int_param(request, "recent", 20, 0, MAX_RECENT)
        local = choice_param(request, "scope", ("mesh", "local"), "mesh") == "local"
        tz_offset_s = _tz_param(request)
        now = time.time()
        window_s = hours * 3600.0
        got = await self._mesh_records.gather(since=now - window_s, local_only=local)

        def one(k: str | None) -> dict[str, Any]:
            return stats.report(got.answers, got.missing, kind=k, now=now, window_s=window_s,
                                truncated=got.truncated, recent=recent, tz_offset_s=tz_offset_s)  # fmt: skip

        if kind is not None:
            return one(kind)
        every = {k: one(k) for k in stats.KINDS}
        header = {k: every["image"][k] for k in ("window_s", "since", "generated_at", "nodes_answered",
                                                 "nodes_missing", "nodes_truncated")}  # fmt: skip
        return {**header, "kind": "all", "kinds": every}

    async def image_stats(self, request: Request) -> Response:
        """The last 24 h (`?hours=`) of image requests across the mesh."""
        return JSONResponse(await self._stats(request, "image"))

    async def any_stats(self, request: Request) -> Response:
        """`?kind=image|llm|embeddings|transcription`, or every kind at once without it."""
        return JSONResponse(await self._stats(request, choice_param(request, "kind", stats.KINDS, None)))

    async def routing(self, request: Request) -> Response:
        """`?job=<id>`: why that request went where it went, from the router's own words, with each peer's try."""
        job_id = request.query_params.get("job", "")
        if not REQUEST_ID_RE.match(job_id):
            raise RequestError("job must be a job id (the X-Request-Id of the answer, or a row of the statistics)")
        rows = await asyncio.to_thread(self._records.find, job_id)
        if not rows:
            now = time.time()
            got = await self._mesh_records.gather(since=now - DAY_S)
            rows = [r for r in reversed(stats.union(got.answers)) if r["job_id"] == job_id]
        if not rows:
            raise RequestError(f"no record of job {job_id!r} in the mesh (records are kept "
                               f"{self._settings.get('stats_retention_days')} days)", 404)  # fmt: skip
        row = stats.clean_row(rows[0]) or {}
        return JSONResponse({**stats.explain_route(row), "same_id": len(rows)})

    # -- health ---------------------------------------------------------------------------------------------------
    async def _read_clocks(self) -> None:
        """Each up peer's clock minus ours, from one ping (half the round trip is allowed for)."""
        now = time.monotonic()
        stale = [p.node_id for p in self._node.table.up()
                 if now - self._clocks.get(p.node_id, (-CLOCK_REUSE_S, None))[0] >= CLOCK_REUSE_S]  # fmt: skip

        async def read(node_id: str) -> None:
            client = self._clients.for_node(node_id)
            skew: float | None = None
            if client is not None:
                sent = time.time()
                try:
                    ping = await client.get_json("/mesh/ping", CLOCK_TIMEOUT_S)
                except PeerError:
                    ping = {}
                back = time.time()
                theirs = ping.get("now")
                if isinstance(theirs, int | float) and not isinstance(theirs, bool):
                    skew = float(theirs) - (sent + back) / 2
            self._clocks[node_id] = (time.monotonic(), skew)

        await asyncio.gather(*(read(n) for n in stale))

    def _snapshots(self, now: float) -> list[health_mod.PeerSnapshot]:
        node = self._node
        me = health_mod.PeerSnapshot(node.node_id, node.identity.url, "up", True, node.state.current(), last_seen=now)
        differ = self._settings_sync.differ_since
        others = [
            health_mod.PeerSnapshot(
                p.node_id,
                p.url,
                p.status,
                capabilities=p.capabilities,
                last_seen=p.last_seen,
                unreachable_since=p.failing_since or p.down_since,
                last_error=p.last_error,
                settings_differ_since=differ.get(p.node_id),
                clock_skew_s=self._clocks.get(p.node_id, (0.0, None))[1] if p.status == "up" else None,
            )
            for p in node.table.all()
        ]
        never = [
            health_mod.PeerSnapshot(None, url, "down",
                                    last_error=node.membership.static_errors.get(url, "not reached yet"))
            for url in node.table.pending_static_urls()
        ]  # fmt: skip
        return [me, *others, *never]

    def _mdns(self, now: float) -> health_mod.Mdns:
        heard = self._node.mdns_heard()
        started = self._node.identity.started_at
        return health_mod.Mdns(enabled=heard is not None, heard=heard or frozenset(), running_for_s=now - started)

    async def health(self, request: Request) -> Response:
        """Peers up/suspect/down with memory, CPU and queues; the last day's activity; every check, with advice."""
        node = self._node
        got, _ = await asyncio.gather(self._mesh_records.gather(since=time.time() - DAY_S), self._read_clocks())
        now = time.time()
        settings = self._settings.values()
        rows = stats.union(got.answers)
        failures = stats.failures_by_peer(r for r in rows if r["ts"] >= now - FAILURES_WINDOW_S)
        verdict = health_mod.assess(self._snapshots(now), settings=settings, now=now, failures=failures,
                                    mdns=self._mdns(now))  # fmt: skip
        last_day = {}
        for kind in stats.KINDS:
            report = stats.report(got.answers, got.missing, kind=kind, now=now, window_s=DAY_S, recent=0)
            last_day[kind] = {k: report[k] for k in ("total", "succeeded", "failed", "avg_generation_ms")}
            last_day[kind]["rejected"] = report["rejected"]["total"]
        return JSONResponse(
            {
                "self": node.node_id,
                "mesh": node.identity.mesh,
                "generated_at": now,
                **verdict,
                "settings": settings,
                "image_generation": {"enabled": settings["image_generation"], "last_24h": last_day["image"]},
                "last_24h": last_day,
                "stats_nodes_missing": [{"node_id": n, "reason": r} for n, r in sorted(got.missing.items())],
            }
        )
