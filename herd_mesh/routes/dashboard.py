"""`/dashboard` and its JSON API: mesh-wide settings, statistics and health, answered by any peer.

The page itself is static (`herd_mesh/static/`, see docs/dashboard.md); it polls the same JSON endpoints a
person can curl.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .. import health as health_mod
from .. import stats
from ..errors import RequestError
from ..mesh_records import MeshRecords
from ..node import Node
from ..settings import SCHEMA, validate_changes
from .common import json_body

DAY_S = 24 * 3600
MAX_HOURS = 24 * 365  # the longest statistics window asked for
MAX_RECENT = 200  # the most recent events one statistics answer lists
STATIC_FILES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
BOOTSTRAP_MARK = "/*BOOTSTRAP*/null"  # replaced in the page by the peer list, so it paints before any fetch


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _mesh_records(request: Request) -> MeshRecords:
    gatherer: MeshRecords | None = getattr(request.app.state, "mesh_records", None)
    if gatherer is None:
        gatherer = request.app.state.mesh_records = MeshRecords(_node(request))
    return gatherer


def _static_text(name: str) -> str:
    return (resources.files("herd_mesh") / "static" / name).read_text(encoding="utf-8")


# -- query parameters -----------------------------------------------------------------------------------------
def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # "²".isdigit() is true
        raise RequestError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def _choice_param(request: Request, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw not in allowed:
        raise RequestError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _flag_param(request: Request, name: str) -> bool:
    return _choice_param(request, name, ("1", "true", "0", "false"), "0") in ("1", "true")


# -- the page -------------------------------------------------------------------------------------------------
async def page(request: Request) -> Response:
    node = _node(request)
    bootstrap = json.dumps(node.peers_document(), default=str).replace("<", "\\u003c")
    body = _static_text("dashboard.html").replace(BOOTSTRAP_MARK, bootstrap, 1)
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise RequestError(f"no such dashboard file: {name!r}; there are {', '.join(STATIC_FILES)}", 404)
    return Response(_static_text(name), media_type=media_type, headers={"Cache-Control": "no-cache"})


# -- settings -------------------------------------------------------------------------------------------------
def _settings_detail(node: Node) -> dict[str, Any]:
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
    changed = {key: {"by": e.get("by"), "at": e.get("ts")} for key, e in node.settings.entries.items()}
    differ = node.settings_sync.differ_since
    peers = [
        {"node_id": p.node_id, "status": p.status, "in_sync": None if p.status == "down" else p.node_id not in differ}
        for p in node.table.all()
    ]
    return {"settings": node.settings.values(), "schema": schema, "changed": changed, "peers": peers}


async def settings(request: Request) -> Response:
    """GET: the settings in force. POST: change some, on every peer; the answer shows the result."""
    node = _node(request)
    detail = _flag_param(request, "detail")
    if request.method == "GET":
        return JSONResponse(_settings_detail(node) if detail else node.settings.values())
    changes = validate_changes(await json_body(request))
    applied, pending = await node.settings_sync.change(changes)
    headers = {"X-Herd-Applied-On": ",".join(applied)}
    if pending:
        headers["X-Herd-Pending"] = ",".join(sorted(pending))
    if detail:
        doc = {**_settings_detail(node), "applied_on": applied, "pending": pending}
        return JSONResponse(doc, headers=headers)
    return JSONResponse(node.settings.values(), headers=headers)


# -- statistics -----------------------------------------------------------------------------------------------
async def _stats(request: Request, kind: str | None) -> dict[str, Any]:
    hours = _int_param(request, "hours", 24, 1, MAX_HOURS)
    recent = _int_param(request, "recent", 20, 0, MAX_RECENT)
    local = _choice_param(request, "scope", ("mesh", "local"), "mesh") == "local"
    now = time.time()
    window_s = hours * 3600.0
    got = await _mesh_records(request).gather(since=now - window_s, local_only=local)

    def one(k: str | None) -> dict[str, Any]:
        return stats.report(got.answers, got.missing, kind=k, now=now, window_s=window_s, truncated=got.truncated,
                            recent=recent)  # fmt: skip

    if kind is not None:
        return one(kind)
    every = {k: one(k) for k in stats.KINDS}
    header = {k: every["image"][k] for k in ("window_s", "since", "generated_at", "nodes_answered",
                                             "nodes_missing", "nodes_truncated")}  # fmt: skip
    return {**header, "kind": "all", "kinds": every}


async def image_stats(request: Request) -> Response:
    """The last 24 h (`?hours=`) of image requests across the mesh."""
    return JSONResponse(await _stats(request, "image"))


async def any_stats(request: Request) -> Response:
    """`?kind=image|llm|embeddings|transcription`, or every kind at once without it."""
    return JSONResponse(await _stats(request, _choice_param(request, "kind", stats.KINDS, None)))


# -- health ---------------------------------------------------------------------------------------------------
def _snapshots(node: Node, now: float) -> list[health_mod.PeerSnapshot]:
    me = health_mod.PeerSnapshot(node.node_id, node.url, "up", True, node.state(), last_seen=now)
    differ = node.settings_sync.differ_since
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
        health_mod.PeerSnapshot(None, url, "down", last_error=node.static_errors.get(url, "not reached yet"))
        for url in node.table.pending_static_urls()
    ]
    return [me, *others, *never]


async def health(request: Request) -> Response:
    """Peers up/suspect/down with memory, CPU and queues; the last day's activity; advice a person can act on."""
    node = _node(request)
    now = time.time()
    verdict = health_mod.assess(_snapshots(node, now), settings=node.settings.values(), now=now)
    got = await _mesh_records(request).gather(since=now - DAY_S)
    last_day = {}
    for kind in stats.KINDS:
        report = stats.report(got.answers, got.missing, kind=kind, now=now, window_s=DAY_S, recent=0)
        last_day[kind] = {k: report[k] for k in ("total", "succeeded", "failed", "avg_generation_ms")}
    return JSONResponse(
        {
            "self": node.node_id,
            "mesh": node.config.mesh,
            "generated_at": now,
            **verdict,
            "settings": node.settings.values(),
            "image_generation": {"enabled": node.settings.get("image_generation"), "last_24h": last_day["image"]},
            "last_24h": last_day,
            "stats_nodes_missing": [{"node_id": n, "reason": r} for n, r in sorted(got.missing.items())],
        }
    )


routes = [
    Route("/dashboard", page, methods=["GET"]),
    Route("/dashboard/static/{name}", static, methods=["GET"]),
    Route("/dashboard/api/settings", settings, methods=["GET", "POST"]),
    Route("/dashboard/api/image-stats", image_stats, methods=["GET"]),
    Route("/dashboard/api/stats", any_stats, methods=["GET"]),
    Route("/dashboard/api/health", health, methods=["GET"]),
]
