"""`/dashboard` and its JSON API: mesh-wide settings, statistics and health, answered by any peer.

The page itself is static (`herd_mesh/web/static/`, see docs/dashboard.md); it polls the same JSON endpoints a
person can curl.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...core import health as health_mod
from ...core import stats
from ...core.settings import SCHEMA, validate_changes
from ...core.units import DAY_S
from ...errors import RequestError
from ...mesh.node import Node
from ...mesh.records_gather import MeshRecords
from ...mesh.settings_sync import SettingsSync
from ...storage.settings_store import SettingsStore
from ..common import choice_param, int_param, json_body

MAX_HOURS = 24 * 365  # the longest statistics window asked for
MAX_RECENT = 200  # the most recent events one statistics answer lists
STATIC_FILES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
BOOTSTRAP_MARK = "__HERD_BOOTSTRAP__"  # replaced in the page by the peer list, so it paints before any fetch


def _static_text(name: str) -> str:
    return (resources.files("herd_mesh.web") / "static" / name).read_text(encoding="utf-8")


def _flag_param(request: Request, name: str) -> bool:
    return choice_param(request, name, ("1", "true", "0", "false"), "0") in ("1", "true")


class DashboardRoutes:
    def __init__(
        self, *, node: Node, settings: SettingsStore, settings_sync: SettingsSync, mesh_records: MeshRecords
    ) -> None:
        self._node = node
        self._settings = settings
        self._settings_sync = settings_sync
        self._mesh_records = mesh_records

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self.page, methods=["GET"]),
            Route("/dashboard/static/{name}", self.static, methods=["GET"]),
            Route("/dashboard/api/settings", self.settings, methods=["GET", "POST"]),
            Route("/dashboard/api/image-stats", self.image_stats, methods=["GET"]),
            Route("/dashboard/api/stats", self.any_stats, methods=["GET"]),
            Route("/dashboard/api/health", self.health, methods=["GET"]),
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
        now = time.time()
        window_s = hours * 3600.0
        got = await self._mesh_records.gather(since=now - window_s, local_only=local)

        def one(k: str | None) -> dict[str, Any]:
            return stats.report(got.answers, got.missing, kind=k, now=now, window_s=window_s,
                                truncated=got.truncated, recent=recent)  # fmt: skip

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

    # -- health ---------------------------------------------------------------------------------------------------
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
            )
            for p in node.table.all()
        ]
        never = [
            health_mod.PeerSnapshot(None, url, "down",
                                    last_error=node.membership.static_errors.get(url, "not reached yet"))
            for url in node.table.pending_static_urls()
        ]  # fmt: skip
        return [me, *others, *never]

    async def health(self, request: Request) -> Response:
        """Peers up/suspect/down with memory, CPU and queues; the last day's activity; advice to act on."""
        node = self._node
        now = time.time()
        settings = self._settings.values()
        verdict = health_mod.assess(self._snapshots(now), settings=settings, now=now)
        got = await self._mesh_records.gather(since=now - DAY_S)
        last_day = {}
        for kind in stats.KINDS:
            report = stats.report(got.answers, got.missing, kind=kind, now=now, window_s=DAY_S, recent=0)
            last_day[kind] = {k: report[k] for k in ("total", "succeeded", "failed", "avg_generation_ms")}
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
