"""`/dashboard` and its JSON API: settings, statistics, health."""

from __future__ import annotations

import html
import time

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .. import records
from ..node import Node
from ..settings import validate_changes
from .common import json_body

DAY_S = 24 * 3600


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


async def page(request: Request) -> Response:
    node = _node(request)
    doc = node.peers_document()
    rows = []
    for p in doc["peers"]:
        caps = p.get("capabilities") or {}
        system = caps.get("system") or {}
        image = caps.get("image") or {}
        queue = image.get("queue") or {}
        seen = p.get("last_seen")
        ago = f"{time.time() - seen:.1f}s ago" if seen else "never"
        jobs = " ".join(
            f"<span class='badge'>[IMAGE]</span> {html.escape(str(j.get('model')))}"
            for j in (queue.get("running") or []) + (queue.get("waiting") or [])
        )
        rows.append(
            "<tr>"
            f"<td>{html.escape(str(p.get('node_id') or '?'))}{' (this peer)' if p.get('self') else ''}</td>"
            f"<td>{html.escape(str(p.get('url')))}</td>"
            f"<td class='{html.escape(str(p.get('status')))}'>{html.escape(str(p.get('status')))}</td>"
            f"<td>{html.escape(str(system.get('chip', '')))}</td>"
            f"<td>{system.get('memory_available_gb', '')}</td>"
            f"<td>{system.get('cpu_percent', '')}</td>"
            f"<td>{html.escape(', '.join(sorted((image.get('models') or {}).keys())))}</td>"
            f"<td>{jobs}</td>"
            f"<td>{ago}</td>"
            "</tr>"
        )
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>herd-mesh: {html.escape(doc["mesh"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em}}.up{{color:green}}.suspect{{color:orange}}.down{{color:red}}
.badge{{background:#5b3cc4;color:#fff;border-radius:3px;padding:0 .3em;font-size:.8em}}</style>
</head><body><h1>herd-mesh &middot; mesh {html.escape(doc["mesh"])}</h1>
<table><tr><th>node</th><th>url</th><th>status</th><th>chip</th><th>free GB</th><th>CPU %</th><th>image models</th>
<th>queue</th><th>last seen</th></tr>
{"".join(rows)}</table></body></html>"""
    return HTMLResponse(body)


async def settings(request: Request) -> Response:
    node = _node(request)
    if request.method == "POST":
        changes = validate_changes(await json_body(request))
        node.settings.update(changes)
        node.notify()
    return JSONResponse(node.settings.values())


async def image_stats(request: Request) -> Response:
    node = _node(request)
    since = time.time() - DAY_S
    rows = node.records.rows(since=since, kind="image")
    return JSONResponse({"window_s": DAY_S, "nodes_answered": [node.node_id], **records.summarize(rows)})


async def health(request: Request) -> Response:
    node = _node(request)
    doc = node.peers_document()
    peers = []
    recommendations: list[str] = []
    any_mflux = False
    for p in doc["peers"]:
        caps = p.get("capabilities") or {}
        system = caps.get("system") or {}
        image = caps.get("image") or {}
        queue = image.get("queue") or {}
        installed = [m for m, s in (image.get("models") or {}).items() if s.get("installed")]
        any_mflux = any_mflux or (bool(installed) and p.get("status") == "up")
        peers.append(
            {
                "node_id": p.get("node_id"),
                "url": p.get("url"),
                "status": p.get("status"),
                "memory_pressure": system.get("memory_pressure"),
                "memory_available_gb": system.get("memory_available_gb"),
                "cpu_percent": system.get("cpu_percent"),
                "image_queue": len(queue.get("running") or []) + len(queue.get("waiting") or []),
                "image_models": installed,
                "last_error": p.get("last_error"),
            }
        )
        if system.get("memory_pressure") in ("warn", "critical"):
            recommendations.append(f"peer {p.get('node_id')} is under memory pressure ({system['memory_pressure']})")
        if p.get("status") != "up":
            seen = p.get("last_seen")
            since = f"for {int(time.time() - seen)} s" if seen else "since it was listed"
            recommendations.append(
                f"peer {p.get('node_id') or p.get('url')} unreachable {since}: {p.get('last_error')}"
            )
    if not any_mflux:
        recommendations.append("no peer has mflux: install it on a Mac with `uv tool install mflux`")
    if not node.settings.get("image_generation"):
        recommendations.append('image generation is off: POST /dashboard/api/settings {"image_generation": true}')
    counts = {s: sum(1 for p in peers if p["status"] == s) for s in ("up", "suspect", "down")}
    last_day = records.summarize(node.records.rows(since=time.time() - DAY_S, kind="image"), recent=0)
    return JSONResponse(
        {
            "self": node.node_id,
            "mesh": node.config.mesh,
            "status": "healthy" if counts["up"] == len(peers) and any_mflux else "degraded",
            "peers_total": len(peers),
            "peers": counts,
            "nodes": peers,
            "image_generation": {
                "enabled": node.settings.get("image_generation"),
                "last_24h": {k: last_day[k] for k in ("total", "succeeded", "failed", "avg_generation_ms")},
            },
            "recommendations": recommendations,
        }
    )


routes = [
    Route("/dashboard", page, methods=["GET"]),
    Route("/dashboard/api/settings", settings, methods=["GET", "POST"]),
    Route("/dashboard/api/image-stats", image_stats, methods=["GET"]),
    Route("/dashboard/api/health", health, methods=["GET"]),
]
